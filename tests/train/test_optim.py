import copy
import math

import pytest
import torch

from zeroforge.config import TrainArgs
from zeroforge.train.optim import Muon, build_optimizer, learning_rate, param_groups, set_learning_rate


def test_warmup_then_cosine_to_min_lr():
    args = TrainArgs(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert learning_rate(0, 0.0, args) == pytest.approx(1 / 11)
    assert learning_rate(9, 0.0, args) == pytest.approx(10 / 11)
    assert learning_rate(10, 0.0, args) == pytest.approx(1.0)
    assert learning_rate(60, 0.5, args) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 0.9)
    assert learning_rate(110, 1.0, args) == pytest.approx(0.1)
    assert learning_rate(500, 3.0, args) == pytest.approx(0.1)  # clamped past the end


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize(
    "name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_build_optimizer(name, cls):
    opt = build_optimizer(torch.nn.Linear(2, 2), TrainArgs(optimizer=name))
    assert isinstance(opt, cls)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_fused_adam_kernel_takes_the_foreach_steps(name):
    """build_optimizer picks torch's fused Adam(W) on CPU; it must follow the foreach update rule."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    twin, start = copy.deepcopy(model), copy.deepcopy(model)
    args = TrainArgs(optimizer=name, lr=1e-2, weight_decay=0.1)
    fused = build_optimizer(model, args)
    assert fused.defaults["fused"] is True
    groups = param_groups(twin, args.weight_decay)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    foreach = cls(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, foreach=True)
    for _ in range(5):
        x = torch.randn(32, 8)
        for m, opt in ((model, fused), (twin, foreach)):
            m(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for p, q, p0 in zip(model.parameters(), twin.parameters(), start.parameters()):
        assert not torch.equal(p, p0)  # the weights moved
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def _tiny_gpt():
    from zeroforge.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11))


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = _tiny_gpt()
    opt = build_optimizer(model, TrainArgs(optimizer="muon"))
    muon, adamw = opt.optimizers
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = sorted(names[id(p)] for g in muon.param_groups for p in g["params"])
    expected = sorted(
        n for n, p in model.named_parameters() if p.dim() == 2 and ".h." in n
    )  # qkv, attention out, MLP in and out of each block
    assert in_muon == expected and len(in_muon) == 4 * 2
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert "transformer.wte.weight" in in_adamw and "transformer.wpe.weight" in in_adamw  # tied head too
    assert len(in_muon) + len(in_adamw) == len(list(model.parameters()))


def test_muon_adamw_side_learning_rate_scale():
    opt = build_optimizer(_tiny_gpt(), TrainArgs(optimizer="muon", lr=2e-3, adamw_lr_scale=3.0))
    muon, adamw = opt.optimizers
    assert {g["lr"] for g in muon.param_groups} == {2e-3}
    assert [g["lr"] for g in adamw.param_groups] == pytest.approx([6e-3] * len(adamw.param_groups))
    set_learning_rate(opt, 1e-4)  # the schedule moves both, keeping the ratio
    assert {g["lr"] for g in muon.param_groups} == {1e-4}
    assert [g["lr"] for g in adamw.param_groups] == pytest.approx([3e-4] * len(adamw.param_groups))
    with pytest.raises(ValueError, match="adamw_lr_scale"):
        TrainArgs(optimizer="muon", adamw_lr_scale=0.0)
    with pytest.raises(ValueError, match="adamw_lr_scale: only applies with optimizer muon"):
        TrainArgs(optimizer="adamw", adamw_lr_scale=3.0)


def test_muon_update_is_orthogonalised_at_adamws_size():
    """One Muon step with lr 1 and no decay moves a block's matrix by 0.2*sqrt(max(m, n)) * O, where O is
    the gradient's U V^T as Newton-Schulz's quintic approximates it (singular values in ~[0.7, 1.2])."""
    model = _tiny_gpt()
    opt = build_optimizer(model, TrainArgs(optimizer="muon", lr=1.0, weight_decay=0.0, momentum=0.95))
    weight = model.transformer.h[0].mlp.c_fc.weight  # (64, 16)
    before = weight.detach().clone()
    torch.manual_seed(1)
    u, _, vh = torch.linalg.svd(torch.randn_like(weight), full_matrices=False)
    grad = u @ torch.diag(torch.logspace(0, -1.5, 16)) @ vh  # singular values over a 30x range
    weight.grad = grad.clone()
    opt.optimizers[0].step()
    step = (before - weight.detach()) / (0.2 * math.sqrt(max(weight.shape)))
    singular = torch.linalg.svdvals(step)
    assert singular.min() > 0.6 and singular.max() < 1.25, singular
    polar = u @ vh  # the exact orthogonalisation
    cosine = (step * polar).sum() / (step.norm() * polar.norm())
    assert cosine > 0.97, cosine
    assert (step * grad).sum() / (step.norm() * grad.norm()) < 0.9  # not the raw gradient's direction


def test_muon_state_round_trips():
    model, twin = _tiny_gpt(), _tiny_gpt()
    args = TrainArgs(optimizer="muon", lr=1e-2)
    opt = build_optimizer(model, args)
    x = torch.randint(0, 11, (4, 8))
    for _ in range(2):
        model(x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    twin.load_state_dict(model.state_dict())
    restored = build_optimizer(twin, args)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((model, opt), (twin, restored)):
        m(x, labels=x).loss.backward()
        o.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="Muon"):
        restored.load_state_dict({"state": {}, "param_groups": []})


def test_muon_matches_torch_optim_muon():
    """zeroforge's Muon (Newton-Schulz in fp32 on a CPU) takes torch.optim.Muon's steps (bf16 Newton-Schulz)
    with ``adjust_lr_fn="match_rms_adamw"``, momentum, Nesterov and decoupled weight decay alike."""
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(48, 16) * 0.1)
    ref = torch.nn.Parameter(ours.detach().clone())
    start = ours.detach().clone()
    opt_ours = Muon([ours], lr=0.02, weight_decay=0.1, momentum=0.95)
    opt_ref = torch.optim.Muon(
        [ref], lr=0.02, weight_decay=0.1, momentum=0.95, adjust_lr_fn="match_rms_adamw"
    )
    for _ in range(4):
        grad = torch.randn(48, 16)
        ours.grad, ref.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_ref.step()
    moved_ours, moved_ref = ours.detach() - start, ref.detach() - start
    assert moved_ref.norm() > 0.1  # the weights moved
    assert (moved_ours - moved_ref).norm() / moved_ref.norm() < 0.03  # bf16 Newton-Schulz on torch's side


def test_resuming_with_another_optimizer_is_a_config_error():
    from zeroforge.errors import ConfigError
    from zeroforge.train.loop import restore_optimizer

    adamw_state = build_optimizer(_tiny_gpt(), TrainArgs(optimizer="adamw")).state_dict()
    with pytest.raises(ConfigError, match="train.optimizer"):
        restore_optimizer(build_optimizer(_tiny_gpt(), TrainArgs(optimizer="muon")), adamw_state)
