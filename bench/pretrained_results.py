"""Real-model numbers for docs/results.md: SmolLM2-135M-Instruct and all-MiniLM-L6-v2 as shipped.

    python bench/pretrained_results.py              # prints the markdown section
    python bench/pretrained_results.py --chars 20000 --threads 1

1. SmolLM2 perplexity on held-out text: the validation split zeroforge's Shakespeare runs use (the last
   10% of the corpus, ``prepare``'s split), its first ``--chars`` characters, scored in
   non-overlapping windows of ``--window`` tokens (every token predicted from up to window-1 tokens
   of context, the first of each window unscored). Bits per character make it comparable with
   character-level models whatever the tokenizer.
2. Greedy completions of factual prompts, and greedy chat answers through the model's template.
3. all-MiniLM-L6-v2 cosine similarities (mean pooling + L2 norm, ``zeroforge.embed``).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
import torch.nn.functional as F

import zeroforge
from zeroforge.chat import ChatSession
from zeroforge.generation import generate

PROMPTS = [
    "The capital of France is",
    "The largest planet in our solar system is",
    "Water boils at a temperature of",
    "The chemical symbol for gold is",
    "Romeo and Juliet was written by",
]
QUESTIONS = ["What is the capital of Japan?", "How many legs does a spider have?"]
PAIRS = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A man is eating food.", "The girl is carrying a baby."),
    ("How do I bake bread at home?", "What is a simple recipe for homemade bread?"),
    ("The cat sits on the mat.", "Stock markets fell sharply today."),
    ("I loved this movie, the acting was wonderful.", "A terrible film; I want my money back."),
]


@torch.inference_mode()
def perplexity(model: torch.nn.Module, ids: list[int], window: int) -> tuple[float, int]:
    """(mean negative log-likelihood in nats per scored token, scored tokens)."""
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = torch.tensor([ids[start : start + window]])
        if chunk.size(1) < 2:
            break
        logits = model(chunk).logits[0, :-1].float()  # (T-1, V)
        total += F.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        count += chunk.size(1) - 1
    return total / count, count


def one_line(text: str) -> str:
    """A generated text in a table cell: newlines shown as ↵, runs of spaces as one."""
    return " ".join(text.strip().replace("\n", " ↵ ").split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=20000)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    model, tok = zeroforge.load_pretrained("smollm2-135m-instruct")  # fp32, dequantised from Q4_1

    text = zeroforge.datasets.load_text("shakespeare")
    held_out = text[int(len(text) * 0.9) :][: args.chars]
    ids = tok.encode(held_out)
    nll, scored = perplexity(model, ids, args.window)
    chars_per_token = len(held_out) / len(ids)
    bits_per_char = nll / math.log(2) / chars_per_token

    print("## Pretrained models as shipped (SmolLM2-135M-Instruct, all-MiniLM-L6-v2)\n")
    print(f"Regenerate: `python bench/pretrained_results.py --chars {args.chars} --window {args.window}`")
    print(
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}).\n"
    )
    print("### SmolLM2-135M-Instruct perplexity on held-out Shakespeare\n")
    print("| text | tokens scored | window | perplexity (per token) | bits per character |")
    print("|---|---|---|---|---|")
    print(
        f"| Shakespeare validation split, first {len(held_out):,} characters | {scored:,} | {args.window} "
        f"| {math.exp(nll):.2f} | {bits_per_char:.3f} |"
    )
    print(f"\n({chars_per_token:.2f} characters per token.)\n")

    print("### SmolLM2-135M-Instruct greedy answers\n")
    print("| prompt | greedy continuation (24 tokens) |")
    print("|---|---|")
    for prompt in PROMPTS:
        out = generate(model, tok, prompt, max_new_tokens=24, temperature=0)
        print(f"| {prompt} | {one_line(out)} |")
    print("\n| chat question (the model's template, default system prompt) | greedy answer |")
    print("|---|---|")
    for question in QUESTIONS:
        session = ChatSession(model, tok, max_new_tokens=48)
        answer = session.send(question)
        print(f"| {question} | {one_line(answer)} |")

    print("\n### all-MiniLM-L6-v2 cosine similarities\n")
    print("| sentence A | sentence B | cosine |")
    print("|---|---|---|")
    texts = [t for pair in PAIRS for t in pair]
    vectors = zeroforge.embed("all-minilm-l6-v2", texts)
    for i, (a, b) in enumerate(PAIRS):
        print(f"| {a} | {b} | {float(vectors[2 * i] @ vectors[2 * i + 1]):.3f} |")
    print(f"\n(total {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
