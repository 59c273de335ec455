"""The guide's code cannot rot: its Python and shell blocks run, its Chinese pages carry the same code,
and the site builds with ``mkdocs build --strict``.

A block runs in the default suite unless an HTML comment on the line before it says otherwise:
``<!-- doctest: slow -->`` (minutes of training: run by ``make docs-check``, i.e. ``pytest -m slow``)
or ``<!-- doctest: skip -->`` (needs a terminal or several processes: ``zeroforge chat``, torchrun, the
install step). A page's Python blocks run in order in one fresh interpreter, so a later block may use an
earlier block's names. A shell line ``python examples/NAME.py --quick`` is the examples' smoke test
(tests/examples), so here it is only checked to point at a smoke-tested script.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md"))]
PAGES = [p for p in PAGES if not p.name.endswith(".zh.md")]


def _nav_paths(node: object) -> list[str]:
    """mkdocs.yml's nav, flattened: the pages in the order a reader meets them."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [path for value in node.values() for path in _nav_paths(value)]
    return [path for item in node for path in _nav_paths(item)] if isinstance(node, list) else []


# in the guide's reading order: a chapter may evaluate what an earlier chapter trained
READING_ORDER = _nav_paths(yaml.safe_load((ROOT / "mkdocs.yml").read_text("utf-8"))["nav"])
PAGES.sort(key=lambda page: READING_ORDER.index(page.relative_to(DOCS).as_posix()))
BLOCK = re.compile(r"(?:<!-- doctest: (?P<mark>\w+) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)\n```\n", re.S)
EXAMPLE_QUICK = re.compile(r"^python examples/(\w+)\.py --quick$")
# pages outside docs/guide/ that have a Chinese translation too (its code blocks must match)
TRANSLATED_REFERENCE = ("scratch", "chinese", "translation", "quantization", "explain")
# pages whose default-run Python blocks read shipped data sets (zeroforge.datasets)
READS_DATASETS = {"getting-started.md"}


@dataclass
class Block:
    page: Path
    lang: str
    code: str
    mark: str | None


def blocks(page: Path) -> list[Block]:
    found = [Block(page, m["lang"], m["code"], m["mark"]) for m in BLOCK.finditer(page.read_text("utf-8"))]
    for block in found:
        assert block.mark in (None, "slow", "skip"), f"{page.name}: unknown doctest mark {block.mark!r}"
    return found


def environment() -> dict[str, str]:
    """The test's interpreter and its scripts (``zeroforge``) first on PATH, the worktree's sources importable."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.setdefault("ZEROFORGE_CACHE", str(Path.home() / ".cache" / "zeroforge"))
    return env


def run_python(page: Path, codes: list[str], timeout: int) -> None:
    if not codes:
        pytest.skip(f"{page.name} has no Python blocks of this kind")
    script = "\n\n".join(codes)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, f"{page.name}: a Python block failed:\n{result.stderr[-3000:]}"


def run_shell(page: Path, code: str, timeout: int) -> None:
    result = subprocess.run(
        ["bash", "-e", "-c", code],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{page.name}: shell block failed:\n{code}\n{result.stderr[-3000:]}"


def page_id(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def page_params(mark: pytest.MarkDecorator | None = None) -> list:
    params = []
    for page in PAGES:
        marks = [pytest.mark.network] if page.name in READS_DATASETS else []
        params.append(pytest.param(page, id=page_id(page), marks=marks + ([mark] if mark else [])))
    return params


@pytest.mark.parametrize("page", page_params())
def test_python_blocks(page: Path) -> None:
    run_python(page, [b.code for b in blocks(page) if b.lang == "python" and b.mark is None], timeout=600)


@pytest.mark.parametrize("page", page_params())
def test_shell_blocks(page: Path) -> None:
    smoke_tested = {p.stem for p in (ROOT / "examples").glob("*.py")}
    commands = [b.code for b in blocks(page) if b.lang == "bash" and b.mark is None]
    for code in commands:
        for line in code.splitlines():
            quick = EXAMPLE_QUICK.match(line.split("#")[0].strip())
            if quick:  # run by tests/examples/test_examples.py
                assert quick[1] in smoke_tested, f"{page.name}: {line!r} names no example script"
            elif line.strip() and not line.lstrip().startswith("#"):
                run_shell(page, line, timeout=600)


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize("page", page_params())
def test_slow_blocks(page: Path) -> None:
    """``make docs-check``: the training commands and slow snippets, in page order."""
    slow = [b for b in blocks(page) if b.mark == "slow"]
    if not slow:
        pytest.skip(f"{page.name} has no slow blocks")
    for block in slow:
        if block.lang == "python":
            run_python(page, [block.code], timeout=3600)
        else:
            run_shell(page, block.code, timeout=3600)


@pytest.mark.parametrize(
    "page", [*PAGES, *(DOCS / f"{name}.md" for name in TRANSLATED_REFERENCE)], ids=page_id
)
def test_chinese_page_has_the_same_code(page: Path) -> None:
    """The Chinese twin runs the same code (its comments may be translated)."""
    twin = page.with_name(page.stem + ".zh.md")
    assert twin.exists(), f"{page_id(page)} has no Chinese translation {twin.name}"
    english = [(b.lang, _without_comments(b.code), b.mark) for b in blocks(page)]
    chinese = [(b.lang, _without_comments(b.code), b.mark) for b in blocks(twin)]
    assert chinese == english, f"{twin.name}: its code blocks differ from {page.name}'s"


def _without_comments(code: str) -> str:
    """The code a block runs: a translation may put its comments (``  # ...``) in its own language."""
    return "\n".join(re.sub(r"(^|\s+)#\s.*$", "", line).rstrip() for line in code.splitlines())


def test_site_builds_strictly_in_both_languages(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocs_static_i18n")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env={**environment(), "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for page in PAGES:
        rel = page.relative_to(DOCS).with_suffix("")
        path = Path() if rel.name == "index" else rel
        assert (site / path / "index.html").exists(), f"no English page for {page_id(page)}"
        assert (site / "zh" / path / "index.html").exists(), f"no Chinese page for {page_id(page)}"
    assert "快速上手" in (site / "zh" / "guide" / "getting-started" / "index.html").read_text("utf-8")
    shutil.rmtree(site)
