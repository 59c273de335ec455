"""What every command module shares: the ``add`` function it registers its subcommands with, and the
path checks and messages more than one command uses."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from zeroforge.io import check_input_file

Handler = Callable[[argparse.Namespace], int]


class AddCommand(Protocol):
    """``add(name, handler, help) -> the subcommand's parser``, for its arguments."""

    def __call__(self, name: str, func: Handler, help: str) -> argparse.ArgumentParser: ...


def check_config(path: str | None) -> None:
    if path is not None and Path(path).exists():
        check_input_file(path, "--config")


def print_run_dir(run_dir: Path) -> int:
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {run_dir}")
    return 0
