"""Continuous batching: many generation requests share every decode step of one model.

A scheduler thread owns the model. It holds a *running batch* of ``max_batch`` rows in one KV cache
(``model.new_cache``); each request occupies one row with its own sampling settings and random
generator. Between two decode steps requests join (their prompt is prefilled alone, its keys and
values copied into a free row) and leave (at eos, a stop string, ``max_tokens`` or a disconnect), so
a short request never waits for a long one to finish (Orca, Yu et al. 2022, "iteration-level
scheduling"). The caller's thread (the server's event loop) only queues requests and receives
events; it never runs the model.

Every row of the cache fills the same column at each step, so the rows are right-aligned: a row that
joins when the cache holds ``L`` columns writes its ``P`` prompt columns at ``[L - P, L)`` and masks
the columns before them as padding; positions count its real tokens only (modules/kv_cache.py), so
the row decodes exactly as the prompt would alone. When the columns run out, or a prompt is longer
than ``L``, all rows are shifted together (the columns no active row uses are dropped).

Models whose decoding state is not a KV cache (recurrent models, models without ``new_cache``) are
decoded row by row with ``generation.Decoder``: requests still interleave step by step, without
sharing forward passes.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zeroforge.decoding import prepare_for_decoding
from zeroforge.errors import ZeroforgeError
from zeroforge.generation import Continuation, Decoder, left_pad, make_generator, sample
from zeroforge.modules.kv_cache import KVCache


@dataclass
class SamplingSettings:
    """One request's decoding settings (OpenAI's names)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ZeroforgeError(f"max_tokens: must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ZeroforgeError(f"temperature: must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ZeroforgeError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ZeroforgeError(f"top_k: must be >= 1, got {self.top_k}")
        if any(not s for s in self.stop):
            raise ZeroforgeError("stop: stop strings must be non-empty")


@dataclass
class Event:
    """What the scheduler tells a request: a piece of text, or the end (``finish_reason`` set)."""

    text: str = ""
    finish_reason: str | None = None  # "stop" (eos or a stop string), "length", "cancelled" or "error"
    completion_tokens: int = 0
    error: str | None = None


class GenerationRequest:
    """A prompt (token ids) to continue; ``emit`` receives ``Event``s from the scheduler thread."""

    def __init__(
        self, prompt_ids: list[int], settings: SamplingSettings, emit: Callable[[Event], Any]
    ) -> None:
        if not prompt_ids:
            raise ZeroforgeError("prompt: encodes to no tokens")
        self.prompt_ids = list(prompt_ids)
        self.settings = settings
        self.emit = emit
        self.cancelled = False  # set by the caller (a client disconnected); the row leaves at the next step
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None

    def cancel(self) -> None:
        self.cancelled = True


class _Row:
    """A request in the running batch: its text so far, its next token, its random generator."""

    def __init__(self, request: GenerationRequest, tokenizer: Any, eos_id: int | None, device: torch.device):
        self.request = request
        self.text = Continuation(tokenizer, eos_id, request.settings.stop)
        self.generator = make_generator(request.settings.seed, device)
        self.sampled = 0  # tokens sampled so far (eos included)
        self.next_token = 0
        self.decoder: Decoder | None = None  # only on the row-by-row path

    def take(self, logits: torch.Tensor) -> Event | None:
        """Sample the next token from logits (1, vocab) and hand out the new text; when the request is
        finished, return its last event instead of sending it (the scheduler frees the row first, so a
        client told "done" never finds its row still taken)."""
        s = self.request.settings
        token = int(sample(logits, s.temperature, s.top_k, s.top_p, self.generator)[0])
        if self.request.first_token_at is None:
            self.request.first_token_at = time.perf_counter()
        self.sampled += 1
        self.next_token = token
        self.text.add(token, decode=True)
        finish = None
        if self.text.done:
            finish = "stop"
        elif self.sampled >= s.max_tokens:
            finish = "length"
        piece = self.text.stream_piece(final=finish is not None)
        if finish is not None:
            return Event(piece, finish, self.sampled)
        if piece:
            self.request.emit(Event(piece, None, self.sampled))
        return None

    @property
    def remaining(self) -> int:
        return self.request.settings.max_tokens - self.sampled


class BatchScheduler:
    """Runs generation requests on ``model`` in a background thread, ``max_batch`` at a time.

    ``submit`` queues a request (a ZeroforgeError when ``max_queue`` are already waiting);
    ``max_length`` bounds prompt + max_tokens of one request and sizes the KV cache (default 2048, at most
    the model's context length).
    ``max_batch=1`` serves one request at a time (the baseline continuous batching is measured against).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        max_batch: int = 16,
        max_queue: int = 64,
        max_length: int | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 0:
            raise ZeroforgeError(
                f"batching: max_batch must be >= 1 and max_queue >= 0, got {max_batch}, {max_queue}"
            )
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.eos_id: int | None = getattr(tokenizer, "eos_id", None)
        self.max_batch = max_batch
        self.max_queue = max_queue
        context = getattr(model, "context_length", None)
        self.max_length = min(max_length or 2048, context or 2048)
        param = next(model.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self.prepared = prepare_for_decoding(model)  # decode-time layouts; fp32 results unchanged
        probe = self.prepared.new_cache(1, 1, self.device) if hasattr(model, "new_cache") else None
        self.batched = isinstance(probe, KVCache)  # rows share forward passes only in a KV cache
        self.cache: KVCache | None = None
        self.slots: list[_Row | None] = [None] * max_batch
        self.waiting: deque[GenerationRequest] = deque()
        self.lock = threading.Condition()
        self.generated_tokens = 0  # all tokens sampled since start
        self.recent: deque[tuple[float, int]] = deque()  # (time, tokens) per step, the last 10 s
        self.steps = 0  # forward passes of the running batch
        self.prefills = 0  # forward passes over joining prompts
        self.shifts = 0  # times the rows were moved to make room in the cache
        self.cancelled = 0  # requests dropped because their client went away
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="zeroforge-batching", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side

    def submit(self, request: GenerationRequest) -> None:
        need = len(request.prompt_ids) + request.settings.max_tokens
        if need > self.max_length:
            raise ZeroforgeError(
                f"prompt ({len(request.prompt_ids)} tokens) + max_tokens ({request.settings.max_tokens}) "
                f"exceeds the context length {self.max_length}"
            )
        with self.lock:
            if len(self.waiting) >= self.max_queue + max(0, self.max_batch - self.running):
                raise QueueFull(f"the queue is full ({len(self.waiting)} waiting); retry later")
            self.waiting.append(request)
            self.lock.notify()

    @property
    def running(self) -> int:
        return sum(row is not None for row in self.slots)

    @property
    def queued(self) -> int:
        return len(self.waiting)

    def tokens_per_second(self, window: float = 10.0) -> float:
        """Tokens generated per second over the last ``window`` seconds."""
        now = time.perf_counter()
        recent = [n for t, n in list(self.recent) if now - t <= window]
        return sum(recent) / window

    def _count(self, tokens: int) -> None:
        now = time.perf_counter()
        self.generated_tokens += tokens
        self.recent.append((now, tokens))
        while self.recent and now - self.recent[0][0] > 10.0:
            self.recent.popleft()

    def close(self) -> None:
        with self.lock:
            self._stop = True
            self.lock.notify()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ scheduler thread

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self._stop and not self.waiting and self.running == 0:
                    self.lock.wait()
                if self._stop:
                    break
            try:
                with torch.inference_mode():
                    self._drop_cancelled()
                    self._admit()
                    if self.running:
                        self._step()
            except Exception as err:  # a failing forward ends every request in flight, not the server
                self._fail_all(f"{type(err).__name__}: {err}")
        self._fail_all("the server is shutting down")

    def _fail_all(self, message: str) -> None:
        with self.lock:
            pending = list(self.waiting)
            self.waiting.clear()
        rows = [row for row in self.slots if row is not None]
        self.slots = [None] * self.max_batch
        self.cache = None
        for request in pending + [row.request for row in rows]:
            request.emit(Event(finish_reason="error", error=message))

    def _free(self, slot: int) -> None:
        self.slots[slot] = None
        if self.cache is not None:  # a free row attends only its own newest column (no NaN, no work)
            self.cache.key_padding_mask[slot, : self.cache.length] = False
            self.cache.next_position[slot] = 0

    def _drop_cancelled(self) -> None:
        for slot, row in enumerate(self.slots):
            if row is not None and row.request.cancelled:
                self._free(slot)
                self.cancelled += 1
                row.request.emit(Event(finish_reason="cancelled", completion_tokens=row.sampled))
        with self.lock:
            for request in [r for r in self.waiting if r.cancelled]:
                self.waiting.remove(request)
                request.emit(Event(finish_reason="cancelled"))

    def _admit(self) -> None:
        """Move waiting requests into free rows while the cache has room for them (first come, first
        served); the prompts that join together are prefilled in one forward."""
        if not self.batched:
            while None in self.slots and self.waiting:
                with self.lock:
                    request = self.waiting.popleft()
                slot = self.slots.index(None)
                row = self.slots[slot] = _Row(request, self.tokenizer, self.eos_id, self.device)
                row.decoder = Decoder(self.model)
                ids = torch.tensor([request.prompt_ids], dtype=torch.long, device=self.device)  # (1, P)
                self._start(slot, row, row.decoder.prefill(ids, None, request.settings.max_tokens))
            return
        with self.lock:
            joining: list[GenerationRequest] = []
            for request in self.waiting:
                if len(joining) == self.slots.count(None) or self._room_for(joining + [request]) is None:
                    break  # it waits until running rows finish
                joining.append(request)
            if not joining:
                return
            for _ in joining:
                self.waiting.popleft()
        delta = self._room_for(joining)
        assert delta is not None
        if delta:
            self._shift(delta)
            self.shifts += 1
        slots = [slot for slot, row in enumerate(self.slots) if row is None][: len(joining)]
        logits = self._prefill(slots, joining)  # (k, vocab)
        for i, (slot, request) in enumerate(zip(slots, joining)):
            self.slots[slot] = row = _Row(request, self.tokenizer, self.eos_id, self.device)
            self._start(slot, row, logits[i : i + 1])

    def _start(self, slot: int, row: _Row, logits: torch.Tensor) -> None:
        """A row's first token, from its prompt's logits (1, vocab)."""
        self._count(1)
        self._take(slot, row, logits)

    def _take(self, slot: int, row: _Row, logits: torch.Tensor) -> None:
        """``row.take``; a finished row is freed, then its last event sent."""
        final = row.take(logits)
        if final is not None:
            self._free(slot)
            row.request.emit(final)

    def _prefill(self, slots: list[int], requests: list[GenerationRequest]) -> torch.Tensor:
        """Run the prompts (left-padded together) and copy each one's keys/values into its row of the
        running cache, right-aligned at its filled length; returns each prompt's last logits (k, vocab)."""
        prompts = [r.prompt_ids for r in requests]
        ids, mask = left_pad(prompts, pad_id=self.eos_id or 0, device=self.device)  # (k, P), (k, P) or None
        k, P = ids.shape
        joined = self.prepared.new_cache(k, P, self.device)
        logits = self.prepared.model(ids, attention_mask=mask, cache=joined).logits[:, -1].float()
        self.prefills += 1
        cache = self.cache
        assert cache is not None
        L = cache.length
        for i, (slot, prompt) in enumerate(zip(slots, prompts)):
            n = len(prompt)
            for layer in range(len(cache.keys)):  # its real columns, the last n of the prefill
                cache.keys[layer][slot, :, L - n : L] = joined.keys[layer][i, :, P - n :]
                cache.values[layer][slot, :, L - n : L] = joined.values[layer][i, :, P - n :]
            cache.key_padding_mask[slot, : L - n] = False
            cache.key_padding_mask[slot, L - n :] = True
            cache.next_position[slot] = n
        return logits

    def _room_for(self, joining: list[GenerationRequest]) -> int | None:
        """How far to shift the running rows so the ``joining`` prompts fit before column ``length`` and
        every row has room for its remaining steps (0: they fit as they are); None when they cannot yet."""
        if self.cache is None:
            self.cache = self.prepared.new_cache(self.max_batch, self.max_length, self.device)
            self.cache.padded = True  # positions and padding are tracked per row from the start
        rows = [row for row in self.slots if row is not None]
        L = self.cache.length
        prompt = max(len(r.prompt_ids) for r in joining)
        steps = max([r.settings.max_tokens for r in joining] + [row.remaining for row in rows])
        if L >= prompt and L + steps <= self.max_length:
            return 0
        used = max([prompt] + [row.sampled - 1 + len(row.request.prompt_ids) for row in rows])
        if used + steps > self.max_length:
            return None
        return used - L

    def _shift(self, delta: int) -> None:
        """Move every row's columns by ``delta`` (all rows are right-aligned at ``length``)."""
        cache = self.cache
        assert cache is not None
        L = cache.length
        new_length = L + delta
        keep = min(L, new_length)  # columns that survive: the last ``keep`` of the old ones
        for tensors in (cache.keys, cache.values):
            for t in tensors:
                t[:, :, new_length - keep : new_length] = t[:, :, L - keep : L].clone()
        mask = cache.key_padding_mask
        mask[:, new_length - keep : new_length] = mask[:, L - keep : L].clone()
        mask[:, : new_length - keep] = False
        mask[:, new_length:] = True
        cache.length = new_length

    def _first_rows(self, n: int) -> KVCache:
        """The cache restricted to its first ``n`` rows: views of the same tensors, so what a step writes
        lands in the full cache (its filled length is copied back by the caller)."""
        cache = self.cache
        assert cache is not None
        if n == cache.batch_size:
            return cache
        rows = copy.copy(cache)
        rows.keys = [t[:n] for t in cache.keys]
        rows.values = [t[:n] for t in cache.values]
        rows.key_padding_mask = cache.key_padding_mask[:n]
        rows.next_position = cache.next_position[:n]
        rows.batch_size = n
        return rows

    def _step(self) -> None:
        """One decode step for every running row."""
        if not self.batched:
            for slot, row in enumerate(self.slots):
                if row is not None:
                    assert row.decoder is not None
                    logits = row.decoder.step(torch.tensor([row.next_token], device=self.device))
                    self._count(1)
                    self._take(slot, row, logits)
            self.steps += 1
            return
        cache = self.cache
        assert cache is not None
        used = 1 + max(slot for slot, row in enumerate(self.slots) if row is not None)
        rows = self._first_rows(used)  # rows fill from the top, so the free tail costs nothing
        tokens = torch.tensor(
            [0 if row is None else row.next_token for row in self.slots[:used]],
            dtype=torch.long,
            device=self.device,
        )
        logits = self.prepared.step(tokens[:, None], cache=rows).logits[:, -1].float()  # (used, vocab)
        cache.length = rows.length
        self.steps += 1
        self._count(self.running)
        for slot, row in enumerate(self.slots[:used]):
            if row is None:
                cache.next_position[slot] = 0
                continue
            self._take(slot, row, logits[slot : slot + 1])
        if self.running == 0:  # an empty batch starts again from column 0
            self._shift(-cache.length)


class QueueFull(ZeroforgeError):
    """Too many requests are waiting; the server answers 429."""
