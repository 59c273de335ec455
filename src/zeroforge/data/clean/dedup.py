"""Exact and near-duplicate detection, streaming: the first row of each cluster is kept.

Exact: a 16-byte BLAKE2b digest of the duplicate key, kept in a dict (~150 bytes per unique row).

Near: MinHash signatures indexed by datasketch's ``MinHashLSH`` (Broder 1997; Leskovec et al.,
*Mining of Massive Datasets*, ch. 3). A row is a near duplicate when the LSH returns a kept row
whose estimated Jaccard similarity, the fraction of equal signature entries, is >= the threshold.
Only kept rows are indexed, so a cluster is the kept row plus the rows that matched it.

Speed: datasketch's ``MinHash.update_batch`` calls a Python hash function per shingle. Here the
shingles of a whole chunk of documents are hashed at once with NumPy, then datasketch's own
``affine32`` permutations (``h -> a * fmix32(h) + b mod 2^32``, same seed, same ``a``, ``b``) are
applied as one matrix operation; tests check the signatures equal ``datasketch.MinHash``'s.
Memory: ~2 KB per kept row at ``num_perm=128`` (the signature plus the LSH's band keys).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np

from zeroforge.errors import ZeroforgeError
from zeroforge.tokenizers.cjk import split_cjk

_POLY = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime, the base of the rolling n-gram hash
# LSH bands tuned to miss few true pairs (false-negative weight 0.9): every candidate is verified
# against the threshold afterwards, so extra candidates cost a little time, not precision.
# At threshold 0.8, num_perm 128 this gives 14 bands of 9 rows instead of 9 of 13.
_LSH_WEIGHTS = (0.1, 0.9)
_SHINGLE_BLOCK = 1 << 14  # shingles per (num_perm, block) uint32 matrix: 8 MiB at 128, fits in cache


class ExactIndex:
    """Remember every key's digest; report the line of the first row with the same key."""

    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._first)

    def check(self, key: str, line: int) -> int | None:
        """None for a new key (now remembered), else the line of the row that had it first."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        first = self._first.setdefault(digest, line)
        return None if first == line else first


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads the rolling hash's bits before keeping the low 32."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before its affine32 permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _units(texts: Sequence[str], shingle: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each text as a run of integer units (code points or word hashes), concatenated.

    Returns (units (U,) uint64, ends (D,) int64): text d is ``units[ends[d-1]:ends[d]]``. A text
    shorter than ``n`` units is padded with zeros so it still has one shingle.
    """
    if shingle == "char":
        padded = [t + "\0" * (n - len(t)) if len(t) < n else t for t in texts]
        units = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        lengths = np.fromiter((len(t) for t in padded), dtype=np.int64, count=len(padded))
        return units.astype(np.uint64), np.cumsum(lengths)
    flat: list[int] = []
    lengths_list: list[int] = []
    for t in texts:
        words = split_cjk(t).split()  # each CJK ideograph a word of its own (BERT-Chinese's rule)
        # crc32 per word: deterministic across runs (Python's hash() is salted per process)
        hashes = [zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in words] or [
            zlib.crc32(t.encode("utf-8", "surrogatepass"))
        ]
        hashes += [0] * (n - len(hashes))
        flat += hashes
        lengths_list.append(len(hashes))
    return np.asarray(flat, dtype=np.uint64), np.cumsum(np.asarray(lengths_list, dtype=np.int64))


def shingle_hashes(texts: Sequence[str], shingle: str = "char", n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every n-gram of every text.

    Returns (hashes (S,) uint32, starts (D,) int64): text d's shingles are
    ``hashes[starts[d]:starts[d+1]]`` (every text has at least one). Duplicated shingles are kept;
    a MinHash is a minimum, so they do not change it.
    """
    if not texts:
        return np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.int64)
    units, ends = _units(texts, shingle, n)
    width = len(units) - n + 1
    # rolling polynomial hash of each window: sum_j u[i+j] * P^(n-1-j) mod 2^64
    h = units[:width].copy()
    for j in range(1, n):
        h *= _POLY
        h += units[j : j + width]
    # keep the windows that lie inside one text: every text has >= n units (padding), so the
    # windows that cross into the next text start at its last n-1 positions
    valid = np.ones(width, dtype=bool)
    crossing = (ends[:, None] - np.arange(1, n, dtype=np.int64)[None, :]).ravel()  # (D * (n-1),)
    valid[crossing[crossing < width]] = False
    hashes = (_fmix64(h[valid]) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    counts = np.diff(ends, prepend=0) - (n - 1)  # windows per text
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return hashes, starts


def minhash_signatures(hashes: np.ndarray, starts: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """datasketch affine32 MinHash of each text's shingle set, for many texts at once.

    hashes: (S,) uint32 shingle hashes; starts: (D,) int64 offsets; permutations: (2, P) uint32
    ``(a, b)`` from ``datasketch.MinHash(num_perm=P, seed=s).permutations``.
    Returns (D, P) uint32: ``sig[d, k] = min over text d's shingles h of a_k * fmix32(h) + b_k``.
    """
    a = permutations[0].astype(np.uint32)[:, None]  # (P, 1)
    b = permutations[1].astype(np.uint32)[:, None]  # (P, 1)
    mixed = _fmix32(hashes.astype(np.uint32))
    out = np.empty((len(starts), len(a)), dtype=np.uint32)
    bounds = np.append(starts, len(hashes))
    buffer = np.empty((len(a), _SHINGLE_BLOCK), dtype=np.uint32)
    d0 = 0
    while d0 < len(starts):
        # a block of whole texts whose shingles fit the buffer (or one longer text on its own)
        d1 = int(np.searchsorted(bounds, bounds[d0] + _SHINGLE_BLOCK, side="right")) - 1
        d1 = min(max(d1, d0 + 1), len(starts))
        lo, hi = bounds[d0], bounds[d1]
        phv = (
            buffer[:, : hi - lo]
            if hi - lo <= _SHINGLE_BLOCK
            else np.empty((len(a), hi - lo), dtype=np.uint32)
        )
        # (P, S_block) layout: the min-reduction then runs over contiguous memory (10x faster than (S, P))
        np.multiply(a, mixed[None, lo:hi], out=phv)  # wraps mod 2^32, as datasketch's uint32 arithmetic
        phv += b
        out[d0:d1] = np.minimum.reduceat(phv, bounds[d0:d1] - lo, axis=1).T
        d0 = d1
    return out


class NearDuplicateIndex:
    """MinHash + LSH (datasketch) over the kept rows; ``check`` answers and indexes in one step."""

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle: str = "char",
        ngram: int = 5,
        seed: int = 1,
    ) -> None:
        try:
            from datasketch import LeanMinHash, MinHash, MinHashLSH
        except ImportError:
            raise ZeroforgeError(
                "clean.dedup.near needs the datasketch package: pip install 'zeroforge[clean]' "
                "(or set dedup.near: false)"
            ) from None
        self._lean = LeanMinHash
        self.threshold = threshold
        self.shingle = shingle
        self.ngram = ngram
        self.seed = seed
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=_LSH_WEIGHTS)
        self.permutations = np.asarray(MinHash(num_perm=num_perm, seed=seed).permutations, dtype=np.uint32)
        self._signatures = np.empty((1024, num_perm), dtype=np.uint32)  # of the kept rows, grown by doubling
        self.size = 0

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(D, num_perm) uint32 MinHash signatures of the (lowercased) texts."""
        hashes, starts = shingle_hashes([t.lower() for t in texts], self.shingle, self.ngram)
        return minhash_signatures(hashes, starts, self.permutations)

    def check(self, signature: np.ndarray) -> tuple[int, float] | None:
        """(index of the most similar kept row, estimated Jaccard) when one is >= threshold;
        else None, and the row is indexed as kept row number ``self.size - 1``."""
        minhash = self._lean(seed=self.seed, hashvalues=signature, scheme="affine32")
        candidates = self.lsh.query(minhash)
        if candidates:
            keys = np.asarray(sorted(candidates), dtype=np.int64)
            similarity = (self._signatures[keys] == signature[None, :]).mean(axis=1)  # (C,)
            best = int(np.argmax(similarity))  # the earliest kept row among equals
            if similarity[best] >= self.threshold:
                return int(keys[best]), float(similarity[best])
        if self.size == len(self._signatures):
            self._signatures = np.concatenate([self._signatures, np.empty_like(self._signatures)])
        self._signatures[self.size] = signature
        self.lsh.insert(self.size, minhash, check_duplication=False)
        self.size += 1
        return None
