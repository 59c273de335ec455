"""The tokenizers pretrained weights come with: Hugging Face folders and GGUF-embedded vocabularies.

``PretrainedTokenizer`` is an HF ``tokenizers`` pipeline plus what ``tokenizer_config.json`` adds to
it: the special tokens by role (bos/eos/pad/unk) and the chat template. It saves the same files back,
so ``transformers.AutoTokenizer.from_pretrained`` reads the ids and the template we used.

A GGUF file stores no ``tokenizer.json``: llama.cpp keeps the vocabulary, the BPE merges, each
token's type and a pre-tokenizer name as metadata. ``gguf_bpe`` rebuilds the byte-level BPE from them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zeroforge.errors import DataError
from zeroforge.io import atomic_write_json
from zeroforge.tokenizers import META_FILE, HFTokenizer, Tokenizer, load_tokenizer, load_wordpiece

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_ROLES = ("bos", "eos", "unk", "pad")


class PretrainedTokenizer(HFTokenizer):
    """A byte-level BPE (or any HF ``tokenizers`` model) with roles for its special tokens and a chat template.

    ``encode`` adds no special tokens (a prompt is text; a chat template writes its own). ``eos_id``
    ends generation.
    """

    def __init__(
        self,
        tokenizer: Any,
        specials: dict[str, str | None] | None = None,
        chat_template: str | None = None,
    ) -> None:
        specials = {role: token for role, token in (specials or {}).items() if token is not None}
        super().__init__(tokenizer, "hf", specials.get("eos"))
        self.specials = {r: t for r, t in specials.items() if tokenizer.token_to_id(t) is not None}
        self.chat_template = chat_template

    @property
    def bos_id(self) -> int | None:
        token = self.specials.get("bos")
        return None if token is None else self.tokenizer.token_to_id(token)

    def token(self, role: str) -> str | None:
        """The special token string for ``role`` (bos, eos, unk, pad), or None."""
        return self.specials.get(role)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """tokenizer.json (+ vocab.json/merges.txt for BPE) and a tokenizer_config.json with roles and template."""
        super().save(directory)
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
            "add_bos_token": False,
        }
        config.update({f"{role}_token": token for role, token in self.specials.items()})
        if self.chat_template:
            config["chat_template"] = self.chat_template
        atomic_write_json(Path(directory) / TOKENIZER_CONFIG, config)


# ----------------------------------------------------------------------------- HF folders


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


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
    """Roles from tokenizer_config.json, special_tokens_map.json, then config.json's ``*_token_id``."""
    sources = [config]
    if (directory / "special_tokens_map.json").is_file():
        sources.append(_read_json(directory / "special_tokens_map.json"))
    found: dict[str, str | None] = {}
    for role in SPECIAL_ROLES:
        found[role] = next((t for s in sources if (t := _token_text(s.get(f"{role}_token")))), None)
    model_config = directory / "config.json"
    if model_config.is_file():
        ids = _read_json(model_config)
        for role in SPECIAL_ROLES:
            value = ids.get(f"{role}_token_id")
            value = value[0] if isinstance(value, list) and value else value
            if found[role] is None and isinstance(value, int):
                found[role] = tok.id_to_token(value)
    return found


def load_pretrained_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer of a model folder: ours (``zeroforge_tokenizer.json``), an HF ``tokenizer.json``
    (WordPiece loads as ``WordPieceTokenizer``), GPT-2 ``vocab.json`` + ``merges.txt``, or a BERT ``vocab.txt``."""
    from tokenizers import Tokenizer as HF

    directory = Path(directory)
    meta = directory / META_FILE
    if meta.is_file() and _read_json(meta).get("kind") != "hf":
        return load_tokenizer(directory)
    config_path = directory / TOKENIZER_CONFIG
    config = _read_json(config_path) if config_path.is_file() else {}
    path = directory / TOKENIZER_JSON
    if path.is_file():
        try:
            tok = HF.from_file(str(path))
        except Exception as err:  # the Rust side raises plain Exception on malformed files
            raise DataError(f"{path}: not a tokenizers JSON file ({str(err).splitlines()[0]})") from None
        if type(tok.model).__name__ == "WordPiece":
            return _no_fixed_shape(load_wordpiece(directory))
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        base = load_tokenizer(directory)
        assert isinstance(base, HFTokenizer)
        tok = base.tokenizer
    elif (directory / "vocab.txt").is_file():
        return _no_fixed_shape(load_wordpiece(directory))
    else:
        raise DataError(
            f"{path}: missing (the model folder has no tokenizer: expected tokenizer.json, "
            "vocab.json + merges.txt, vocab.txt or zeroforge_tokenizer.json)"
        )
    tok.no_padding()
    tok.no_truncation()
    return PretrainedTokenizer(tok, _specials(directory, config, tok), _chat_template(directory, config))


def _no_fixed_shape(tokenizer: HFTokenizer) -> HFTokenizer:
    """Drop the padding/truncation a tokenizer.json may carry (all-MiniLM-L6-v2's pads every text to
    128 ids): ``encode`` returns a text's own ids, as ``transformers`` does; batching pads."""
    tokenizer.tokenizer.no_padding()
    tokenizer.tokenizer.no_truncation()
    return tokenizer


# ----------------------------------------------------------------------------- GGUF vocabularies

# llama.cpp token types (llama_token_type): 3 = CONTROL (special), 4 = USER_DEFINED (added, not special)
_CONTROL, _USER_DEFINED = 3, 4
# Llama 3's (llama.cpp "llama-bpe")
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _gguf_pre_tokenizer(pre: str, where: str) -> Any:
    """llama.cpp's pre-tokenizer name -> the HF ``tokenizers`` pre-tokenizer that splits the same way."""
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre in ("default", "gpt2"):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):
        # llama.cpp: every digit alone ("\p{N}"), then GPT-2's regex, as SmolLM's own tokenizer.json
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    if pre in ("llama-bpe", "llama3", "llama-v3"):
        return pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"), byte_level]
        )
    raise DataError(
        f"{where}: GGUF pre-tokenizer {pre!r} is not supported (supported: default, gpt2, smollm, llama-bpe)"
    )


def gguf_bpe(
    tokens: list[str],
    merges: list[str],
    token_types: list[int],
    pre: str,
    specials: dict[str, int | None],
    chat_template: str | None,
    where: str,
) -> PretrainedTokenizer:
    """Byte-level BPE from a GGUF's ``tokenizer.ggml.*`` metadata (llama.cpp's ``gpt2`` tokenizer model).

    ``tokens`` are in the byte-to-unicode spelling of GPT-2 (a space is "Ġ"); control tokens
    (type 3: ``<|im_start|>``...) become special added tokens, so a chat prompt's markers map to
    one id each.
    """
    from tokenizers import AddedToken, decoders, models
    from tokenizers import Tokenizer as HF

    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = []
    for line in merges:
        left, sep, right = line.partition(" ")
        if not sep:
            raise DataError(f"{where}: malformed BPE merge {line!r} in tokenizer.ggml.merges")
        pairs.append((left, right))
    tok = HF(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _gguf_pre_tokenizer(pre, where)
    tok.decoder = decoders.ByteLevel()
    types = list(token_types) or [1] * len(tokens)
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == _CONTROL]
    )
    tok.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == _USER_DEFINED]
    )
    roles = {
        role: tokens[i] if i is not None and 0 <= i < len(tokens) else None for role, i in specials.items()
    }
    return PretrainedTokenizer(tok, roles, chat_template)
