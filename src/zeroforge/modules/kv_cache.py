"""A preallocated key/value cache for decoder-only attention models.

Decoding contract (shared with recurrent models, which keep their hidden state instead):
``cache = model.new_cache(batch_size, max_length)``, then ``model(input_ids, cache=cache, ...)``
appends the new tokens' keys/values in place and attends over everything cached so far.

Per forward call the model does, once::

    positions, mask, is_causal = cache.prepare(T, attention_mask)   # before the layers
    k, v = cache.update(layer, k, v)                                # in every layer
    cache.advance(T)                                                # after the layers

Left-padded batches: the key padding mask remembers which cached columns are padding, and
positions count real tokens only, so a left-padded prompt sees exactly the positions it would
see alone.

``static=True`` keeps every tensor shape fixed from step to step, for ``torch.compile``: the filled
length is a tensor, new keys are written at it (``index_copy_``) and attention always spans all
``max_length`` columns, the ones not written yet masked out. A compiled one-token step is then one
graph, the same at every length, with no Python bookkeeping in it; a compiled step does not check
the capacity (the caller, e.g. ``generation.Decoder``, does). Prompts (``attention_mask`` given, or
not compiled) take the Python path, which runs outside compiled code.
"""

from __future__ import annotations

import torch

from zeroforge.errors import ZeroforgeError
from zeroforge.modules.attention import causal_mask


class KVCache:
    """Per-layer keys and values, each (B, n_kv_head, max_length, head_dim), filled left to right.

    ``length`` is how many columns are filled (the same for every row; shorter prompts are left-padded).
    ``key_padding_mask`` (B, max_length) is True where a column holds a real token.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        head_dim: int,
        max_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        static: bool = False,
    ) -> None:
        shape = (batch_size, n_kv_head, max_length, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.batch_size = batch_size
        self.max_length = max_length
        self.static = static
        self._length = 0
        self.position = torch.zeros((), dtype=torch.long, device=device)  # the length, in static mode
        self.key_padding_mask = torch.ones(batch_size, max_length, dtype=torch.bool, device=device)
        # Until a padding token arrives every row has the same positions and the masks stay trivial.
        self.padded = False
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,) when padded
        self._positions = torch.arange(max_length, device=device)
        self.write_index = self._positions[:0]  # (T,) columns the next update writes (static mode)

    @property
    def length(self) -> int:
        """How many columns are filled (in static mode this reads a tensor: not for compiled code)."""
        return int(self.position) if self.static else self._length

    @length.setter
    def length(self, value: int) -> None:
        """Set the filled length after moving columns by hand (a batching scheduler compacting rows)."""
        if self.static or not 0 <= value <= self.max_length:
            raise ValueError(f"KVCache.length: {value} for a {'static' if self.static else 'dynamic'} cache")
        self._length = value

    def prepare(
        self, T: int, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Register ``T`` incoming tokens; returns (position_ids, attention mask or None, is_causal).

        ``attention_mask`` is (B, T) for the new tokens, or (B, length + T) covering the past as well
        (only its last T columns are read: the cache remembers the past). 1 = real token, 0 = padding.
        position_ids is (1, T) while no row is padded, else (B, T).
        """
        if self.static and attention_mask is None and torch.compiler.is_compiling():
            return self._prepare_traced(T)
        return self._prepare(T, attention_mask)

    def _prepare_traced(self, T: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Static mode inside compiled code: the same results as ``_prepare`` from tensors only."""
        q_pos = self.position + self._positions[:T]  # (T,) absolute positions of the new tokens
        self.write_index = q_pos
        allowed = self._positions[None, :] <= q_pos[:, None]  # (T, S): written keys at or before each query
        if not self.padded:
            return q_pos[None], allowed[None, None], False  # (1, T), (1, 1, T, S)
        own_key = self._positions[None, :] == q_pos[:, None]  # (T, S)
        allowed = allowed & (self.key_padding_mask[:, None, :] | own_key)  # (B, T, S)
        positions = self.next_position[:, None] + self._positions[:T]  # (B, T)
        self.next_position += T
        return positions, allowed[:, None], False

    @torch.compiler.disable
    def _prepare(
        self, T: int, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        start, end = self.length, self.length + T
        if end > self.max_length:
            raise ZeroforgeError(
                f"KV cache full: {start} cached + {T} new tokens exceeds its max_length {self.max_length}"
            )
        self.write_index = self._positions[start:end]  # (T,)
        new = None
        if attention_mask is not None:
            new = attention_mask[:, -T:].bool()  # (B, T)
            self.key_padding_mask[:, start:end] = new
            if not self.padded and not bool(new.all()):
                self.padded = True
                self.next_position.fill_(start)
        if not self.padded:
            positions = self._positions[start:end][None]  # (1, T)
            if self.static:  # all max_length columns, the unwritten (future) ones masked
                return positions, causal_mask(T, end, positions.device, width=self.max_length), False
            if T == 1:
                return positions, None, False  # one query at the newest position attends every key
            if start == 0:
                return positions, None, True  # plain causal prefill: SDPA's fused causal path
            return positions, causal_mask(T, end, self.key_padding_mask.device), False
        # Positions count real tokens only: a left-padded row starts at 0 like the same prompt alone.
        if new is None:
            positions = self.next_position[:, None] + self._positions[:T]  # (B, T)
            self.next_position += T
        else:
            positions = self.next_position[:, None] + (new.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
            self.next_position += new.sum(-1)
        if self.static:
            mask = causal_mask(T, end, positions.device, self.key_padding_mask, width=self.max_length)
        else:
            mask = causal_mask(T, end, positions.device, self.key_padding_mask[:, :end])
        return positions, mask, False

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this layer's new k, v (B, nkv, T, hs) at the current length; return all cached (B, nkv, L+T, hs)
        (static: all (B, nkv, max_length, hs), masked by ``prepare``'s mask)."""
        if self.static:  # no Python ints, so a compiled step is the same graph at every length
            self.keys[layer].index_copy_(2, self.write_index, k)
            self.values[layer].index_copy_(2, self.write_index, v)
            return self.keys[layer], self.values[layer]
        start, end = self.length, self.length + k.size(2)
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, T: int) -> None:
        """Called once per forward after every layer has written its ``T`` new columns."""
        if self.static:
            self.position += T  # a tensor update, traced like the rest of a compiled step
        else:
            self._advance(T)

    @torch.compiler.disable
    def _advance(self, T: int) -> None:
        self._length += T
