"""Exact and MinHash/LSH near-duplicate detection: signatures equal datasketch's, thresholds hold."""

from __future__ import annotations

import random

import numpy as np
import pytest

from zeroforge.data.clean import dedup
from zeroforge.data.clean.dedup import ExactIndex, NearDuplicateIndex, minhash_signatures, shingle_hashes

datasketch = pytest.importorskip("datasketch")

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "the quick brown fox jumped over the lazy dog!",
    "abc",  # shorter than the n-gram: one padded shingle
    "",
    "a completely different sentence about movies and popcorn " * 3,
]


def _exact_jaccard(a: str, b: str, shingle: str = "char", n: int = 5) -> float:
    (ha, _), (hb, _) = shingle_hashes([a], shingle, n), shingle_hashes([b], shingle, n)
    sa, sb = set(ha.tolist()), set(hb.tolist())
    return len(sa & sb) / len(sa | sb)


@pytest.mark.parametrize("shingle,n", [("char", 5), ("char", 1), ("word", 3), ("word", 1)])
def test_signatures_equal_datasketch_minhash(shingle: str, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "_SHINGLE_BLOCK", 16)  # force many blocks and texts longer than a block
    num_perm, seed = 64, 7
    permutations = datasketch.MinHash(num_perm=num_perm, seed=seed).permutations
    hashes, starts = shingle_hashes(TEXTS, shingle, n)
    ours = minhash_signatures(hashes, starts, np.asarray(permutations, dtype=np.uint32))
    bounds = list(starts) + [len(hashes)]
    for d in range(len(TEXTS)):
        reference = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=lambda h: h)
        reference.update_batch(hashes[bounds[d] : bounds[d + 1]].tolist())
        np.testing.assert_array_equal(ours[d], reference.hashvalues)


def test_shingles_of_a_batch_equal_shingles_one_by_one() -> None:
    together, starts = shingle_hashes(TEXTS, "char", 5)
    bounds = list(starts) + [len(together)]
    for d, text in enumerate(TEXTS):
        alone, _ = shingle_hashes([text], "char", 5)
        np.testing.assert_array_equal(together[bounds[d] : bounds[d + 1]], alone)
        assert len(alone) == max(1, len(text) - 4)
    repeated, _ = shingle_hashes(["abcdeabcde"], "char", 5)
    assert repeated[0] == repeated[5] and len(set(repeated.tolist())) == 5


def test_minhash_estimates_jaccard() -> None:
    rng = random.Random(0)
    words = "film movie great bad plot actor scene story music ending boring funny".split()
    index = NearDuplicateIndex(num_perm=256)
    errors = []
    for _ in range(40):
        a = " ".join(rng.choice(words) for _ in range(30))
        b = " ".join(w if rng.random() < 0.8 else rng.choice(words) for w in a.split())
        sig = index.signatures([a, b])
        estimate = float((sig[0] == sig[1]).mean())
        errors.append(abs(estimate - _exact_jaccard(a.lower(), b.lower())))
    # standard error of the estimate is sqrt(J(1-J)/256) <= 0.031
    assert max(errors) < 0.12 and float(np.mean(errors)) < 0.04


def test_near_duplicates_above_threshold_found_below_not() -> None:
    base = "I rented this movie last week and honestly it was one of the best films of the year."
    above = base.replace("honestly", "honestly,")  # one character added
    below = "I rented this movie last week, what a waste of an evening that turned out to be."
    assert _exact_jaccard(base.lower(), above.lower()) > 0.85
    assert _exact_jaccard(base.lower(), below.lower()) < 0.5
    index = NearDuplicateIndex(threshold=0.8)
    sigs = index.signatures([base, above, below])
    assert index.check(sigs[0]) is None  # indexed as kept row 0
    hit = index.check(sigs[1])
    assert hit is not None and hit[0] == 0 and hit[1] >= 0.8
    assert index.check(sigs[2]) is None  # kept row 1
    assert index.size == 2


def test_exact_index_remembers_first_line() -> None:
    index = ExactIndex()
    assert index.check("a", 3) is None
    assert index.check("b", 4) is None
    assert index.check("a", 9) == 3
    assert len(index) == 2
