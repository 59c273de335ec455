"""FLAN-style instruction data: held-out phrasings and examples never seen in training, balanced
classes, determinism; answer parsing; instruction accuracy scored in the rows' order."""

from __future__ import annotations

import pytest

from zeroforge.data.instructions import TASKS, build_instructions
from zeroforge.errors import ConfigError
from zeroforge.eval.instructions import instruction_accuracy, parse_answer


@pytest.fixture(scope="module")
def rows():
    return build_instructions(["sms-spam", "bbc-news"], {"train": 60, "val": 10, "test": 30}, seed=0)


def _template_of(row, task):
    for kind in ("train", "held_out"):
        for template in getattr(task, kind):
            head = template.split("{")[0]
            if head and row["instruction"].startswith(head):
                return kind
            tail = template.split("}")[-1]
            if not head and tail and row["instruction"].endswith(tail):
                return kind
    return None


@pytest.mark.network
def test_held_out_phrasings_and_examples_are_never_trained_on(rows):
    assert [len(rows[k]) for k in ("train", "val", "test")] == [120, 20, 60]
    for split, kind in (("train", "train"), ("val", "held_out"), ("test", "held_out")):
        for row in rows[split]:
            assert _template_of(row, TASKS[row["task"]]) == kind, row["instruction"][:80]
    train_sources = {r["source"] for r in rows["train"]}
    assert not train_sources & {r["source"] for r in rows["test"]}
    assert not train_sources & {r["source"] for r in rows["val"]}
    every_train_template = {
        (r["task"], t)
        for r in rows["train"]
        for t in TASKS[r["task"]].train
        if r["instruction"].startswith(t.split("{")[0])
    }
    assert len(every_train_template) >= 6  # several phrasings per task are used


@pytest.mark.network
def test_rows_are_balanced_deterministic_and_shaped_for_sft(rows):
    spam = [r for r in rows["test"] if r["task"] == "sms-spam"]
    assert sorted(r["output"] for r in spam) == ["ham"] * 15 + ["spam"] * 15
    news = [r["output"] for r in rows["test"] if r["task"] == "bbc-news"]
    assert {n: news.count(n) for n in set(news)} == dict.fromkeys(TASKS["bbc-news"].options(), 6)
    again = build_instructions(["sms-spam", "bbc-news"], {"train": 60, "val": 10, "test": 30}, seed=0)
    assert again == rows
    row = rows["test"][0]
    assert set(row) == {"instruction", "output", "task", "options", "source"}
    assert row["output"] in row["options"]
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        build_instructions(["nope"], {"train": 1})


@pytest.mark.network
def test_long_texts_are_cut_to_max_words(rows):
    news = [r for r in rows["train"] if r["task"] == "bbc-news"]
    assert all(len(r["instruction"].split()) < TASKS["bbc-news"].max_words + 40 for r in news)
    assert any(" ..." in r["instruction"] for r in news)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("spam", "spam"),
        ("Ham.", "ham"),
        ("This message is not spam.", "ham"),
        ("It's SPAM, not ham", "spam"),
        ("spammy", None),
        ("I cannot tell", None),
        ("Legitimate message", "ham"),
    ],
)
def test_parse_answer(reply, expected):
    assert parse_answer(reply, ["ham", "spam"], TASKS["sms-spam"].aliases) == expected


@pytest.mark.network
def test_instruction_accuracy_scores_replies_in_row_order(monkeypatch, rows):
    test_rows = rows["test"][:7]
    canned = {r["instruction"]: (r["output"] if i % 2 == 0 else "no idea") for i, r in enumerate(test_rows)}

    def fake_generate(model, tokenizer, prompts, **kwargs):
        return [next(v for k, v in canned.items() if k in p) for p in prompts]

    monkeypatch.setattr("zeroforge.generation.generate", fake_generate)

    class Tok:
        chat_template = None
        specials: dict = {}
        eos_token = ""

    result = instruction_accuracy(None, Tok(), test_rows, batch_size=3)
    assert result["n"] == 7 and result["unparsed"] == 3
    assert result["accuracy"] == pytest.approx(4 / 7)
    assert result["replies"] == [canned[r["instruction"]] for r in test_rows]
