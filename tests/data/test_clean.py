"""``clean``: every rule on constructed cases, report counts, streaming, bad input, atomic output."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import statistics
from pathlib import Path

import pytest

from zeroforge.data.clean import CleanConfig, clean, clean_step, load_clean_config
from zeroforge.data.clean.dedup import shingle_hashes
from zeroforge.errors import ConfigError, DataError

# near-duplicate removal (on by default) needs the datasketch extra; the other rules do not
needs_datasketch = pytest.mark.skipif(
    importlib.util.find_spec("datasketch") is None, reason="datasketch not installed"
)

NO_NEAR = {"dedup": {"near": False}}


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def check_counts(report, out_rows: int) -> None:  # type: ignore[no-untyped-def]
    assert report.rows_out == out_rows
    assert report.rows_in == report.rows_out + sum(report.removed.values())


# ----------------------------------------------------------------------------- normalisation and exact duplicates


def test_exact_duplicates_after_normalisation(tmp_path: Path) -> None:
    src = write(
        tmp_path / "c.txt",
        "Hello  world\n\uff28ello world\nhello world\n\tHello world \u200b\nsomething else\n\n   \n\u200b\x07\n",
    )
    report = clean(src, tmp_path / "o.txt", NO_NEAR, progress=False)
    assert lines(tmp_path / "o.txt") == ["Hello world", "hello world", "something else"]
    assert report.removed["exact_duplicate"] == 2
    assert (
        report.removed["empty_text"] == 1
    )  # the invisible line; blank and whitespace-only lines are no rows
    assert [e["line"] for e in report.examples["exact_duplicate"]] == [2, 4]
    assert report.clusters["exact"][0] == {"kept_line": 1, "size": 3, "lines": [2, 4], "text": "Hello world"}
    check_counts(report, 3)

    report = clean(src, tmp_path / "o2.txt", {**NO_NEAR, "normalize": {"lowercase": True}}, progress=False)
    assert lines(tmp_path / "o2.txt") == ["hello world", "something else"]
    assert report.removed["exact_duplicate"] == 3


# ----------------------------------------------------------------------------- near duplicates


def _jaccard(a: str, b: str) -> float:
    (ha, _), (hb, _) = shingle_hashes([a.lower()], "char", 5), shingle_hashes([b.lower()], "char", 5)
    return len(set(ha.tolist()) & set(hb.tolist())) / len(set(ha.tolist()) | set(hb.tolist()))


@needs_datasketch
def test_near_duplicates_above_and_below_threshold(tmp_path: Path) -> None:
    a = "An absolutely gripping thriller with a clever plot and wonderful performances from the whole cast."
    above = a.replace("wonderful", "wonderfull")  # a typo
    below = "An absolutely gripping thriller, sadly ruined by a silly ending and wooden performances."
    other = "The soundtrack alone is worth the price of the ticket."
    assert _jaccard(a, above) >= 0.85 and _jaccard(a, below) < 0.5
    src = write(
        tmp_path / "n.jsonl",
        "".join(
            json.dumps({"text": t, "id": i}) + "\n"
            for i, t in enumerate([a, above, below, other, above.upper()])
        ),
    )
    report = clean(src, tmp_path / "o.jsonl", {"dedup": {"threshold": 0.8}}, progress=False)
    kept = [json.loads(line) for line in lines(tmp_path / "o.jsonl")]
    assert [row["id"] for row in kept] == [0, 2, 3]  # the upper-case copy is a near duplicate too
    assert report.removed["near_duplicate"] == 2
    assert report.clusters["near"][0]["kept_line"] == 1 and report.clusters["near"][0]["lines"] == [2, 5]
    check_counts(report, 3)

    # a threshold above the pair's similarity keeps both
    report = clean(src, tmp_path / "o2.jsonl", {"dedup": {"threshold": 0.99}}, progress=False)
    assert report.removed["near_duplicate"] == 1  # only the upper-case copy (similarity 1 after lowercasing)


# ----------------------------------------------------------------------------- missing values

TABLE = """name,age,city,score
ann,30,paris,1.5
bob,,london,
cid,40,,2.5
dee,NA,paris,4.0
eve,25,rome,N/A
fay,31,paris,3.0
"""


def test_missing_drop(tmp_path: Path) -> None:
    src = write(tmp_path / "t.csv", TABLE)
    report = clean(src, tmp_path / "o.csv", {**NO_NEAR, "missing": {"age": "drop"}}, progress=False)
    assert [r["name"] for r in read_csv(tmp_path / "o.csv")] == ["ann", "cid", "eve", "fay"]
    assert report.removed["missing_value"] == 2
    assert report.missing["age"] == {"missing": 2, "dropped": 2, "filled": 0, "kept": 0}
    # other missing cells are counted and kept
    assert report.missing["city"]["kept"] == 1 and report.missing["score"]["missing"] == 2
    check_counts(report, 4)

    report = clean(src, tmp_path / "o2.csv", {**NO_NEAR, "missing": {"*": "drop"}}, progress=False)
    assert [r["name"] for r in read_csv(tmp_path / "o2.csv")] == ["ann", "fay"]


@pytest.mark.parametrize(
    "strategy,column,reference",
    [
        ("mean", "age", statistics.mean([30, 40, 25, 31])),
        ("median", "age", statistics.median([30, 40, 25, 31])),
        ("mean", "score", statistics.mean([1.5, 2.5, 4.0, 3.0])),
        ("median", "score", statistics.median([1.5, 2.5, 4.0, 3.0])),
        ("mode", "city", statistics.mode(["paris", "london", "paris", "rome", "paris"])),
    ],
)
def test_missing_fill_statistics(tmp_path: Path, strategy: str, column: str, reference: object) -> None:
    src = write(tmp_path / "t.csv", TABLE)
    report = clean(src, tmp_path / "o.csv", {**NO_NEAR, "missing": {column: strategy}}, progress=False)
    assert report.fill_values[column] == pytest.approx(reference) if strategy != "mode" else reference
    rows = read_csv(tmp_path / "o.csv")
    assert len(rows) == 6
    filled = [r[column] for r in rows if r["name"] in {"bob", "cid", "dee", "eve"}]
    missing_names = {"age": {"bob", "dee"}, "score": {"bob", "eve"}, "city": {"cid"}}[column]
    for row in rows:
        if row["name"] in missing_names:
            value = row[column]
            assert (float(value) == pytest.approx(reference)) if strategy != "mode" else value == reference
    assert filled
    assert report.missing[column]["filled"] == len(missing_names)
    assert report.modified["filled"] == len(missing_names)


def test_missing_constant_and_jsonl_nulls(tmp_path: Path) -> None:
    rows = [
        {"text": "a", "label": "x", "n": 1},
        {"text": "b", "label": None, "n": None},
        {"text": "c", "n": 3},
    ]
    src = write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    config = {**NO_NEAR, "missing": {"label": {"constant": "unknown"}, "n": "mean"}}
    report = clean(src, tmp_path / "o.jsonl", config, progress=False)
    out = [json.loads(line) for line in lines(tmp_path / "o.jsonl")]
    assert [r["label"] for r in out] == ["x", "unknown", "unknown"]  # a missing key is missing too
    assert [r["n"] for r in out] == [1, 2.0, 3]  # JSON numbers stay numbers
    assert report.missing["label"] == {"missing": 2, "dropped": 0, "filled": 2, "kept": 0}


def test_mean_of_a_text_column_is_a_clear_error(tmp_path: Path) -> None:
    src = write(tmp_path / "t.csv", TABLE)
    with pytest.raises(
        DataError, match=r"t\.csv:2: column 'name' has 'ann', but missing\.name: mean needs numbers"
    ):
        clean(src, tmp_path / "o.csv", {**NO_NEAR, "missing": {"name": "mean"}}, progress=False)
    assert not (tmp_path / "o.csv").exists()


# ----------------------------------------------------------------------------- labels and lengths

LABELLED = """text,label
great film,pos
awful film,neg
a film,meh
no label here,
another great film,pos
"""


def test_label_validation_drop_and_keep(tmp_path: Path) -> None:
    src = write(tmp_path / "l.csv", LABELLED)
    labels = {"allowed": ["pos", "neg"]}
    report = clean(src, tmp_path / "o.csv", {**NO_NEAR, "labels": labels}, progress=False)
    assert [r["text"] for r in read_csv(tmp_path / "o.csv")] == [
        "great film",
        "awful film",
        "another great film",
    ]
    assert report.removed["invalid_label"] == 2
    assert [(e["line"], e["detail"]) for e in report.examples["invalid_label"]] == [
        (4, "label 'meh'"),
        (5, "no label"),
    ]
    assert report.missing["label"]["missing"] == 1
    check_counts(report, 3)

    report = clean(
        src, tmp_path / "o2.csv", {**NO_NEAR, "labels": {**labels, "invalid": "keep"}}, progress=False
    )
    assert len(read_csv(tmp_path / "o2.csv")) == 5
    assert report.flagged == {"invalid_label": 2} and report.removed["invalid_label"] == 0


def test_length_filters_chars_and_tokens(tmp_path: Path) -> None:
    texts = ["a", "two words", "exactly three words", "this one has five words", "x" * 40]
    src = write(tmp_path / "l.txt", "\n".join(texts) + "\n")
    report = clean(src, tmp_path / "o.txt", {**NO_NEAR, "min_chars": 2, "max_chars": 30}, progress=False)
    assert lines(tmp_path / "o.txt") == texts[1:4]
    assert report.removed["too_short"] == 1 and report.removed["too_long"] == 1
    report = clean(src, tmp_path / "o2.txt", {**NO_NEAR, "min_tokens": 2, "max_tokens": 3}, progress=False)
    assert lines(tmp_path / "o2.txt") == ["two words", "exactly three words"]
    assert report.removed["too_short"] == 2 and report.removed["too_long"] == 1
    assert report.examples["too_long"][0]["detail"] == "5 tokens > 3"


def test_language_filter_in_the_pipeline(tmp_path: Path) -> None:
    pytest.importorskip("py3langid")
    texts = [
        "This film was a wonderful surprise and the actors were excellent.",
        "Ce film était une merveilleuse surprise et les acteurs étaient excellents.",
    ]
    src = write(tmp_path / "l.txt", "\n".join(texts) + "\n")
    report = clean(src, tmp_path / "o.txt", {**NO_NEAR, "languages": ["en"]}, progress=False)
    assert lines(tmp_path / "o.txt") == texts[:1] and report.removed["language"] == 1


def test_spelling_in_the_pipeline_then_dedup_sees_the_fix(tmp_path: Path) -> None:
    pytest.importorskip("spellchecker")
    src = write(tmp_path / "s.txt", "the acting was great\nthe actng was great\n")
    report = clean(src, tmp_path / "o.txt", {**NO_NEAR, "spelling": True}, progress=False)
    assert lines(tmp_path / "o.txt") == ["the acting was great"]
    assert report.removed["exact_duplicate"] == 1  # after correction the rows are equal
    assert report.modified == {}  # the corrected row was the removed duplicate


# ----------------------------------------------------------------------------- report, streaming, formats


@needs_datasketch
def test_report_counts_equal_what_was_removed(tmp_path: Path) -> None:
    rows = ["text,label"] + [
        f"review number {i % 7} is {'good' if i % 2 else 'bad'},{['pos', 'neg', 'x'][i % 3]}"
        for i in range(60)
    ]
    rows += ['"broken,row', "too,many,fields", "only one field"]
    src = write(tmp_path / "r.csv", "\n".join(rows) + "\n")
    report = clean(
        src,
        tmp_path / "o.csv",
        {"labels": {"allowed": ["pos", "neg"]}, "min_tokens": 5},
        report_path=tmp_path / "rep.json",
        progress=False,
    )
    out = read_csv(tmp_path / "o.csv")
    check_counts(report, len(out))
    assert report.rows_in == 60 + 1  # the unterminated quote swallows the last lines into one malformed row
    assert report.removed["malformed"] == 1
    saved = json.loads((tmp_path / "rep.json").read_text())
    assert saved["removed"] == report.removed and saved["rows_out"] == len(out)
    assert "rows in:  61" in (tmp_path / "rep.txt").read_text()
    # the same rules by hand: label x is invalid, then the first of each text is kept
    valid = [r.split(",") for r in rows[1:61] if not r.endswith(",x")]
    expected = list(dict.fromkeys(text for text, _ in valid))
    assert [r["text"] for r in out] == expected
    assert report.removed["invalid_label"] == 20
    assert report.removed["exact_duplicate"] == len(valid) - len(expected)
    assert report.removed["near_duplicate"] == report.removed["too_short"] == 0


@needs_datasketch
def test_streaming_output_identical_for_any_chunk_size(tmp_path: Path) -> None:
    base = [
        f"the movie was {a} and the popcorn was {b}"
        for a in ("good", "bad", "fine", "long")
        for b in ("salty", "sweet", "cold")
    ]
    texts = []
    for i, t in enumerate(base * 3):
        texts.append(t if i % 5 else t.replace("the", "teh", 1))
    src = write(tmp_path / "s.txt", "\n".join(texts) + "\n")
    outputs, reports = [], []
    for chunk in (1, 3, 7, 1000):
        out = tmp_path / f"o{chunk}.txt"
        report = clean(src, out, {"dedup": {"threshold": 0.7}}, chunk_size=chunk, progress=False)
        outputs.append(out.read_bytes())
        reports.append((report.removed, report.clusters))
    assert all(o == outputs[0] for o in outputs)
    assert all(r == reports[0] for r in reports)
    assert reports[0][0]["near_duplicate"] > 0 and reports[0][0]["exact_duplicate"] > 0


def test_tsv_round_trip(tmp_path: Path) -> None:
    src = write(tmp_path / "t.tsv", "text\tlabel\nhello  there\t1\nhello there\t1\nbye\t0\n")
    clean(src, tmp_path / "o.tsv", NO_NEAR, progress=False)
    assert (tmp_path / "o.tsv").read_text() == "text\tlabel\nhello there\t1\nbye\t0\n"


# ----------------------------------------------------------------------------- bad input


def test_malformed_csv_rows_reported_with_line_numbers(tmp_path: Path) -> None:
    src = write(
        tmp_path / "m.csv", 'text,label\ngood row,1\nextra,field,here\n"multi\nline",0\nshort\nlast,1\n'
    )
    report = clean(src, tmp_path / "o.csv", NO_NEAR, progress=False)
    assert [r["text"] for r in read_csv(tmp_path / "o.csv")] == ["good row", "multi\nline", "last"]
    assert [(e["line"], e["detail"]) for e in report.examples["malformed"]] == [
        (3, "expected 2 fields, got 3"),
        (6, "expected 2 fields, got 1"),
    ]
    check_counts(report, 3)
    with pytest.raises(DataError, match=r"m\.csv:3: expected 2 fields, got 3"):
        clean(src, tmp_path / "o2.csv", {**NO_NEAR, "malformed": "error"}, progress=False)


def test_malformed_jsonl_lines(tmp_path: Path) -> None:
    src = write(tmp_path / "m.jsonl", '{"text": "ok"}\n{"text": \n[1, 2]\n{"text": "also ok"}\n')
    report = clean(src, tmp_path / "o.jsonl", NO_NEAR, progress=False)
    assert len(lines(tmp_path / "o.jsonl")) == 2
    assert [e["line"] for e in report.examples["malformed"]] == [2, 3]
    assert report.examples["malformed"][1]["detail"] == "expected a JSON object, got list"


def test_non_utf8_bytes_dropped_replaced_or_an_error(tmp_path: Path) -> None:
    src = write(tmp_path / "b.txt", b"fine line\nbad \xff byte\nanother fine line\n")
    report = clean(src, tmp_path / "o.txt", NO_NEAR, progress=False)
    assert lines(tmp_path / "o.txt") == ["fine line", "another fine line"]
    assert report.removed["bad_encoding"] == 1 and report.examples["bad_encoding"][0]["line"] == 2

    report = clean(src, tmp_path / "o2.txt", {**NO_NEAR, "encoding_errors": "replace"}, progress=False)
    assert lines(tmp_path / "o2.txt")[1] == "bad \ufffd byte"
    assert report.flagged == {"bad_encoding": 1}

    # one message for cleaning and training: the file, the line, the byte offset and the option to set
    with pytest.raises(DataError, match=r"b\.txt:2: not valid utf-8 at byte 14 \(0xff\); set encoding"):
        clean(src, tmp_path / "o3.txt", {**NO_NEAR, "encoding_errors": "error"}, progress=False)
    report = clean(src, tmp_path / "o4.txt", {**NO_NEAR, "encoding": "latin-1"}, progress=False)
    assert lines(tmp_path / "o4.txt")[1] == "bad \xff byte" and report.removed.get("bad_encoding", 0) == 0


def test_unknown_column_and_unknown_key_are_one_line_errors(tmp_path: Path) -> None:
    src = write(tmp_path / "t.csv", TABLE)
    with pytest.raises(ConfigError) as err:
        clean(src, tmp_path / "o.csv", {"missing": {"agee": "mean"}}, progress=False)
    assert str(err.value) == (
        f"clean.missing.agee: unknown column 'agee' in {src} (columns: name, age, city, score)"
    )
    with pytest.raises(ConfigError, match=r"^clean\.dedup\.treshold: unknown key"):
        clean(src, tmp_path / "o.csv", {"dedup": {"treshold": 0.9}}, progress=False)
    with pytest.raises(ConfigError, match=r"^clean\.missing\.age: expected one of drop, keep, mean"):
        load_clean_config({"missing": {"age": "average"}})
    with pytest.raises(ConfigError, match=r"^clean\.min_chars: needs a text column"):
        clean(src, tmp_path / "o.csv", {"min_chars": 3}, progress=False)


def test_config_from_yaml_with_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "clean:\n  dedup: {threshold: 0.7}\n  labels: {allowed: [0, 1]}\n")
    cfg = load_clean_config(path, ["dedup.near=false", "min_chars=3"])
    assert isinstance(cfg, CleanConfig)
    assert (cfg.dedup.threshold, cfg.dedup.near, cfg.min_chars, cfg.labels.allowed) == (
        0.7,
        False,
        3,
        ["0", "1"],
    )
    with pytest.raises(ConfigError, match=r"c\.yaml: clean\.dedup\.threshold: must be in \(0, 1\]"):
        load_clean_config(path, ["dedup.threshold=1.5"])


# ----------------------------------------------------------------------------- files


def test_output_is_atomic_and_input_untouched(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", "text,label\nfine,1\nfine too,0\n" + "x,1\n" * 5 + "bad,row,here\n")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = write(tmp_path / "o.csv", "previous content\n")
    with pytest.raises(DataError):
        clean(src, out, {**NO_NEAR, "malformed": "error"}, chunk_size=2, progress=False)
    assert out.read_text() == "previous content\n"  # the failed run left the old output alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "o.csv"]  # no temp file left
    clean(src, out, NO_NEAR, progress=False)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert (tmp_path / "o.csv.report.json").is_file() and (tmp_path / "o.csv.report.txt").is_file()
    with pytest.raises(DataError, match="must not be the input"):
        clean(src, src, progress=False)


@needs_datasketch
def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        clean(tmp_path / "nope.csv", tmp_path / "o.csv", progress=False)
    src = write(tmp_path / "data.xyz", "a\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        clean(src, tmp_path / "o.xyz", progress=False)
    assert clean(src, tmp_path / "o.xyz", {"format": "txt"}, progress=False).rows_out == 1


@needs_datasketch
def test_clean_step_writes_into_the_run_dir(tmp_path: Path) -> None:
    src = write(tmp_path / "reviews.csv", LABELLED)
    run_dir = tmp_path / "run"
    out = clean_step({"labels": {"allowed": ["pos", "neg"]}}, src, run_dir, progress=False)
    assert out == run_dir / "data" / "reviews.clean.csv"
    assert len(read_csv(out)) == 3
    report = json.loads((run_dir / "clean_report.json").read_text())
    assert report["removed"]["invalid_label"] == 2 and (run_dir / "clean_report.txt").is_file()


def test_cli_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zeroforge.cli import main

    src = write(tmp_path / "l.csv", LABELLED)
    cfg = write(tmp_path / "clean.yaml", "labels:\n  allowed: [pos, neg]\n")
    code = main(
        [
            "clean",
            str(src),
            "--out",
            str(tmp_path / "o.csv"),
            "--config",
            str(cfg),
            "--set",
            "dedup.near=false",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "rows out: 3" in printed and "invalid_label" in printed
    code = main(
        [
            "clean",
            str(src),
            "--out",
            str(tmp_path / "o.csv"),
            "--set",
            "labels.column=lab",
            "--set",
            "labels.allowed=[1]",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("zeroforge clean: error: clean.labels.column: unknown column 'lab'")
        and "\n" not in err
    )
