"""Commands on model files: list presets, convert, quantize, export to GGUF."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zeroforge.cli.common import AddCommand


def _cmd_models(args: argparse.Namespace) -> int:
    from zeroforge.registry import models_table

    print(models_table())
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from zeroforge.weights import convert

    out = convert(args.src, args.dst, dtype=args.dtype)
    files = sorted(p for p in Path(out).iterdir() if p.is_file())
    size = sum(p.stat().st_size for p in files) / 1e6
    print(f"converted {args.src} -> {out} ({args.dtype}, {size:.1f} MB: {', '.join(p.name for p in files)})")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:

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


def register(add: AddCommand) -> None:
    add("models", _cmd_models, "model presets by kind: family, parameters, context, real weights shipped")

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
