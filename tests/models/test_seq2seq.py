"""The encoder-decoder Transformer (and the GRU baseline): cross-attention masks, the decoder's KV
cache against a full recompute, and greedy / beam search against each other and a brute force."""

from __future__ import annotations

import itertools

import pytest
import torch

from zeroforge.beam import beam_search, greedy_search
from zeroforge.models.rnn_seq2seq import GRUSeq2Seq, GRUSeq2SeqConfig
from zeroforge.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, sinusoids
from zeroforge.modules.attention import naive_attention


def tiny(**overrides) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    config = Seq2SeqConfig.from_name("transformer-tiny", **overrides)
    return Seq2SeqTransformer(config).eval()


def test_sinusoids_match_the_formula() -> None:
    table = sinusoids(10, 8)
    pos, i = 7, 2  # channel pair i: sin in column i, cos in column d/2 + i
    angle = pos / 10000 ** (2 * i / 8)
    assert table[pos, i].item() == pytest.approx(torch.tensor(angle).sin().item(), abs=1e-6)
    assert table[pos, 4 + i].item() == pytest.approx(torch.tensor(angle).cos().item(), abs=1e-6)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_padded_source_tokens_change_nothing(norm: str) -> None:
    """A padded source position never receives attention: whatever ids sit there, the logits of the
    real rows stay the same, and equal those of the unpadded sentence alone."""
    model = tiny(norm=norm)
    src = torch.tensor([[5, 6, 7, 8, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    tgt = torch.tensor([[0, 9, 10, 11]])
    a = model(src, mask, tgt).logits
    noisy = src.clone()
    noisy[0, 5:] = torch.tensor([30, 31])
    b = model(noisy, mask, tgt).logits
    alone = model(src[:, :5], None, tgt).logits
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, alone, atol=1e-5, rtol=1e-5)


def test_cross_attention_weights_on_padding_are_zero() -> None:
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0]]).bool()[:, None, None, :]
    out = naive_attention(q, k, v, mask)
    v2 = v.clone()
    v2[..., 3:, :] = 1e6  # a padded key's value would dominate if it got any weight
    torch.testing.assert_close(naive_attention(q, k, v2, mask), out)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_cached_decoding_equals_full_recompute(positions: str) -> None:
    model = tiny(positions=positions)
    src = torch.tensor([[5, 6, 7, 1, 0], [9, 8, 7, 6, 1]])
    mask = (src != 0).long()
    mask[0, 0] = 1
    tgt = torch.tensor([[0, 12, 13, 14, 15, 16], [0, 20, 21, 22, 23, 24]])
    full = model(src, mask, tgt).logits
    state = model.start_decoding(src, mask, max_length=8)
    first = model.decode_step(tgt[:, :2], state)  # a two-token prefill, then one token at a time
    steps = [first] + [model.decode_step(tgt[:, t : t + 1], state) for t in range(2, tgt.size(1))]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_share_and_tie_embeddings() -> None:
    model = tiny()
    assert model.output_layer.weight is model.decoder_embed.embed_tokens.weight
    assert model.encoder_embed.embed_tokens is model.decoder_embed.embed_tokens
    separate = tiny(share_embeddings=False, tie_output=False)
    assert separate.encoder_embed.embed_tokens is not separate.decoder_embed.embed_tokens
    assert separate.output_layer.weight is not separate.decoder_embed.embed_tokens.weight


def models():
    torch.manual_seed(1)
    gru = GRUSeq2Seq(GRUSeq2SeqConfig.from_name("gru-attention-tiny")).eval()
    return [tiny(), tiny(norm="post"), gru]


@pytest.mark.parametrize("model", models(), ids=["pre-ln", "post-ln", "gru"])
def test_beam_of_one_is_greedy(model) -> None:
    src = torch.tensor([[5, 6, 7, 1, 0], [9, 8, 7, 6, 1], [3, 4, 1, 0, 0]])
    mask = (src != 0).long()
    greedy = greedy_search(model, src, mask, max_new_tokens=12)
    beams = beam_search(model, src, mask, num_beams=1, max_new_tokens=12, length_penalty=1.0)
    assert [h[0].tokens for h in beams] == greedy


@torch.no_grad()
def _sequence_log_prob(model, src: torch.Tensor, tokens: list[int]) -> float:
    dec = torch.tensor([[model.config.decoder_start_token_id, *tokens[:-1]]])
    logp = model(src, None, dec).logits.float().log_softmax(-1)[0]
    return float(sum(logp[t, tok] for t, tok in enumerate(tokens)))


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_search_finds_the_brute_force_best_on_a_tiny_vocabulary(length_penalty: float) -> None:
    torch.manual_seed(3)
    V, L = 4, 3
    config = Seq2SeqConfig(
        vocab_size=V,
        d_model=16,
        n_head=2,
        n_encoder_layer=1,
        n_decoder_layer=1,
        d_ff=32,
        dropout=0.0,
        max_positions=16,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = Seq2SeqTransformer(config).eval()
    with torch.no_grad():
        model.output_layer.weight.mul_(8.0)  # sharper distributions: distinct scores, no near-ties
    src = torch.tensor([[2, 3, 2, 1]])
    candidates = []  # every finished sequence up to L tokens, and every unfinished one of L tokens
    for n in range(1, L + 1):
        for body in itertools.product([t for t in range(V) if t != 1], repeat=n - 1):
            candidates.append([*body, 1])
    candidates += [list(s) for s in itertools.product([t for t in range(V) if t != 1], repeat=L)]
    scored = sorted(
        ((_sequence_log_prob(model, src, c) / len(c) ** length_penalty, c) for c in candidates), reverse=True
    )
    assert scored[0][0] - scored[1][0] > 1e-4
    hyps = beam_search(
        model,
        src,
        None,
        num_beams=V**L,
        max_new_tokens=L,
        length_penalty=length_penalty,
        early_stopping=False,
        n_best=3,
    )[0]
    assert [h.tokens for h in hyps] == [c for _, c in scored[:3]]
    assert [h.score for h in hyps] == pytest.approx([s for s, _ in scored[:3]], abs=1e-4)


def test_n_best_is_sorted_and_distinct() -> None:
    model = tiny()
    src = torch.tensor([[5, 6, 7, 1]])
    hyps = beam_search(model, src, None, num_beams=5, max_new_tokens=6, n_best=5)[0]
    assert len(hyps) == 5
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert len({tuple(h.tokens) for h in hyps}) == 5
