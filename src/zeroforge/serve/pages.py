"""The pages of the server: the playground (``/``), live plots of training runs (``/runs``), the static
files they load, and the JSON the plots read (``/api/runs``: the runs under ``--runs``; ``/api/runs/{name}``:
one run's metrics.csv as columns of numbers)."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse

from zeroforge.serve.protocol import ApiError

STATIC = resources.files("zeroforge.serve") / "static"
STATIC_FILES = frozenset({"app.js", "runs.js", "style.css"})


def page(name: str) -> FileResponse:
    with resources.as_file(STATIC / name) as path:
        return FileResponse(path)


def run_dirs(runs_root: Path | None) -> dict[str, Path]:
    """Every run under ``runs_root`` (a folder with a metrics.csv, or ``runs_root`` itself), by name."""
    if runs_root is None:
        raise ApiError(404, "this server was started without --runs", code="not_found")
    found = {p.parent.name: p.parent for p in runs_root.glob("*/metrics.csv")}
    if (runs_root / "metrics.csv").is_file():
        found[runs_root.name] = runs_root
    return dict(sorted(found.items()))


def metrics_columns(path: Path) -> dict[str, list[float | None]]:
    """A metrics.csv as one list per column; a cell that is not a number reads as None."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    columns: dict[str, list[float | None]] = {h: [] for h in header}
    for row in body:
        for h, value in zip(header, row):
            try:
                columns[h].append(float(value))
            except ValueError:
                columns[h].append(None)
    return columns


def add_pages(app: FastAPI, runs_root: Path | None) -> None:
    """Add the pages' routes to ``app``; ``runs_root`` is the folder of ``--runs`` (None: no run plots)."""

    @app.get("/")
    async def index() -> FileResponse:
        return page("index.html")

    @app.get("/runs")
    async def runs_page() -> FileResponse:
        return page("runs.html")

    @app.get("/static/{name}")
    async def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:  # only the shipped files, never a path
            raise ApiError(404, f"no static file {name!r}", code="not_found")
        return page(name)

    @app.get("/api/runs")
    async def list_runs() -> dict[str, Any]:
        return {"runs": list(run_dirs(runs_root))}

    @app.get("/api/runs/{name}")
    async def run_metrics(name: str) -> dict[str, Any]:
        dirs = run_dirs(runs_root)
        if name not in dirs:  # a name from the listing, never a path from the request
            raise ApiError(404, f"no run {name!r} under the runs directory", code="not_found")
        return {"run": name, "columns": metrics_columns(dirs[name] / "metrics.csv")}
