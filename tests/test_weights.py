"""Hugging Face folders in and out, against transformers itself.

Tiny random-init GPT2LMHeadModel / BertForPreTraining / BertForSequenceClassification /
LlamaForCausalLM are saved by transformers, loaded by zeroforge (logits equal to 1e-5), saved back
with ``save_pretrained`` and loaded by transformers again. Loading runs once more in a subprocess
where ``import transformers`` fails. Then: run directories, the shipped all-MiniLM-L6-v2, and the
one-line errors (corrupt/truncated files, unknown family, missing tokenizer, shape mismatch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zeroforge
from zeroforge.errors import ConfigError, DataError
from zeroforge.registry import create_model
from zeroforge.train.checkpoint import load_run, publish_final, save_checkpoint
from zeroforge.weights import load_pretrained, save_pretrained
from zeroforge.weights.hf import load_hf_model

transformers = pytest.importorskip("transformers")

V = 64  # vocabulary of every tiny model


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights far from any init, so every tensor (and a transposition or mix-up) changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_scale = name.endswith("weight") and ("norm" in name.lower() or ".ln_" in name)
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if is_scale else 0.0))
    return model.eval()


def hf_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    )
    bert_cfg = dict(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
    )
    bert = transformers.BertForPreTraining(transformers.BertConfig(**bert_cfg))
    classifier = transformers.BertForSequenceClassification(transformers.BertConfig(**bert_cfg, num_labels=3))
    llama = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=V,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=32,
            rope_theta=500.0,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
        )
    )
    return {"gpt2": gpt2, "bert": bert, "bert-classifier": classifier, "llama": llama}


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return getattr(out, "prediction_logits", None) if hasattr(out, "prediction_logits") else out.logits


NAMES = ["gpt2", "bert", "bert-classifier", "llama"]
FAMILY = {"gpt2": "GPT", "bert": "BertForPreTraining", "bert-classifier": "BertForSequenceClassification"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for i, (name, model) in enumerate(hf_models().items()):
        randomize(model, seed=i).save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


X = torch.randint(0, V, (2, 11), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", NAMES)
def test_transformers_checkpoint_loads_with_equal_logits_and_back(name, saved, tmp_path):
    cls = {
        "gpt2": transformers.GPT2LMHeadModel,
        "bert": transformers.BertForPreTraining,
        "bert-classifier": transformers.BertForSequenceClassification,
        "llama": transformers.LlamaForCausalLM,
    }[name]
    reference = cls.from_pretrained(saved[name]).eval()
    ours = load_hf_model(saved[name])
    assert type(ours).__name__ == FAMILY.get(name, "Llama")
    torch.testing.assert_close(logits(ours, X), logits(reference, X), atol=1e-5, rtol=1e-5)

    out = save_pretrained(ours, None, tmp_path / "ours")
    back = cls.from_pretrained(out).eval()
    torch.testing.assert_close(logits(back, X), logits(reference, X), atol=1e-5, rtol=1e-5)
    if name == "bert":  # the NSP head made the round trip as well
        with torch.no_grad():
            torch.testing.assert_close(
                back(X).seq_relationship_logits, ours(X).nsp_logits, atol=1e-5, rtol=1e-5
            )


def test_loading_never_imports_transformers(saved, tmp_path):
    """Every family loads (and saves) with ``import transformers`` made to fail."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["transformers"] = None  # any import of it now raises ImportError
        from zeroforge.weights.hf import load_hf_model, save_pretrained
        for name in {NAMES!r}:
            model = load_hf_model({str(saved["gpt2"].parent)!r} + "/" + name)
            save_pretrained(model, None, {str(tmp_path)!r} + "/" + name)
        print("ok", sorted(m for m in sys.modules if m.startswith("transformers")))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok ['transformers']"  # only our None placeholder


def test_zeroforge_model_round_trips_through_transformers_with_its_own_config(tmp_path):
    # fields HF has no key for (attention impl, bias=False) survive in config.json's "zeroforge" entry
    model = randomize(create_model("gpt-tiny", bias=False, attention="naive"))
    out = save_pretrained(model, None, tmp_path / "gpt")
    reference = transformers.GPT2LMHeadModel.from_pretrained(out).eval()  # zero biases stand in
    torch.testing.assert_close(
        logits(reference, X[:, :8] % 64), logits(model, X[:, :8] % 64), atol=1e-5, rtol=1e-5
    )
    back = load_hf_model(out)
    assert back.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_bare_backbone_loads_into_a_head_model(saved, tmp_path):
    """A BertModel checkpoint (all-MiniLM-L6-v2's kind) loads as bert or bert-classifier; heads stay fresh."""
    encoder = transformers.BertModel.from_pretrained(saved["bert"]).eval()
    encoder.save_pretrained(tmp_path / "encoder")
    clf = load_hf_model(tmp_path / "encoder", family="bert-classifier", n_labels=5)
    assert clf.classifier.out_features == 5
    with torch.no_grad():
        torch.testing.assert_close(clf.bert(X), encoder(X).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_sharded_safetensors_and_weights_only_torch_bin(saved, tmp_path):
    reference = load_hf_model(saved["llama"])
    state = load_file(str(saved["llama"] / "model.safetensors"))
    config = (saved["llama"] / "config.json").read_text()
    keys = sorted(state)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text(config)
    index = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, str(sharded / shard), metadata={"format": "pt"})
        index.update({k: shard for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    torch.testing.assert_close(logits(load_hf_model(sharded), X), logits(reference, X))

    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "config.json").write_text(config)
    torch.save(state, binary / "pytorch_model.bin")
    torch.testing.assert_close(logits(load_hf_model(binary), X), logits(reference, X))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_that_runs_code_is_refused(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text((saved["llama"] / "config.json").read_text())
    torch.save({"model.norm.weight": _Exploit()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(DataError, match="pytorch_model.bin: not a tensors-only PyTorch checkpoint"):
        load_hf_model(tmp_path)
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------- run directories


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_run_directory_final_model_loads_in_transformers(name, tmp_path):
    from zeroforge.tokenizers import CharTokenizer

    model = randomize(create_model(name))
    tokenizer = CharTokenizer(sorted(set("abcdefghijklmnopqrstuvwxyz .,")))
    checkpoint = save_checkpoint(tmp_path, 10, model, tokenizer, None, {"step": 10})
    publish_final(tmp_path, checkpoint, model, tokenizer)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = X % model.config.vocab_size
    torch.testing.assert_close(logits(reference, x), logits(model, x), atol=1e-5, rtol=1e-5)
    loaded, tok = load_run(tmp_path)  # and zeroforge reads the published folder back
    torch.testing.assert_close(logits(loaded, x), logits(model, x))
    assert tok.encode("hello") == tokenizer.encode("hello")
    # the checkpoint itself keeps zeroforge's names (exact resume loads it by them)
    assert json.loads((checkpoint / "config.json").read_text())["zeroforge_family"] == name.split("-")[0]


def test_load_run_and_generate_accept_hf_folders(saved, tmp_path):
    tok_dir = tmp_path / "llama"
    model = load_hf_model(saved["llama"])
    import string

    from zeroforge.tokenizers import CharTokenizer

    tokenizer = CharTokenizer(sorted(string.ascii_letters + string.digits + " ,"))  # 64 ids, as the model
    save_pretrained(model, tokenizer, tok_dir)
    loaded, tok = load_run(tok_dir)
    assert type(loaded).__name__ == "Llama" and tok.encode("hello") == tokenizer.encode("hello")
    text = zeroforge.generate(str(tok_dir), None, "hello", max_new_tokens=5, temperature=0)
    assert isinstance(text, str)


# ----------------------------------------------------------------------------- the shipped all-MiniLM-L6-v2

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Héllo wörld! naïve CAFÉ, 2024-01-01 — unbelievably tokenized 東京",
    "",
]


@pytest.fixture(scope="module")
def minilm() -> Path:
    from zeroforge.weights import resolve

    return resolve("all-minilm-l6-v2")


@pytest.mark.network
def test_minilm_embeddings_equal_transformers_mean_pooled(minilm):
    ours = zeroforge.embed(minilm, SENTENCES)
    tok = transformers.AutoTokenizer.from_pretrained(minilm)
    hf = transformers.AutoModel.from_pretrained(minilm).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = hf(**enc).last_hidden_state
    mask = enc.attention_mask[..., None].float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.network
def test_minilm_token_ids_equal_transformers(minilm):
    model, tok = load_pretrained("all-minilm-l6-v2")
    assert type(model).__name__ == "BertForPreTraining" and model.config.n_embd == 384
    reference = transformers.AutoTokenizer.from_pretrained(minilm)
    for text in SENTENCES:
        assert tok.encode(text) == reference(text, add_special_tokens=False).input_ids, text


# ----------------------------------------------------------------------------- errors


def copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_safetensors(damage, saved, tmp_path):
    d = copy_dir(saved["gpt2"], tmp_path / "m")
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(os.urandom(200) if damage == "garbage" else data[: len(data) - 1000])
    with pytest.raises(DataError) as err:
        load_hf_model(d)
    assert str(weights) in one_line(err)


def test_unknown_family_names_config(saved, tmp_path):
    d = copy_dir(saved["gpt2"], tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    config["model_type"] = "t5"
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as err:
        load_pretrained(d)
    assert f"{d / 'config.json'}: unknown model family model_type='t5'" in one_line(err)


def test_unsupported_config_value_is_named(saved, tmp_path):
    d = copy_dir(saved["llama"], tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 500.0, "factor": 2.0}
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="rope scaling 'yarn' is not supported"):
        load_pretrained(d)


def test_missing_tokenizer_loads_as_none_and_is_named_where_needed(saved):
    model, tok = load_pretrained(saved["gpt2"])  # transformers saved no tokenizer there
    assert tok is None and type(model).__name__ == "GPT"
    with pytest.raises(ConfigError) as err:
        zeroforge.embed(saved["bert"], ["a text"])
    assert one_line(err) == f"{saved['bert']}: has no tokenizer (tokenizer.json); embed needs one"


def test_shape_mismatch_names_file_and_tensor(saved, tmp_path):
    d = copy_dir(saved["gpt2"], tmp_path / "m")
    config = json.loads((d / "config.json").read_text())
    config["n_positions"] = 16  # the file has 32 learned positions
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError) as err:
        load_hf_model(d)
    assert (
        f"{d / 'model.safetensors'}: tensor transformer.wpe.weight has shape (32, 32), expected (16, 32)"
        in one_line(err)
    )


def test_missing_and_unexpected_tensors_are_named(saved, tmp_path):
    d = copy_dir(saved["llama"], tmp_path / "m")
    state = load_file(str(d / "model.safetensors"))
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(DataError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight"):
        load_hf_model(d)
    state["model.layers.1.mlp.up_proj.weight"] = torch.zeros(64, 32)
    state["model.layers.1.mlp.extra.weight"] = torch.zeros(3)
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(DataError, match=r"unexpected tensor model\.layers\.1\.mlp\.extra\.weight"):
        load_hf_model(d)


def test_failed_save_writes_nothing(tmp_path, monkeypatch):
    import zeroforge.weights.hf as hf

    model = create_model("gpt-tiny")

    def broken(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        hf.save_pretrained(model, None, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one


def test_checkpoint_that_stores_a_tied_weight_twice_loads(saved, tmp_path):
    # older GPT2LMHeadModel saves include lm_head.weight, a copy of transformer.wte.weight
    d = copy_dir(saved["gpt2"], tmp_path / "m")
    state = load_file(str(d / "model.safetensors"))
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    torch.testing.assert_close(logits(load_hf_model(d), X), logits(load_hf_model(saved["gpt2"]), X))
