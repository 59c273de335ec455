"""README.md runs as written: every ```bash and ```python block, in order, in a fresh folder.

The blocks run verbatim in a temporary directory holding a copy of ``recipes/`` (``runs/`` starts
empty), with ``$ZEROFORGE_MAX_STEPS`` capping every training run at a few steps so the whole page
takes a few minutes on two cores. ``make demo`` and ``make test`` are left out (they are what runs
this test), and so is ``source .venv/bin/activate``: the test's interpreter is the environment.
Commands that read standard input (``zeroforge chat``) are fed ``/exit``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zeroforge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
STEP_CAP = "3"
NOT_RUN = ("make demo", "make test", "make bench", "source .venv/bin/activate")


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced ```bash / ```python block, in order."""
    return [(m[1], m[2]) for m in re.finditer(r"^```(bash|python)\n(.*?)^```", text, re.M | re.S)]


def bash_commands(code: str) -> list[str]:
    """The command lines of a bash block: comment-only and blank lines dropped, and the lines the
    test does not run (see ``NOT_RUN``)."""
    lines = [line.strip() for line in code.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and not line.startswith(NOT_RUN)]


def test_readme_commands_name_real_subcommands() -> None:
    """Every ``zeroforge X`` line of the README names a subcommand the parser has, and the page has
    both shell and Python blocks (so the runner below finds something to run)."""
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert {lang for lang, _ in blocks} == {"bash", "python"}
    parser = build_parser()
    subcommands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    seen = set()
    for lang, code in blocks:
        if lang != "bash":
            continue
        for command in bash_commands(code):
            words = shlex.split(command, comments=True)
            if words[0] == "zeroforge":
                assert words[1] in subcommands, command
                seen.add(words[1])
    assert {"models", "train", "generate", "evaluate", "chat", "convert", "embed", "clean"} <= seen


def _environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ZEROFORGE_MAX_STEPS"] = STEP_CAP
    # the zeroforge and torchrun of this interpreter's environment, and this checkout's code
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("ZEROFORGE_CACHE", str(Path.home() / ".cache" / "zeroforge"))
    return env


@pytest.mark.network
def test_readme_runs_in_order(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    env = _environment(tmp_path)
    timings = []
    for i, (lang, code) in enumerate(readme_blocks(README.read_text(encoding="utf-8"))):
        if lang == "bash":
            steps = [(command, ["bash", "-c", command]) for command in bash_commands(code)]
        else:
            script = tmp_path / f"readme_block_{i}.py"
            script.write_text(code, encoding="utf-8")
            steps = [(f"python block {i}", [sys.executable, str(script)])]
        for what, argv in steps:
            start = time.perf_counter()
            done = subprocess.run(
                argv, cwd=tmp_path, env=env, input="/exit\n", capture_output=True, text=True, timeout=900
            )
            timings.append((time.perf_counter() - start, what))
            output = (done.stdout + done.stderr)[-3000:]
            assert done.returncode == 0, f"README: `{what}` failed (exit {done.returncode}):\n{output}"
    assert (tmp_path / "runs" / "gpt-char-shakespeare" / "COMPLETE").is_file()
    assert (tmp_path / "runs" / "gpt-char-python" / "COMPLETE").is_file()
    assert (tmp_path / "runs" / "gpt-char-ddp" / "COMPLETE").is_file()
    assert (tmp_path / "runs" / "gpt-char-shakespeare" / "explain" / "attention.png").is_file()
    assert (tmp_path / "runs" / "lr-find-gpt-char-shakespeare" / "lr_find.png").is_file()
    assert (tmp_path / "runs" / "gpt-char-int8" / "model.safetensors").is_file()
    umask = os.umask(0)
    os.umask(umask)
    for written in ("reviews.clean.csv", "smollm2-hf/config.json", "smollm2-hf/model.safetensors"):
        # written atomically, yet with the permissions a plain open() gives (not mkstemp's 0600)
        assert (tmp_path / written).stat().st_mode & 0o777 == 0o666 & ~umask, written
    for seconds, what in sorted(timings, reverse=True)[:5]:  # shown with -rA or on failure
        print(f"{seconds:6.1f}s  {what}")
