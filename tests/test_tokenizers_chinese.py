"""Tokenizers on Chinese: CJK splitting as BERT-Chinese does it, lossless round trips, [UNK]s."""

from __future__ import annotations

import pytest

from zeroforge import datasets
from zeroforge.tokenizers import CharTokenizer, load_tokenizer, train_bpe, train_wordpiece
from zeroforge.tokenizers.cjk import count_words, han_share, is_cjk, is_wide, join_wide, split_cjk

# The first paragraphs of People's Daily, 1 January 1998 (the peoples-daily corpus), full-width
# digits, punctuation and quotes as printed, plus a line of mixed Chinese and English.
SAMPLE = (
    "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）\n"
    "中共中央总书记、国家主席江泽民\n"
    "（一九九七年十二月三十一日）\n"
    "１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年新年讲话《迈向充满希望的新世纪》。"
    "（新华社记者兰红光摄）\n"
    "同胞们、朋友们、女士们、先生们：\n"
    "在１９９８年来临之际，我十分高兴地通过中央人民广播电台、中国国际广播电台和中央电视台，"
    "向全国各族人民，向香港特别行政区同胞、澳门和台湾同胞、海外侨胞，向世界各国的朋友们，致以新年的祝贺！\n"
    "国民经济保持了“高增长、低通胀”的良好发展态势。农业生产再次获得好的收成，企业改革继续深化。\n"
    "这台电脑的性价比很高，京东送货也很快～\n"
)


def test_cjk_helpers_follow_bert_chinese() -> None:
    assert split_cjk("我爱NLP模型").split() == ["我", "爱", "NLP", "模", "型"]
    assert count_words("我爱 NLP 模型") == 5 and count_words("hello big world") == 3
    assert is_cjk("中") and is_cjk("\U00020000") and not is_cjk("あ") and not is_cjk("，")
    assert is_wide("，") and is_wide("“") and is_wide("１") and not is_wide("a") and not is_wide("é")
    # spaces next to a wide character go; spaces between Latin words stay
    assert join_wide("迈 向 新 世 纪 。 “ 好 ” , ok go") == "迈向新世纪。“好”, ok go"
    assert han_share("这个手机很好abc") == (6 / 9, False)
    assert han_share("これは本です")[1] and han_share("12345") == (0.0, False)


def test_char_round_trips_chinese() -> None:
    tok = CharTokenizer.from_text(SAMPLE)
    assert tok.decode(tok.encode_corpus(SAMPLE)) == SAMPLE
    assert len(tok.encode("新世纪")) == 3


def test_byte_level_bpe_splits_cjk_characters_and_round_trips() -> None:
    tok = train_bpe(SAMPLE * 20, vocab_size=600)
    ids = tok.encode(SAMPLE)
    assert tok.decode(ids) == SAMPLE
    pieces = [tok.tokenizer.id_to_token(i) for i in ids]
    # GPT-2's byte alphabet shows each UTF-8 byte as one character: a CJK ideograph is 3 bytes, so a
    # token spanning two of them would be >= 4 byte characters made only of CJK bytes
    cjk_tokens = [tok.decode([i]) for i in ids if is_cjk(tok.decode([i])[:1])]
    assert cjk_tokens and all(len(t) == 1 for t in cjk_tokens)
    assert len(ids) < len(SAMPLE.encode("utf-8"))  # merges happened (whole characters, digit runs)
    assert any(len(p) > 1 for p in pieces)
    # without the split a run of Chinese is one GPT-2 word and merges span characters
    merged = train_bpe(SAMPLE * 20, vocab_size=600, split_cjk=False)
    assert any(sum(map(is_cjk, merged.decode([i]))) >= 2 for i in merged.encode(SAMPLE))
    assert merged.decode(merged.encode(SAMPLE)) == SAMPLE


def test_bpe_split_survives_save_and_load(tmp_path) -> None:
    tok = train_bpe(SAMPLE * 20, vocab_size=600)
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(SAMPLE) == tok.encode(SAMPLE)


def test_wordpiece_cased_round_trips_chinese_lines() -> None:
    tok = train_wordpiece(SAMPLE * 5, vocab_size=800, lowercase=False)
    for line in SAMPLE.splitlines():
        ids = tok.encode(line)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == line
    # every CJK character is its own token, as in BERT-Chinese
    assert [tok.decode([i]) for i in tok.encode("新世纪")] == ["新", "世", "纪"]


def test_wordpiece_unknown_characters_become_unk(tmp_path) -> None:
    tok = train_wordpiece(SAMPLE * 5, vocab_size=800, lowercase=True)
    ids = tok.encode("新世纪的鳄鱼")  # 鳄鱼 (crocodile) is not in the sample
    assert ids.count(tok.unk_id) == 2
    assert tok.decode(ids) == "新世纪的[UNK] [UNK]"  # [UNK] is not wide: it keeps its spaces
    tok.save(tmp_path)
    assert load_tokenizer(tmp_path).decode(ids) == "新世纪的[UNK] [UNK]"


@pytest.mark.network
def test_every_tokenizer_round_trips_the_peoples_daily_corpus() -> None:
    text = datasets.load_text("peoples-daily")
    char = CharTokenizer.from_text(text)
    assert char.decode(char.encode_corpus(text)) == text
    bpe = train_bpe(text, vocab_size=6000)
    assert bpe.decode(bpe.encode_corpus(text)) == text
    wordpiece = train_wordpiece(text, vocab_size=6000, lowercase=False)
    lines = text.splitlines()
    decoded = [wordpiece.decode(ids) for ids in wordpiece.encode_batch(lines)]
    assert decoded == lines
