"""The one table reader (``data.records``) as its two users see it: ``zeroforge clean`` and training's
``read_rows``. One parametrised test per class of bad input; each runs through both users, so a
file means the same rows, and a bad file the same one-line message, to both."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from zeroforge.cli import main
from zeroforge.data.clean import clean
from zeroforge.data.records import RecordReader
from zeroforge.data.sft import read_jsonl
from zeroforge.data.tables import read_rows
from zeroforge.errors import DataError

NO_DEDUP = {"dedup": {"exact": False, "near": False}}
USERS = ("clean", "train")


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def rows_of(user: str, path: Path, **options: object) -> list[tuple[str, str]]:
    """(text, label) of every row ``user`` reads from ``path`` (clean: the rows it writes out)."""
    if user == "train":
        return [(text, str(label)) for _, text, label in read_rows(path, "text", "label", **options)]  # type: ignore[arg-type]
    out = path.with_name(path.stem + ".out" + path.suffix)
    clean(path, out, {**NO_DEDUP, **options}, progress=False)
    with open(out, encoding="utf-8", newline="") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


PLAIN = 'text,label\nfirst row,0\n"second, with a comma",1\n'


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(b"\xef\xbb\xbf" + PLAIN.encode(), id="bom"),
        pytest.param(PLAIN.replace("\n", "\r\n").encode(), id="crlf"),
        pytest.param(
            b"\xef\xbb\xbf" + PLAIN.replace("\n", "\r\n").encode() + b"\r\n\r\n", id="bom-crlf-blank"
        ),
    ],
)
def test_bom_crlf_and_blank_lines_read_as_the_plain_file(tmp_path: Path, user: str, variant: bytes) -> None:
    plain = rows_of(user, write(tmp_path / "plain.csv", PLAIN))
    assert plain == [("first row", "0"), ("second, with a comma", "1")]
    assert rows_of(user, write(tmp_path / "variant.csv", variant)) == plain


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.csv", "", r"e\.csv: empty file, expected a header row with the column names$"),
        ("e.csv", "\n\n", r"e\.csv: empty file, expected a header row"),
        ("e.jsonl", "\n", r"e\.jsonl: no JSON object found \(expected one object per line\)$"),
    ],
)
def test_empty_file_is_one_line_error(
    tmp_path: Path, user: str, name: str, content: str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        rows_of(user, write(tmp_path / name, content))


@pytest.mark.parametrize("user", USERS)
def test_header_only_file(tmp_path: Path, user: str) -> None:
    path = write(tmp_path / "h.csv", "text,label\n")
    if user == "train":  # nothing to train on
        with pytest.raises(DataError, match=rf"^{path}: no rows after the header$"):
            rows_of(user, path)
    else:  # a table with no rows cleans into a table with no rows
        assert rows_of(user, path) == []
        assert (tmp_path / "h.out.csv").read_text() == "text,label\n"


@pytest.mark.parametrize(
    ("user", "option", "hint"),
    [("train", {}, "set data.encoding"), ("clean", {"encoding_errors": "error"}, "set encoding")],
)
def test_non_utf8_bytes_name_file_line_offset_and_option(
    tmp_path: Path, user: str, option: dict[str, str], hint: str
) -> None:
    path = write(tmp_path / "l.csv", "text,label\nfine,0\ncaf\xe9,1\n".encode("latin-1"))
    # the offset of 0xe9 in the file: "text,label\n" (11 bytes) + "fine,0\n" (7) + "caf" (3)
    with pytest.raises(DataError, match=rf"^{path}:3: not valid utf-8 at byte 21 \(0xe9\); {hint}") as err:
        rows_of(user, path, **option)
    assert "\n" not in str(err.value)
    assert rows_of(user, path, encoding="latin-1") == [("fine", "0"), ("café", "1")]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(
    ("line", "expected"),
    [("too,many,fields", "expected 2 fields, got 3"), ("one field", "expected 2 fields, got 1")],
)
def test_wrong_number_of_columns_names_the_line(tmp_path: Path, user: str, line: str, expected: str) -> None:
    path = write(tmp_path / "c.csv", f"text,label\nfine,0\n{line}\nlast,1\n")
    if user == "train":
        with pytest.raises(DataError, match=rf"^{path}:3: {expected}$"):
            rows_of(user, path)
    else:
        assert rows_of(user, path) == [("fine", "0"), ("last", "1")]
        report = clean(path, tmp_path / "o.csv", NO_DEDUP, progress=False)
        assert [(e["line"], e["detail"]) for e in report.examples["malformed"]] == [(3, expected)]


STRAY_QUOTE = 'text,label\nfine,0\n"unclosed quote,1\n"fine again row",0\nlast,1\n'
BREAK = "a quoted field opened on line 3 breaks on line 4"


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(
    ("content", "rows", "line", "detail"),
    [
        pytest.param(
            STRAY_QUOTE,
            [("fine", "0"), ("fine again row", "0"), ("last", "1")],
            3,
            BREAK,
            id="stray-quote-then-a-quoted-row",
        ),
        pytest.param(
            'text,label\nfine,0\n"unclosed quote,1\nnot quoted,0\n"third",1\n',
            [("fine", "0"), ("not quoted", "0"), ("third", "1")],
            3,
            "a quoted field opened on line 3 breaks on line 5",
            id="stray-quote-two-lines-on",
        ),
        pytest.param(
            'text,label\nfine,0\n"unclosed quote,1\nnot quoted,0\n',
            [("fine", "0")],
            3,
            "a quoted field opened on line 3 never closes (it runs to the end of the file, line 4)",
            id="quote-never-closes",
        ),
    ],
)
def test_malformed_quoting_is_reported_and_good_rows_survive(
    tmp_path: Path, user: str, content: str, rows: list[tuple[str, str]], line: int, detail: str
) -> None:
    path = write(tmp_path / "q.csv", content)
    if user == "train":
        with pytest.raises(DataError, match=rf"^{path}:{line}: {detail[:40]}"):
            rows_of(user, path)
        return
    assert rows_of(user, path) == rows
    report = clean(path, tmp_path / "o.csv", NO_DEDUP, progress=False)
    assert [e["line"] for e in report.examples["malformed"]] == [line]
    assert report.examples["malformed"][0]["detail"].startswith(detail)
    assert report.rows_in == report.rows_out + 1


def test_legitimate_multi_line_fields_are_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv",
        'text,label\n"two\nlines",0\n"a ""quoted"" word",1\n"x"y,1\n"closed\nwith spaces"  ,1\nlast,0\n',
    )
    reader_rows = list(RecordReader(path, "csv"))
    assert [(r.fields, r.line, r.last_line) for r in reader_rows] == [
        ({"text": "two\nlines", "label": "0"}, 2, 3),
        ({"text": 'a "quoted" word', "label": "1"}, 4, 4),
        ({"text": "xy", "label": "1"}, 5, 5),  # an odd quote within one line: read as csv reads it
        ({"text": "closed\nwith spaces  ", "label": "1"}, 6, 7),  # as csv reads it
        ({"text": "last", "label": "0"}, 8, 8),
    ]


def test_sft_jsonl_goes_through_the_same_reader(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.jsonl", b'\xef\xbb\xbf{"instruction": "a", "output": "b"}\r\n\r\n{"x": \xff}\n'
    )
    with pytest.raises(DataError, match=rf"^{path}:3: not valid utf-8 at byte \d+ \(0xff\)"):
        read_jsonl(path)


def test_cli_clean_malformed_error_stops_and_keeps_the_old_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write(tmp_path / "q.csv", STRAY_QUOTE)
    out = write(tmp_path / "o.csv", "previous output\n")
    before = snapshot(tmp_path)
    code = main(["clean", str(src), "--out", str(out), "--set", "malformed=error", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "\n" not in err
    assert err.startswith(f"zeroforge clean: error: {src}:3: {BREAK}")
    assert snapshot(tmp_path) == before  # nothing written, the old output untouched


def test_cli_clean_out_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "t.csv", PLAIN)
    (tmp_path / "out").mkdir()
    write(tmp_path / "out" / "keep.txt", "mine")
    before = snapshot(tmp_path)
    code = main(["clean", str(src), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err == f"zeroforge clean: error: --out: {tmp_path / 'out'} is a directory, expected a file path"
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.csv"]
