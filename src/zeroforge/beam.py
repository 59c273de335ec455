"""Greedy and beam-search decoding for encoder-decoder models (translation).

Any model with the decoding contract of ``models/seq2seq.py`` and ``models/rnn_seq2seq.py`` works:

    state = model.start_decoding(input_ids, attention_mask, max_length)   # encode once
    logits = model.decode_step(tokens, state)                              # (B, T) -> (B, T, V)
    state.reorder(index)                                                   # keep rows ``index``

and ``model.config`` names ``decoder_start_token_id``, ``eos_token_id`` and ``pad_token_id``.

Beam search (as in Sutskever et al. 2014; Wu et al. 2016 for the length penalty) keeps the ``num_beams``
best partial translations of each source by their summed log-probability. A hypothesis that emits eos
among the top ``num_beams`` candidates is finished, scored

    score = sum_t log p(y_t | y_<t, x) / len(y) ** length_penalty      (len counts the eos)

so ``length_penalty`` 0 ranks by total log-probability (short outputs win) and 1 by the per-token mean.
A source is done when it holds ``num_beams`` finished hypotheses and either ``early_stopping`` is set
or no live beam can still beat the worst of them (its score is an upper bound: log-probabilities only
fall as a beam grows, and with ``length_penalty`` >= 0 the bound divides by the current length).
Sources that reach their ``max_new_tokens`` (one limit, or one per source) unfinished keep their
live beams as hypotheses. The result is
each source's ``n_best`` hypotheses, best first. ``num_beams=1`` is greedy search exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zeroforge.errors import ConfigError


@dataclass
class Hypothesis:
    tokens: list[int]
    """Generated ids, without the start token; ends with eos when the hypothesis finished."""
    score: float
    """Summed log-probability / len ** length_penalty."""
    log_prob: float


def _ids(model: torch.nn.Module) -> tuple[int, int, int]:
    c = model.config
    return c.decoder_start_token_id, c.eos_token_id, c.pad_token_id


@torch.no_grad()
def greedy_search(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int | Sequence[int] = 128,
) -> list[list[int]]:
    """The most likely next token at every step until eos (included) or ``max_new_tokens`` (one
    limit, or one per source)."""
    start, eos, pad = _ids(model)
    B, device = input_ids.size(0), input_ids.device
    limits = _limits(max_new_tokens, B)
    state = model.start_decoding(input_ids, attention_mask, max(limits) + 1)
    tokens = torch.full((B, 1), start, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    limit = torch.tensor(limits, device=device)
    out: list[torch.Tensor] = []
    for step in range(1, max(limits) + 1):
        next_token = model.decode_step(tokens, state)[:, -1].argmax(-1)  # (B,)
        next_token = next_token.masked_fill(done, pad)
        out.append(next_token)
        done |= (next_token == eos) | (step >= limit)
        if bool(done.all()):
            break
        tokens = next_token[:, None]
    rows = torch.stack(out, 1).tolist()
    return [_cut(row, eos)[:n] for row, n in zip(rows, limits, strict=True)]


def _cut(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


def _limits(max_new_tokens: int | Sequence[int], batch_size: int) -> list[int]:
    limits = (
        [max_new_tokens] * batch_size if isinstance(max_new_tokens, int) else [int(n) for n in max_new_tokens]
    )
    if len(limits) != batch_size or min(limits) < 1:
        raise ConfigError(
            f"max_new_tokens: need a limit >= 1 for each of the {batch_size} sources, got {max_new_tokens}"
        )
    return limits


@torch.no_grad()
def beam_search(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    num_beams: int = 4,
    max_new_tokens: int | Sequence[int] = 128,
    length_penalty: float = 1.0,
    early_stopping: bool = True,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """Each source's ``n_best`` hypotheses, best first (module docstring)."""
    if num_beams < 1 or not 1 <= n_best <= num_beams:
        raise ConfigError(
            f"beam search: need num_beams >= 1 and 1 <= n_best <= num_beams, got {num_beams}, {n_best}"
        )
    if length_penalty < 0:
        raise ConfigError(f"beam search: length_penalty must be >= 0, got {length_penalty}")
    start, eos, _ = _ids(model)
    B, K, device = input_ids.size(0), num_beams, input_ids.device
    limits = _limits(max_new_tokens, B)
    state = model.start_decoding(input_ids, attention_mask, max(limits) + 1)
    state.reorder(torch.arange(B, device=device).repeat_interleave(K))  # rows b*K .. b*K+K-1: source b
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    seqs = torch.full((B * K, 0), start, dtype=torch.long, device=device)  # generated so far
    last = torch.full((B * K, 1), start, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B

    def add(b: int, tokens: list[int], value: float) -> None:
        finished[b].append(Hypothesis(tokens, value / len(tokens) ** length_penalty, value))

    for step in range(1, max(limits) + 1):
        log_probs = model.decode_step(last, state)[:, -1].float().log_softmax(-1)  # (B*K, V)
        V = log_probs.size(-1)
        cand = (scores[:, :, None] + log_probs.view(B, K, V)).view(B, K * V)  # (B, K*V)
        top_scores, top_index = cand.topk(min(2 * K, K * V), dim=-1)  # (B, 2K): enough to fill K live beams
        next_beam, next_token, next_score = [], [], []
        for b in range(B):
            rows: list[int] = []
            toks: list[int] = []
            vals: list[float] = []
            if not done[b]:
                ranked = zip(top_scores[b].tolist(), top_index[b].tolist(), strict=True)
                for rank, (value, index) in enumerate(ranked):
                    if value == float("-inf"):
                        break
                    beam, token = divmod(index, V)
                    if token == eos:
                        if rank < K:  # an eos outside the top K would not have survived anyway
                            add(b, [*seqs[b * K + beam].tolist(), eos], value)
                        continue
                    rows.append(b * K + beam)
                    toks.append(token)
                    vals.append(value)
                    if len(rows) == K:
                        break
                if step >= limits[b]:  # out of length: the live beams count as they are
                    for row, token, value in zip(rows, toks, vals, strict=True):
                        add(b, [*seqs[row].tolist(), token], value)
                    done[b] = True
                elif len(finished[b]) >= K:
                    if early_stopping or not vals:
                        done[b] = True
                    else:  # can a live beam still beat the worst finished hypothesis?
                        bound = max(vals) / step**length_penalty
                        worst = sorted(h.score for h in finished[b])[-K]
                        done[b] = bound <= worst
                finished[b].sort(key=lambda h: -h.score)
                del finished[b][K:]
            if done[b] or not rows:  # keep the row count: done sources carry dead beams
                done[b] = True
                rows, toks, vals = [b * K] * K, [eos] * K, [float("-inf")] * K
            while len(rows) < K:  # fewer live candidates than beams (tiny vocabularies)
                rows.append(rows[0])
                toks.append(toks[0])
                vals.append(float("-inf"))
            next_beam += rows
            next_token += toks
            next_score += vals
        if all(done):
            break
        index = torch.tensor(next_beam, device=device)
        state.reorder(index)
        last = torch.tensor(next_token, device=device)[:, None]
        seqs = torch.cat([seqs.index_select(0, index), last], dim=1)
        scores = torch.tensor(next_score, device=device).view(B, K)
    return [hyps[:n_best] for hyps in finished]
