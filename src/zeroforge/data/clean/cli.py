"""``zeroforge clean INPUT --out OUTPUT [--config clean.yaml] [--set key=value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _cmd_clean(args: argparse.Namespace) -> int:
    from zeroforge.data.clean.config import load_clean_config
    from zeroforge.data.clean.pipeline import clean

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
    json_path = (
        Path(args.report) if args.report else Path(args.out).with_name(Path(args.out).name + ".report.json")
    )
    print(f"cleaned: {args.out}\nreport:  {json_path} (+ {json_path.with_suffix('.txt').name})")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``clean`` on the ``zeroforge`` command's subparsers."""
    help = "clean a text corpus or table: normalise, de-duplicate, handle missing values, filter, report"
    p = subparsers.add_parser("clean", help=help, description=help)
    p.set_defaults(func=_cmd_clean)
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
