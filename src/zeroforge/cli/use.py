"""Commands that use a trained model: sample, chat, translate, embed, evaluate, explain, serve."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from zeroforge.cli.common import AddCommand
from zeroforge.errors import ZeroforgeError
from zeroforge.io import check_output_dir


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


def _cmd_embed(args: argparse.Namespace) -> int:

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


def _check_run_dirs(paths: list[str], what: str) -> None:
    """Every run directory exists before the first is evaluated (evaluate writes its metrics.json)."""
    for path in paths:
        if not Path(path).is_dir():
            state = "is a file" if Path(path).exists() else "not found"
            raise ZeroforgeError(f"{what}: {path} {state}, expected a run directory")


def _cmd_evaluate(args: argparse.Namespace) -> int:

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

    config = Path(run_dir) / "config.json"
    try:
        family = json.loads(config.read_text(encoding="utf-8")).get("zeroforge_family")
    except (OSError, ValueError, AttributeError):
        return False
    return family in ("seq2seq", "gru-seq2seq")


def _cmd_explain(args: argparse.Namespace) -> int:
    from zeroforge.explain.run import explain

    if args.out:
        check_output_dir(args.out, "--out")
    out = explain(args.run_dir, args.what, args.text, args.index, args.out, args.target, args.steps)
    print(f"wrote {out}")
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


def register(add: AddCommand) -> None:
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

    p = add(
        "embed",
        _cmd_embed,
        "L2-normalised mean-pooled sentence embeddings from a BERT run or model directory",
    )
    p.add_argument("model", help="run or model directory")
    p.add_argument("--text", action="append", help="a text to embed (repeatable; default: lines of stdin)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--similarity", action="store_true", help="also print the cosine similarity matrix")

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

    help = "look inside a model: attention maps (grid of heads, JSON, head summary) or saliency (Captum)"
    p = add("explain", _cmd_explain, help)
    p.add_argument("what", choices=["attention", "saliency"])
    p.add_argument("run_dir", metavar="RUN", help="run directory (or any model zeroforge.load reads)")
    p.add_argument("--text", default=None, help="the text to look at")
    p.add_argument("--index", type=int, default=None, help="saliency of an image run: validation image N")
    p.add_argument("--target", default=None, help="saliency: the class to explain (default: the predicted)")
    p.add_argument("--steps", type=int, default=64, help="integrated gradients: integration steps")
    p.add_argument("--out", default=None, help="output folder (default: RUN/explain)")

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
