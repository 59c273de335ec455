"""The vocabulary a GGUF file embeds, rebuilt as a ``PretrainedTokenizer``.

A GGUF file stores no ``tokenizer.json``: llama.cpp keeps the vocabulary, the BPE merges, each
token's type and a pre-tokenizer name as metadata. ``gguf_bpe`` rebuilds the byte-level BPE from them.
Tokenizer folders (ours or Hugging Face's) are read by ``zeroforge.tokenizers.load_tokenizer``.
"""

from __future__ import annotations

from typing import Any

from zeroforge.errors import DataError
from zeroforge.tokenizers import PretrainedTokenizer

__all__ = ["PretrainedTokenizer", "gguf_bpe"]


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
    if pre in ("default", "gpt2", "gpt-2"):
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
        if left in vocab and right in vocab and left + right in vocab:  # as llama.cpp, which skips others
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
