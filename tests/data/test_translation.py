"""The en-es parallel corpus: cleaning, alignment, the whole-book split, the shared BPE and batches."""

from __future__ import annotations

import pytest
import torch

from zeroforge.data.translation import (
    VersePair,
    align,
    clean_verse,
    collate_pairs,
    encode_source,
    get_pair,
    split_by_book,
    train_translation_bpe,
)
from zeroforge.errors import ConfigError, DataError


def test_clean_verse_unglues_footnotes_and_drops_markup() -> None:
    raw = (
        '<w lemma="strong:H0430">God</w><note placement="foot"><reference type="annotateRef">1:1 </reference>'
        'The Hebrew word rendered “God”.</note><w lemma="strong:H1254">created</w> <w>the</w> <w>earth</w> .'
    )
    assert clean_verse(raw) == "God created the earth."
    assert clean_verse('<title type="x">A Psalm</title>¶ For  God <q>so</q> loved ,') == "For God so loved,"


def _verses(texts: dict[int, str], book: str = "Gen") -> dict[tuple[str, int, int], str]:
    return {(book, 1, v): t for v, t in texts.items()}


def test_align_drops_empty_merged_and_mismatched_verses() -> None:
    src = _verses(
        {1: "In the beginning", 2: "and the earth", 3: "", 4: "x", 5: "a very long english verse here"}
    )
    tgt = _verses({1: "En el principio", 2: "y la tierra", 3: "algo", 4: "y", 5: "corto"})
    pairs = align(src, tgt, "web")
    # 3: empty source; 2 and 4: neighbours of an empty verse (merged text); 5: length ratio > 2.5
    assert [(p.verse, p.src, p.tgt) for p in pairs] == [(1, "In the beginning", "En el principio")]


def _corpus() -> list[VersePair]:
    pairs = []
    for b, book in enumerate(["Gen", "Exod", "Lev", "Num", "Deut", "Josh", "Judg", "Ruth", "Mark", "John"]):
        for v in range(1, 20 + 10 * b):
            for source in ("web", "kjv"):
                pairs.append(VersePair(book, 1, v, source, f"{source} {book} {v}", f"es {book} {v}"))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_book_split_is_disjoint_by_whole_books(seed: int) -> None:
    pairs = _corpus()
    split = split_by_book(pairs, seed=seed, val_fraction=0.1, test_fraction=0.15, eval_source="web")
    books = {
        name: {p.book for p in part}
        for name, part in (("train", split.train), ("val", split.val), ("test", split.test))
    }
    assert split.val and split.test
    assert (
        not books["train"] & books["val"]
        and not books["train"] & books["test"]
        and not books["val"] & books["test"]
    )
    assert books["val"] == set(split.val_books) and books["test"] == set(split.test_books)
    assert {p.source for p in split.val + split.test} == {"web"}  # one reference per held-out verse
    # every pair of a held-out book is held out, and every other pair trains
    assert len(split.train) == sum(p.book not in books["val"] | books["test"] for p in pairs)
    assert (
        split_by_book(pairs, seed=seed, val_fraction=0.1, test_fraction=0.15).test_books == split.test_books
    )


def test_book_split_depends_on_the_seed() -> None:
    pairs = _corpus()
    assert len({tuple(split_by_book(pairs, seed=s, test_fraction=0.15).test_books) for s in range(6)}) > 1


def test_unknown_language_pair_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="unknown language pair 'en-xx' \\(known: en-es\\)"):
        get_pair("en-xx")


def test_shared_bpe_round_trips_both_languages() -> None:
    texts = ["In the beginning God created the heavens.", "EN el principio crió Dios los cielos."] * 20
    tok = train_translation_bpe(texts, vocab_size=300)
    assert (tok.pad_id, tok.eos_id) == (0, 1)
    for text in ("God created", "crió Dios á él"):
        assert tok.decode(tok.encode(text)).strip() == text
    ids = encode_source(tok, "God created", 64)
    assert ids[-1] == tok.eos_id
    with pytest.raises(DataError, match="line 3: empty source line"):
        encode_source(tok, "   ", 64, where="line 3")


def test_collate_pads_right_and_shifts_the_target() -> None:
    batch = collate_pairs([[5, 6, 1], [7, 1]], [[8, 9, 1], [4, 1]], pad_id=0, start_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 1], [7, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["decoder_input_ids"].tolist() == [[0, 8, 9], [0, 4, 0]]
    assert batch["labels"].tolist() == [[8, 9, 1], [4, 1, -100]]
    assert batch["labels"].dtype == torch.long


@pytest.mark.network
def test_real_corpus_split_holds_out_whole_books() -> None:
    from zeroforge.data.translation import load_parallel

    pairs = load_parallel("en-es")
    assert len(pairs) > 55_000
    glued = [p.src for p in pairs if p.source == "sword-text-web" and "Godcreated" in p.src]
    assert not glued
    split = split_by_book(pairs, seed=0, eval_source="sword-text-web")
    train_refs = {(p.book, p.chapter, p.verse) for p in split.train}
    held = {(p.book, p.chapter, p.verse) for p in split.val + split.test}
    assert not train_refs & held
    assert not {p.book for p in split.train} & set(split.val_books + split.test_books)
