"""Shared fixtures: a tiny text corpus, and a private cache dir so tests never touch the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two pytest-xdist workers share two cores: one thread each avoids oversubscription (a tiny LSTM
# step measured 263 ms with 2 threads under load vs 13 ms with 1).
torch.set_num_threads(1)

TINY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
) * 40


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="session")
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Real assets are cached across tests (and runs) in the user's cache unless ZEROFORGE_CACHE is set."""
    os.environ.setdefault("ZEROFORGE_CACHE", str(Path.home() / ".cache" / "zeroforge"))
