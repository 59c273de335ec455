"""Translation metrics: corpus BLEU (Papineni et al. 2002) and chrF (Popović 2015).

``translation_scores`` computes both with ``sacrebleu`` and its standard settings (BLEU: the 13a
tokeniser, exponential smoothing; chrF: character 6-grams, beta 2), and returns the signatures that
make a number comparable with other papers'. ``corpus_bleu`` writes BLEU out for reading:

    BLEU = BP * exp(sum_n 1/4 log p_n),   p_n = clipped n-gram matches / hypothesis n-grams (n = 1..4)
    BP = exp(1 - r/c) when the hypotheses' length c is below the references' r, else 1

with every count summed over the corpus before dividing (not an average of sentence scores);
tests/eval/test_bleu.py checks it against sacrebleu's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from zeroforge.errors import ConfigError, DataError


def _sacrebleu() -> Any:
    try:
        import sacrebleu
    except ImportError:
        raise ConfigError("BLEU and chrF need sacrebleu: pip install 'zeroforge[translation]'") from None
    return sacrebleu


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise DataError(f"translation scores: {len(hypotheses)} hypotheses for {len(references)} references")
    if not hypotheses:
        raise DataError("translation scores: no sentences to score")


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """``{"bleu", "chrf", "bleu_signature", "chrf_signature"}`` over the corpus (one reference each)."""
    _check(hypotheses, references)
    sacrebleu = _sacrebleu()
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    refs = [list(references)]
    b, c = bleu.corpus_score(list(hypotheses), refs), chrf.corpus_score(list(hypotheses), refs)
    return {
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """BLEU in [0, 100] written out (module docstring), on sacrebleu's 13a tokens, with its default
    exponential smoothing: a zero n-gram precision counts as 1 / 2^k, k = 1, 2, ... in order of n."""
    _check(hypotheses, references)
    tokenize = _sacrebleu().tokenizers.tokenizer_13a.Tokenizer13a()
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = tokenize(hyp.strip()).split(), tokenize(ref.strip()).split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, max_n + 1):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            matches[n - 1] += sum(min(count, rc[g]) for g, count in hc.items())  # clipped counts
            totals[n - 1] += max(len(h) - n + 1, 0)
    if hyp_len == 0:
        return 0.0
    log_p, smooth = 0.0, 1.0
    for m, t in zip(matches, totals, strict=True):
        if t == 0:
            return 0.0
        if m == 0:
            smooth *= 2
            log_p += math.log(1.0 / (smooth * t))
        else:
            log_p += math.log(m / t)
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return 100.0 * bp * math.exp(log_p / max_n)
