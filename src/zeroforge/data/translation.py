"""A verse-aligned parallel corpus (English -> Spanish) from the SWORD Bible modules Debian ships, its
book-level split, a shared BPE, and the batches an encoder-decoder trains on.

    pairs = load_parallel("en-es")                 # [VersePair(book, chapter, verse, source, src, tgt)]
    split = split_by_book(pairs, seed=0)           # whole books held out for validation and test

Sources (no hub): the Debian packages ``sword-text-web`` (World English Bible) and ``sword-text-kjv``
(King James) for English and ``sword-text-sparv`` (Reina-Valera 1909) for Spanish, fetched and
unpacked by ``zeroforge.data.debian`` and read with ``pysword``. To use installed modules instead
(``apt-get install sword-text-web ...`` puts them in /usr/share/sword), set ``$ZEROFORGE_SWORD_DIR``
to a folder holding ``mods.d/`` and ``modules/``.

Cleaning (``clean_verse``), applied to each module's raw OSIS markup:

- footnotes (``<note>...</note>``) become a space: the WEB module's tag-stripped text glues the
  words on either side of a note ("Godcreated", "only bornSon");
- section titles (``<title>...</title>``) are dropped: they are editors' headings, not verse text;
- every other tag is removed, pilcrows (``¶``) dropped, whitespace collapsed, no space before , ; : . ? !

Alignment is by reference (book, chapter, verse) over the 66 books both sides hold. A pair is dropped
when either side is empty, when a neighbouring verse on either side is empty (its text was merged
into this one by one translation: "verses 1-2"), or when the character lengths differ by more than
a factor of ``MAX_LENGTH_RATIO`` (versification differences). Training pairs use every English module
of the language pair; validation and test use the first (``eval_source``), one reference each.

The split (``split_by_book``) holds out whole books, so no held-out verse has its neighbours in
training: books are shuffled with ``seed`` and dealt to test, then validation, until each holds its
share of the verses (a book that would overshoot its share by more than half is skipped).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zeroforge.data.builders import DataContext, TrainingData, register_data_builder
from zeroforge.data.sampler import BatchPlan
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_text

if TYPE_CHECKING:
    from zeroforge.config import Recipe
    from zeroforge.tokenizers import PretrainedTokenizer

MAX_LENGTH_RATIO = 2.5
CLEANING_VERSION = 1  # bump when clean_verse changes, so cached corpora are rebuilt

# Debian package -> the SWORD module inside it
SWORD_MODULES = {
    "sword-text-web": "engWEB2015eb",
    "sword-text-kjv": "engKJV2006eb",
    "sword-text-sparv": "spaRV1909eb",
}


@dataclass(frozen=True)
class LanguagePair:
    sources: tuple[str, ...]
    """Debian packages of the source language; the first is the one validation and test read."""
    target: str

    @property
    def eval_source(self) -> str:
        return self.sources[0]


PAIRS = {"en-es": LanguagePair(("sword-text-web", "sword-text-kjv"), "sword-text-sparv")}
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"  # ids 0, 1, 2 of the shared BPE


def get_pair(name: str) -> LanguagePair:
    if name not in PAIRS:
        raise ConfigError(f"data.source: unknown language pair {name!r} (known: {', '.join(sorted(PAIRS))})")
    return PAIRS[name]


@dataclass(frozen=True)
class VersePair:
    book: str  # OSIS name: Gen, Exod, ..., Rev
    chapter: int
    verse: int
    source: str  # the Debian package the English side came from
    src: str
    tgt: str


# ----------------------------------------------------------------------------- reading and cleaning

_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_TITLE = re.compile(r"<title\b[^>]*>.*?</title>", re.S)
_TAG = re.compile(r"<[^>]+>")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:.?!])")


def clean_verse(raw: str) -> str:
    """One verse's OSIS markup -> plain text (module docstring)."""
    text = _NOTE.sub(" ", raw)
    text = _TITLE.sub(" ", text)
    text = _TAG.sub("", text).replace("¶", " ")
    text = " ".join(text.split())
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def sword_dir(package: str) -> Path:
    """The folder with ``mods.d/`` and ``modules/`` for a package: ``$ZEROFORGE_SWORD_DIR``, else the
    package unpacked into the cache."""
    given = os.environ.get("ZEROFORGE_SWORD_DIR")
    if given:
        path = Path(given).expanduser()
        if not (path / "mods.d").is_dir():
            raise DataError(f"$ZEROFORGE_SWORD_DIR: {path} has no mods.d/ folder (expected a SWORD folder)")
        return path
    from zeroforge.data.debian import deb_root

    return deb_root(package) / "usr" / "share" / "sword"


def read_module(package: str) -> dict[tuple[str, int, int], str]:
    """Every verse of a package's SWORD module, cleaned: (book, chapter, verse) -> text ('' if empty)."""
    try:
        from pysword.modules import SwordModules
    except ImportError:
        raise ConfigError(
            "reading SWORD modules needs pysword: pip install 'zeroforge[translation]'"
        ) from None
    folder, module = sword_dir(package), SWORD_MODULES[package]
    modules = SwordModules(str(folder))
    found = modules.parse_modules()
    if module not in found:
        raise DataError(f"{folder}: no SWORD module {module} (found: {', '.join(sorted(found)) or 'none'})")
    bible = modules.get_bible_from_module(module)
    # pysword decompresses a whole block per verse; consecutive verses share blocks
    bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    structure = bible.get_structure()
    verses: dict[tuple[str, int, int], str] = {}
    for testament, books in structure.get_books().items():
        for book in books:
            ((_, indices),) = structure.ref_to_indicies(books=[book.osis_name]).items()
            refs = [(c, v) for c, n in enumerate(book.chapter_lengths, 1) for v in range(1, n + 1)]
            for (chapter, verse), index in zip(refs, indices, strict=True):
                raw = bible._text_for_index(testament, index) or ""
                verses[(book.osis_name, chapter, verse)] = clean_verse(raw)
    return verses


def book_order(package: str) -> list[str]:
    """OSIS book names in canonical order (the target module's versification)."""
    from pysword.modules import SwordModules

    modules = SwordModules(str(sword_dir(package)))
    modules.parse_modules()
    books = modules.get_bible_from_module(SWORD_MODULES[package]).get_structure().get_books()
    return [b.osis_name for t in ("ot", "nt") for b in books.get(t, [])]


def align(
    source: dict[tuple[str, int, int], str], target: dict[tuple[str, int, int], str], source_name: str
) -> list[VersePair]:
    """Verse pairs by reference, with the drops of the module docstring."""
    pairs = []
    for ref, tgt in target.items():
        src = source.get(ref)
        if not src or not tgt:
            continue
        book, chapter, verse = ref
        neighbours = [(book, chapter, verse - 1), (book, chapter, verse + 1)]
        if any(side.get(n) == "" for n in neighbours for side in (source, target)):
            continue  # an empty neighbour: its text may be merged into this verse on one side
        if max(len(src), len(tgt)) > MAX_LENGTH_RATIO * min(len(src), len(tgt)):
            continue
        pairs.append(VersePair(book, chapter, verse, source_name, src, tgt))
    return pairs


def load_parallel(pair: str = "en-es", progress: bool = False) -> list[VersePair]:
    """Every aligned verse pair of ``pair``, for each of its source modules (cached as JSONL)."""
    from zeroforge.datasets import cache_dir

    spec = get_pair(pair)
    from zeroforge.data.debian import get_deb

    versions = "-".join(get_deb(p).version for p in (*spec.sources, spec.target))
    cached = cache_dir() / "files" / "parallel" / f"{pair}-v{CLEANING_VERSION}-{versions}.jsonl"
    if cached.is_file() and not os.environ.get("ZEROFORGE_SWORD_DIR"):
        return [VersePair(**json.loads(line)) for line in cached.read_text(encoding="utf-8").splitlines()]
    target = read_module(spec.target)
    pairs = [p for source in spec.sources for p in align(read_module(source), target, source)]
    if not pairs:
        raise DataError(f"{pair}: no aligned verse pairs (are the SWORD modules empty?)")
    if not os.environ.get("ZEROFORGE_SWORD_DIR"):
        lines = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs)
        atomic_write_text(cached, lines)
    return pairs


# ----------------------------------------------------------------------------- the book split


@dataclass
class BookSplit:
    train: list[VersePair]
    val: list[VersePair]
    test: list[VersePair]
    val_books: list[str]
    test_books: list[str]


def split_by_book(
    pairs: Sequence[VersePair],
    seed: int = 0,
    val_fraction: float = 0.03,
    test_fraction: float = 0.05,
    eval_source: str | None = None,
) -> BookSplit:
    """Hold out whole books (module docstring). ``eval_source`` keeps only that English module's
    pairs in validation and test (one reference per verse)."""
    sizes: dict[str, int] = {}
    for p in pairs:
        if eval_source is None or p.source == eval_source:
            sizes[p.book] = sizes.get(p.book, 0) + 1
    total = sum(sizes.values())
    books = sorted(sizes)
    random.Random(seed).shuffle(books)
    held: dict[str, list[str]] = {"test": [], "val": []}
    counts = {"test": 0, "val": 0}
    targets = {"test": test_fraction * total, "val": val_fraction * total}
    for book in books:
        for part in ("test", "val"):
            room = targets[part] - counts[part]
            if room > 0 and sizes[book] <= room + 0.5 * targets[part]:
                held[part].append(book)
                counts[part] += sizes[book]
                break
    test_books, val_books = set(held["test"]), set(held["val"])

    def keep(p: VersePair) -> bool:
        return eval_source is None or p.source == eval_source

    return BookSplit(
        train=[p for p in pairs if p.book not in test_books and p.book not in val_books],
        val=[p for p in pairs if p.book in val_books and keep(p)],
        test=[p for p in pairs if p.book in test_books and keep(p)],
        val_books=sorted(val_books),
        test_books=sorted(test_books),
    )


# ----------------------------------------------------------------------------- the shared BPE


def train_translation_bpe(texts: Iterable[str], vocab_size: int = 8000) -> PretrainedTokenizer:
    """One byte-level BPE for both languages (Sennrich et al. 2016), trained with HF ``tokenizers``;
    ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2. A shared vocabulary lets one embedding matrix serve
    the encoder, the decoder and the output layer (Press & Wolf 2017)."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HF

    from zeroforge.tokenizers import PretrainedTokenizer

    if vocab_size < 260:
        raise ConfigError(
            f"data.vocab_size: a byte-level BPE needs >= 260 (256 bytes + 3 specials), got {vocab_size}"
        )
    tok = HF(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(t, special=True) for t in (PAD, EOS, UNK)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return PretrainedTokenizer(tok, {"pad": PAD, "eos": EOS, "unk": UNK})


def encode_source(tokenizer: Any, text: str, max_length: int, where: str = "source") -> list[int]:
    """A source sentence -> ids ending in eos, cut to ``max_length``; an empty line is an error."""
    if not text.strip():
        raise DataError(f"{where}: empty source line (nothing to translate)")
    ids = tokenizer.encode(text.strip())[: max_length - 1]
    return [*ids, tokenizer.eos_id]


# ----------------------------------------------------------------------------- batches


def collate_pairs(
    src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], pad_id: int, start_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded encoder ids + mask, decoder inputs (start token, then the target shifted right)
    and labels (the target, -100 at padding)."""
    S, T = max(len(s) for s in src), max(len(t) for t in tgt)
    input_ids = torch.full((len(src), S), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(src), S), dtype=torch.long)
    decoder_input_ids = torch.full((len(tgt), T), pad_id, dtype=torch.long)
    labels = torch.full((len(tgt), T), -100, dtype=torch.long)
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        input_ids[i, : len(s)] = torch.tensor(s)
        attention_mask[i, : len(s)] = 1
        decoder_input_ids[i, : len(t)] = torch.tensor([start_id, *t[:-1]])
        labels[i, : len(t)] = torch.tensor(t)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "decoder_input_ids": decoder_input_ids,
        "labels": labels,
    }


class PairBatches:
    """Training batches of translation pairs: seeded, length-grouped epochs (``BatchPlan``), resumable."""

    def __init__(
        self,
        src: list[list[int]],
        tgt: list[list[int]],
        batch_size: int,
        pad_id: int,
        start_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.src, self.tgt, self.pad_id, self.start_id = src, tgt, pad_id, start_id
        lengths = [len(s) + len(t) for s, t in zip(src, tgt, strict=True)]
        self.plan = BatchPlan(lengths, batch_size, seed, rank, world_size, group_by_length=True)

    def next_batch(self) -> dict[str, torch.Tensor]:
        idx = self.plan.next_indices()
        return collate_pairs(
            [self.src[i] for i in idx], [self.tgt[i] for i in idx], self.pad_id, self.start_id
        )

    def state_dict(self) -> dict[str, Any]:
        return self.plan.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plan.load_state_dict(state)


def encode_pairs(
    tokenizer: Any, pairs: Sequence[VersePair], max_length: int
) -> tuple[list[list[int]], list[list[int]]]:
    eos = tokenizer.eos_id
    src = [[*ids[: max_length - 1], eos] for ids in tokenizer.encode_batch([p.src for p in pairs])]
    tgt = [[*ids[: max_length - 1], eos] for ids in tokenizer.encode_batch([p.tgt for p in pairs])]
    return src, tgt


def write_split(split: BookSplit, folder: Path) -> None:
    """The held-out verses as plain files beside the run (``test.en`` / ``test.es`` / ``test.ref``),
    so ``zeroforge evaluate`` and ``zeroforge translate --file`` read exactly them."""
    for name, rows in (("val", split.val), ("test", split.test)):
        atomic_write_text(folder / f"{name}.src", "".join(p.src + "\n" for p in rows))
        atomic_write_text(folder / f"{name}.tgt", "".join(p.tgt + "\n" for p in rows))
        atomic_write_text(folder / f"{name}.ref", "".join(f"{p.book} {p.chapter}:{p.verse}\n" for p in rows))
    meta = {"val_books": split.val_books, "test_books": split.test_books, "train_pairs": len(split.train)}
    atomic_write_text(folder / "split.json", json.dumps(meta, indent=1) + "\n")


@register_data_builder("translation")
def translation_data(recipe: Recipe, ctx: DataContext) -> TrainingData:
    """``data.objective: translation``: ``data.source`` names a language pair (``en-es``)."""
    data, args = recipe.data, recipe.train
    spec = get_pair(data.source)
    split = split_by_book(load_parallel(data.source), seed=data.seed, eval_source=spec.eval_source)
    if data.max_examples is not None:
        split.train = split.train[: data.max_examples]
    tokenizer = train_translation_bpe(
        [t for p in split.train for t in (p.src, p.tgt)], vocab_size=data.vocab_size
    )
    if ctx.run_dir is not None and ctx.rank == 0:
        write_split(split, Path(ctx.run_dir))
    src, tgt = encode_pairs(tokenizer, split.train, data.max_length)
    pad, eos = tokenizer.pad_id, tokenizer.eos_id
    assert pad is not None and eos is not None
    batches = PairBatches(
        src, tgt, args.batch_size, pad, pad, seed=data.seed, rank=ctx.rank, world_size=ctx.world_size
    )
    vsrc, vtgt = encode_pairs(tokenizer, split.val, data.max_length)
    step = data.eval_batch_size
    val = [collate_pairs(vsrc[i : i + step], vtgt[i : i + step], pad, pad) for i in range(0, len(vsrc), step)]
    n_tok = int(np.sum([len(s) + len(t) for s, t in zip(src, tgt, strict=True)]))
    description = (
        f"{data.source}: {len(split.train)} training pairs ({n_tok:,} tokens), {len(split.val)} validation "
        f"and {len(split.test)} test verses; held-out books val {', '.join(split.val_books)}; "
        f"test {', '.join(split.test_books)}"
    )
    fields = {
        "vocab_size": tokenizer.vocab_size,
        "pad_token_id": pad,
        "eos_token_id": eos,
        "decoder_start_token_id": pad,
    }
    return TrainingData(
        train=batches,
        val=val,
        description=description,
        tokenizer=tokenizer,
        model_fields=fields,
        steps_per_epoch=batches.plan.steps_per_epoch,
    )
