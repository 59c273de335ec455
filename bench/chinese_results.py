"""The Chinese results of docs/results.md ("Chinese from zero"): baselines, tokenizer coverage, the table.

    python bench/chinese_results.py tfidf [overrides]     # char n-gram TF-IDF + logistic regression
    python bench/chinese_results.py tokenizers            # [UNK] rate and tokens per character, test split
    python bench/chinese_results.py table RUN ...         # markdown rows from fine-tuning runs' metrics.json
    python bench/chinese_results.py curves RUN ...        # validation accuracy against step, one PNG
    python bench/chinese_results.py probe RUN             # LR on frozen embeddings: RUN vs its random init
    python bench/chinese_results.py labels --pretrained RUN... --scratch RUN... --tfidf JSON...
                                                          # test accuracy against the number of labels

Everything reads the test split of recipes/finetune-zh-sentiment.yaml (``labelled_splits``: repeated
reviews dropped, 80/10/10 stratified, seed 0), so the baselines score the reviews the fine-tuned models
are scored on. Each command writes ``bench/results/chinese/<name>.json`` (or .png).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_results import _fit_lr, _score, machine, splits_of  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "chinese"
ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "finetune-zh-sentiment.yaml")


def save(name: str, record: dict[str, Any]) -> Path:
    from zeroforge.io import atomic_write_json

    record = {"name": name, "command": " ".join(["python", *sys.argv]), **record, "machine_end": machine()}
    path = OUT / f"{name}.json"
    atomic_write_json(path, record)
    print(json.dumps({k: v for k, v in record.items() if k != "per_class"}, indent=2, ensure_ascii=False))
    return path


def tfidf(args: argparse.Namespace) -> None:
    """Character 1-3-gram TF-IDF (Chinese needs no word segmentation for it) + logistic regression,
    C chosen on the validation split, the test split scored once."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    t0 = time.time()
    parts = _splits(args.overrides)
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x_train = vec.fit_transform(parts["train"].texts)
    clf, c = _fit_lr(x_train, parts["train"].labels, vec.transform(parts["val"].texts), parts["val"].labels)
    metrics = _score(clf, vec.transform(parts["test"].texts), parts["test"].labels, parts["test"].label_names)
    suffix = f"-{len(parts['train'])}" if args.overrides else ""
    save(
        f"tfidf-char-lr-zh-sentiment{suffix}",
        {
            "method": "character 1-3-gram TF-IDF + logistic regression (C on val)",
            "C": c,
            "features": len(vec.vocabulary_),
            "split": {k: len(v) for k, v in parts.items()},
            **metrics,
            "seconds": round(time.time() - t0, 1),
            "machine": machine(),
        },
    )


def _splits(overrides: list[str]) -> dict[str, Any]:
    """The recipe's splits, with overrides such as ``data.max_examples=1000`` (a stratified sample of train)."""
    from zeroforge.config import load_recipe
    from zeroforge.data.tasks import labelled_splits

    return labelled_splits(load_recipe(RECIPE, overrides, finetune=True), None)


def _coverage(tok: Any, texts: list[str], unk_id: int | None) -> dict[str, float]:
    ids = tok.encode_batch(texts)
    n = sum(len(row) for row in ids)
    chars = sum(len(t) for t in texts)
    unk = sum(row.count(unk_id) for row in ids) if unk_id is not None else 0
    return {
        "tokens": n,
        "tokens_per_char": round(n / chars, 4),
        "unk_rate": round(unk / n, 5),
        "texts_with_unk": round(sum(unk_id in row for row in ids) / len(ids), 4)
        if unk_id is not None
        else 0.0,
    }


def tokenizers(args: argparse.Namespace) -> None:
    """[UNK] rate on the sentiment test split of tokenizers built from People's Daily (the BERT run's:
    People's Daily + the training reviews, NFKC), and MiniLM's."""
    from zeroforge import datasets
    from zeroforge.tokenizers import CharTokenizer, load_tokenizer, train_bpe, train_wordpiece
    from zeroforge.tokenizers.cjk import is_cjk

    test = splits_of(RECIPE)["test"].texts
    corpus = datasets.load_text("peoples-daily")
    rows: dict[str, Any] = {}
    char = CharTokenizer.from_text(corpus, unknown="replace")
    rows["char (People's Daily characters)"] = _coverage(char, test, char.unk_id)
    news_only = train_wordpiece(corpus.splitlines(), vocab_size=6000)
    rows[f"WordPiece on People's Daily alone, no NFKC (vocab {news_only.vocab_size})"] = _coverage(
        news_only, test, news_only.unk_id
    )
    bert = load_tokenizer(args.bert_run)
    rows[f"WordPiece of {Path(args.bert_run).name} (vocab {bert.vocab_size})"] = _coverage(
        bert, test, bert.unk_id
    )
    bpe = train_bpe(corpus, vocab_size=args.bpe_vocab)
    rows[f"byte-level BPE, CJK split (vocab {bpe.vocab_size})"] = _coverage(bpe, test, None)
    minilm = load_tokenizer(datasets.asset_file("all-minilm-l6-v2"))
    rows[f"all-MiniLM-L6-v2 WordPiece (vocab {minilm.vocab_size})"] = _coverage(minilm, test, minilm.unk_id)
    test_chars = {ch for t in test for ch in t if is_cjk(ch)}
    minilm_vocab = set(minilm.tokenizer.get_vocab())
    save(
        "tokenizers-zh-sentiment-test",
        {
            "test_texts": len(test),
            "test_characters": sum(len(t) for t in test),
            "distinct_cjk_in_test": len(test_chars),
            "cjk_in_peoples_daily": round(len(test_chars & set(corpus)) / len(test_chars), 4),
            "cjk_in_minilm_vocab": round(len(test_chars & minilm_vocab) / len(test_chars), 4),
            "tokenizers": rows,
            "machine": machine(),
        },
    )


def probe(args: argparse.Namespace) -> None:
    """What the pretrained encoder knows before fine-tuning: logistic regression (C on val) on its frozen,
    mean-pooled sentence embeddings, against the same architecture at its random initialisation."""
    import torch

    import zeroforge as zf
    from zeroforge.registry import create_model

    torch.set_num_threads(1)
    t0 = time.time()
    parts = splits_of(RECIPE)
    pretrained, tok = zf.load(args.run)
    torch.manual_seed(0)
    config = {k: v for k, v in vars(pretrained.config).items() if not k.startswith("_")}
    fresh = create_model("bert", **{k: v for k, v in config.items() if k in _bert_fields()})
    out: dict[str, Any] = {"run": args.run, "split": {k: len(v) for k, v in parts.items()}}
    for name, model in (("pretrained", pretrained), ("random init", fresh)):
        emb = {k: zf.embed(model, v.texts, tokenizer=tok).numpy() for k, v in parts.items()}
        clf, c = _fit_lr(emb["train"], parts["train"].labels, emb["val"], parts["val"].labels)
        m = _score(clf, emb["test"], parts["test"].labels, parts["test"].label_names)
        out[name] = {"C": c, **{k: m[k] for k in ("accuracy", "f1_macro", "confusion_matrix")}}
    out["seconds"] = round(time.time() - t0, 1)
    out["machine"] = machine()
    save(f"probe-{Path(args.run).name}", out)


def _bert_fields() -> set[str]:
    import dataclasses

    from zeroforge.models.bert import BertConfig

    return {f.name for f in dataclasses.fields(BertConfig)}


def table(args: argparse.Namespace) -> None:
    print("| run | accuracy | macro-F1 | confusion [[TN, FP], [FN, TP]] | steps | train s |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        m = json.loads((Path(run) / "metrics.json").read_text(encoding="utf-8"))
        print(
            f"| {Path(run).name} | {m['accuracy']:.4f} | {m['f1_macro']:.4f} | {m['confusion_matrix']} | "
            f"{m.get('train_steps')} | {m.get('train_seconds')} |"
        )


def curves(args: argparse.Namespace) -> None:
    """Validation accuracy of each run against its fine-tuning step (metrics.csv), one PNG. Steps, not
    seconds: on a shared machine a second buys a different amount of training from run to run."""
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    for run in args.runs:
        with open(Path(run) / "metrics.csv", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("val_accuracy")]
        steps = np.array([int(r["step"]) for r in rows])
        acc = np.array([float(r["val_accuracy"]) for r in rows])
        ax.plot(steps, acc, marker=".", label=Path(run).name)
    if args.baseline is not None:
        ax.axhline(args.baseline, color="gray", linestyle="--", label="TF-IDF + LR (test)")
    ax.set_xlabel("fine-tuning steps (batch 32)")
    ax.set_ylabel("validation accuracy")
    print(_save(fig, ax, args.name))


def labels(args: argparse.Namespace) -> None:
    """Test accuracy against the number of labelled training reviews: pretrained and from-scratch runs
    and TF-IDF records, given in the same order of label counts (the TF-IDF records give the counts)."""
    if not len(args.pretrained) == len(args.scratch) == len(args.tfidf):
        raise SystemExit("labels: give as many --pretrained, --scratch and --tfidf as there are label counts")
    counts = [json.loads(Path(t).read_text(encoding="utf-8"))["split"]["train"] for t in args.tfidf]
    rows = {
        "pretrained BERT, fine-tuned": [_accuracy(Path(r) / "metrics.json") for r in args.pretrained],
        "same BERT from random init": [_accuracy(Path(r) / "metrics.json") for r in args.scratch],
        "character TF-IDF + LR": [_accuracy(Path(t)) for t in args.tfidf],
    }
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for name, acc in rows.items():
        ax.plot(counts, acc, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(counts, [f"{n:,}" for n in counts])
    ax.set_xlabel("labelled training reviews")
    ax.set_ylabel("test accuracy (1,741 reviews)")
    png = _save(fig, ax, args.name)
    print("| labelled reviews | " + " | ".join(rows) + " | pretrained - random init |")
    print("|---|" + "---|" * (len(rows) + 1))
    for i, n in enumerate(counts):
        cells = [f"{acc[i]:.2%}" for acc in rows.values()]
        gain = 100 * (rows["pretrained BERT, fine-tuned"][i] - rows["same BERT from random init"][i])
        print(f"| {n:,} | " + " | ".join(cells) + f" | {gain:+.2f} points |")
    print(png)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, ax: Any, name: str) -> Path:
    """Grid and legend, then ``bench/results/chinese/<name>.png``."""
    ax.grid(alpha=0.3)
    ax.legend()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=110)
    return OUT / f"{name}.png"


def _accuracy(path: Path) -> float:
    return float(json.loads(path.read_text(encoding="utf-8"))["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tfidf")
    p.add_argument("overrides", nargs="*", help="recipe overrides, e.g. data.max_examples=1000")
    p = sub.add_parser("tokenizers")
    p.add_argument("--bert-run", default=str(ROOT / "runs" / "bert-peoples-daily"))
    p.add_argument("--bpe-vocab", type=int, default=8000)
    p = sub.add_parser("table")
    p.add_argument("runs", nargs="+")
    p = sub.add_parser("curves")
    p.add_argument("runs", nargs="+")
    p.add_argument("--name", default="zh-sentiment-val-accuracy")
    p.add_argument("--baseline", type=float, default=None, help="a horizontal line, e.g. TF-IDF accuracy")
    p = sub.add_parser("probe")
    p.add_argument("run")
    p = sub.add_parser("labels")
    p.add_argument("--pretrained", nargs="+", required=True, help="fine-tuned runs, fewest labels first")
    p.add_argument("--scratch", nargs="+", required=True, help="random-init runs, same order")
    p.add_argument("--tfidf", nargs="+", required=True, help="bench/results/chinese/tfidf-*.json, same order")
    p.add_argument("--name", default="zh-sentiment-labels")
    args = parser.parse_args()
    commands = {
        "tfidf": tfidf,
        "tokenizers": tokenizers,
        "table": table,
        "curves": curves,
        "probe": probe,
        "labels": labels,
    }
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
