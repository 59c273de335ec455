"""MkDocs hooks: the figures the benchmarks write (bench/results/**/*.png) become part of the site, and
a line break inside a Chinese paragraph does not become a space.

Pages link them by their path in the repository (``../bench/results/...`` from docs/,
``../../bench/results/...`` from docs/guide/), which works when reading the files on GitHub; the hook
adds each PNG to the site under ``bench/results/`` and points those links there.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parent


def on_files(files: Files, config) -> Files:  # noqa: ANN001 - MkDocs' hook signature
    for png in sorted((REPO / "bench" / "results").rglob("*.png")):
        rel = png.relative_to(REPO).as_posix()
        if files.get_file_from_path(rel) is None:
            files.append(File(rel, str(REPO), config["site_dir"], config["use_directory_urls"]))
    return files


# a link that climbs out of docs/ into bench/results/: "](../bench/results/" from docs/,
# "](../../bench/results/" from docs/guide/
BENCH_LINK = re.compile(r"\]\((?:\.\./)+bench/results/")


# Chinese is written without spaces, but HTML renders a source line break as one: a break between two
# CJK characters or punctuation marks is joined (only outside fenced code blocks)
CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
CJK_BREAK = re.compile(rf"(?<=[{CJK}])\n(?=[{CJK}])")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def join_cjk_lines(markdown: str) -> str:
    pieces, last = [], 0
    for fence in FENCE.finditer(markdown):
        pieces += [CJK_BREAK.sub("", markdown[last : fence.start()]), fence.group()]
        last = fence.end()
    return "".join([*pieces, CJK_BREAK.sub("", markdown[last:])])


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001
    depth = page.file.src_uri.count("/")  # a page in docs/guide/ is one folder below the docs root
    markdown = BENCH_LINK.sub("](" + "../" * depth + "bench/results/", markdown)
    return join_cjk_lines(markdown) if page.file.src_uri.endswith(".zh.md") else markdown
