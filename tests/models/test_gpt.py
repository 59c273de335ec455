"""GPT: parity with transformers' GPT2LMHeadModel, causality, SDPA == naive, KV cache, config errors."""

import math

import pytest
import torch

from zeroforge.errors import ConfigError, ZeroforgeError
from zeroforge.generation import generate_ids, left_pad
from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.registry import create_model, list_models

transformers = pytest.importorskip("transformers")
from hf_twins import hf_gpt2  # noqa: E402  (tests/hf_twins.py)

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=64)


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **overrides})).eval()


def randomize(model: GPT) -> GPT:
    """Weights far from GPT-2's small init, so every layer (GELU variant, LayerNorm affine) matters."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_scale = ".ln_" in name and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if is_norm_scale else 0.0))
    return model


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_logits_and_loss_match_transformers_gpt2(attn_implementation):
    model = randomize(tiny())
    hf = hf_gpt2(model, attn_implementation)
    x = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(1))
    labels = torch.cat([x[:, 1:], torch.full((3, 1), -100)], dim=1)  # our labels are pre-shifted
    with torch.no_grad():
        ours = model(x, labels=labels)
        theirs = hf(x, labels=x)  # transformers shifts internally
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)


def test_greedy_generation_matches_transformers_generate():
    model = randomize(tiny())
    hf = hf_gpt2(model)
    prompts = [[5, 9, 2, 7, 1, 3], [8, 4, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    for prompt in prompts:
        x = torch.tensor([prompt])
        expected = hf.generate(x, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(x))
        ours = generate_ids(model, x, max_new_tokens=12, temperature=0)
        assert ours[0].tolist() == expected[0, len(prompt) :].tolist()
    # the same prompts as one left-padded batch
    ids, mask = left_pad(prompts, pad_id=0)
    expected = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
    ours = generate_ids(model, ids, mask, max_new_tokens=12, temperature=0)
    assert ours.tolist() == expected[:, ids.size(1) :].tolist()
    assert len({tuple(row) for row in ours.tolist()}) == 3  # the rows really differ


def test_parameter_counts_match_transformers_for_every_gpt2_preset():
    for name, (n_layer, n_head, n_embd) in {
        "gpt2": (12, 12, 768),
        "gpt2-medium": (24, 16, 1024),
        "gpt2-large": (36, 20, 1280),
        "gpt2-xl": (48, 25, 1600),
    }.items():
        with torch.device("meta"):
            ours = create_model(name)
            hf = transformers.GPT2LMHeadModel(
                transformers.GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd)
            )
        assert ours.num_parameters(non_embedding=False) == hf.num_parameters(), name
    with torch.device("meta"):
        gpt2 = create_model("gpt2")
    assert gpt2.num_parameters(non_embedding=False) == 124_439_808  # the published "124M"
    assert gpt2.num_parameters() == 124_439_808 - 1024 * 768  # nanoGPT prints 123.65M


def test_causality():
    model = tiny()
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(2))
    future = x.clone()
    future[:, 10] = (future[:, 10] + 1) % 64
    past = x.clone()
    past[:, 3] = (past[:, 3] + 1) % 64
    with torch.no_grad():
        base, changed_future, changed_past = model(x).logits, model(future).logits, model(past).logits
    torch.testing.assert_close(changed_future[:, :10], base[:, :10], atol=0, rtol=0)
    assert not torch.allclose(changed_future[:, 10:], base[:, 10:])
    torch.testing.assert_close(changed_past[:, :3], base[:, :3], atol=0, rtol=0)
    assert (changed_past[:, 3:] - base[:, 3:]).abs().amax(dim=-1).min() > 0  # every later position moves


def test_sdpa_equals_naive_attention_with_and_without_padding():
    sdpa, naive = tiny(attention="sdpa"), tiny(attention="naive")
    naive.load_state_dict(sdpa.state_dict())
    x = torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(x)
    mask[1, :4] = 0
    mask[2, :11] = 0
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x).logits, naive(x).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            sdpa(x, attention_mask=mask).logits, naive(x, attention_mask=mask).logits, atol=1e-5, rtol=1e-5
        )


def test_left_padded_row_equals_the_same_prompt_alone():
    model = tiny()
    x = torch.randint(1, 64, (1, 7), generator=torch.Generator().manual_seed(4))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            model(padded, attention_mask=mask).logits[:, 3:], model(x).logits, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("attention", ["sdpa", "naive"])
def test_kv_cache_chunks_equal_full_forward(attention):
    model = tiny(attention=attention)
    x = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        full = model(x).logits
        cache = model.new_cache(2, 16)
        chunks = [x[:, :5], x[:, 5:6], x[:, 6:7], x[:, 7:10], x[:, 10:]]  # prefill, steps, chunked prefill
        cached = torch.cat([model(c, cache=cache).logits for c in chunks], dim=1)
        assert cache.length == 12
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_kv_cache_with_left_padding_equals_each_prompt_alone():
    model = tiny()
    g = torch.Generator().manual_seed(6)
    long, short = torch.randint(1, 64, (1, 8), generator=g), torch.randint(1, 64, (1, 5), generator=g)
    batch = torch.cat([long, torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1)])
    mask = torch.ones_like(batch)
    mask[1, :3] = 0
    step = torch.tensor([[11], [12]])
    with torch.inference_mode():
        cache = model.new_cache(2, 10)
        prefill = model(batch, attention_mask=mask, cache=cache).logits
        after = model(step, cache=cache).logits
        alone_long = model(torch.cat([long, step[:1]], 1)).logits
        alone_short = model(torch.cat([short, step[1:]], 1)).logits
    torch.testing.assert_close(prefill[0], alone_long[0, :8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prefill[1, 3:], alone_short[0, :5], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after[0, 0], alone_long[0, 8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after[1, 0], alone_short[0, 5], atol=1e-5, rtol=1e-5)


def test_weight_tying_and_gpt2_initialisation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=32, vocab_size=512))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert abs(model.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 1e-3
    assert abs(model.transformer.h[0].attn.c_proj.weight.std().item() - 0.02 / math.sqrt(8)) < 1e-3
    assert abs(model.transformer.h[0].mlp.c_proj.weight.std().item() - 0.02 / math.sqrt(8)) < 1e-3
    assert model.transformer.h[0].attn.c_attn.bias.abs().sum() == 0
    # 6N + 12 * n_layer * n_head * head_size * T
    assert model.estimate_flops_per_token() == 6 * model.num_parameters() + 12 * 4 * 4 * 64 * 32


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = create_model("gpt-tiny")
    x = torch.randint(0, 64, (4, 33))
    inputs, labels = x[:, :-1], x[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = model(inputs, labels=labels).loss
        losses.append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert abs(losses[0] - math.log(64)) < 0.2  # uniform prediction at initialisation
    assert losses[-1] < 0.05


def test_ignored_labels_do_not_count():
    model = tiny()
    x = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(7))
    labels = x.roll(-1, dims=1)
    labels[:, 4:] = -100
    with torch.no_grad():
        out = model(x, labels=labels)
        expected = torch.nn.functional.cross_entropy(
            out.logits[:, :4].reshape(-1, 64), labels[:, :4].reshape(-1)
        )
    torch.testing.assert_close(out.loss, expected)


def test_config_validation_errors():
    with pytest.raises(ConfigError, match="n_embd: must be divisible by n_head"):
        create_model("gpt-tiny", n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="dropout"):
        create_model("gpt-tiny", dropout=1.5)
    with pytest.raises(ConfigError, match="attention"):
        create_model("gpt-tiny", attention="flash")
    with pytest.raises(ConfigError, match="n_layer: must be >= 1"):
        create_model("gpt-tiny", n_layer=0)
    with pytest.raises(ConfigError, match="unknown key"):
        create_model("gpt-tiny", n_layers=3)
    with pytest.raises(ValueError, match="block_size"):
        GPTConfig(block_size=0)


def test_sequence_longer_than_block_size_is_a_clear_error():
    model = tiny()
    with pytest.raises(ZeroforgeError, match="sequence length 33 exceeds model block_size 32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ZeroforgeError, match="exceeds model block_size 32"):
        model.new_cache(1, 33)
    cache = model.new_cache(1, 4)
    with torch.inference_mode():
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
        with pytest.raises(ZeroforgeError, match="KV cache full"):
            model(torch.zeros(1, 2, dtype=torch.long), cache=cache)


def test_presets_are_registered():
    assert {
        "gpt",
        "gpt2",
        "gpt2-medium",
        "gpt2-large",
        "gpt2-xl",
        "gpt-char-small",
        "gpt-mini",
        "gpt-tiny",
    } <= set(list_models())
    small = GPTConfig.from_name("gpt-char-small")
    assert (small.n_layer, small.n_head, small.n_embd, small.block_size, small.vocab_size) == (
        4,
        4,
        128,
        64,
        96,
    )
    assert GPTConfig.from_name("gpt2", n_layer=2).n_layer == 2


# ----------------------------------------------------------------------------- fast training paths


def test_auto_attention_uses_the_written_out_formula_for_bf16_training_only(monkeypatch):
    import importlib

    attention_module = importlib.import_module(
        "zeroforge.modules.attention"
    )  # the package re-exports a function
    calls = []
    real = attention_module.naive_attention
    monkeypatch.setattr(attention_module, "naive_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    auto, sdpa = tiny(attention="auto").train(), tiny(attention="sdpa").train()
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(8))
    labels = x.roll(-1, dims=1)
    with torch.no_grad():
        auto(x, labels=labels)
    assert not calls  # fp32: PyTorch's fused kernel
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_auto, loss_sdpa = auto(x, labels=labels).loss, sdpa(x, labels=labels).loss
    assert len(calls) == 2  # bf16 training: one call per layer
    loss_auto.backward()
    loss_sdpa.backward()
    torch.testing.assert_close(loss_auto, loss_sdpa, rtol=1e-2, atol=1e-2)
    for p, q in zip(auto.parameters(), sdpa.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0.1, atol=0.05 * q.grad.abs().max().item())


@pytest.mark.slow
@pytest.mark.parametrize("fused_loss", [False, True])
def test_compiled_training_step_equals_eager(fused_loss):
    eager = randomize(tiny(fused_loss=fused_loss)).train()
    compiled_model = randomize(tiny(fused_loss=fused_loss)).train()
    compiled = torch.compile(compiled_model)
    x = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(9))
    labels = x.roll(-1, dims=1)
    labels[:, -1] = -100
    loss_eager, loss_compiled = eager(x, labels=labels).loss, compiled(x, labels=labels).loss
    loss_eager.backward()
    loss_compiled.backward()
    torch.testing.assert_close(loss_compiled, loss_eager, rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-4, msg=name)
