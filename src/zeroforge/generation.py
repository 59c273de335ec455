"""Step-level decoding, shared by ``generate``, ``chat`` and ``serve``.

A prompt is *prefilled* once, then every *step* feeds exactly one new token per sequence. The
decoding state lives in ``model.new_cache(batch_size, max_length, device, dtype)`` and is passed
as ``model(input_ids, attention_mask=..., cache=cache)``; a KV cache and an RNN's hidden state look
the same from here. Models without ``new_cache`` are decoded by recomputing the whole sequence.

A model's optional ``context_length`` bounds what one forward attends to. Past it the decoder
slides a window like nanoGPT's sampling loop: each step recomputes the last ``context_length``
tokens (exactly what an uncached model would see), so output never depends on whether a cache
was used.

Prompts of different lengths are left-padded and masked; positions count real tokens only, so
every prompt in a batch decodes as it would alone.

``dtype``, ``compile`` and ``layout`` make the cached path faster without changing what it computes:
it then runs a copy of the model prepared for speed (bf16 weights, decode-time weight layouts, a
compiled step; zeroforge/decoding.py). The model itself is never changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.decoding import prepare_for_decoding
from zeroforge.errors import ZeroforgeError

if TYPE_CHECKING:
    from zeroforge.tokenizers import Tokenizer


# ----------------------------------------------------------------------------- step-level decoding


class Decoder:
    """Prefill once, then one token per sequence per step; returns next-token logits (B, vocab) in fp32.

    The caller puts the model in eval mode. ``use_cache=False`` recomputes the full sequence every
    step (the reference the cached path is tested against). On the cached path ``dtype`` (e.g.
    ``torch.bfloat16``) stores the weights in that dtype, ``compile`` compiles the step (a model whose
    ``new_cache`` takes ``static=True``; others decode eagerly; every change of weights compiles
    anew) and ``layout`` (the default) adds copies of the weights laid out for the CPU's one-row
    kernels; ``layout=False`` decodes with the model's own weights (the reference the layouts are
    tested against). See zeroforge/decoding.py; ``model`` is left untouched.
    """

    def __init__(
        self,
        model: nn.Module,
        use_cache: bool = True,
        dtype: torch.dtype | None = None,
        compile: bool = False,
        layout: bool = True,
    ) -> None:
        self.use_cache = use_cache and hasattr(model, "new_cache")
        if not self.use_cache:  # recomputing runs the model as it is
            dtype, compile, layout = None, False, False
        self.prepared = prepare_for_decoding(model, dtype, compile, layout)
        self.model = self.prepared.model  # runs the prompt and recomputed windows; prepared.step one token
        self.static = self.prepared.static  # the step is compiled over a fixed-shape cache
        self.context_length: int | None = getattr(model, "context_length", None)
        self.cache: Any = None
        self.cache_length = 0  # tokens the cache holds before the window starts to slide
        self.tokens = torch.empty(0, 0, dtype=torch.long)  # (B, capacity): prompt (left-padded) + new tokens
        self.mask: torch.Tensor | None = None  # (B, capacity), 1 = real token; None when nothing is padded
        self.length = 0  # columns of self.tokens filled so far

    @torch.inference_mode()
    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, max_new_tokens: int = 256
    ) -> torch.Tensor:
        """input_ids (B, P), left-padded where attention_mask (B, P) is 0; room for ``max_new_tokens`` steps."""
        B, P = input_ids.shape
        if P == 0:
            raise ZeroforgeError("generation: the prompt is empty (encode at least one token)")
        capacity = P + max_new_tokens
        self.tokens = input_ids.new_zeros(B, capacity)
        self.tokens[:, :P] = input_ids
        self.mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            self.mask = torch.ones(B, capacity, dtype=torch.long, device=input_ids.device)
            self.mask[:, :P] = attention_mask
        self.length = P
        self.cache = None
        if self.use_cache:
            self.cache_length = min(capacity, self.context_length or capacity)
            if P <= self.cache_length:  # a prompt longer than the context slides the window at once
                self.cache = self.prepared.new_cache(B, self.cache_length, input_ids.device)
                mask = None if self.mask is None else self.mask[:, :P]
                out = self.model(input_ids, attention_mask=mask, cache=self.cache)
                return out.logits[:, -1].float()  # (B, vocab)
        return self._recompute()

    @torch.inference_mode()
    def step(self, next_tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per sequence, next_tokens (B,) -> logits (B, vocab) for the token after it."""
        if self.length >= self.tokens.size(1):
            raise ZeroforgeError(
                f"generation: decoder is full after {self.length} tokens (prefill with a larger max_new_tokens)"
            )
        self.tokens[:, self.length] = next_tokens
        self.length += 1
        if self.cache is not None and self.length <= self.cache_length:
            # the cache remembers the prompt's padding, so a step needs no attention_mask
            return self.prepared.step(next_tokens[:, None], cache=self.cache).logits[:, -1].float()
        self.cache = None  # the context is full: from now on slide the window
        return self._recompute()

    def _recompute(self) -> torch.Tensor:
        """Run the model on the last ``context_length`` tokens without a cache; (B, vocab)."""
        start = max(0, self.length - self.context_length) if self.context_length else 0
        ids = self.tokens[:, start : self.length]  # (B, <= context_length)
        mask = None if self.mask is None else self.mask[:, start : self.length]
        return self.model(ids, attention_mask=mask).logits[:, -1].float()


# ----------------------------------------------------------------------------- sampling


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties with the k-th included); the rest become -inf."""
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2019): keep the smallest set of most likely tokens whose
    probability mass reaches p; the most likely token is always kept."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    sorted_logits = sorted_logits.masked_fill(mass_before >= p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token per row from logits (B, vocab) -> (B,). temperature 0 is greedy (argmax)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator | None:
    """A seeded torch.Generator on ``device``, or None (use torch's global RNG) when seed is None."""
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def _check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if max_new_tokens < 0:
        raise ZeroforgeError(f"generation: max_new_tokens must be >= 0, got {max_new_tokens}")
    if not temperature >= 0:  # NaN fails this too
        raise ZeroforgeError(f"generation: temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ZeroforgeError(f"generation: top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ZeroforgeError(f"generation: top_p must be in (0, 1], got {top_p}")


# ----------------------------------------------------------------------------- token-level generation


@torch.inference_mode()
def iter_tokens(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    dtype: torch.dtype | None = None,
    compile: bool = False,
    layout: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every sequence, (B,), up to ``max_new_tokens`` times.

    A row that has produced ``eos_id`` keeps yielding ``eos_id``; iteration ends early once every
    row has. The model is in eval mode while iterating and gets its training flag back afterwards.
    ``dtype``, ``compile`` and ``layout``: see ``Decoder``.
    """
    _check_sampling(max_new_tokens, temperature, top_k, top_p)
    if input_ids.dim() != 2:
        raise ZeroforgeError(
            f"generation: input_ids must be (batch, length), got shape {tuple(input_ids.shape)}"
        )
    if max_new_tokens == 0:
        return
    was_training = model.training
    model.eval()
    try:
        decoder = Decoder(model, use_cache=use_cache, dtype=dtype, compile=compile, layout=layout)
        logits = decoder.prefill(input_ids, attention_mask, max_new_tokens)
        finished = None if eos_id is None else torch.zeros_like(input_ids[:, 0], dtype=torch.bool)
        for i in range(max_new_tokens):
            token = sample(logits, temperature, top_k, top_p, generator)  # (B,)
            if finished is not None:
                token = token.masked_fill(finished, eos_id)
                finished |= token == eos_id
            yield token
            if i + 1 == max_new_tokens or (finished is not None and bool(finished.all())):
                return
            logits = decoder.step(token)
    finally:
        model.train(was_training)


def generate_ids(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    dtype: torch.dtype | None = None,
    compile: bool = False,
    layout: bool = True,
) -> torch.Tensor:
    """New tokens for a batch of prompts: input_ids (B, P) (left-padded where attention_mask is 0)
    -> (B, n), n <= max_new_tokens (fewer when every row stopped at ``eos_id``; rows padded with it).
    ``dtype``, ``compile`` and ``layout``: see ``Decoder``."""
    tokens = iter_tokens(
        model,
        input_ids,
        attention_mask,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        eos_id,
        generator=make_generator(seed, input_ids.device),
        use_cache=use_cache,
        dtype=dtype,
        compile=compile,
        layout=layout,
    )
    steps = list(tokens)  # n tensors (B,)
    if not steps:
        return input_ids.new_zeros(input_ids.size(0), 0)
    return torch.stack(steps, dim=1)  # (B, n)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int = 0, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token lists of different lengths -> (input_ids (B, P), attention_mask (B, P) or None if none is padded)."""
    P = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), P), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(sequences), P, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            input_ids[row, P - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            attention_mask[row, P - len(seq) :] = 1
    padded = any(len(s) != P for s in sequences)
    return input_ids.to(device), attention_mask.to(device) if padded else None


# ----------------------------------------------------------------------------- text generation


class Continuation:
    """One prompt's generated ids and text: eos, stop strings, and what is safe to stream so far."""

    def __init__(self, tokenizer: Tokenizer, eos_id: int | None, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        self.stops = stops
        self.ids: list[int] = []
        self.text = ""
        self.done = False
        self.stopped = False  # ended by a stop string (self.text is then already trimmed)
        self.streamed = 0  # characters of self.text already handed to the stream callback

    def add(self, token: int, decode: bool) -> None:
        if token == self.eos_id:
            self.done = True
            return
        self.ids.append(token)
        if not decode:
            return
        self.text = self.tokenizer.decode(self.ids)
        hits = [i for i in (self.text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]  # trim the stop string and anything after it
            self.done = self.stopped = True

    def finish(self) -> str:
        if not self.stopped:
            self.text = self.tokenizer.decode(self.ids)
        return self.text

    def stream_piece(self, final: bool = False) -> str:
        """New text that can no longer change. Held back until resolved: an unfinished UTF-8
        character (U+FFFD at the end) and a tail that may still grow into a stop string."""
        end = len(self.text)
        if not final:
            while end > self.streamed and self.text[end - 1] == "\ufffd":
                end -= 1
            tail = self.text[self.streamed : end]
            hold = max(
                (
                    n
                    for stop in self.stops
                    for n in range(1, min(len(stop), len(tail) + 1))
                    if tail.endswith(stop[:n])
                ),
                default=0,
            )
            end -= hold
        piece = self.text[self.streamed : end]
        self.streamed = max(self.streamed, end)
        return piece


def encode_prompt(tokenizer: Tokenizer, text: str, eos_id: int | None) -> list[int]:
    ids = list(tokenizer.encode(text))
    if ids:
        return ids
    # An empty prompt starts from the end-of-text token (GPT-2's convention) or, without one,
    # from a newline (nanoGPT's default start).
    if eos_id is not None:
        return [eos_id]
    try:
        ids = list(tokenizer.encode("\n"))
    except ZeroforgeError:  # e.g. a character vocabulary without a newline
        ids = []
    if not ids:
        raise ZeroforgeError("generate: the prompt is empty and the tokenizer has no eos_id to start from")
    return ids


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def generate(
    model: nn.Module | str | os.PathLike[str],
    tokenizer: Tokenizer | None = None,
    prompts: str | Sequence[str] = "",
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    stream: Callable[[str], Any] | None = None,
    dtype: torch.dtype | None = None,
    compile: bool = False,
) -> str | list[str]:
    """Continue each prompt; returns the generated text only (not the prompt). A str prompt gives a str.

    ``model`` is a module (then pass its ``tokenizer``) or a run directory (the tokenizer saved there
    is used). Generation stops per prompt at the tokenizer's ``eos_id``, at the first ``stop`` string
    (trimmed from the result) or after ``max_new_tokens``. ``temperature=0`` is greedy decoding.
    ``stream`` receives text pieces as they are decoded (single prompt only). ``dtype=torch.bfloat16``
    and ``compile=True`` make decoding faster (see ``Decoder``); greedy output then matches the
    fp32 model's unless two candidate tokens are within bf16 rounding of each other.
    """
    if isinstance(model, str | os.PathLike):
        from zeroforge.tokenizers import require_tokenizer
        from zeroforge.weights import load

        source = model
        model, saved_tokenizer = load(source)
        tokenizer = tokenizer or require_tokenizer(saved_tokenizer, source, "generate")
    if tokenizer is None:
        from zeroforge.weights import tokenizer_of

        tokenizer = tokenizer_of(model)  # the tokenizer zeroforge.load returned with it
    if tokenizer is None:
        raise ZeroforgeError(
            "generate: pass tokenizer= with a model object (or a run directory or model name)"
        )
    single = isinstance(prompts, str)
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not texts:
        return []
    if stream is not None and len(texts) != 1:
        raise ZeroforgeError(f"generate: stream works with one prompt, got {len(texts)}")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(not s for s in stops):
        raise ZeroforgeError("generate: stop strings must be non-empty")
    _check_sampling(max_new_tokens, temperature, top_k, top_p)

    eos_id = getattr(tokenizer, "eos_id", None)
    device = _device_of(model)
    input_ids, attention_mask = left_pad(  # (B, P), (B, P) or None
        [encode_prompt(tokenizer, t, eos_id) for t in texts], pad_id=eos_id or 0, device=device
    )
    generator = make_generator(seed, device)
    rows = [Continuation(tokenizer, eos_id, stops) for _ in texts]
    decode_each_step = bool(stops) or stream is not None

    tokens = iter_tokens(
        model,
        input_ids,
        attention_mask,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        eos_id,
        generator,
        dtype=dtype,
        compile=compile,
    )
    if decode_each_step:
        for token in tokens:  # (B,)
            for row, t in zip(rows, token.tolist()):
                if not row.done:
                    row.add(t, decode=True)
            if stream is not None and (piece := rows[0].stream_piece()):
                stream(piece)
            if all(row.done for row in rows):
                break
        tokens.close()
    else:  # no per-step text work: keep tokens on the device, decode once at the end
        steps = list(tokens)
        if steps:
            for row, ids in zip(rows, torch.stack(steps, dim=1).tolist()):  # (B, n)
                for t in ids:
                    if row.done:
                        break
                    row.add(t, decode=False)

    results = [row.finish() for row in rows]
    if stream is not None and (piece := rows[0].stream_piece(final=True)):
        stream(piece)
    return results[0] if single else results
