"""Building blocks shared by model families, one idea per file (attention, mlp, kv_cache, ...)."""

from zeroforge.modules.attention import attention, causal_mask, naive_attention, padding_mask
from zeroforge.modules.kv_cache import KVCache
from zeroforge.modules.mlp import MLP

__all__ = ["MLP", "KVCache", "attention", "causal_mask", "naive_attention", "padding_mask"]
