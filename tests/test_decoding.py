"""prepare_for_decoding: the model itself when no speed-up is asked for, else a copy; caches sized for
the compiled step; activations keep the model's dtype when the weights are stored in bf16."""

import pytest
import torch
from torch import nn

from zeroforge.decoding import STATIC_CACHE_BUCKET, prepare_for_decoding
from zeroforge.generation import Decoder
from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.models.output import ModelOutput
from zeroforge.modules.weight_only import WeightOnlyLinear


def tiny_gpt(block_size: int = 300) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=block_size, vocab_size=40)).eval()


class EagerOnlyLM(nn.Module):
    """A model whose ``new_cache`` has no ``static`` option: it cannot take a compiled step."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, input_ids, attention_mask=None, cache=None) -> ModelOutput:
        return ModelOutput(logits=self.proj(torch.zeros(*input_ids.shape, 4)), cache=cache)

    def new_cache(self, batch_size, max_length, device=None, dtype=None) -> dict:
        return {"max_length": max_length, "dtype": dtype}


def test_nothing_asked_for_decodes_the_model_itself():
    model = tiny_gpt()
    prepared = prepare_for_decoding(model, layout=False)
    assert prepared.model is model and prepared.step is model and not prepared.static
    assert Decoder(model, layout=False).model is model
    # without a cache the model is recomputed as it is, whatever speed-ups are asked for
    assert Decoder(model, use_cache=False, dtype=torch.bfloat16, compile=True).model is model


def test_a_speed_up_decodes_a_copy_and_leaves_the_model_alone():
    model = tiny_gpt()
    prepared = prepare_for_decoding(model, dtype=torch.bfloat16)
    assert prepared.model is not model and prepared.step is prepared.model  # eager: the step is the copy
    assert isinstance(prepared.model.lm_head, WeightOnlyLinear)
    assert prepared.model.lm_head.weight.dtype == torch.bfloat16
    assert type(model.lm_head) is nn.Linear and model.lm_head.weight.dtype == torch.float32
    # the KV cache holds activations, which stay in the model's dtype (weight-only bf16)
    cache = prepared.new_cache(2, 10, torch.device("cpu"))
    assert cache.keys[0].dtype == torch.float32 and cache.keys[0].shape[2] == 10


@pytest.mark.parametrize(
    "length,width",
    [(5, STATIC_CACHE_BUCKET), (STATIC_CACHE_BUCKET + 2, 2 * STATIC_CACHE_BUCKET), (290, 300)],
)
def test_compiled_step_cache_is_rounded_up_to_a_bucket_within_the_context(length, width):
    prepared = prepare_for_decoding(tiny_gpt(block_size=300), compile=True)  # compiles on first call only
    assert prepared.static and prepared.step is not prepared.model
    cache = prepared.new_cache(1, length, torch.device("cpu"))
    assert cache.static and cache.keys[0].shape[2] == width


def test_compile_without_a_static_cache_decodes_eagerly():
    model = EagerOnlyLM()
    prepared = prepare_for_decoding(model, compile=True)
    assert not prepared.static and prepared.step is prepared.model
    assert prepared.new_cache(3, 7, torch.device("cpu")) == {"max_length": 7, "dtype": torch.float32}
    assert not Decoder(model, compile=True).static
