"""Step-level generation: cache == recompute, one token per step, padding, sampling, stop strings, streaming."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.decoding import decoding_model
from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.generation import (
    Decoder,
    generate,
    generate_ids,
    iter_tokens,
    left_pad,
    sample,
    top_k_filter,
    top_p_filter,
)
from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.models.output import ModelOutput


def random_gpt(block_size: int = 32, attention: str = "sdpa") -> GPT:
    """A tiny GPT with large random weights, so its next-token choices are decisive, not near-ties."""
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=block_size, vocab_size=64, attention=attention)
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=g) * 0.3
                + (1.0 if ".ln_" in name and name.endswith("weight") else 0)
            )
    return model.eval()


def reference_greedy(model: GPT, ids: torch.Tensor, n: int) -> torch.Tensor:
    """nanoGPT's sampling loop: the full forward over the last block_size tokens each step."""
    for _ in range(n):
        logits = model(ids[:, -model.config.block_size :]).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[:, -n:]


class StatelessCountingLM(nn.Module):
    """Always predicts (last token + 1) % vocab; has no ``new_cache``, so it is decoded by recomputing."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.seen_lengths: list[int] = []

    def forward(
        self, input_ids, labels=None, attention_mask=None, position_ids=None, cache=None
    ) -> ModelOutput:
        self.seen_lengths.append(input_ids.size(1))
        logits = F.one_hot((input_ids + 1) % self.vocab_size, self.vocab_size).float() * 10  # (B, T, V)
        if cache is not None:
            cache["tokens_seen"] += input_ids.size(1)
        return ModelOutput(logits=logits, cache=cache)


class CountingLM(StatelessCountingLM):
    """The same, with a cache that is a plain dict (like an RNN's state: no KV internals)."""

    def new_cache(self, batch_size, max_length, device=None, dtype=None) -> dict:
        return {"tokens_seen": 0}


class CharTokenizer:
    def __init__(self, alphabet: str = "abcdefghijklmnopqrstuvwxyz", eos: str | None = None) -> None:
        self.alphabet = alphabet
        self.eos_id = alphabet.index(eos) if eos else None

    def encode(self, text: str) -> list[int]:
        unknown = [c for c in text if c not in self.alphabet]
        if unknown:
            raise DataError(f"char tokenizer: character {unknown[0]!r} is not in the vocabulary")
        return [self.alphabet.index(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.alphabet[i] for i in ids)


# ----------------------------------------------------------------------------- cache == recompute


@pytest.mark.parametrize("attention", ["sdpa", "naive"])
@pytest.mark.parametrize(
    "prompt_len,new", [(5, 20), (10, 40), (40, 10)]
)  # within, past and beyond block_size
def test_cached_greedy_equals_full_recompute(attention, prompt_len, new):
    model = random_gpt(attention=attention)
    ids = torch.randint(0, 64, (2, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    expected = reference_greedy(model, ids, new)
    cached = generate_ids(model, ids, max_new_tokens=new, temperature=0)
    uncached = generate_ids(model, ids, max_new_tokens=new, temperature=0, use_cache=False)
    assert cached.tolist() == expected.tolist()
    assert uncached.tolist() == expected.tolist()
    assert len(set(expected[0].tolist())) > 3  # not a degenerate repeat of one token


# ----------------------------------------------------------------------------- fast decoding paths


def rounded_to_bf16(model: GPT) -> GPT:
    """The fp32 model whose matrices are rounded to bf16: what ``dtype=torch.bfloat16`` computes with."""
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for p in rounded.parameters():
            if p.dim() == 2:
                p.copy_(p.bfloat16().float())
    return rounded


@pytest.mark.parametrize("prompt_len,new", [(5, 20), (40, 10)])
def test_bf16_weights_decode_like_the_fp32_model_with_rounded_weights(prompt_len, new):
    model = random_gpt()
    ids = torch.randint(0, 64, (2, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    expected = reference_greedy(rounded_to_bf16(model), ids, new)
    ours = generate_ids(model, ids, max_new_tokens=new, temperature=0, dtype=torch.bfloat16)
    assert ours.tolist() == expected.tolist()
    assert model.lm_head.weight.dtype == torch.float32  # the model itself is untouched


def test_decoding_copy_is_cached_and_rebuilt_when_weights_change():
    model = random_gpt()
    first, _ = decoding_model(model, torch.bfloat16)
    assert decoding_model(model, torch.bfloat16)[0] is first
    assert decoding_model(model, None)[0] is not first  # one copy per (dtype, compile)
    ids = torch.randint(0, 64, (1, 6), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.0)  # an in-place update, as an optimizer step makes
    assert decoding_model(model, torch.bfloat16)[0] is not first
    expected = reference_greedy(rounded_to_bf16(model), ids, 8)
    assert generate_ids(model, ids, max_new_tokens=8, temperature=0, dtype=torch.bfloat16).tolist() == (
        expected.tolist()
    )


@pytest.mark.parametrize("padded", [False, True])
def test_static_cache_steps_equal_full_forward(padded):
    model = random_gpt()
    x = torch.randint(1, 64, (2, 12), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(x)
    if padded:
        mask[1, :4] = 0
    with torch.inference_mode():
        full = model(x, attention_mask=mask).logits
        cache = model.new_cache(2, 20, static=True)  # wider than needed: unwritten columns are masked
        chunks = [(0, 5), (5, 6), (6, 7), (7, 10), (10, 12)]  # prefill, steps, chunked prefill
        cached = torch.cat(
            [model(x[:, a:b], attention_mask=mask[:, :b], cache=cache).logits for a, b in chunks], dim=1
        )
        assert cache.length == 12 and cache.keys[0].shape[2] == 20
    real = mask.bool()
    torch.testing.assert_close(cached[real], full[real], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_decoding_equals_eager_decoding():
    model = random_gpt()
    ids, mask = left_pad([[5, 9, 2, 7, 1, 3], [8, 4, 4]], pad_id=0)
    for dtype in (None, torch.bfloat16):
        eager = generate_ids(model, ids, mask, max_new_tokens=40, temperature=0, dtype=dtype)
        compiled = generate_ids(model, ids, mask, max_new_tokens=40, temperature=0, dtype=dtype, compile=True)
        assert compiled.tolist() == eager.tolist()
    # past the context (block_size 32) the decoder slides the window without the compiled step
    assert compiled.shape == (2, 40)


def test_each_cached_step_feeds_exactly_one_token():
    model = random_gpt()
    calls = []
    forward = model.forward

    def recording(input_ids, **kwargs):
        calls.append((tuple(input_ids.shape), kwargs.get("cache") is not None))
        return forward(input_ids, **kwargs)

    model.forward = recording
    generate_ids(model, torch.randint(0, 64, (3, 6)), max_new_tokens=8, temperature=0)
    # prefill once, then 7 steps (the 8th token needs no forward)
    assert calls == [((3, 6), True)] + [((3, 1), True)] * 7


def test_batched_left_padded_prompts_equal_each_prompt_alone():
    model = random_gpt()
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 64, (n,), generator=g).tolist() for n in (7, 2, 4)]
    ids, mask = left_pad(prompts, pad_id=0)
    assert mask is not None and mask.sum(1).tolist() == [7, 2, 4]
    batched = generate_ids(model, ids, mask, max_new_tokens=30, temperature=0)  # slides past block_size
    for row, prompt in enumerate(prompts):
        alone = generate_ids(model, torch.tensor([prompt]), max_new_tokens=30, temperature=0)
        assert batched[row].tolist() == alone[0].tolist()


def test_recurrent_style_cache_and_model_without_cache():
    model = CountingLM(10)
    decoder = Decoder(model)
    logits = decoder.prefill(torch.tensor([[1, 2, 3]]), max_new_tokens=3)
    assert logits.argmax(-1).tolist() == [4] and decoder.cache == {"tokens_seen": 3}
    assert decoder.step(torch.tensor([4])).argmax(-1).tolist() == [5]
    assert decoder.cache == {"tokens_seen": 4}

    stateless = StatelessCountingLM(10)
    out = generate_ids(stateless, torch.tensor([[7]]), max_new_tokens=5, temperature=0)
    assert out.tolist() == [[8, 9, 0, 1, 2]]
    assert stateless.seen_lengths == [1, 2, 3, 4, 5]  # the whole sequence every step


def test_decoder_refuses_more_steps_than_it_has_room_for():
    decoder = Decoder(CountingLM(10))
    decoder.prefill(torch.tensor([[1]]), max_new_tokens=1)
    decoder.step(torch.tensor([2]))
    with pytest.raises(ZeroforgeError, match="decoder is full"):
        decoder.step(torch.tensor([3]))


# ----------------------------------------------------------------------------- sampling


def test_top_k_1_equals_greedy_and_seeded_sampling_is_reproducible():
    model = random_gpt()
    ids = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(4))
    greedy = generate_ids(model, ids, max_new_tokens=15, temperature=0)
    assert (
        generate_ids(model, ids, max_new_tokens=15, temperature=1.3, top_k=1, seed=1).tolist()
        == greedy.tolist()
    )
    first = generate_ids(model, ids, max_new_tokens=15, temperature=1.0, seed=42)
    again = generate_ids(model, ids, max_new_tokens=15, temperature=1.0, seed=42)
    other = generate_ids(model, ids, max_new_tokens=15, temperature=1.0, seed=43)
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()
    assert first.tolist() != greedy.tolist()


def test_sampling_follows_softmax_with_temperature():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    n = 40_000
    tokens = sample(logits.expand(n, 4), temperature=0.7, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=4).float() / n
    torch.testing.assert_close(freq, F.softmax(logits / 0.7, dim=-1), atol=0.01, rtol=0)
    top2 = sample(logits.expand(n, 4), top_k=2, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(top2, minlength=4).float() / n
    torch.testing.assert_close(freq, torch.tensor([0.731, 0.269, 0, 0]), atol=0.01, rtol=0)  # softmax([2, 1])


def test_top_k_and_top_p_filters_match_transformers():
    transformers = pytest.importorskip("transformers")
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(5)) * 3
    for k in (1, 5, 50):
        expected = transformers.TopKLogitsWarper(top_k=k)(None, logits.clone())
        torch.testing.assert_close(top_k_filter(logits, k), expected)
    for p in (0.05, 0.5, 0.9, 0.999):
        expected = transformers.TopPLogitsWarper(top_p=p)(None, logits.clone())
        torch.testing.assert_close(top_p_filter(logits, p), expected)


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.4) == [True, False, False, False]
    assert kept(0.7) == [True, True, False, False]
    assert kept(0.9) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]


# ----------------------------------------------------------------------------- eos, text, stop strings, stream


def test_eos_ends_rows_and_pads_finished_ones():
    out = generate_ids(CountingLM(10), torch.tensor([[3], [1]]), max_new_tokens=20, temperature=0, eos_id=6)
    assert out.tolist() == [[4, 5, 6, 6, 6], [2, 3, 4, 5, 6]]


def test_generate_text_str_and_list_and_stop_strings():
    model, tok = CountingLM(26), CharTokenizer()
    assert generate(model, tok, "a", max_new_tokens=5, temperature=0) == "bcdef"
    assert generate(model, tok, ["a", "kl"], max_new_tokens=3, temperature=0) == ["bcd", "mno"]
    assert generate(model, tok, "a", max_new_tokens=20, temperature=0, stop="fg") == "bcde"
    assert generate(model, tok, ["a", "p"], max_new_tokens=20, temperature=0, stop=["xyz", "d", "s"]) == [
        "bc",
        "qr",
    ]
    assert generate(model, tok, "a", max_new_tokens=20, temperature=0, stop="zzz") == "bcdefghijklmnopqrstu"


def test_generate_stops_at_eos_and_starts_empty_prompts_from_eos():
    model, tok = CountingLM(26), CharTokenizer(eos="h")
    assert generate(model, tok, "c", max_new_tokens=20, temperature=0) == "defg"
    assert generate(model, tok, "", max_new_tokens=3, temperature=0) == "ijk"  # starts from "h" (eos)
    assert generate(model, CharTokenizer("\nabc"), "", max_new_tokens=2, temperature=0) == "ab"  # from "\n"
    with pytest.raises(ZeroforgeError, match="prompt is empty"):
        generate(model, CharTokenizer(), "", max_new_tokens=3)


def test_stream_pieces_add_up_and_never_leak_a_stop_string():
    model, tok = CountingLM(26), CharTokenizer()
    pieces: list[str] = []
    text = generate(model, tok, "a", max_new_tokens=20, temperature=0, stop="fgh", stream=pieces.append)
    assert text == "bcde"
    assert "".join(pieces) == "bcde" and len(pieces) >= 3  # incremental
    pieces.clear()
    text = generate(model, tok, "a", max_new_tokens=6, temperature=0, stream=pieces.append)
    assert "".join(pieces) == text == "bcdefg" and pieces[0] == "b"


def test_generate_from_a_run_directory(monkeypatch, tmp_path):
    import zeroforge.weights

    monkeypatch.setattr(zeroforge.weights, "load", lambda path: (CountingLM(26), CharTokenizer()))
    assert generate(tmp_path, None, "x", max_new_tokens=2, temperature=0) == "yz"
    assert generate(str(tmp_path), None, ["a"], max_new_tokens=1, temperature=0) == ["b"]


def test_training_flag_is_restored_and_gradients_are_off():
    model = random_gpt().train()
    tokens = iter_tokens(model, torch.tensor([[1, 2]]), max_new_tokens=3, temperature=0)
    first = next(tokens)
    assert not model.training and not first.requires_grad
    assert torch.is_grad_enabled()  # inference mode does not leak into the caller between steps
    list(tokens)
    assert model.training


def test_bad_arguments_are_clear_errors():
    model, tok = CountingLM(26), CharTokenizer()
    for temperature in (-1, float("nan")):
        with pytest.raises(ZeroforgeError, match="temperature"):
            generate(model, tok, "a", temperature=temperature)
    with pytest.raises(ZeroforgeError, match="top_p"):
        generate(model, tok, "a", top_p=0)
    with pytest.raises(ZeroforgeError, match="top_k"):
        generate(model, tok, "a", top_k=0)
    with pytest.raises(ZeroforgeError, match="one prompt"):
        generate(model, tok, ["a", "b"], stream=print)
    with pytest.raises(ZeroforgeError, match="tokenizer"):
        generate(model, None, "a")
    with pytest.raises(ZeroforgeError, match="input_ids"):
        generate_ids(model, torch.tensor([1, 2]))
