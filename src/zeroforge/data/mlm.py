"""BERT pretraining data: sentence pairs for next-sentence prediction, tokens masked for the masked LM.

``prepare_mlm_nsp("kjv")`` writes ``<cache>/prepared/kjv-mlm_nsp-wordpiece-4096-128/``::

    train.npz  val.npz    sentence pairs: tokens ([CLS] A [SEP] B [SEP], flat), offsets, len_a,
                          next_label (0 = B follows A, 1 = B is random), doc_a, doc_b
    meta.json             documents per split, pair and token counts, truncations, settings
    tokenizer files       ``load_tokenizer(dir)``

Documents are a dataset's books or plays (``zeroforge.datasets.load_documents``) or the files of a
folder; a sentence is a non-empty line (blank lines are skipped; KJV verse numbers are dropped, as
"1:5" after "1:4" would give NSP away). Whole documents are held out for validation, so validation
text, its "next" segments and its "random" segments are never seen in training, and the WordPiece
vocabulary is trained on the training documents only.

Pairs follow google-research/bert ``create_instances_from_document``: sentences are gathered until
they fill the target length (``max_seq_len - 3``; 10% of documents get a shorter random target),
cut at a random sentence boundary into A and B; half the time B is replaced by a run of sentences
from a random *other* document (the unused sentences go back to the pool), then the longer side is
trimmed at a random end until the pair fits. One departure: a chunk of a single sentence (a
one-sentence document, or one sentence longer than the target) is cut inside the sentence for a true
pair instead of always becoming a random one, so the labels stay 50/50.

Masking is dynamic (RoBERTa), drawn afresh each time a pair is drawn: ``data.masking``.
"""

from __future__ import annotations

import array
import dataclasses
import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeroforge import datasets
from zeroforge.data.builders import DataContext, TrainingData, register_data_builder
from zeroforge.data.cache import META_FILE, prepared_folder
from zeroforge.data.masking import (
    MaskedPairBatches,
    MaskingSpec,
    fixed_batches,
    most_frequent_token_baseline,
)
from zeroforge.data.text import PretrainData, prepared_dir_for, pretrain_objective_data, token_dtype
from zeroforge.errors import ConfigError, DataError
from zeroforge.io import atomic_write_json
from zeroforge.tokenizers import WordPieceTokenizer, load_tokenizer, load_wordpiece, train_wordpiece

SPLITS = ("train", "val")
PREPARE_SEED = 12345  # create_pretraining_data.py's default random_seed
SHORT_SEQ_PROB = 0.1  # BERT: fraction of documents whose pairs target a shorter random length
FORMAT_VERSION = 2  # 2: one pair generator per split (validation pairs no longer depend on dupe_factor)

Sentences = list[list[int]]  # one document: its sentences as token ids


# ----------------------------------------------------------------------------- documents -> sentences

_VERSE_NUMBER = re.compile(r"^\d+:\d+\s+")
# A review's sentences: cut after sentence-final punctuation (full- or half-width) and line breaks.
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…～~])|\n")
TRAIN_SPLIT_SUFFIX = ":train"
TableSplit = tuple[Sequence[float], int]  # (train/val/test fractions, seed) of a labelled table's split
DEFAULT_TABLE_SPLIT: TableSplit = ((0.8, 0.1, 0.1), 0)  # what a fine-tuning recipe's data: makes by default


def labelled_train_sentences(
    source: str, table_split: TableSplit = DEFAULT_TABLE_SPLIT
) -> list[tuple[str, list[str]]]:
    """``[(name, sentences)]`` for ``<labelled dataset>:train``: one document per text of the table's
    training split (``tables.load_splits``, the split fine-tuning makes with the same fractions and
    seed), cut into sentences after sentence-final punctuation. Labels are not read, and no
    validation or test text is included."""
    from zeroforge.data.tables import load_splits

    train = load_splits(source[: -len(TRAIN_SPLIT_SUFFIX)], *table_split)["train"]
    out = []
    for i, text in enumerate(train.texts):
        sentences = [s.strip() for s in _SENTENCE_END.split(text)]
        out.append((f"{source}:{i}", [s for s in sentences if s]))
    return out


def document_sentences(
    source: str, table_split: TableSplit = DEFAULT_TABLE_SPLIT
) -> list[tuple[str, list[str]]]:
    """``[(name, sentences)]``: each document's non-empty, stripped lines; for
    ``<labelled dataset>:train``, ``labelled_train_sentences`` with ``table_split``."""
    if source.endswith(TRAIN_SPLIT_SUFFIX):
        return labelled_train_sentences(source, table_split)
    clean = (lambda line: _VERSE_NUMBER.sub("", line)) if source == "kjv" else (lambda line: line)
    out = []
    for name, text in datasets.load_documents(source):
        lines = (clean(line.strip()).strip() for line in text.splitlines())
        out.append((name, [line for line in lines if line]))
    return out


def split_documents(
    n_docs: int, val_fraction: float, seed: int = PREPARE_SEED
) -> tuple[list[int], list[int]]:
    """Document indices ``(train, val)``: a seeded random ``val_fraction`` (at least 2) is validation.

    NSP's random segments must come from another document of the same split, so each needs two.
    """
    if n_docs < 4:
        raise DataError(
            f"mlm_nsp needs at least 4 non-empty documents (2 to train, 2 held out for validation, as NSP "
            f"draws random segments from other documents), got {n_docs}; give a folder of several .txt files"
        )
    n_val = min(max(2, round(n_docs * val_fraction)), n_docs - 2)
    order = np.random.default_rng(seed).permutation(n_docs)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


# ----------------------------------------------------------------------------- sentence pairs


@dataclass
class PairSet:
    """Sentence pairs in flat arrays; pair i is ``tokens[offsets[i]:offsets[i + 1]]``."""

    tokens: np.ndarray  # (total,) [CLS] A [SEP] B [SEP] of every pair, concatenated
    offsets: np.ndarray  # (n + 1,) int64
    len_a: np.ndarray  # (n,) int32, length of [CLS] A [SEP] (segment 0)
    next_label: np.ndarray  # (n,) int64: 0 = B follows A, 1 = B is random
    doc_a: np.ndarray  # (n,) int32 index of A's document in the split
    doc_b: np.ndarray  # (n,) int32 index of B's document

    def __len__(self) -> int:
        return len(self.len_a)

    def example(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def save(self, path: Path) -> None:
        np.savez(path, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> PairSet:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (OSError, KeyError, ValueError) as err:
            raise DataError(f"{path}: not a sentence-pair file ({err})") from None


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> bool:
    """BERT's truncate_seq_pair: trim the longer side, at a random end, until the pair fits."""
    trimmed = False
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()
        trimmed = True
    return trimmed


def create_pairs(
    documents: Sequence[Sentences],
    max_seq_len: int,
    cls_id: int,
    sep_id: int,
    rng: np.random.Generator,
    dupe_factor: int = 1,
    short_seq_prob: float = SHORT_SEQ_PROB,
    dtype: np.dtype | type = np.int64,
    where: str = "sentence pairs",
) -> tuple[PairSet, dict[str, int]]:
    """Sentence pairs from ``documents`` (each a list of tokenized sentences), BERT's recipe (see
    the module docstring), ``dupe_factor`` passes over the documents. Returns the pairs and counts:
    ``long_sentences`` (sentences longer than ``max_seq_len - 3`` tokens, which are cut to fit, with
    a warning naming ``where`` and the count) and ``truncated_pairs`` (pairs trimmed to fit)."""
    if max_seq_len < 5:
        raise ConfigError(f"max_seq_len: a pair needs >= 5 tokens ([CLS] a [SEP] b [SEP]), got {max_seq_len}")
    max_tokens = max_seq_len - 3
    docs = [d for d in documents if d]
    keep = [i for i, d in enumerate(documents) if d]
    if len(docs) < 2:
        raise DataError(f"sentence pairs need >= 2 non-empty documents (random segments), got {len(docs)}")
    tokens, offsets = array.array("q"), [0]
    len_a: list[int] = []
    labels: list[int] = []
    doc_a: list[int] = []
    doc_b: list[int] = []
    counts = {"long_sentences": sum(len(s) > max_tokens for d in docs for s in d), "truncated_pairs": 0}
    if counts["long_sentences"]:
        warnings.warn(
            f"{where}: {counts['long_sentences']} sentence(s) longer than max_seq_len - 3 = {max_tokens} "
            "tokens are truncated to fit a pair",
            stacklevel=2,
        )
    for _ in range(dupe_factor):
        for d, document in enumerate(docs):
            target = max_tokens
            if rng.random() < short_seq_prob:
                target = int(rng.integers(2, max_tokens + 1))
            chunk: Sentences = []
            length, i = 0, 0
            while i < len(document):
                chunk.append(document[i])
                length += len(document[i])
                if i == len(document) - 1 or length >= target:
                    a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
                    a = [t for s in chunk[:a_end] for t in s]
                    is_random = rng.random() < 0.5
                    other = d
                    if len(chunk) == 1 and not is_random:
                        if len(a) < 2:  # one token cannot be cut into A and B
                            is_random = True
                        else:  # cut the single sentence: B is its true continuation
                            cut = int(rng.integers(1, min(len(a), max_tokens)))
                            a, b = a[:cut], a[cut:]
                    if is_random:
                        other = int(rng.integers(len(docs) - 1))
                        other += other >= d  # uniform over the *other* documents
                        source = docs[other]
                        b = []
                        for sentence in source[int(rng.integers(len(source))) :]:
                            b.extend(sentence)
                            if len(b) >= max(target - len(a), 1):
                                break
                        i -= len(chunk) - a_end  # the unused sentences start the next chunk
                    elif len(chunk) >= 2:
                        b = [t for s in chunk[a_end:] for t in s]
                    counts["truncated_pairs"] += _truncate_pair(a, b, max_tokens, rng)
                    tokens.extend([cls_id, *a, sep_id, *b, sep_id])
                    offsets.append(len(tokens))
                    len_a.append(len(a) + 2)
                    labels.append(int(is_random))
                    doc_a.append(keep[d])
                    doc_b.append(keep[other])
                    chunk, length = [], 0
                i += 1
    pairs = PairSet(
        tokens=np.frombuffer(tokens, dtype=np.int64).astype(dtype),
        offsets=np.asarray(offsets, dtype=np.int64),
        len_a=np.asarray(len_a, dtype=np.int32),
        next_label=np.asarray(labels, dtype=np.int64),
        doc_a=np.asarray(doc_a, dtype=np.int32),
        doc_b=np.asarray(doc_b, dtype=np.int32),
    )
    return pairs, counts


# ----------------------------------------------------------------------------- prepare


def _tokenizer_spec(tokenizer: str, vocab_size: int, lowercase: bool) -> str:
    if tokenizer == "wordpiece":
        return f"wordpiece-{vocab_size}" + ("" if lowercase else "-cased")
    if Path(tokenizer).expanduser().exists():
        return "vocab-" + re.sub(r"[^\w.-]+", "_", Path(tokenizer).expanduser().resolve().parent.name or "x")
    raise ConfigError(
        f"data.tokenizer: mlm_nsp needs 'wordpiece' or a path to a vocab.txt, tokenizer.json or "
        f"tokenizer folder, got {tokenizer!r}"
    )


def prepared_mlm_dir_for(
    source: str,
    tokenizer: str = "wordpiece",
    vocab_size: int = 4096,
    lowercase: bool = True,
    max_seq_len: int = 128,
    extra_sources: Sequence[str] = (),
    nfkc: bool = False,
) -> Path:
    """Default folder: ``<cache>/prepared/<source>[+<extra>...]-mlm_nsp-<tokenizer>[-nfkc]-<max_seq_len>``."""
    stems = [prepared_dir_for(s, "char").name[: -len("-char")] for s in (source, *extra_sources)]
    spec = _tokenizer_spec(tokenizer, vocab_size, lowercase) + ("-nfkc" if nfkc else "")
    return (
        prepared_dir_for(source).parent / f"{'+'.join(stems).replace(':', '-')}-mlm_nsp-{spec}-{max_seq_len}"
    )


def _settings(
    source: str,
    tokenizer: str,
    vocab_size: int,
    lowercase: bool,
    max_seq_len: int,
    val_fraction: float,
    dupe_factor: int,
    extra_sources: Sequence[str] = (),
    nfkc: bool = False,
    table_split: TableSplit = DEFAULT_TABLE_SPLIT,
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "source": source,
        "tokenizer": tokenizer,
        "requested_vocab_size": vocab_size,
        "lowercase": lowercase,
        "max_seq_len": max_seq_len,
        "val_fraction": val_fraction,
        "dupe_factor": dupe_factor,
    }
    if extra_sources:  # absent otherwise, so folders prepared before the option are still reused
        settings["extra_sources"] = list(extra_sources)
        if any(s.endswith(TRAIN_SPLIT_SUFFIX) for s in extra_sources):
            settings["table_splits"], settings["table_seed"] = list(table_split[0]), table_split[1]
    if nfkc:
        settings["nfkc"] = True
    if tokenizer != "wordpiece":
        path = Path(tokenizer).expanduser().resolve()
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        settings["tokenizer_files"] = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    return settings


def _load_or_train_tokenizer(
    tokenizer: str, texts: list[str], vocab_size: int, lowercase: bool, progress: bool, nfkc: bool = False
) -> WordPieceTokenizer:
    if tokenizer == "wordpiece":
        tok = train_wordpiece(texts, vocab_size=vocab_size, lowercase=lowercase, progress=progress, nfkc=nfkc)
    else:
        path = Path(tokenizer).expanduser()
        tok = load_tokenizer(path) if path.is_dir() else load_wordpiece(path)
        if not isinstance(tok, WordPieceTokenizer):
            raise DataError(f"{path}: a {tok.kind} tokenizer; mlm_nsp needs a WordPiece vocabulary")
    tok.require("[CLS]", "[SEP]", "[MASK]", "[PAD]")
    return tok


def _extra_documents(source: str, table_split: TableSplit) -> list[tuple[str, list[str]]]:
    """``document_sentences`` of one of ``data.extra_sources``; its errors name the field."""
    from zeroforge.data.tables import NAMED

    try:
        return document_sentences(source, table_split)
    except DataError as err:
        hint = (
            f"; for a labelled table's training text write {source}{TRAIN_SPLIT_SUFFIX}"
            if source in NAMED
            else ""
        )
        raise DataError(f"data.extra_sources: {err}{hint}") from None


def _build(tmp: Path, fingerprint: dict[str, object], settings: dict[str, Any], progress: bool) -> None:
    source = settings["source"]
    named = document_sentences(source)
    nonempty = [(name, s) for name, s in named if s]
    train_idx, val_idx = split_documents(len(nonempty), settings["val_fraction"])
    splits = {"train": [nonempty[i] for i in train_idx], "val": [nonempty[i] for i in val_idx]}
    fractions, seed = DEFAULT_TABLE_SPLIT
    table_split = settings.get("table_splits", fractions), settings.get("table_seed", seed)
    extra = [
        (name, s)
        for extra in settings.get("extra_sources", [])
        for name, s in _extra_documents(extra, table_split)
        if s
    ]
    splits["train"] += extra
    train_text = [line for _, sentences in splits["train"] for line in sentences]
    tok = _load_or_train_tokenizer(
        settings["tokenizer"],
        train_text,
        settings["requested_vocab_size"],
        settings["lowercase"],
        progress,
        settings.get("nfkc", False),
    )
    assert tok.cls_id is not None and tok.sep_id is not None
    dtype = token_dtype(tok.vocab_size)
    meta: dict[str, Any] = {**settings, "vocab_size": tok.vocab_size, "dtype": dtype.name}
    meta["empty_documents"] = [name for name, s in named if not s]
    meta["extra_documents"] = len(extra)
    for number, (split, docs) in enumerate(splits.items()):
        documents = [[ids for ids in tok.encode_batch(sentences) if ids] for _, sentences in docs]
        dupes = settings["dupe_factor"] if split == "train" else 1
        # one generator per split: the held-out pairs do not change with the training settings
        rng = np.random.default_rng([PREPARE_SEED, number])
        pairs, counts = create_pairs(
            documents,
            settings["max_seq_len"],
            tok.cls_id,
            tok.sep_id,
            rng,
            dupes,
            dtype=dtype,
            where=f"{source} {split}",
        )
        if len(pairs) == 0:
            raise DataError(f"{source}: no {split} sentence pairs could be built")
        pairs.save(tmp / f"{split}.npz")
        meta[split] = {
            "documents": [name for name, _ in docs],
            "sentences": sum(len(d) for d in documents),
            "pairs": len(pairs),
            "tokens": int(pairs.tokens.size),
            "random_next_fraction": float(pairs.next_label.mean()),
            **counts,
        }
    meta["fingerprint"] = fingerprint
    tok.save(tmp)
    atomic_write_json(tmp / META_FILE, meta)


def prepare_mlm_nsp(
    input: str,
    out: str | os.PathLike[str] | None = None,
    tokenizer: str = "wordpiece",
    vocab_size: int = 4096,
    lowercase: bool = True,
    max_seq_len: int = 128,
    val_fraction: float = 0.1,
    dupe_factor: int = 5,
    progress: bool = True,
    reuse: bool = False,
    extra_sources: Sequence[str] = (),
    nfkc: bool = False,
    table_split: TableSplit = DEFAULT_TABLE_SPLIT,
) -> Path:
    """Build BERT sentence-pair data from a corpus's documents (see the module docstring).

    ``input``: a dataset name (``kjv`` by book, ``shakespeare`` by play) or a folder of .txt files
    (one document each). ``tokenizer``: ``wordpiece`` (trained on the training documents) or a path
    to a vocab.txt / tokenizer.json / tokenizer folder. Written atomically (temp folder + rename).
    ``extra_sources``: corpora (or ``<labelled dataset>:train``) whose documents join the training side
    only; ``table_split`` = ``(fractions, seed)`` of a ``:train`` table's split. ``nfkc``: a trained
    WordPiece normalises with NFKC first. ``reuse``: return a complete folder built with the same
    settings from the same source as is.
    """
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction: must be in (0, 1), got {val_fraction}")
    if dupe_factor < 1:
        raise ConfigError(f"dupe_factor: must be >= 1, got {dupe_factor}")
    if max_seq_len < 5:
        raise ConfigError(f"max_seq_len: a pair needs >= 5 tokens ([CLS] a [SEP] b [SEP]), got {max_seq_len}")
    source = str(input)
    _tokenizer_spec(tokenizer, vocab_size, lowercase)  # validates the tokenizer argument
    if nfkc and tokenizer != "wordpiece":
        raise ConfigError(
            "data.nfkc: applies to a trained WordPiece (data.tokenizer: wordpiece); "
            f"{tokenizer} keeps its own normaliser"
        )
    settings = _settings(
        source,
        tokenizer,
        vocab_size,
        lowercase,
        max_seq_len,
        val_fraction,
        dupe_factor,
        extra_sources,
        nfkc,
        table_split,
    )
    out_path = (
        Path(out).expanduser()
        if out
        else prepared_mlm_dir_for(source, tokenizer, vocab_size, lowercase, max_seq_len, extra_sources, nfkc)
    )
    return prepared_folder(
        out_path,
        settings,
        lambda tmp, fingerprint: _build(tmp, fingerprint, settings, progress),
        lambda d: all((d / f"{split}.npz").is_file() for split in SPLITS),
        reuse,
    )


def load_mlm_nsp(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, Any], WordPieceTokenizer, PairSet, PairSet]:
    """``(meta, tokenizer, train_pairs, val_pairs)`` of a prepared folder."""
    directory = Path(directory).expanduser()
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise DataError(
            f"{meta_path}: missing; run: zeroforge prepare --objective mlm_nsp --input SOURCE --out {directory}"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tok = load_tokenizer(directory)
    if not isinstance(tok, WordPieceTokenizer):
        raise DataError(f"{directory}: holds a {tok.kind} tokenizer, not WordPiece (not mlm_nsp data)")
    return meta, tok, PairSet.load(directory / "train.npz"), PairSet.load(directory / "val.npz")


# ----------------------------------------------------------------------------- the pretrain data builder


def build_mlm_nsp_data(
    data_args: Any,
    block_size: int,
    batch_size: int,
    eval_batch_count: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> PretrainData:
    """``mlm_nsp`` for ``pretrain``: pairs of at most ``block_size`` tokens, masked on the fly;
    validation = a fixed set of masked pairs from the held-out documents."""
    directory = prepare_mlm_nsp(
        data_args.source,
        out=data_args.prepared_dir,
        tokenizer=data_args.tokenizer,
        vocab_size=data_args.vocab_size,
        lowercase=data_args.lowercase,
        max_seq_len=block_size,
        val_fraction=data_args.val_fraction,
        dupe_factor=data_args.dupe_factor,
        progress=rank == 0,
        reuse=True,
        extra_sources=data_args.extra_sources,
        nfkc=data_args.nfkc,
        table_split=(data_args.splits, data_args.seed),
    )
    meta, tok, train_pairs, val_pairs = load_mlm_nsp(directory)
    spec = MaskingSpec.from_tokenizer(tok, data_args.mask_prob, data_args.whole_word_mask)
    train = MaskedPairBatches(train_pairs, spec, batch_size, seed, rank, world_size)
    val_spec = dataclasses.replace(spec, mask_prob=data_args.eval_mask_prob or data_args.mask_prob)
    val = fixed_batches(val_pairs, val_spec, batch_size, eval_batch_count)
    token, baseline = most_frequent_token_baseline(train_pairs, val, spec.special)
    meta["baseline"] = {"token": tok.tokenizer.id_to_token(token), "val_mlm_accuracy": baseline}
    description = (
        f"{directory} ({len(train_pairs)} train pairs from {len(meta['train']['documents'])} documents, "
        f"{len(val_pairs)} val pairs from {len(meta['val']['documents'])} held-out documents; "
        f"most-frequent-token MLM baseline {baseline:.4f} ({meta['baseline']['token']!r}))"
    )
    return PretrainData(train, val, tok, meta, description)


# ----------------------------------------------------------------------------- the recipe's data (objective mlm_nsp)


@register_data_builder("mlm_nsp")
def mlm_nsp_objective_data(recipe: Any, ctx: DataContext) -> TrainingData:
    """``data.objective: mlm_nsp``: ``build_mlm_nsp_data`` at the recipe's block size, batch size and seed."""
    return pretrain_objective_data(recipe, ctx, build_mlm_nsp_data)
