"""Training commands: run a recipe, search its hyperparameters, find its learning rate."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from zeroforge.cli.common import AddCommand, check_config, print_run_dir
from zeroforge.errors import ZeroforgeError
from zeroforge.io import check_input_file, check_output_dir


def _cmd_train(args: argparse.Namespace) -> int:
    from zeroforge.training import run_recipe

    check_config(args.config)
    return print_run_dir(run_recipe(args.config, args.overrides))


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from zeroforge.pretraining import pretrain

    check_config(args.config)
    return print_run_dir(pretrain(args.config, args.overrides))


def _cmd_finetune(args: argparse.Namespace) -> int:
    from zeroforge.finetuning import finetune

    check_config(args.config)
    return print_run_dir(finetune(args.config, args.overrides))


def _check_demo_dir(run_dir: Path) -> None:
    """The demo replaces its own folder from an earlier demo, and nothing else."""
    check_output_dir(run_dir, "the demo's run directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "run.yaml").is_file():
        raise ZeroforgeError(f"{run_dir}: holds files that are not a demo run; move them away first")


def _cmd_demo(args: argparse.Namespace) -> int:
    from zeroforge.demo import DEMO_DIR, run_demo

    if not 0 < args.minutes < math.inf:
        raise ZeroforgeError(f"--minutes: must be > 0, got {args.minutes}")
    _check_demo_dir(Path(DEMO_DIR))
    run_demo(minutes=args.minutes)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from zeroforge.sweep import sweep

    check_config(args.config)
    check_input_file(args.space, "--space")
    result = sweep(
        args.config, args.space, args.trials, args.jobs, args.storage, args.sampler, args.out,
        args.overrides, args.seed, args.heartbeat, not args.no_prune,
    )  # fmt: skip
    print((result.out_dir / "trials.md").read_text(encoding="utf-8"), end="")
    best = ", ".join(f"{k}={v}" for k, v in result.best_params.items())
    print(f"{result.finished} trials finished ({result.pruned} pruned); best {result.best_value}: {best}")
    print(
        f"sweep directory: {result.out_dir} (best.yaml, trials.csv, history.png, importances.png, parallel.png)"
    )
    return 0


def _cmd_lr_find(args: argparse.Namespace) -> int:
    from zeroforge.lr_find import lr_find

    check_config(args.config)
    if args.out:
        check_output_dir(args.out, "--out")
    r = lr_find(args.config, args.overrides, args.steps, args.start_lr, args.end_lr, args.out)
    found = f"{r.suggestion:.3g}" if r.suggestion is not None else "none (the loss never fell)"
    at_min = f"{r.min_loss_lr:.3g}" if r.min_loss_lr is not None else "-"
    print(f"suggested lr {found} (steepest descent); lr at the minimum {at_min}; recipe lr {r.recipe_lr:g}")
    return 0


def register(add: AddCommand) -> None:
    p = add("train", _cmd_train, "train any recipe: pretraining, fine-tuning, classic and vision models")
    p.add_argument("--config", default=None, help="recipe YAML (recipes/*.yaml; default: a small GPT)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.n_layer=6")

    p = add("pretrain", _cmd_pretrain, "train a model from a random start on a YAML recipe")
    p.add_argument(
        "--config", default=None, help="recipe YAML (default: the built-in small GPT on Shakespeare)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.n_layer=6")

    help = "fine-tune a pretrained model (classification, continued LM training, SFT; full/head/freeze/lora)"
    p = add("finetune", _cmd_finetune, help)
    p.add_argument(
        "--config", default=None, help="recipe YAML with a finetune: section (recipes/finetune-*.yaml)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. finetune.method=lora train.lr=2e-4")

    p = add("demo", _cmd_demo, "prepare Shakespeare, pretrain a small GPT for a few minutes, sample from it")
    p.add_argument("--minutes", type=float, default=2.5)

    help = "hyperparameter search over recipe fields with Optuna (TPE, grid, random; median pruning)"
    p = add("sweep", _cmd_sweep, help)
    p.add_argument("--config", required=True, help="the recipe to tune")
    p.add_argument(
        "--space", required=True, help="YAML: 'train.lr: loguniform 1e-4 3e-3', 'model.n_layer: [2, 4]'"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides for every trial, e.g. train.max_steps=300")
    p.add_argument("--trials", type=int, default=20, help="finished (complete or pruned) trials wanted")
    p.add_argument("--jobs", type=int, default=1, help="worker processes on this machine")
    p.add_argument(
        "--storage", default=None, help="RDB URL shared by all workers (default sqlite:///OUT/study.db)"
    )
    p.add_argument("--sampler", default="tpe", choices=["tpe", "grid", "random"])
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<train.name>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--heartbeat", type=float, default=30.0, help="seconds; a silent trial is retried after 2x"
    )
    p.add_argument("--no-prune", action="store_true", help="run every trial to its end")

    p = add(
        "lr-find", _cmd_lr_find, "learning-rate range test (Smith 2017): loss against an exponential lr sweep"
    )
    p.add_argument("--config", required=True, help="the recipe whose model, data and optimizer to test")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.batch_size=16")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of the sweep")
    p.add_argument("--start-lr", type=float, default=1e-7)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument(
        "--out", default=None, help="folder for lr_find.png/json (default runs/lr-find-<train.name>)"
    )
