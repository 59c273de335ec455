"""Weight-only integer quantisation: Linear and Embedding weights stored as int8 or int4, used as such.

Decoding one token reads every weight once per step, so its speed is set by weight bytes (see
``weight_only.py``); int8 stores a weight in one byte, int4 in half a byte, against bf16's two.
Activations stay in the compute dtype (fp32); only the weights are rounded.

Schemes (``QuantScheme``), each a scale ``s`` (and an offset ``z``) per block of weights:

- int8, one block per output channel (row of W): symmetric ``s = max|w| / 127``,
  ``q = round(w / s)`` in [-127, 127], ``w ~ q s``; asymmetric ``s = (max - min) / 255``,
  ``q = round((w - min) / s) - 128`` in [-128, 127], ``w ~ q s + z`` with ``z = min + 128 s``.
- int4, blocks of ``group_size`` consecutive inputs of a row (32, 64 or 128): symmetric as llama.cpp's
  Q4_0, ``s = m / -8`` with ``m`` the group's value of largest magnitude, ``q = round(w / s) + 8``
  clamped to [0, 15], ``w ~ (q - 8) s``; asymmetric as Q4_1, ``s = (max - min) / 15``,
  ``q = round((w - min) / s)`` in [0, 15], ``w ~ (q - 8) s + z`` with ``z = min + 8 s``.

The error of every weight is at most ``s / 2`` (symmetric int4: ``|s|`` for the one value that
clamps at +8). Matrix products use PyTorch's CPU kernels: ``aten._weight_int8pack_mm`` (int8 rows
times per-row scales) and ``aten._weight_int4pack_mm_for_cpu`` (tinygemm's format, ``w = (q - 8) s + z``
with ``scales_and_zeros`` of shape (groups, out, 2)). Both are vectorised for bf16 activations only,
so the activations and scales enter them rounded to bf16 (products accumulate in fp32); with fp32
activations they run a scalar loop several times slower than fp32 ``F.linear``. ``dequantize()``
followed by an fp32 ``F.linear`` is the reference those kernels are tested against (equal up to
that bf16 rounding), and the path for devices or shapes they do not take (int4 needs
out_features divisible by 16).

Stored tensors (what ``state_dict`` holds and safetensors saves; the same on every machine):

- int8: ``qweight`` int8 (out, in), ``scales`` fp32 (out,), asymmetric also ``zeros`` fp32 (out,);
- int4: ``qweight`` uint8 (out, in / 2), two values a byte (column 2j in the low nibble, 2j+1 in the
  high one), and ``scales_and_zeros`` fp32 (in / group_size, out, 2).

The int4 kernel wants the weight in its own machine-dependent packing; a layer keeps only that
packing in memory and rebuilds the portable nibbles for ``state_dict`` by multiplying the identity
matrix (exact: each product returns one dequantised weight, from which ``q`` is recovered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.errors import ConfigError

BITS = (8, 4)
GROUP_SIZES = (32, 64, 128)
INT4_KERNEL_ROWS = 16
"""The CPU int4 kernel packs out_features in blocks; it needs a multiple of this."""


@dataclass(frozen=True)
class QuantScheme:
    """How weights are quantised: ``bits`` 8 (per output channel) or 4 (per group of inputs)."""

    bits: int = 8
    group_size: int | None = None
    """int4 only: inputs per scale (32, 64 or 128); None means 64. int8 has one scale per row."""
    symmetric: bool = True
    """True: ``w ~ q s``; False: ``w ~ q s + z`` (a per-block offset: better for skewed blocks)."""

    def __post_init__(self) -> None:
        if self.bits not in BITS:
            raise ConfigError(f"bits: expected 8 or 4, got {self.bits}")
        if self.bits == 8 and self.group_size is not None:
            raise ConfigError(
                f"group_size: int8 has one scale per output channel; group_size applies to bits=4 "
                f"(got {self.group_size})"
            )
        if self.bits == 4:
            if self.group_size is None:
                object.__setattr__(self, "group_size", 64)
            if self.group_size not in GROUP_SIZES:
                raise ConfigError(f"group_size: expected one of 32, 64, 128, got {self.group_size}")

    @property
    def name(self) -> str:
        """``int8``, ``int8-asym``, ``int4-g64``, ``int4-g64-asym``."""
        base = "int8" if self.bits == 8 else f"int4-g{self.group_size}"
        return base if self.symmetric else f"{base}-asym"

    def to_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "group_size": self.group_size, "symmetric": self.symmetric}

    @classmethod
    def from_dict(cls, fields: dict[str, Any], where: str) -> QuantScheme:
        unknown = set(fields) - {"bits", "group_size", "symmetric"}
        if unknown:
            raise ConfigError(f"{where}: unknown quantization field {sorted(unknown)[0]!r}")
        try:
            return cls(**fields)
        except ConfigError as err:
            raise ConfigError(f"{where}: quantization.{err}") from None


# ----------------------------------------------------------------------------- quantise / dequantise


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """A divisor: a block of equal weights has scale 0 (its q is arbitrary, its offset exact)."""
    return torch.where(scale == 0, torch.ones_like(scale), scale)


def quantize_int8(
    w: torch.Tensor, symmetric: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(out, in) float -> ``(q int8 (out, in), s (out,), z (out,) or None)``, one scale per row."""
    w = w.detach().float()
    if symmetric:
        s = w.abs().amax(dim=1) / 127  # (out,)
        q = torch.round(w / _safe(s)[:, None]).clamp(-127, 127)
        return q.to(torch.int8), s, None
    lo, hi = w.amin(dim=1), w.amax(dim=1)
    s = (hi - lo) / 255
    q = torch.round((w - lo[:, None]) / _safe(s)[:, None]).clamp(0, 255) - 128
    return q.to(torch.int8), s, lo + 128 * s


def quantize_int4(
    w: torch.Tensor, group_size: int, symmetric: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float -> ``(q int32 in [0, 15] (out, in), scales_and_zeros (in / g, out, 2))`` with
    ``w ~ (q - 8) s + z`` per group (module docstring)."""
    out_features, in_features = w.shape
    g = w.detach().float().reshape(out_features, in_features // group_size, group_size)  # (out, G, g)
    if symmetric:
        # llama.cpp Q4_0 (ggml-quants.c quantize_row_q4_0_ref): the largest-magnitude value maps to -8
        idx = g.abs().argmax(dim=-1, keepdim=True)
        s = (g.gather(-1, idx) / -8).squeeze(-1)  # (out, G), signed
        q = torch.round(g / _safe(s)[..., None]) + 8
        z = torch.zeros_like(s)
    else:
        lo, hi = g.amin(dim=-1), g.amax(dim=-1)
        s = (hi - lo) / 15
        q = torch.round((g - lo[..., None]) / _safe(s)[..., None])
        z = lo + 8 * s
        q = torch.where(
            s[..., None] == 0, 8.0, q
        )  # a constant group: any q; 8, as the kernel unpacking gives
    q = q.clamp(0, 15).to(torch.int32).reshape(out_features, in_features)
    return q, torch.stack((s, z), dim=-1).transpose(0, 1).contiguous()  # (G, out, 2)


def dequantize_int4(q: torch.Tensor, scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """``(q - 8) s + z`` per group: q (rows, in) in [0, 15], scales_and_zeros (G, rows, 2) -> fp32."""
    rows, in_features = q.shape
    groups = scales_and_zeros.size(0)
    s = scales_and_zeros[..., 0].t()[..., None]  # (rows, G, 1)
    z = scales_and_zeros[..., 1].t()[..., None]
    w = (q.reshape(rows, groups, in_features // groups).float() - 8) * s + z
    return w.reshape(rows, in_features)


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """(rows, in) values in [0, 15] -> (rows, in / 2) uint8: column 2j low nibble, 2j+1 high."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of ``pack_nibbles``: (rows, in / 2) uint8 -> (rows, in) int32."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).reshape(packed.size(0), -1).to(torch.int32)


def _check_width(name: str, in_features: int, scheme: QuantScheme) -> None:
    if scheme.bits == 4:
        assert scheme.group_size is not None
        if in_features % scheme.group_size:
            raise ConfigError(
                f"group_size: {scheme.group_size} does not divide the input width {in_features} of layer "
                f"{name or 'model'} (use a group size that divides every layer's width)"
            )


def _store_quantized(layer: nn.Module, w: torch.Tensor, scheme: QuantScheme) -> None:
    """Quantise ``w`` (rows, in) into ``layer``'s buffers: int8 rows, or int4 nibbles and group scales."""
    with torch.no_grad():
        if scheme.bits == 8:
            q, s, z = quantize_int8(w, scheme.symmetric)
            layer.qweight.copy_(q)
            layer.scales.copy_(s)
            if z is not None:
                layer.zeros.copy_(z)
        else:
            assert scheme.group_size is not None
            q, sz = quantize_int4(w, scheme.group_size, scheme.symmetric)
            layer.qweight.copy_(pack_nibbles(q))
            layer.scales_and_zeros.copy_(sz)


def _int4_kernel(device: torch.device, out_features: int) -> bool:
    return device.type == "cpu" and out_features % INT4_KERNEL_ROWS == 0


# ----------------------------------------------------------------------------- modules


class QuantizedLinear(nn.Module):
    """``y = x W^T + b`` with W stored as int8 or int4 (module docstring); x, b, y in the compute dtype."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        scheme: QuantScheme,
        bias: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.scheme = in_features, out_features, scheme
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.packed = False  # int4: qweight holds the CPU kernel's packing instead of plain nibbles
        if scheme.bits == 8:
            self.register_buffer(
                "qweight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device)
            )
            self.register_buffer("scales", torch.zeros(out_features, device=device))
            self.register_buffer(
                "zeros", None if scheme.symmetric else torch.zeros(out_features, device=device)
            )
        else:
            assert scheme.group_size is not None
            groups = in_features // scheme.group_size
            self.register_buffer(
                "qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8, device=device)
            )
            self.register_buffer("scales_and_zeros", torch.zeros(groups, out_features, 2, device=device))

    @classmethod
    def from_float(cls, linear: nn.Linear, scheme: QuantScheme, name: str = "") -> QuantizedLinear:
        """``linear``'s weight quantised (``linear`` itself is left as it was)."""
        _check_width(name, linear.in_features, scheme)
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, scheme, linear.bias, device=w.device)
        _store_quantized(layer, w, scheme)
        layer.pack()
        return layer

    # -- the int4 kernel's packing

    def pack(self) -> None:
        """int4 on CPU: replace the plain nibbles by the kernel's packing (the only copy kept)."""
        if self.scheme.bits != 4 or self.packed or not _int4_kernel(self.qweight.device, self.out_features):
            return
        q = unpack_nibbles(self.qweight)
        self.qweight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        self.packed = True

    def _plain_int4(self) -> torch.Tensor:
        """The int4 values (out, in) as int32, from either layout."""
        if not self.packed:
            return unpack_nibbles(self.qweight)
        # y = I W^T: each row of the product is one input column of the dequantised W (exact: one term)
        sz = self.scales_and_zeros
        gs = self.scheme.group_size
        assert gs is not None
        cols = []
        for start in range(0, self.in_features, 256):
            eye = torch.eye(self.in_features, device=sz.device)[start : start + 256]  # (<=256, in)
            cols.append(torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.qweight, gs, sz))
        w = torch.cat(cols).t()  # (out, in)
        s = sz[..., 0].t().repeat_interleave(gs, dim=1)  # (out, in)
        z = sz[..., 1].t().repeat_interleave(gs, dim=1)
        return (torch.round((w - z) / _safe(s)) + 8).clamp(0, 15).to(torch.int32)

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.packed:  # always the portable nibbles on disk
            destination[prefix + "qweight"] = pack_nibbles(self._plain_int4())

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if self.packed:  # the incoming tensor is plain nibbles: load into a plain buffer, then repack
            self.qweight = torch.zeros(
                self.out_features, self.in_features // 2, dtype=torch.uint8, device=self.qweight.device
            )
            self.packed = False
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.pack()

    # -- the product

    def dequantize(self) -> torch.Tensor:
        """The weight (out, in) in fp32, as the scheme rounds it."""
        if self.scheme.bits == 8:
            w = self.qweight.float() * self.scales[:, None]
            return w if self.zeros is None else w + self.zeros[:, None]
        return dequantize_int4(self._plain_int4(), self.scales_and_zeros)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantise, then ``F.linear``: the reference the kernels are tested against."""
        return F.linear(
            x, self.dequantize().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype)
        )

    def _kernel_scales(self) -> torch.Tensor:
        """The scales (int4: scales and offsets) in bf16, the kernels' dtype, made once."""
        source = self.scales if self.scheme.bits == 8 else self.scales_and_zeros
        cached = getattr(self, "_bf16_scales", None)
        if cached is None or cached[0] != (id(source), source._version):
            cached = ((id(source), source._version), source.to(torch.bfloat16))
            self._bf16_scales = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not x.is_floating_point() or (self.scheme.bits == 4 and not self.packed):
            return self.forward_reference(x)
        # The CPU kernels are vectorised for bf16 activations only (fp32 runs a scalar loop, 3-14x
        # slower): x and the scales enter them in bf16, products accumulate in fp32, y returns in x's dtype.
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (rows, in)
        if self.scheme.bits == 8:
            y = torch.ops.aten._weight_int8pack_mm(x2, self.qweight, self._kernel_scales()).to(x.dtype)
            if self.zeros is not None:  # x (q s + z)^T = (x q^T) s + (sum x) z
                y = y + x.reshape(-1, self.in_features).sum(dim=-1, keepdim=True) * self.zeros
        else:
            gs = self.scheme.group_size
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.qweight, gs, self._kernel_scales()).to(
                x.dtype
            )
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scheme={self.scheme.name}"


class QuantizedEmbedding(nn.Module):
    """A lookup table stored as int8 or int4 per row (groups along the row for int4); rows come out
    dequantised in ``compute_dtype``."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        scheme: QuantScheme,
        compute_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.scheme = num_embeddings, embedding_dim, scheme
        self.compute_dtype = compute_dtype
        n, d = num_embeddings, embedding_dim
        if scheme.bits == 8:
            self.register_buffer("qweight", torch.zeros(n, d, dtype=torch.int8, device=device))
            self.register_buffer("scales", torch.zeros(n, device=device))
            self.register_buffer("zeros", None if scheme.symmetric else torch.zeros(n, device=device))
        else:
            assert scheme.group_size is not None
            self.register_buffer("qweight", torch.zeros(n, d // 2, dtype=torch.uint8, device=device))
            self.register_buffer("scales_and_zeros", torch.zeros(d // scheme.group_size, n, 2, device=device))

    @classmethod
    def from_float(cls, embedding: nn.Embedding, scheme: QuantScheme, name: str = "") -> QuantizedEmbedding:
        _check_width(name, embedding.embedding_dim, scheme)
        w = embedding.weight
        layer = cls(embedding.num_embeddings, embedding.embedding_dim, scheme, w.dtype, device=w.device)
        _store_quantized(layer, w, scheme)
        return layer

    def dequantize(self) -> torch.Tensor:
        """The whole table (num_embeddings, dim) in fp32."""
        if self.scheme.bits == 8:
            w = self.qweight.float() * self.scales[:, None]
            return w if self.zeros is None else w + self.zeros[:, None]
        return dequantize_int4(unpack_nibbles(self.qweight), self.scales_and_zeros)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        if self.scheme.bits == 8:
            rows = self.qweight[flat].float() * self.scales[flat, None]  # (n, dim)
            if self.zeros is not None:
                rows = rows + self.zeros[flat, None]
        else:
            rows = dequantize_int4(unpack_nibbles(self.qweight[flat]), self.scales_and_zeros[:, flat])
        return rows.to(self.compute_dtype).view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, scheme={self.scheme.name}"


# ----------------------------------------------------------------------------- whole models


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantizedLinear | QuantizedEmbedding) for m in model.modules())


def convert_to_quantized(model: nn.Module, scheme: QuantScheme, empty: bool = False) -> nn.Module:
    """Replace (in place) every ``nn.Linear`` and plain ``nn.Embedding`` of ``model`` by its quantised
    version; returns ``model`` (for inference). Widths are checked for every layer before any is
    replaced. ``empty``: allocate the quantised tensors without computing them (a model about to
    load a quantised checkpoint).

    A weight shared by an embedding and an output layer (tied) is quantised once per use: the
    lookup reads rows and the product reads the kernel's layout.
    """
    # int4 keeps the token embedding and the output layer over the vocabulary in int8 (as llama.cpp's
    # Q4_0 files keep output.weight in a wider type): a 4-bit error on every vocabulary row costs
    # more quality than the rest of the model's int4 layers together
    vocab_rows = {m.num_embeddings for m in model.modules() if type(m) is nn.Embedding}
    wide = QuantScheme(8, symmetric=scheme.symmetric)
    targets = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            full = f"{parent_name}.{name}" if parent_name else name
            if type(child) is nn.Linear:
                own = wide if scheme.bits == 4 and child.out_features in vocab_rows else scheme
                _check_width(full, child.in_features, own)
                targets.append((parent, name, full, child, own))
            elif type(child) is nn.Embedding and child.padding_idx is None and child.max_norm is None:
                own = wide if scheme.bits == 4 else scheme
                targets.append((parent, name, full, child, own))
    for parent, name, full, child, own in targets:
        device = child.weight.device
        if isinstance(child, nn.Linear):
            if empty:  # packed once its state is loaded (``_load_from_state_dict``)
                layer: nn.Module = QuantizedLinear(
                    child.in_features, child.out_features, own, child.bias, device
                )
            else:
                layer = QuantizedLinear.from_float(child, own, full)
        elif empty:
            layer = QuantizedEmbedding(
                child.num_embeddings, child.embedding_dim, own, child.weight.dtype, device
            )
        else:
            layer = QuantizedEmbedding.from_float(child, own, full)
        setattr(parent, name, layer)
    return model.eval()


def quantized_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (the model's resident weights)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total
