"""A real GGUF client runs what export-gguf writes: llama.cpp (through llama-cpp-python, built from its
PyPI source) loads the exported SmolLM2-135M-Instruct and a GPT trained by a zeroforge recipe, and
its 32 greedy tokens equal zeroforge's on the same f16 file. Slow (a recipe run, a 135M model) and
opt-in: ``pytest -m slow tests/test_llamacpp.py``; bench/quantize.py records the same check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

llama_cpp = pytest.importorskip("llama_cpp")

STEPS = 32


def greedy_pair(gguf_path: Path, prompt: str) -> tuple[list[int], list[int]]:
    """(llama.cpp's, zeroforge's) greedy continuations of ``prompt`` on the same GGUF file."""
    import zeroforge
    from zeroforge.generation import generate_ids

    model, tokenizer = zeroforge.load(gguf_path)
    ids = tokenizer.encode(prompt)
    ours = generate_ids(model, torch.tensor([ids]), max_new_tokens=STEPS, temperature=0.0)[0]  # new tokens
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=256, n_threads=2, verbose=False)
    theirs: list[int] = []
    for token in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        theirs.append(int(token))
        if len(theirs) == STEPS:
            break
    return theirs, ours.tolist()


@pytest.mark.slow
@pytest.mark.network
def test_llamacpp_runs_exported_smollm2(tmp_path: Path) -> None:
    import zeroforge

    path = zeroforge.export_gguf("smollm2-135m-instruct", tmp_path / "smol-f16.gguf", "f16")
    theirs, ours = greedy_pair(path, "The capital of France is")
    assert theirs == ours


@pytest.mark.slow
@pytest.mark.network
def test_llamacpp_runs_a_recipe_trained_gpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zeroforge
    from zeroforge.cli import main

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "gpt-char-shakespeare.yaml"
    monkeypatch.chdir(tmp_path)
    args = ["pretrain", "--config", str(recipe), "train.max_minutes=null", "train.max_steps=300"]
    assert main([*args, "train.progress=false", "train.name=gpt"]) == 0
    path = zeroforge.export_gguf(tmp_path / "runs" / "gpt", tmp_path / "gpt-f16.gguf", "f16")
    theirs, ours = greedy_pair(path, "ROMEO:\n")
    assert theirs == ours
