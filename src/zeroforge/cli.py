"""The ``zeroforge`` command: each subcommand is a thin front on a plain Python function.

    zeroforge prepare  --input shakespeare --tokenizer char
    zeroforge pretrain --config recipes/gpt-char-shakespeare.yaml train.max_minutes=2
    zeroforge generate runs/gpt-char-shakespeare --prompt "ROMEO:"
    zeroforge evaluate runs/gpt-char-shakespeare

User errors (``ZeroforgeError``) print one line and exit 2; nothing is left looking complete.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from zeroforge.errors import ZeroforgeError

# Modules that add their own subcommands with ``add_cli(subparsers)``.
_PLUGINS = [
    "zeroforge.data.clean",
    "zeroforge.embedding",
    "zeroforge.weights",
    "zeroforge.chat",
    "zeroforge.finetuning",
]


def _cmd_prepare(args: argparse.Namespace) -> int:
    from zeroforge.data.text import prepare

    if args.config:
        return _prepare_recipe(args)
    if not args.input:
        raise ZeroforgeError("prepare: give --input PATH_OR_DATASET, or --config RECIPE.yaml")
    if args.max_seq_len is not None and args.objective != "mlm_nsp":
        raise ZeroforgeError(
            "prepare: --max-seq-len is for --objective mlm_nsp (clm splits the text, not pairs)"
        )
    # flags left out keep the prepare functions' own defaults
    given = {"tokenizer": args.tokenizer, "vocab_size": args.vocab_size, "val_fraction": args.val_fraction}
    options = {name: value for name, value in given.items() if value is not None}
    if args.objective == "mlm_nsp":
        from zeroforge.data.mlm import prepare_mlm_nsp

        if args.max_seq_len is not None:
            options["max_seq_len"] = args.max_seq_len
        print(prepare_mlm_nsp(args.input, args.out, lowercase=not args.cased, **options))
        return 0
    out = prepare(args.input, args.out, **options)
    print(out)
    return 0


def _prepare_recipe(args: argparse.Namespace) -> int:
    """The data steps of a recipe alone: its ``clean:`` step (into the run dir), then tokenising."""
    import importlib

    from zeroforge.config import load_recipe
    from zeroforge.train.distributed import DistContext
    from zeroforge.train.loop import DATA_BUILDERS, clean_source

    # A recipe's data: section says what the flags would; --out is its data.prepared_dir.
    flags = {
        "--input": ("data.source", args.input),
        "--tokenizer": ("data.tokenizer", args.tokenizer),
        "--vocab-size": ("data.vocab_size", args.vocab_size),
        "--objective": ("data.objective", args.objective),
        "--max-seq-len": ("model.block_size", args.max_seq_len),
        "--cased": ("data.lowercase=false", args.cased or None),
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
    recipe = load_recipe(args.config, overrides)
    if recipe.clean is not None:
        recipe.data.source = str(clean_source(recipe, DistContext()))
    module_name, _, func = DATA_BUILDERS[recipe.data.objective].partition(":")
    build_data = getattr(importlib.import_module(module_name), func)
    block_size = recipe.train.block_size or recipe.model_config().block_size
    data = build_data(recipe.data, block_size, recipe.train.batch_size, 1, recipe.train.seed)
    print(data.description)
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    import os

    from zeroforge.train.loop import pretrain

    run_dir = pretrain(args.config, args.overrides)
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {run_dir}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from zeroforge.generation import generate
    from zeroforge.train.checkpoint import load_run

    model, tokenizer = load_run(args.model)
    for i, prompt in enumerate(args.prompt or [""]):
        if i:
            print("\n" + "-" * 40)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        generate(
            model,
            tokenizer,
            prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            stop=args.stop,
            seed=args.seed,
            stream=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()),
        )
    print()
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from zeroforge.eval.evaluate import compare_runs, evaluate

    if args.compare:
        print(compare_runs(([args.run_dir] if args.run_dir else []) + args.compare))
        return 0
    if args.run_dir is None:
        raise ZeroforgeError("evaluate: name a run directory (or --compare RUN RUN ...)")
    metrics = evaluate(args.run_dir, args.data, split=args.split, batch_size=args.batch_size)
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from zeroforge.registry import list_models

    print("\n".join(list_models()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from zeroforge.demo import run_demo

    run_demo(minutes=args.minutes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zeroforge", description="Develop and fine-tune large models from zero."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

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
        "--val-fraction", type=float, default=None, help="last fraction of the text kept for validation (0.1)"
    )

    p = add("pretrain", _cmd_pretrain, "pretrain a model from a YAML recipe")
    p.add_argument(
        "--config", default=None, help="recipe YAML (default: the built-in small GPT on Shakespeare)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.n_layer=6")

    p = add("generate", _cmd_generate, "sample text from a trained model, streamed to stdout")
    p.add_argument(
        "model", help="run directory, HF folder, GGUF file or named weights (smollm2-135m-instruct)"
    )
    p.add_argument("--prompt", action="append", help="prompt (repeat for several)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=None)

    p = add(
        "evaluate", _cmd_evaluate, "a run's metrics (LM loss/perplexity; classifier P/R/F1) -> metrics.json"
    )
    p.add_argument("run_dir", nargs="?")
    p.add_argument(
        "--data", default=None, help="prepared data dir, dataset or labelled file (default: the run's own)"
    )
    p.add_argument(
        "--split", default=None, choices=["train", "val", "test"], help="default: val (LM), test (classifier)"
    )
    p.add_argument(
        "--compare", nargs="+", metavar="RUN", default=None, help="print a table of these runs' metrics"
    )
    p.add_argument("--batch-size", type=int, default=16)

    add("models", _cmd_models, "list model families and presets")

    p = add("demo", _cmd_demo, "prepare Shakespeare, pretrain a small GPT for a few minutes, sample from it")
    p.add_argument("--minutes", type=float, default=2.5)

    for module in _PLUGINS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(mod, "add_cli"):
            mod.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZeroforgeError as err:
        print(f"zeroforge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zeroforge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
