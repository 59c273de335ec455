"""zeroforge: develop and fine-tune large models from zero.

The public API is imported lazily so ``import zeroforge`` stays fast (torch loads on first use)::

    import zeroforge as zf
    model = zf.create_model("gpt-char-small")
    run_dir = zf.pretrain("recipes/gpt-char-shakespeare.yaml")
    model, tokenizer = zf.load(run_dir)
    print("ROMEO:" + zf.generate(model, tokenizer, "ROMEO:", max_new_tokens=100))  # the continuation
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute". A name must not equal a subpackage's (``zeroforge.train`` is the
# package, so the loop's ``train`` is reached as ``zeroforge.train.loop.train``): importing the
# subpackage would overwrite the attribute.
_API = {
    "create_model": "zeroforge.registry:create_model",
    "list_models": "zeroforge.registry:list_models",
    "register_model": "zeroforge.registry:register_model",
    "load_recipe": "zeroforge.config:load_recipe",
    "pretrain": "zeroforge.pretraining:pretrain",
    "run_recipe": "zeroforge.training:run_recipe",
    "finetune": "zeroforge.finetuning:finetune",
    "fit": "zeroforge.fitting:fit",
    "predict": "zeroforge.fitting:predict",
    "evaluate_arrays": "zeroforge.eval.evaluate:evaluate_arrays",
    "prepare": "zeroforge.data.text:prepare",
    "generate": "zeroforge.generation:generate",
    "embed": "zeroforge.embedding:embed",
    "serve_model": "zeroforge.serve:serve_model",
    "evaluate": "zeroforge.eval.evaluate:evaluate",
    "load": "zeroforge.weights:load",
    "load_run": "zeroforge.train.checkpoint:load_run",
    "load_pretrained": "zeroforge.weights:load_pretrained",
    "tokenizer_of": "zeroforge.weights:tokenizer_of",
    "convert": "zeroforge.weights:convert",
    "clean": "zeroforge.data.clean:clean",
    "ChatSession": "zeroforge.chat:ChatSession",
    "save_pretrained": "zeroforge.weights:save_pretrained",
    "ModelOutput": "zeroforge.models.output:ModelOutput",
    "ZeroforgeError": "zeroforge.errors:ZeroforgeError",
    "datasets": "zeroforge.datasets:",
    "tokenizers": "zeroforge.tokenizers:",
    "scratch": "zeroforge.scratch:",
    "explain_model": "zeroforge.explain.run:explain",
    "capture_attention": "zeroforge.modules.attention:capture_attention",
    "attention_maps": "zeroforge.explain.attention:attention_maps",
    "text_saliency": "zeroforge.explain.saliency:text_saliency",
    "hyperparameter_search": "zeroforge.sweep:sweep",
    "find_lr": "zeroforge.lr_find:lr_find",
    "quantize": "zeroforge.quantization:quantize",
    "quantize_model": "zeroforge.quantization:quantize_model",
    "export_gguf": "zeroforge.weights.gguf_export:export_gguf",
    "translate": "zeroforge.translation:translate",
    "evaluate_translation": "zeroforge.translation:evaluate_translation",
    "save_marian": "zeroforge.weights.marian:save_marian",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'zeroforge' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
