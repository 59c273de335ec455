"""Bad input, class by class, through the ``zeroforge`` command as a user meets it.

The rule every case checks: a non-zero exit, exactly one line on stderr, ``zeroforge CMD: error: ...``
naming the file or field and what was expected, no traceback (only with ``--debug`` or
``ZEROFORGE_DEBUG=1``), and the folder the command ran in exactly as it was (every file byte for
byte, nothing added). Commands run in-process (``cli.main``); two subprocess tests show that nothing
else reaches a real stderr. Malformed tables (quoting, column counts, BOM, CRLF, empty and
header-only files, non-UTF-8 bytes) are covered reader by reader in ``tests/data/test_records.py``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import io
import os
import shutil
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from tiny_corpus import TINY_TEXT
from zeroforge.cli import main
from zeroforge.config import (
    SECTIONS,
    DataArgs,
    DistributedArgs,
    FinetuneArgs,
    InstructionArgs,
    TrainArgs,
)
from zeroforge.data.clean.config import CleanConfig, DedupArgs, LabelArgs, NormalizeArgs
from zeroforge.modules.lora import LoRAConfig
from zeroforge.registry import create_model, model_config

TINY = ["model.name=gpt-tiny", "train.max_steps=2", "train.batch_size=2", "train.block_size=8"]
QUIET = ["train.progress=false", "train.eval_batches=1"]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` -> its bytes (None for a folder)."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


def error_line(
    code: int, capsys: pytest.CaptureFixture[str], command: str, printed_nothing: bool = False
) -> str:
    """The one stderr line of a failed command, after checking the rule's form (and, with
    ``printed_nothing``, that nothing reached stdout first)."""
    out, err = capsys.readouterr()
    assert not (printed_nothing and out), out
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"zeroforge {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step gpt-tiny run (character tokenizer), shared by the module's tests."""
    root = tmp_path_factory.mktemp("tiny-run")
    corpus = root / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    overrides = [
        f"data.source={corpus}",
        f"data.prepared_dir={root / 'prepared'}",
        f"train.out_dir={root / 'run'}",
    ]
    assert main(["pretrain", *TINY, *QUIET, *overrides]) == 0
    return root / "run"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_run: Path) -> Path:
    """The folder a command runs in: a file, a folder with a file in it, a CSV, a copy of the run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEROFORGE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "keep.txt").write_text("mine\n")
    (tmp_path / "rep" / "o.csv.report.json").mkdir(parents=True)
    (tmp_path / "t.csv").write_text("text,label\nAll,0\nSpeak,1\nFirst,0\nResolved,1\n")
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
    return tmp_path


# ----------------------------------------------------------------------------- path arguments
# (command line, what the one line must say). Kinds: missing, a file where a folder is expected, a
# folder where a file is expected, a path that cannot be created (it lies under a file), and paths
# that are the command's own input.
SRC = ["data.source=tiny.txt", "data.prepared_dir=prepared", *QUIET]
FT = ["model.pretrained=run", "data.source=t.csv", *QUIET]
PATH_CASES = {
    # prepare
    "prepare --input missing": (["prepare", "--input", "nope.txt"], "nope.txt: no such file or dataset"),
    "prepare --out a file": (["prepare", "--input", "tiny.txt", "--out", "afile"], "--out: afile is a file, expected a folder"),
    "prepare --out under a file": (["prepare", "--input", "tiny.txt", "--out", "afile/x"], "--out: cannot create afile/x: afile is a file"),
    "prepare --out a folder of other files": (["prepare", "--input", "tiny.txt", "--out", "adir"], "--out: adir holds other files and is not a prepared data folder"),
    "pretrain data.prepared_dir a folder of other files": (["pretrain", *TINY, *SRC, "data.prepared_dir=adir"], "data.prepared_dir: adir holds other files"),
    "prepare --config missing": (["prepare", "--config", "nope.yaml"], "nope.yaml: recipe file not found"),
    "prepare --config a folder": (["prepare", "--config", "adir"], "--config: adir is a directory, expected a file"),
    # train / pretrain / finetune: the recipe file and the recipe's paths
    "train --config a folder": (["train", "--config", "adir"], "--config: adir is a directory, expected a file"),
    "pretrain --config a folder": (["pretrain", "--config", "adir"], "--config: adir is a directory, expected a file"),
    "finetune --config a folder": (["finetune", "--config", "adir"], "--config: adir is a directory, expected a file"),
    "pretrain --config missing": (["pretrain", "--config", "nope.yaml"], "nope.yaml: recipe file not found"),
    "pretrain data.source missing": (["pretrain", *TINY, *SRC, "data.source=nope.txt"], "nope.txt: no such file or dataset"),
    "pretrain data.source missing, deep prepared_dir": (
        ["pretrain", *TINY, *SRC, "data.source=nope.txt", "data.prepared_dir=deep/a/b"],
        "nope.txt: no such file or dataset",
    ),
    "pretrain train.out_dir a file": (["pretrain", *TINY, *SRC, "train.out_dir=afile"], "train.out_dir: afile is a file, expected a folder"),
    "pretrain train.out_dir under a file": (["pretrain", *TINY, *SRC, "train.out_dir=afile/x"], "train.out_dir: cannot create afile/x: afile is a file"),
    "pretrain train.out_dir a finished run": (["pretrain", *TINY, *SRC, "train.out_dir=run"], "run: already holds a run; set train.resume=true"),
    "pretrain train.name a path": (["pretrain", *TINY, *SRC, "train.name=../x"], "train.name: '../x' is a name, not a path"),
    "finetune train.name a path": (["finetune", *FT, "train.name=a/b"], "train.name: 'a/b' is a name, not a path"),
    "train train.out_dir a file": (["train", *TINY, *SRC, "train.out_dir=afile"], "train.out_dir: afile is a file, expected a folder"),
    "pretrain data.prepared_dir a file": (["pretrain", *TINY, *SRC, "data.prepared_dir=afile"], "data.prepared_dir: afile is a file, expected a folder"),
    "pretrain data.prepared_dir under a file": (["pretrain", *TINY, *SRC, "data.prepared_dir=afile/x"], "data.prepared_dir: cannot create afile/x"),
    "finetune model.pretrained missing": (["finetune", *FT, "model.pretrained=nope"], "nope: no such run directory, model folder"),
    "finetune model.pretrained a plain file": (["finetune", *FT, "model.pretrained=afile"], "afile: not a GGUF file"),
    "finetune model.pretrained a folder without a model": (["finetune", *FT, "model.pretrained=adir"], "adir: neither config.json"),
    "finetune data.source missing": (["finetune", *FT, "data.source=nope.csv"], "nope.csv: no such file"),
    "finetune data.source a folder": (["finetune", *FT, "data.source=adir"], "data.format: cannot tell the format of adir"),
    "finetune train.out_dir a file": (["finetune", *FT, "train.out_dir=afile"], "train.out_dir: afile is a file, expected a folder"),
    "finetune train.out_dir a finished run": (["finetune", *FT, "train.out_dir=run"], "run: already holds a run"),
    "finetune model.tokenizer missing": (
        ["finetune", *FT, "model.pretrained=null", "model.name=gpt-tiny", "model.tokenizer=nope"],
        "nope: no such tokenizer folder",
    ),
    # the commands that read a model
    **{
        f"{cmd} MODEL {kind}": ([cmd, path, *extra], expected)
        for cmd, extra in [("generate", []), ("chat", []), ("embed", ["--text", "hi"]), ("evaluate", [])]
        for kind, path, expected in [
            ("missing", "nope", "nope: no such run directory, model folder, GGUF file or named weights"),
            ("a plain file", "afile", "afile: not a GGUF file"),
            ("a folder without a model", "adir", "adir: neither config.json + model.safetensors"),
        ]
    },
    "evaluate --data missing": (["evaluate", "run", "--data", "nope"], "nope: no such file or dataset"),
    "evaluate --compare missing": (["evaluate", "--compare", "run", "nope"], "--compare: nope not found, expected a run directory"),
    "evaluate --compare a file": (["evaluate", "--compare", "run", "afile"], "--compare: afile is a file, expected a run directory"),
    # clean
    "clean INPUT missing": (["clean", "nope.csv", "--out", "o.csv"], "nope.csv: no such file"),
    "clean INPUT a folder": (["clean", "adir", "--out", "o.csv"], "adir: not a file"),
    "clean --out a folder": (["clean", "t.csv", "--out", "adir"], "--out: adir is a directory, expected a file path"),
    "clean --out under a file": (["clean", "t.csv", "--out", "afile/o.csv"], "--out: cannot create afile/o.csv: afile is a file"),
    "clean --out the input": (["clean", "t.csv", "--out", "t.csv"], "t.csv: is the input"),
    "clean --report a folder": (["clean", "t.csv", "--out", "o.csv", "--report", "adir"], "--report: adir is a directory"),
    "clean --report under a file": (["clean", "t.csv", "--out", "o.csv", "--report", "afile/r.json"], "--report: cannot create afile/r.json"),
    "clean default report a folder": (["clean", "t.csv", "--out", "rep/o.csv"], "--report (default OUT.report.json): rep/o.csv.report.json is a directory"),
    "clean --report the input": (["clean", "t.csv", "--out", "o.csv", "--report", "t.csv"], "t.csv: is the input"),
    "clean --config missing": (["clean", "t.csv", "--out", "o.csv", "--config", "nope.yaml"], "nope.yaml: clean config file not found"),
    "clean --config a folder": (["clean", "t.csv", "--out", "o.csv", "--config", "adir"], "--config: adir is a directory, expected a file"),
    # convert
    "convert SRC missing": (["convert", "nope", "out"], "nope: no such run directory"),
    "convert SRC a plain file": (["convert", "afile", "out"], "afile: not a GGUF file"),
    "convert SRC a folder without a model": (["convert", "adir", "out"], "adir: neither config.json"),
    "convert DST a file": (["convert", "run", "afile"], "dst: afile is a file, expected a folder"),
    "convert DST under a file": (["convert", "run", "afile/sub"], "dst: cannot create afile/sub: afile is a file"),
    "convert DST a folder of other files": (["convert", "run", "adir"], "dst: adir holds other files and no config.json"),
    "convert DST the source": (["convert", "run", "run"], "dst: run is the source itself"),
}  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), list(PATH_CASES.values()), ids=list(PATH_CASES))
def test_bad_path_is_one_line_and_changes_nothing(
    ws: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    before = tree(ws)
    line = error_line(main(argv), capsys, argv[0], printed_nothing=True)
    assert expected in line, line
    assert tree(ws) == before


def _demo_dir_a_file(ws: Path) -> None:
    (ws / "runs").mkdir()
    (ws / "runs" / "demo").write_text("x")


def _runs_a_file(ws: Path) -> None:
    (ws / "runs").write_text("x")


def _demo_dir_someone_elses(ws: Path) -> None:
    (ws / "runs" / "demo").mkdir(parents=True)
    (ws / "runs" / "demo" / "notes.txt").write_text("x")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param(_demo_dir_a_file, "runs/demo is a file, expected a folder", id="a-file"),
        pytest.param(_runs_a_file, "cannot create runs/demo: runs is a file", id="under-a-file"),
        pytest.param(
            _demo_dir_someone_elses, "runs/demo: holds files that are not a demo run", id="not-a-run"
        ),
    ],
)
def test_demo_never_replaces_what_is_not_its_own_run(ws, capsys, setup, expected) -> None:
    setup(ws)
    before = tree(ws)
    line = error_line(main(["demo", "--minutes", "0.01"]), capsys, "demo", printed_nothing=True)
    assert expected in line, line
    assert tree(ws) == before


# ----------------------------------------------------------------------------- flag values
FLAG_CASES = {
    "generate --max-new-tokens -5": (["generate", "run", "--prompt", "A", "--max-new-tokens", "-5"], "--max-new-tokens: must be >= 0, got -5"),
    "generate --temperature -1": (["generate", "run", "--prompt", "A", "--temperature", "-1"], "--temperature: must be >= 0 (0 = greedy), got -1.0"),
    "generate --temperature nan": (["generate", "run", "--prompt", "A", "--temperature", "nan"], "--temperature: must be >= 0 (0 = greedy), got nan"),
    "generate --top-k 0": (["generate", "run", "--prompt", "A", "--top-k", "0"], "--top-k: must be >= 1, got 0"),
    "generate --top-p 2": (["generate", "run", "--prompt", "A", "--top-p", "2"], "--top-p: must be in (0, 1], got 2.0"),
    "chat --top-p 0": (["chat", "run", "--top-p", "0"], "--top-p: must be in (0, 1], got 0.0"),
    "chat --max-new-tokens -1": (["chat", "run", "--max-new-tokens", "-1"], "--max-new-tokens: must be >= 0, got -1"),
    "demo --minutes -1": (["demo", "--minutes", "-1"], "--minutes: must be > 0, got -1.0"),
    "demo --minutes inf": (["demo", "--minutes", "inf"], "--minutes: must be > 0, got inf"),
    "clean --chunk-size 0": (["clean", "t.csv", "--out", "o.csv", "--chunk-size", "0"], "chunk_size: must be >= 1, got 0"),
    "prepare --val-fraction 2": (["prepare", "--input", "tiny.txt", "--val-fraction", "2", "--out", "p"], "val_fraction: must be in (0, 1), got 2.0"),
    "prepare --vocab-size 1": (["prepare", "--input", "tiny.txt", "--tokenizer", "bpe", "--vocab-size", "1", "--out", "p"], "vocab_size: must be >= 2, got 1"),
}  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), list(FLAG_CASES.values()), ids=list(FLAG_CASES))
def test_bad_flag_value_is_one_line_before_any_output(ws, capsys, argv, expected) -> None:
    before = tree(ws)
    line = error_line(main(argv), capsys, argv[0], printed_nothing=True)
    assert expected in line, line
    assert tree(ws) == before


def test_text_on_stdin_that_is_not_utf8_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"fine\nab\xff\n"), encoding="utf-8"))
    line = error_line(main(["embed", "some-model"]), capsys, "embed")
    assert line.startswith("zeroforge embed: error: stdin: not valid utf-8 text (invalid start byte)"), line


# ----------------------------------------------------------------------------- unreadable, read-only
# Tests run as root, for whom permission bits do not block (CAP_DAC_OVERRIDE). The calling thread
# gives up that capability (and CAP_DAC_READ_SEARCH) for the command and takes it back after, so the
# bits apply as they would to any user; without root, they apply anyway.

_CAP_DAC = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (linux/capability.h)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@contextmanager
def permission_bits_apply() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
        if libc.capget(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capget")
    except (OSError, AttributeError) as err:
        pytest.skip(f"root, and cannot drop CAP_DAC_OVERRIDE here ({err})")
    saved = data[0].effective
    data[0].effective = saved & ~_CAP_DAC
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("root, and cannot drop CAP_DAC_OVERRIDE here")
    try:
        yield
    finally:
        data[0].effective = saved
        assert libc.capset(ctypes.byref(header), data) == 0


def _locked(path: Path) -> None:
    os.chmod(path, 0)


READ_ONLY_CASES = {
    "pretrain --config unreadable": (["pretrain", "--config", "r.yaml"], "--config: cannot read r.yaml (Permission denied)"),
    "pretrain data.source unreadable": (["pretrain", *TINY, *SRC, "data.source=locked.txt"], "data.source: cannot read locked.txt (Permission denied)"),
    "finetune data.source unreadable": (["finetune", *FT, "data.source=locked.csv"], "locked.csv: Permission denied"),
    "clean INPUT unreadable": (["clean", "locked.csv", "--out", "o.csv"], "locked.csv: Permission denied"),
    **{
        f"{cmd} MODEL unreadable": ([cmd, "run", *extra], "run/config.json: Permission denied")
        for cmd, extra in [("generate", []), ("chat", []), ("embed", ["--text", "hi"]), ("evaluate", [])]
    },
    "convert SRC unreadable": (["convert", "run", "out"], "run/config.json: Permission denied"),
    "pretrain train.out_dir read-only": (["pretrain", *TINY, *SRC, "train.out_dir=ro/run"], "train.out_dir: cannot create ro/run: ro is not writable"),
    "pretrain data.prepared_dir read-only": (["pretrain", *TINY, *SRC, "data.prepared_dir=ro/p"], "data.prepared_dir: cannot create ro/p: ro is not writable"),
    "finetune train.out_dir read-only": (["finetune", *FT, "train.out_dir=ro/run"], "train.out_dir: cannot create ro/run: ro is not writable"),
    "prepare --out read-only": (["prepare", "--input", "tiny.txt", "--out", "ro/p"], "--out: cannot create ro/p: ro is not writable"),
    "clean --out read-only": (["clean", "t.csv", "--out", "ro/o.csv"], "--out: cannot create ro/o.csv: ro is not writable"),
    "convert DST read-only": (["convert", "run", "ro/out"], "dst: cannot create ro/out: ro is not writable"),
}  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), list(READ_ONLY_CASES.values()), ids=list(READ_ONLY_CASES))
def test_unreadable_input_or_read_only_output_is_one_line(ws, capsys, argv, expected) -> None:
    (ws / "r.yaml").write_text("model: {name: gpt-tiny}\n")
    (ws / "locked.txt").write_text(TINY_TEXT)
    (ws / "locked.csv").write_text("text,label\na,0\nb,1\n")
    for name in ("r.yaml", "locked.txt", "locked.csv"):
        _locked(ws / name)
    if "run" in argv and "ro/out" not in argv:
        _locked(ws / "run" / "config.json")
    (ws / "ro").mkdir()
    os.chmod(ws / "ro", 0o555)
    before = tree(ws)
    with permission_bits_apply():
        code = main(argv)
    line = error_line(code, capsys, argv[0], printed_nothing=True)
    assert expected in line, line
    assert tree(ws) == before


# ----------------------------------------------------------------------------- recipe fields
# Every field of every section with a value of the wrong type or shape (a list, a mapping, a word
# where a number or a switch belongs) -> one line naming ``section.field``.

WRONG_VALUES = {"list": [1, 2], "mapping": {"a": 1}, "word": "abc"}
FIELD_SECTIONS = [
    ("data", DataArgs),
    ("data.instructions", InstructionArgs),
    ("train", TrainArgs),
    ("distributed", DistributedArgs),
    ("finetune", FinetuneArgs),
    ("finetune.lora", LoRAConfig),
    ("clean", CleanConfig),
    ("clean.normalize", NormalizeArgs),
    ("clean.dedup", DedupArgs),
    ("clean.labels", LabelArgs),
]


def _fits(value: object, hint: object) -> bool:
    """Whether ``value`` is of a kind the field takes (a word for a string, a list for a list)."""
    if typing.get_origin(hint) is typing.Literal:
        return value in typing.get_args(hint)
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = {typing.get_origin(h) or h for h in (typing.get_args(hint) if union else (hint,))}
    return any(isinstance(value, kind) and kind in kinds for kind in (str, list, dict))


def _field_cases() -> list[typing.Any]:
    cases = []
    for section, cls in FIELD_SECTIONS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for kind, value in WRONG_VALUES.items():
                if not _fits(value, hints[f.name]):
                    cases.append(pytest.param(f"{section}.{f.name}", value, id=f"{section}.{f.name}-{kind}"))
    config_hints = typing.get_type_hints(type(model_config("gpt-tiny")))  # the fields written inline
    model_fields = {"name": str, "dtype": typing.Literal["float32", "bfloat16"], **config_hints}
    for name, hint in model_fields.items():
        for kind, value in WRONG_VALUES.items():
            if not _fits(value, hint):
                cases.append(pytest.param(f"model.{name}", value, id=f"model.{name}-{kind}"))
    return cases


@pytest.mark.parametrize(("key", "value"), _field_cases())
def test_recipe_field_of_the_wrong_type_is_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key: str,
    value: object,
) -> None:
    import zeroforge.finetuning
    import zeroforge.pretraining

    def accepted(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{key}: {value!r} was accepted")

    monkeypatch.setattr(zeroforge.pretraining, "build_data", accepted)  # nothing runs if it slips through
    monkeypatch.setattr(zeroforge.finetuning, "load_base", accepted)
    recipe: dict[str, typing.Any] = {
        "model": {"name": "gpt-tiny"},
        "train": {"out_dir": str(tmp_path / "run")},
    }
    if key.startswith("finetune"):
        recipe = {"model": {"pretrained": "run"}, "finetune": {}, "train": recipe["train"]}
    section, *rest = key.split(".")
    node = recipe.setdefault(section, {})
    for part in rest[:-1]:
        node = node.setdefault(part, {})
    node[rest[-1]] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    line = error_line(main(["train", "--config", str(path)]), capsys, "train")
    assert line.startswith(f"zeroforge train: error: {path}: {key}"), line


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("value", [5, ["a", "b"], "text"], ids=["number", "list", "word"])
def test_recipe_section_that_is_not_a_mapping(tmp_path, capsys, section: str, value: object) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({section: value}))
    before = tree(tmp_path)
    line = error_line(main(["train", "--config", str(path)]), capsys, "train")
    assert line == f"zeroforge train: error: {path}: {section}: expected a mapping of fields, got {value!r}"
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- the guard


@pytest.fixture
def broken_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """``zeroforge models`` meets a bug: an exception no user input explains."""
    import zeroforge.registry

    def models_table() -> str:
        raise RuntimeError("registry table is corrupt\nsecond line")

    monkeypatch.setattr(zeroforge.registry, "models_table", models_table)


EXPECTED_BUG = "zeroforge models: error: unexpected RuntimeError: registry table is corrupt second line"


def test_an_unexpected_exception_is_one_line_with_the_debug_hint(broken_models, monkeypatch, capsys) -> None:
    monkeypatch.delenv("ZEROFORGE_DEBUG", raising=False)
    line = error_line(main(["models"]), capsys, "models")
    assert line == EXPECTED_BUG + " (run with --debug for the traceback)"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["--debug", "models"], None, id="--debug-before"),
        pytest.param(["models", "--debug"], None, id="--debug-after"),
        pytest.param(["models"], "1", id="ZEROFORGE_DEBUG=1"),
    ],
)
def test_debug_shows_the_traceback(broken_models, monkeypatch, capsys, argv, env) -> None:
    if env is None:
        monkeypatch.delenv("ZEROFORGE_DEBUG", raising=False)
    else:
        monkeypatch.setenv("ZEROFORGE_DEBUG", env)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in models_table" in err
    assert err.strip().splitlines()[-1] == EXPECTED_BUG


def test_an_os_error_names_the_file(monkeypatch, capsys) -> None:
    import zeroforge.registry

    def models_table() -> str:
        raise OSError(28, "No space left on device", "runs/x/model.safetensors")

    monkeypatch.setattr(zeroforge.registry, "models_table", models_table)
    line = error_line(main(["models"]), capsys, "models")
    assert line == "zeroforge models: error: runs/x/model.safetensors: No space left on device"


def _zeroforge(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Python ``code`` run in a fresh process in ``tmp_path``, without ZEROFORGE_DEBUG."""
    env = {k: v for k, v in os.environ.items() if k != "ZEROFORGE_DEBUG"}
    env["ZEROFORGE_CACHE"] = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=tmp_path
    )


def test_a_real_process_prints_one_line_for_a_bad_path_and_for_a_bug(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = _zeroforge(
        tmp_path,
        "from zeroforge.cli import main; raise SystemExit(main(['pretrain', 'train.out_dir=afile']))",
    )
    assert (proc.returncode, proc.stderr) == (
        2,
        "zeroforge pretrain: error: train.out_dir: afile is a file, expected a folder\n",
    )
    bug = """
        import zeroforge.registry
        def models_table():
            raise KeyError("gpt")
        zeroforge.registry.models_table = models_table
        from zeroforge.cli import main
        raise SystemExit(main(["models"]))
    """
    proc = _zeroforge(tmp_path, bug)
    assert proc.returncode == 1
    assert proc.stderr == (
        "zeroforge models: error: unexpected KeyError: 'gpt' (run with --debug for the traceback)\n"
    )


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``zeroforge ... | head -1``: the reader stops early; no error line, no "Exception ignored"."""
    many = """
        import zeroforge.registry
        zeroforge.registry.models_table = lambda: "\\n".join(f"model-{i}" for i in range(200_000))
        from zeroforge.cli import main
        raise SystemExit(main(["models"]))
    """
    env = {k: v for k, v in os.environ.items() if k != "ZEROFORGE_DEBUG"}
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(many)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert writer.stdout is not None and writer.stderr is not None
    assert writer.stdout.readline() == b"model-0\n"
    writer.stdout.close()
    assert writer.wait(timeout=120) == 141
    assert writer.stderr.read() == b""


# ----------------------------------------------------------------------------- the defects, one by one


def test_an_existing_run_is_refused_before_its_clean_step_rewrites_it(ws, capsys) -> None:
    """A finished run re-run without resume: refused before the recipe's clean: step writes into it."""
    recipe = ws / "r.yaml"
    recipe.write_text(
        "model: {name: gpt-tiny}\ndata: {source: tiny.txt, prepared_dir: prepared}\n"
        "train: {out_dir: c, max_steps: 2, batch_size: 2, block_size: 8, progress: false, eval_batches: 1}\n"
        "clean: {dedup: {exact: true}}\n"
    )
    assert main(["pretrain", "--config", str(recipe)]) == 0
    capsys.readouterr()
    (ws / "c" / "clean_report.json").write_text("the first run's report")
    before = tree(ws)
    line = error_line(main(["pretrain", "--config", str(recipe)]), capsys, "pretrain")
    assert "c: already holds a run" in line
    assert tree(ws) == before


def test_a_checkpoint_write_killed_midway_is_cleaned_up_on_the_next_start(ws, capsys) -> None:
    """kill -9 while a checkpoint is written (here: the process exits inside the write) leaves
    ``checkpoints/.tmp-*``; resuming removes it and continues from the last whole checkpoint."""
    overrides = [*TINY[:1], "train.max_steps=3", "train.batch_size=2", "train.block_size=8", *SRC]
    overrides += ["train.save_every=1", "train.out_dir=k"]
    killed = f"""
        import os, zeroforge.train.checkpoint as ckpt
        calls = []
        real = ckpt.save_file
        def save_file(*args, **kwargs):
            calls.append(1)
            real(*args, **kwargs)
            if len(calls) == 2:
                os._exit(9)  # the second checkpoint is half written
        ckpt.save_file = save_file
        from zeroforge.cli import main
        main(["pretrain", *{overrides!r}])
    """
    assert _zeroforge(ws, killed).returncode == 9
    checkpoints = ws / "k" / "checkpoints"
    assert [p.name for p in checkpoints.glob(".tmp-*")], "the kill left no partial checkpoint"
    assert main(["pretrain", *overrides, "train.resume=true"]) == 0
    assert "resumed from step 1" in capsys.readouterr().out
    assert not list(checkpoints.glob(".tmp-*")) and (ws / "k" / "COMPLETE").is_file()


def test_a_fine_tune_recipe_reading_a_csv_with_a_stray_quote(ws, capsys) -> None:
    (ws / "q.csv").write_text('text,label\nAll,0\n"Speak,1\n"First",0\nResolved,1\n')
    before = tree(ws)
    line = error_line(main(["finetune", *FT, "data.source=q.csv", "train.out_dir=f"]), capsys, "finetune")
    assert "q.csv:3: a quoted field opened on line 3 breaks on line 4" in line, line
    assert tree(ws) == before


def test_a_model_saved_without_a_tokenizer_loads_and_says_what_needs_one(ws, capsys) -> None:
    import zeroforge

    torch.manual_seed(0)
    model = create_model("gpt-tiny").eval()
    folder = zeroforge.save_pretrained(model, None, ws / "m")
    loaded, tokenizer = zeroforge.load(folder)
    ids = torch.arange(8)[None]
    assert tokenizer is None
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    for command in ("generate", "chat"):
        line = error_line(main([command, str(folder)]), capsys, command)
        assert (
            line
            == f"zeroforge {command}: error: {folder}: has no tokenizer (tokenizer.json); {command} needs one"
        )


def test_a_run_directory_without_its_tokenizer_is_named_as_a_run(ws, capsys) -> None:
    (ws / "run" / "zeroforge_tokenizer.json").unlink()
    line = error_line(main(["generate", "run"]), capsys, "generate")
    assert line == "zeroforge generate: error: run: has no tokenizer (tokenizer.json); generate needs one"


def test_generate_prints_nothing_before_an_unknown_character_fails(ws, capsys) -> None:
    code = main(["generate", "run", "--prompt", "All:", "--prompt", "\u00e9", "--max-new-tokens", "2"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "character '\u00e9' (U+00E9)" in captured.err and len(captured.err.strip().splitlines()) == 1
