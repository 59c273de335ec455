"""CNNs: the convolution formula vs torch.nn, the seeds' LeNet shapes, head swap and backbone freezing,
VGG/ResNet architecture checks, and EfficientNet-Lite0 with its real ImageNet weights against the
reference implementation (``efficientnet-lite-pytorch``, a test-only dependency)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zeroforge as zf
from zeroforge.errors import ConfigError, DataError
from zeroforge.fitting import fit
from zeroforge.models.cnn import ConvNet, FormulaConv2d, conv2d_formula
from zeroforge.models.cnn_efficientnet import EfficientNetLite, SameConv2d, load_lite0_weights


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: one thread avoids oversubscribing a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the formula


def test_formula_by_hand_on_one_channel() -> None:
    # S(i, j) = sum_m sum_n I(i + m, j + n) K(m, n), with explicit Python loops
    image = torch.arange(20.0).reshape(4, 5)
    kernel = torch.tensor([[1.0, -1.0], [2.0, 0.5]])
    want = torch.zeros(3, 4)
    for i in range(3):
        for j in range(4):
            want[i, j] = sum(image[i + m, j + n] * kernel[m, n] for m in range(2) for n in range(2))
    got = conv2d_formula(image[None, None], kernel[None, None])[0, 0]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("stride", "padding", "kernel"), [(1, 0, 3), (2, 1, 3), (1, 2, 5), (3, 0, 2)])
def test_formula_equals_torch_conv2d(stride: int, padding: int, kernel: int) -> None:
    g = torch.Generator().manual_seed(stride * 10 + padding)
    x = torch.randn(2, 3, 11, 9, generator=g, dtype=torch.double)
    w = torch.randn(4, 3, kernel, kernel, generator=g, dtype=torch.double)
    b = torch.randn(4, generator=g, dtype=torch.double)
    torch.testing.assert_close(
        conv2d_formula(x, w, b, stride, padding), F.conv2d(x, w, b, stride=stride, padding=padding)
    )


def test_formula_module_matches_nn_conv2d_with_copied_weights_and_grads() -> None:
    torch.manual_seed(0)
    theirs = nn.Conv2d(3, 5, 3, stride=2, padding=1).double()
    ours = FormulaConv2d(3, 5, 3, stride=2, padding=1).double()
    ours.load_state_dict(theirs.state_dict())
    x1 = torch.randn(2, 3, 8, 8, dtype=torch.double, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    a, b = ours(x1), theirs(x2)
    torch.testing.assert_close(a, b)
    (a**2).sum().backward()
    (b**2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)


def test_convnet_on_the_formula_equals_convnet_on_torch() -> None:
    torch.manual_seed(1)
    fast = zf.create_model("lenet")
    slow = zf.create_model("lenet", conv="formula")
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(slow(pixel_values=x).logits, fast(pixel_values=x).logits, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- architectures


def test_lenet_is_the_seeds_convnet() -> None:
    model = zf.create_model("lenet")
    convs = [m for m in model.convs if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.dense if isinstance(m, nn.Linear)] + [model.fc]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 6, (5, 5)),
        (6, 16, (5, 5)),
    ]
    assert [(m.in_features, m.out_features) for m in linears] == [(16 * 5 * 5, 120), (120, 84), (84, 10)]
    out = model(pixel_values=torch.randn(3, 1, 32, 32), labels=torch.tensor([1, 2, 3]))
    assert out.logits.shape == (3, 10) and out.metrics["accuracy"][1] == 3


def test_resnet_and_vgg_shapes_and_parameter_counts() -> None:
    # torchvision's resnet18 / resnet34 have 11,689,512 / 21,797,672 parameters (1000 classes)
    assert sum(p.numel() for p in zf.create_model("resnet18").parameters()) == 11_689_512
    assert sum(p.numel() for p in zf.create_model("resnet34").parameters()) == 21_797_672
    resnet = zf.create_model("resnet18", num_classes=10, small_input=True, width=8)
    assert [len(getattr(resnet, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert resnet(pixel_values=torch.randn(2, 3, 32, 32)).logits.shape == (2, 10)
    vgg = zf.create_model("vgg11", stages=[[8], [16], [32, 32], [64, 64], [64, 64]], hidden_size=32)
    convs = [m for m in vgg.convs if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8  # VGG-11: 8 convolutions + 3 fully connected (here: hidden + fc)
    for size in (28, 32):  # ceil-mode pools: 28 -> 14 -> 7 -> 4 -> 2 -> 1
        assert vgg(pixel_values=torch.randn(2, 3, size, size)).logits.shape == (2, 10)


# ----------------------------------------------------------------------------- head swap, freezing


def test_head_swap_the_seeds_way_and_ours() -> None:
    model = zf.create_model("resnet18", width=8)
    num_ftrs = model.fc.in_features
    model.fc = nn.Linear(num_ftrs, 10)  # the seeds' line works unchanged
    assert model(pixel_values=torch.randn(2, 3, 32, 32)).logits.shape == (2, 10)
    head = model.replace_head(3)
    assert model.fc is head and (head.in_features, head.out_features) == (num_ftrs, 3)
    assert model.config.num_classes == 3
    assert model(pixel_values=torch.randn(2, 3, 32, 32)).logits.shape == (2, 3)


def test_frozen_backbone_trains_only_the_head_and_keeps_batchnorm_statistics() -> None:
    torch.manual_seed(0)
    model = zf.create_model("convnet-mnist", channels=[4, 8], hidden_sizes=[16])
    model.replace_head(3)
    model.freeze_backbone()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(16, 1, 28, 28) * 3 + 1, torch.randint(0, 3, (16,))
    fit(model, x, y, epochs=2, batch_size=8, lr=0.1, verbose=False)
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]  # BatchNorm running stats included: untouched
    assert model.training and not model.convs.training  # train() keeps the frozen part in eval mode
    model.freeze_backbone(False)
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and model.convs.training


# ----------------------------------------------------------------------------- EfficientNet-Lite0


def test_same_padding_is_tensorflows() -> None:
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    x = torch.randn(1, 1, 8, 8)
    # SAME for i=8, k=3, s=2: total pad (4-1)*2 + 3 - 8 = 1, all of it after (bottom/right)
    want = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), want)
    assert conv(torch.randn(1, 1, 7, 7)).shape[-1] == 4  # ceil(7 / 2)


def lite0_file():
    from zeroforge import datasets

    return datasets.asset_file("efficientnet-lite0")


@pytest.mark.network
def test_efficientnet_lite0_matches_the_reference_with_real_weights() -> None:
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    state = load_lite0_weights(lite0_file())
    theirs = reference.EfficientNet.from_name("efficientnet-lite0")
    theirs.load_state_dict(state)
    theirs.eval()
    ours = EfficientNetLite.from_pretrained(lite0_file()).eval()
    assert sum(p.numel() for p in ours.parameters()) == 4_652_008
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224) * 0.5
    with torch.no_grad():
        want = theirs(x)
        got = ours(pixel_values=x).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert want.abs().max() > 1.0  # real weights give confident logits, not a random-init blur


@pytest.mark.network
def test_efficientnet_head_swap_keeps_the_pretrained_backbone() -> None:
    state = load_lite0_weights(lite0_file())
    model = EfficientNetLite.from_pretrained(lite0_file(), num_classes=10)
    assert (model.fc.in_features, model.fc.out_features) == (1280, 10)
    torch.testing.assert_close(
        model.blocks[5].depthwise_conv.weight, state["_blocks.5._depthwise_conv.weight"]
    )
    torch.testing.assert_close(model.bn1.running_var, state["_bn1.running_var"])
    model.freeze_backbone()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 1280 * 10 + 10


@pytest.mark.network
def test_efficientnet_rejects_a_bad_state_dict() -> None:
    model = zf.create_model("efficientnet-lite0")
    state = load_lite0_weights(lite0_file())
    state["_fc.weight"] = state["_fc.weight"][:10]
    with pytest.raises(
        DataError, match=r"fc.weight has shape \(10, 1280\), the model expects \(1000, 1280\)"
    ):
        model.load_reference_state_dict(state)
    del state["_conv_head.weight"]
    with pytest.raises(DataError, match="missing conv_head.weight"):
        model.load_reference_state_dict(state)


# ----------------------------------------------------------------------------- bad input


def test_bad_images_are_named() -> None:
    model = zf.create_model("convnet")
    with pytest.raises(
        DataError, match=r"expected images of shape \(N, 1, H, W\), got \(2, 28, 28\) \(add the channel axis"
    ):
        model(pixel_values=torch.zeros(2, 28, 28))
    with pytest.raises(DataError, match="expected float images, got torch.uint8"):
        model(pixel_values=torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match="class 10 is out of range for 10 classes"):
        model(pixel_values=torch.zeros(2, 1, 28, 28), labels=torch.tensor([0, 10]))
    effnet = zf.create_model("efficientnet-lite0")
    with pytest.raises(DataError, match="images of 16x16 are too small for EfficientNetLite"):
        effnet(pixel_values=torch.zeros(1, 3, 16, 16))
    with pytest.raises(ConfigError, match="model.image_size: 8 is too small for 2 conv"):
        zf.create_model("convnet", image_size=8)
    assert isinstance(zf.create_model("convnet"), ConvNet)
