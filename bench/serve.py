"""``zeroforge serve`` under load: aggregate tokens/s, latency and time to first token at 1, 4 and 16
concurrent clients, continuous batching against one request at a time.

    python bench/serve.py                                  # a small GPT and SmolLM2-135M-Instruct
    python bench/serve.py --models gpt --clients 1 4 16 --max-tokens 32 --requests-per-client 2

Per model two server processes run side by side (``python -m zeroforge serve MODEL --max-batch N`` on
free loopback ports, ``OMP_NUM_THREADS`` = ``--threads``), so the client's Python never shares a GIL
with a model: ``batched`` is the default server (16 rows decoded together), ``one at a time`` the same
with ``--max-batch 1`` (requests queue and are decoded one after another). At each client count the
two are measured one after the other, so both see the same machine load. Each
client sends its requests one after another as streamed completions (server-sent events); a request's
latency runs from sending to the last event, its time to first token to the first text event.
Aggregate tokens/s = completion tokens of all requests / wall time of the whole load. Sampling is at
temperature 0.8 with a seed per request, so both servers generate the same number of tokens (the small
GPT has random weights and no end-of-text token; SmolLM2 may stop early at its end-of-turn token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, load_average  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain why the sky is blue in two sentences.",
    "List three uses of a paperclip.",
    "What is the capital of France, and what is it known for?",
]


def small_gpt(folder: Path) -> Path:
    """A randomly initialised GPT (6 layers, 384 wide, 10.8M parameters) with a 512-token BPE."""
    from zeroforge.registry import create_model
    from zeroforge.tokenizers import train_bpe
    from zeroforge.weights import save_pretrained

    text = " ".join(PROMPTS) * 50 + " the quick brown fox jumps over the lazy dog. " * 200
    tokenizer = train_bpe(text, vocab_size=512)
    torch.manual_seed(0)
    model = create_model(
        "gpt", n_layer=6, n_head=6, n_embd=384, block_size=512, vocab_size=tokenizer.vocab_size
    )
    save_pretrained(model, tokenizer, folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, max_batch: int, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [
        sys.executable,
        "-m",
        "zeroforge",
        "serve",
        model,
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start in 300 s")


async def one_request(client: httpx.AsyncClient, url: str, chat: bool, i: int, max_tokens: int) -> dict:
    body = {"max_tokens": max_tokens, "temperature": 0.8, "seed": i, "stream": True}
    if chat:
        path, body["messages"] = (
            "/v1/chat/completions",
            [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        )
    else:
        path, body["prompt"] = "/v1/completions", PROMPTS[i % len(PROMPTS)]
    start = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", url + path, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread()).decode()}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choice = chunk["choices"][0]
            if first is None and (choice.get("text") or choice.get("delta", {}).get("content")):
                first = time.perf_counter() - start
            if "usage" in chunk:
                tokens = chunk["usage"]["completion_tokens"]
    return {"latency": time.perf_counter() - start, "ttft": first or 0.0, "tokens": tokens}


async def load(url: str, chat: bool, clients: int, per_client: int, max_tokens: int) -> dict:
    results: list[dict] = []

    async def client_loop(client: httpx.AsyncClient, c: int) -> None:
        for k in range(per_client):
            results.append(await one_request(client, url, chat, c * per_client + k, max_tokens))

    async with httpx.AsyncClient(timeout=600) as client:
        await one_request(client, url, chat, 10_000, 4)  # warm-up (first-call allocations)
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client, c) for c in range(clients)))
        wall = time.perf_counter() - start

    def pct(key: str, q: float) -> float:
        values = sorted(r[key] for r in results)
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]

    return {
        "requests": len(results),
        "tokens": sum(r["tokens"] for r in results),
        "wall_s": wall,
        "tokens_per_s": sum(r["tokens"] for r in results) / wall,
        "p50_s": statistics.median(r["latency"] for r in results),
        "p95_s": pct("latency", 0.95),
        "ttft_p50_s": statistics.median(r["ttft"] for r in results),
        "ttft_p95_s": pct("ttft", 0.95),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["gpt", "smollm2"], choices=["gpt", "smollm2"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    print(f"# zeroforge serve under load\ndate: {time.strftime('%Y-%m-%d')}")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} logical cores; server threads: {args.threads}")
    print(f"torch {torch.__version__}; load average at start: {load_average()}")
    print(f"{args.requests_per_client} streamed requests per client, max_tokens {args.max_tokens}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {
            "gpt": (str(small_gpt(Path(tmp) / "small-gpt")), False),
            "smollm2": ("smollm2-135m-instruct", True),
        }
        print(
            "| model | clients | server | requests | tokens/s | p50 latency s | p95 latency s | p50 TTFT s | p95 TTFT s |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name in args.models:
            model, chat = sources[name]
            servers = {
                mode: start_server(model, max_batch, args.threads, Path(tmp) / f"{name}-{max_batch}.log")
                for mode, max_batch in (("batched", 16), ("one at a time", 1))
            }
            try:
                for clients in args.clients:
                    for mode, (_, url) in servers.items():  # alternate, so both see the same machine load
                        r = asyncio.run(load(url, chat, clients, args.requests_per_client, args.max_tokens))
                        rows.append({"model": name, "clients": clients, "server": mode, **r})
                        print(
                            f"| {name} | {clients} | {mode} | {r['requests']} | {r['tokens_per_s']:.1f} | "
                            f"{r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['ttft_p50_s']:.2f} | {r['ttft_p95_s']:.2f} |",
                            flush=True,
                        )
            finally:
                for server, _ in servers.values():
                    server.terminate()
                    server.wait(timeout=30)
    print(f"\nload average at end: {load_average()}")
    for name in args.models:
        for clients in args.clients:
            pair = {r["server"]: r for r in rows if r["model"] == name and r["clients"] == clients}
            if len(pair) == 2:
                ratio = pair["batched"]["tokens_per_s"] / pair["one at a time"]["tokens_per_s"]
                print(f"{name}, {clients} clients: batched / one at a time = {ratio:.2f}x aggregate tokens/s")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
