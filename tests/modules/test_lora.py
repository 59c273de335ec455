"""LoRA: zero-B == base, merged == unmerged, only adapters get gradients, adapter round trip, and
parity with ``peft`` (same adapter weights -> same logits; our adapter files load in peft and back)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from zeroforge.errors import ConfigError, DataError
from zeroforge.models.llama import Llama, LlamaConfig
from zeroforge.modules.lora import (
    ADAPTER_CONFIG,
    LoRAConfig,
    LoRALinear,
    apply_lora,
    count_parameters,
    load_adapter,
    lora_layers,
    mark_trainable,
    merge_lora,
    merged_model,
    parameter_summary,
    save_adapter,
    unmerge_lora,
)
from zeroforge.registry import create_model

TINY = dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=64, vocab_size=64, block_size=32)
X = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(1))


def tiny_llama(seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    return Llama(LlamaConfig(**TINY, rope_theta=10000.0)).eval()


def randomize_adapters(model: nn.Module, seed: int = 3, scale: float = 0.2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_A.weight.copy_(torch.randn(layer.lora_A.weight.shape, generator=g) * scale)
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * scale)


def test_fresh_adapters_leave_the_model_unchanged():
    base = tiny_llama()
    adapted = tiny_llama()
    names = apply_lora(adapted, LoRAConfig(rank=4, alpha=8))
    assert names == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    assert all(torch.count_nonzero(layer.lora_A.weight) > 0 for _, layer in lora_layers(adapted))
    with torch.no_grad():
        torch.testing.assert_close(adapted(X).logits, base(X).logits, atol=0, rtol=0)


def test_forward_is_base_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    base = nn.Linear(10, 6)
    layer = LoRALinear(base, rank=3, alpha=12.0)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(4, 10)
    expected = (
        x @ base.weight.T + base.bias + (12.0 / 3) * (x @ layer.lora_A.weight.T @ layer.lora_B.weight.T)
    )
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("targets", [None, ["all-linear"], ["k_proj", "down_proj"]])
def test_merged_equals_unmerged_and_unmerge_restores_the_base(targets):
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, LoRAConfig(rank=4, alpha=16, target_modules=targets))
    randomize_adapters(model)
    with torch.no_grad():
        unmerged = model(X).logits
        merge_lora(model)
        merged = model(X).logits
        unmerge_lora(model)
        again = model(X).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, unmerged, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmerged, tiny_llama()(X).logits, atol=1e-3)  # the adapters do something
    restored = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if "lora_" not in k}
    for key, value in before.items():
        torch.testing.assert_close(restored[key], value, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("gpt-tiny", ["c_attn"]), ("bert-test", ["query", "value"]), ("llama-tiny", ["q_proj", "v_proj"])],
)
def test_default_targets_are_the_model_class_lora_targets(name, expected):
    model = create_model(name)
    body = model.without_output_layer()  # BERT: the encoder a classifier adapts
    names = apply_lora(body, LoRAConfig(rank=2))
    assert sorted({n.split(".")[-1] for n in names}) == expected
    assert len(names) == len(expected) * model.config.n_layer


def test_a_model_without_lora_targets_needs_target_modules():
    with pytest.raises(ConfigError, match="lora.target_modules: no default for model Sequential"):
        apply_lora(nn.Sequential(nn.Linear(4, 4)), LoRAConfig())
    assert apply_lora(nn.Sequential(nn.Linear(4, 4)), LoRAConfig(target_modules=["0"])) == ["0"]


def test_all_linear_skips_the_output_layer():
    model = tiny_llama()
    names = apply_lora(model, LoRAConfig(target_modules=["all-linear"]))
    assert "lm_head" not in names and len(names) == 2 * 7  # q k v o gate up down per block


def test_merged_model_is_a_plain_model_with_the_same_function():
    model = tiny_llama()
    apply_lora(model, LoRAConfig(rank=2, alpha=4))
    randomize_adapters(model)
    with torch.no_grad():
        expected = model(X).logits
    plain = merged_model(model)
    assert not lora_layers(plain)
    assert set(plain.state_dict()) == set(tiny_llama().state_dict())
    fresh = tiny_llama()
    fresh.load_state_dict(plain.state_dict())  # loads with no LoRA code: same names and shapes
    with torch.no_grad():
        torch.testing.assert_close(fresh(X).logits, expected, atol=1e-5, rtol=1e-5)


def test_only_adapter_parameters_get_gradients():
    model = create_model("gpt-tiny")
    apply_lora(model, LoRAConfig(rank=4))
    mark_trainable(model)
    randomize_adapters(model)
    labels = torch.randint(0, 64, X.shape)
    model.train()
    model(X, labels=labels).loss.backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    trainable, total = count_parameters(model)
    # 2 blocks x c_attn (32 -> 96): A 4x32 + B 96x4
    assert trainable == 2 * (4 * 32 + 96 * 4)
    assert total == sum(p.numel() for p in model.parameters())
    assert parameter_summary(model).startswith(f"trainable params: {trainable:,} || all params: {total:,}")


def test_mark_trainable_extra_modules_train_in_full():
    model = tiny_llama()
    apply_lora(model, LoRAConfig(rank=2))
    mark_trainable(model, extra=["model.norm"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "model.norm.weight" in trainable
    assert all("lora_" in n or n == "model.norm.weight" for n in trainable)


def test_adapter_round_trip(tmp_path):
    model = tiny_llama()
    config = LoRAConfig(rank=4, alpha=8, target_modules=["q_proj", "o_proj"])
    apply_lora(model, config)
    randomize_adapters(model)
    save_adapter(model, tmp_path / "adapter", config, base_model="tiny")
    saved = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert saved["r"] == 4 and saved["lora_alpha"] == 8 and saved["target_modules"] == ["o_proj", "q_proj"]

    other = tiny_llama()  # same base weights, fresh adapters
    loaded = load_adapter(other, tmp_path / "adapter")
    assert loaded.rank == 4 and loaded.alpha == 8
    with torch.no_grad():
        torch.testing.assert_close(other(X).logits, model(X).logits, atol=0, rtol=0)


def test_adapter_errors(tmp_path):
    model = tiny_llama()
    with pytest.raises(ConfigError, match=r"lora.target_modules: \['nope'\] match no Linear module"):
        apply_lora(model, LoRAConfig(target_modules=["nope"]))
    with pytest.raises(ConfigError, match="no LoRA layers"):
        save_adapter(model, tmp_path / "a", LoRAConfig())
    config = LoRAConfig(rank=4)
    apply_lora(model, config)
    save_adapter(model, tmp_path / "a", config)
    wrong_rank = tiny_llama()
    apply_lora(wrong_rank, LoRAConfig(rank=2))
    with pytest.raises(DataError, match=r"lora_A.weight has shape \(4, 32\), the model's is \(2, 32\)"):
        load_adapter(wrong_rank, tmp_path / "a")
    with pytest.raises(DataError, match="adapter_config.json: missing"):
        load_adapter(tiny_llama(), tmp_path)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "adapter_config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="adapter_config.json: expected a JSON object"):
        load_adapter(tiny_llama(), tmp_path / "list")
    with pytest.raises(ConfigError, match="rank: must be >= 1"):
        from zeroforge.schema import from_dict

        from_dict(LoRAConfig, {"rank": 0}, "finetune.lora")


# ----------------------------------------------------------------------------- parity with peft

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
from hf_twins import hf_llama  # noqa: E402  (tests/hf_twins.py)


def test_same_adapter_weights_give_peft_logits():
    ours = tiny_llama()
    hf = hf_llama(ours)
    config = LoRAConfig(rank=4, alpha=12, target_modules=["q_proj", "v_proj", "down_proj"])
    apply_lora(ours, config)
    randomize_adapters(ours)
    theirs = peft.get_peft_model(
        hf, peft.LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "v_proj", "down_proj"])
    ).eval()
    with torch.no_grad():
        peft_params = dict(theirs.named_parameters())
        for name, layer in lora_layers(ours):
            peft_params[f"base_model.model.{name}.lora_A.default.weight"].copy_(layer.lora_A.weight)
            peft_params[f"base_model.model.{name}.lora_B.default.weight"].copy_(layer.lora_B.weight)
        torch.testing.assert_close(ours(X).logits, theirs(X).logits, atol=1e-5, rtol=1e-5)
        # and both merged
        merge_lora(ours)
        merged = theirs.merge_and_unload()
        torch.testing.assert_close(ours(X).logits, merged(X).logits, atol=1e-5, rtol=1e-5)


def test_our_adapter_files_load_in_peft_and_peft_files_load_here(tmp_path):
    ours = tiny_llama()
    hf = hf_llama(ours)
    config = LoRAConfig(rank=2, alpha=6)
    apply_lora(ours, config)
    randomize_adapters(ours, seed=9)
    save_adapter(ours, tmp_path / "ours", config)
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(X).logits, ours(X).logits, atol=1e-5, rtol=1e-5)

    theirs.save_pretrained(tmp_path / "peft")  # peft's own writer
    back = tiny_llama()
    load_adapter(back, tmp_path / "peft")
    with torch.no_grad():
        torch.testing.assert_close(back(X).logits, ours(X).logits, atol=1e-5, rtol=1e-5)
