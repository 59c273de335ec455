"""``make bench``: the quick benchmarks, a few minutes in all, one after the other.

Each is a separate process (so one's threads, compiled kernels and memory do not affect the next);
the exit status is non-zero if any of them fails, including a benchmark's own agreement checks
(different greedy tokens, different step-0 losses). The full runs are documented in
docs/benchmarks.md.

    .venv/bin/python bench/run_quick.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

QUICK = [
    ["train_gpt.py", "--configs", "a", "--steps", "6", "--warmup", "2"],
    ["generate_gpt.py", "--new-tokens", "64", "--reps", "2"],
    ["clean_neardup.py", "--docs", "20000"],
]


def main() -> int:
    failed = []
    for command in QUICK:
        print(f"\n$ python bench/{' '.join(command)}", flush=True)
        t0 = time.perf_counter()
        status = subprocess.call([sys.executable, str(BENCH / command[0]), *command[1:]])
        print(f"({time.perf_counter() - t0:.0f} s, exit status {status})", flush=True)
        if status != 0:
            failed.append(command[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
