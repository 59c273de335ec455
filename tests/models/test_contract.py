"""The model contract heads and fine-tuning use (models/gpt.py): ``forward`` is ``hidden_states`` then
``output_layer``; ``blocks`` and ``final_norm`` are the model's own modules; packed rows
(``segment_ids``) compute each example as if alone; ``without_output_layer`` leaves a body whose
hidden states are the model's."""

from __future__ import annotations

import pytest
import torch

from zeroforge.errors import ZeroforgeError
from zeroforge.registry import create_model

DECODERS = ["gpt-tiny", "llama-tiny"]


def randomized(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if pname.endswith("norm.weight") else 0.0))
    return model.eval()


IDS = torch.randint(1, 60, (2, 9), generator=torch.Generator().manual_seed(4))
MASK = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]])


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_forward_is_hidden_states_then_output_layer(name):
    model = randomized(name)
    with torch.no_grad():
        for mask in (None, MASK):
            hidden = model.hidden_states(IDS, attention_mask=mask)
            assert hidden.shape == (2, 9, model.config.n_embd)
            torch.testing.assert_close(model.output_layer(hidden), model(IDS, attention_mask=mask).logits)
    assert len(model.blocks) == model.config.n_layer
    assert model.blocks[0] in list(model.modules()) and model.final_norm in list(model.modules())
    # hidden_states ends with the final norm: its output has the norm's statistics, not the last block's
    captured = []
    handle = model.final_norm.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        hidden = model.hidden_states(IDS)
    handle.remove()
    assert torch.equal(captured[0], hidden)


def test_bert_hidden_states_feed_its_heads():
    model = randomized("bert-test")
    types = torch.zeros_like(IDS)
    types[:, 5:] = 1
    right_padded = MASK.flip(1)
    with torch.no_grad():
        hidden = model.hidden_states(IDS, right_padded, token_type_ids=types)
        out = model(IDS, attention_mask=right_padded, token_type_ids=types)
        torch.testing.assert_close(out.hidden_states, hidden)
        torch.testing.assert_close(model.output_layer(hidden), out.logits)
    assert model.final_norm is None and len(model.blocks) == model.config.n_layer
    assert model.without_output_layer() is model.bert


@pytest.mark.parametrize("name", DECODERS + ["bert-test"])
def test_packed_rows_compute_each_example_as_if_alone(name):
    model = randomized(name)
    examples = [[3, 4, 5, 6], [7, 8, 9], [10, 11, 12, 13, 14]]
    ids = torch.tensor([sum(examples, []) + [0, 0]])  # two padding tokens at the end
    seg = torch.tensor([[k + 1 for k, e in enumerate(examples) for _ in e] + [0, 0]])
    with torch.no_grad():
        packed = model.hidden_states(ids, segment_ids=seg)[0]
        start = 0
        for e in examples:
            alone = model.hidden_states(torch.tensor([e]))[0]
            torch.testing.assert_close(packed[start : start + len(e)], alone, atol=1e-5, rtol=1e-5)
            start += len(e)
        # without the block-diagonal mask the later examples would see the others
        plain = model.hidden_states(ids)[0]
        assert not torch.allclose(plain[4:7], packed[4:7], atol=1e-3)


@pytest.mark.parametrize("name", DECODERS)
def test_without_output_layer_keeps_the_body(name):
    model = randomized(name)
    with torch.no_grad():
        before = model.hidden_states(IDS, MASK)
        body = model.without_output_layer()
        assert body is model and body.output_layer is None
        assert not any(k.startswith("lm_head") for k in body.state_dict())
        torch.testing.assert_close(body.hidden_states(IDS, MASK), before)
    with pytest.raises(ZeroforgeError, match="output layer was removed"):
        body(IDS)


@pytest.mark.parametrize("name", DECODERS)
def test_new_cache_holds_the_key_value_heads_of_every_layer(name):
    model = randomized(name)
    cache = model.new_cache(batch_size=2, max_length=16)
    kv_heads, head_size = model.cache_layout()
    assert (
        tuple(cache.keys[0].shape) == (2, kv_heads, 16, head_size) and len(cache.keys) == model.config.n_layer
    )
    if name == "llama-tiny":  # grouped-query attention: fewer key/value heads than query heads
        assert kv_heads == model.config.n_kv_head < model.config.n_head
    with pytest.raises(ZeroforgeError, match="exceeds model block_size"):
        model.new_cache(1, model.context_length + 1)


@pytest.mark.parametrize(("name", "float32_loss"), [("gpt-tiny", False), ("llama-tiny", True)])
def test_loss_dtype_with_bf16_weights(name, float32_loss):
    """GPT takes the cross-entropy of its logits as they are; Llama of float32 logits (HF's
    LlamaForCausalLM); the two agree for float32 weights and differ only for bf16 ones."""
    model = randomized(name).bfloat16()
    labels = torch.randint(0, 60, IDS.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(IDS, labels=labels)
        reference = torch.nn.functional.cross_entropy(
            (out.logits.float() if float32_loss else out.logits).view(-1, out.logits.size(-1)),
            labels.view(-1),
        )
    assert out.loss.dtype == (torch.float32 if float32_loss else torch.bfloat16)
    assert torch.equal(out.loss, reference)


def test_bert_body_checks_its_input_shape():
    body = create_model("bert-test").without_output_layer()
    with pytest.raises(ZeroforgeError, match=r"input_ids: expected shape \(batch, seq_len\), got \(9,\)"):
        body.hidden_states(IDS[0])
