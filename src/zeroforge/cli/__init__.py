"""The ``zeroforge`` command: each subcommand is a thin front on a plain Python function.

    zeroforge prepare  --input shakespeare --tokenizer char
    zeroforge train    --config recipes/gpt-char-shakespeare.yaml train.max_minutes=2
    zeroforge train    --config recipes/lenet-mnist.yaml
    zeroforge generate runs/gpt-char-shakespeare --prompt "ROMEO:"
    zeroforge evaluate runs/gpt-char-shakespeare

Every subcommand is registered explicitly, with its arguments beside its handler, in one of four
modules that follow a model's path (``data``: clean, prepare; ``training``: train, pretrain, finetune,
demo, sweep, lr-find; ``use``: generate, chat, translate, embed, evaluate, explain, serve; ``weights``:
models, convert, quantize, export-gguf). The parser is built without importing torch (each handler
imports its implementation), so ``zeroforge --help`` is fast and lists every command even when one
command's module fails to import, which is then an error when that command runs.
Every path a command reads or writes is checked before it starts. Bad input (``ZeroforgeError``, or a
file the system refuses) prints one line, ``zeroforge CMD: error: ...``, and exits 2; anything else is a
bug and prints one line too, exit 1, with the traceback under ``--debug`` or ``ZEROFORGE_DEBUG=1``.
Nothing is left looking complete, and no existing file is changed by a command that fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import NoReturn

from zeroforge.cli import data, training, use, weights
from zeroforge.cli.common import Handler
from zeroforge.errors import ZeroforgeError

DEBUG_ENV = "ZEROFORGE_DEBUG"
"""Set to 1 (or pass ``--debug``) for the traceback behind an error."""

COMMAND_GROUPS = (data, training, use, weights)
"""In the order ``zeroforge --help`` lists them: the path from raw data to a served model."""


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error (``zeroforge CMD: error: ...``);
    subcommand parsers are made by the same class, so ``prog`` names the subcommand."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zeroforge", description="Develop and fine-tune large models from zero.")
    debug_help = f"print the traceback behind an error (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        # SUPPRESS: absent here, the top-level --debug's value stands
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        return p

    for group in COMMAND_GROUPS:
        group.register(add)
    return parser


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no message)"


def _os_error(err: OSError) -> str:
    """``PATH: Permission denied`` (and ``-> PATH2`` for a rename): what the system refused, and where."""
    where = "" if err.filename is None else f"{os.fsdecode(err.filename)}: "
    if err.filename2 is not None:
        where = f"{os.fsdecode(err.filename)} -> {os.fsdecode(err.filename2)}: "
    return where + (err.strerror or str(err))


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Bad input is one line on stderr and exit status 2; anything unexpected is
    one line and status 1, with the traceback only under ``--debug`` or ``ZEROFORGE_DEBUG=1``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug) or os.environ.get(DEBUG_ENV, "") not in ("", "0")

    def fail(message: str, status: int) -> int:
        if debug:
            traceback.print_exc()
        print(f"zeroforge {args.command}: error: {message}", file=sys.stderr)
        return status

    try:
        return int(args.func(args) or 0)
    except ZeroforgeError as err:
        return fail(_one_line(str(err)), 2)
    except BrokenPipeError:  # the reader went away (``zeroforge generate ... | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit does not fail a second time
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
    except ImportError as err:  # a broken install or a missing dependency: say which, in one line
        return fail(f"cannot import what it needs ({_one_line(str(err))})", 1)
    except OSError as err:  # the system refused a file (permissions, a full disk, a file for a folder)
        return fail(_os_error(err), 2)
    except KeyboardInterrupt:
        print(f"zeroforge {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug in zeroforge: still one line, unless the traceback is asked for
        hint = "" if debug else " (run with --debug for the traceback)"
        return fail(f"unexpected {type(err).__name__}: {_one_line(str(err))}{hint}", 1)
