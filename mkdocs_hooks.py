"""MkDocs hook: the figures the benchmarks write (bench/results/**/*.png) become part of the site.

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


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001
    depth = page.file.src_uri.count("/")  # a page in docs/guide/ is one folder below the docs root
    return BENCH_LINK.sub("](" + "../" * depth + "bench/results/", markdown)
