"""``zeroforge finetune`` end to end on tiny models: classification (every method), SFT with LoRA and
packing (the merged model loads in transformers with equal logits), continued LM training; the
evaluation (metrics vs sklearn, confusion PNG, --compare); recipe and data errors as one line."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import zeroforge
from zeroforge.cli import main
from zeroforge.config import load_recipe
from zeroforge.errors import ConfigError, DataError
from zeroforge.finetuning import build_model, finetune, load_base
from zeroforge.tokenizers import CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,!?:#'\n0123456789"
POS = ["good", "great", "fine", "superb", "nice"]
NEG = ["bad", "awful", "poor", "dire", "worse"]


@pytest.fixture
def char_tokenizer(tmp_path: Path) -> Path:
    folder = tmp_path / "tok"
    CharTokenizer.from_text(ALPHABET).save(folder)
    return folder


def sentiment_csv(path: Path, n: int = 240, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = ["review,label"]
    for i in range(n):
        label = i % 2
        words = [
            rng.choice(["the", "a", "film", "plot", "cast", "it", "was"]) for _ in range(rng.randint(2, 5))
        ]
        words.insert(rng.randint(0, len(words)), rng.choice(POS if label else NEG))
        lines.append(f"{' '.join(words)} {i},{'pos' if label else 'neg'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def classification_recipe(tmp_path: Path, tok: Path, data: Path, method: str = "full", **finetune) -> dict:
    return {
        "model": {"name": "gpt-tiny", "tokenizer": str(tok), "config": {"block_size": 48}},
        "data": {"dataset": str(data), "text_column": "review", "max_length": 40, "eval_batch_size": 32},
        "train": {
            "out_dir": str(tmp_path / f"run-{method}"),
            "max_steps": 120,
            "batch_size": 16,
            "lr": 3e-3,
            "weight_decay": 0.0,
            "warmup_steps": 5,
            "eval_every": 40,
            "log_every": 20,
            "progress": False,
            "seed": 0,
        },
        "finetune": {"task": "classification", "method": method, **finetune},
    }


def test_classification_learns_and_evaluates_like_sklearn(tmp_path, char_tokenizer):
    sklearn = pytest.importorskip("sklearn.metrics")
    data = sentiment_csv(tmp_path / "reviews.csv")
    run = finetune(classification_recipe(tmp_path, char_tokenizer, data))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["split"] == "test" and metrics["n"] == 24
    assert metrics["accuracy"] >= 0.9, metrics  # the words decide the label: a trained model must see it
    assert (run / "confusion_matrix.png").stat().st_size > 1000
    assert (run / "COMPLETE").is_file() and "val_accuracy" in (run / "metrics.csv").read_text()

    # evaluate() on the run reproduces the numbers, and they are sklearn's
    again = zeroforge.evaluate(run)
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc", "f1_macro"):
        assert again[key] == pytest.approx(metrics[key]), key
    from zeroforge.data.tables import encode_texts
    from zeroforge.data.tasks import labelled_splits
    from zeroforge.eval.evaluate import classifier_probabilities
    from zeroforge.tokenizers import load_tokenizer
    from zeroforge.train.checkpoint import load_run

    recipe = load_recipe(classification_recipe(tmp_path, char_tokenizer, data), finetune=True)
    test = labelled_splits(recipe, run)["test"]
    model, _ = load_run(run)
    probs = classifier_probabilities(model, encode_texts(test, load_tokenizer(run), 40))
    pred = probs.argmax(1)
    assert again["accuracy"] == pytest.approx(sklearn.accuracy_score(test.labels, pred))
    assert again["f1"] == pytest.approx(sklearn.f1_score(test.labels, pred))
    assert again["f1_macro"] == pytest.approx(sklearn.f1_score(test.labels, pred, average="macro"))
    assert again["roc_auc"] == pytest.approx(sklearn.roc_auc_score(test.labels, probs[:, 1]))
    assert again["confusion_matrix"] == sklearn.confusion_matrix(test.labels, pred).tolist()
    assert again["label_names"] == ["neg", "pos"] and again["positive_class"] == "pos"

    # another labelled file, labels mapped by name
    other = tmp_path / "other.csv"
    other.write_text("review,label\nsuperb cast,pos\nawful plot,neg\n", encoding="utf-8")
    on_file = zeroforge.evaluate(run, other)
    assert on_file["n"] == 2 and on_file["data"] == str(other)
    bad = tmp_path / "bad.csv"
    bad.write_text("review,label\nsuperb cast,pos\nawful plot,meh\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{bad}:3: label: 'meh' is not one of the labels neg, pos"):
        zeroforge.evaluate(run, bad)


@pytest.mark.parametrize("method", ["head", "freeze", "lora"])
def test_methods_train_only_their_parameters_and_publish_a_plain_model(tmp_path, char_tokenizer, method):
    data = sentiment_csv(tmp_path / "reviews.csv", n=80)
    config = classification_recipe(tmp_path, char_tokenizer, data, method, freeze_top_n=1, lora={"rank": 4})
    config["train"]["max_steps"] = 6
    recipe = load_recipe(config, finetune=True)
    base, _ = load_base(recipe.model)
    model = build_model(recipe, base, ["neg", "pos"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if method == "head":
        assert trainable == {"score.weight", "score.bias"}
    elif method == "freeze":
        assert {n.split(".")[3] for n in trainable if n.startswith("backbone.transformer.h.")} == {"1"}
        assert {"backbone.transformer.ln_f.weight", "score.weight"} <= trainable
        assert not any(".h.0." in n or "wte" in n for n in trainable)
    else:
        assert trainable == {n for n in trainable if "lora_" in n or n.startswith("score.")}
        assert any("c_attn.lora_A" in n for n in trainable)

    run = finetune(config)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == method and 0 <= metrics["accuracy"] <= 1
    config_json = json.loads((run / "config.json").read_text())
    assert config_json["zeroforge_family"] == "classifier" and config_json["lora"] is None
    if method == "lora":
        adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
        assert adapter["r"] == 4 and adapter["modules_to_save"] == ["score"]
    from zeroforge.train.checkpoint import load_run

    reloaded, _ = load_run(run)  # no LoRA code needed: the adapters are merged
    assert not any("lora_" in k for k in reloaded.state_dict())
    assert zeroforge.evaluate(run)["accuracy"] == pytest.approx(metrics["accuracy"])


@pytest.mark.parametrize("method", ["full", "lora"])
def test_early_stopping_on_val_accuracy_keeps_the_best_checkpoint(tmp_path, char_tokenizer, method):
    data = sentiment_csv(tmp_path / "reviews.csv", n=120)
    config = classification_recipe(tmp_path, char_tokenizer, data, method, lora={"rank": 4})
    config["train"].update(max_steps=40, eval_every=10, monitor="val_accuracy", keep_best=True)
    config["train"]["early_stopping_patience"] = 2
    run = finetune(config)
    metrics = json.loads((run / "metrics.json").read_text())
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r["val_accuracy"]]
    accuracy = {int(r["step"]): float(r["val_accuracy"]) for r in rows}
    best = max(accuracy.values())
    assert metrics["monitor"] == "val_accuracy" and metrics["kept_best"] is True
    assert metrics["best_step"] == min(s for s, a in accuracy.items() if a == best)
    assert metrics["best_score"] == pytest.approx(best)
    assert json.loads((run / "COMPLETE").read_text())["published_step"] == metrics["best_step"]
    # the test metrics were computed on the kept model, and the published model is that model
    assert zeroforge.evaluate(run)["accuracy"] == pytest.approx(metrics["accuracy"])


@pytest.mark.network
def test_bert_body_with_a_wordpiece_tokenizer(tmp_path):
    from zeroforge.weights import resolve

    data = sentiment_csv(tmp_path / "reviews.csv", n=60)
    config = {
        "model": {
            "name": "bert-test",
            "tokenizer": str(resolve("all-minilm-l6-v2")),
            "config": {"block_size": 64},
        },
        "data": {"dataset": str(data), "text_column": "review", "max_length": 32},
        "train": {"out_dir": str(tmp_path / "bert"), "max_steps": 4, "batch_size": 8, "progress": False},
        "finetune": {"method": "lora", "pooling": "mean"},
    }
    run = finetune(config)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 6 and "roc_auc" in metrics


def sft_rows(path: Path, n: int = 40) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        if i % 3:
            rows.append({"instruction": f"add {a} and {b}", "output": f"{a + b}"})
        else:
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": f"say {a}"},
                        {"role": "assistant", "content": f"{a}!"},
                    ]
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("pack", [False, True])
def test_sft_lora_publishes_a_merged_model_transformers_loads(tmp_path, char_tokenizer, pack):
    transformers = pytest.importorskip("transformers")
    config = {
        "model": {"name": "llama-tiny", "tokenizer": str(char_tokenizer), "config": {"block_size": 96}},
        "data": {"dataset": str(sft_rows(tmp_path / "sft.jsonl")), "max_length": 96, "pack": pack},
        "train": {
            "out_dir": str(tmp_path / "sft"),
            "max_steps": 8,
            "batch_size": 4,
            "eval_every": 4,
            "progress": False,
        },
        "finetune": {
            "task": "sft",
            "method": "lora",
            "lora": {"rank": 4, "target_modules": ["q_proj", "v_proj", "o_proj"]},
        },
    }
    run = finetune(config)
    hf_config = json.loads((run / "config.json").read_text())
    assert hf_config["model_type"] == "llama" and (run / "adapter" / "adapter_model.safetensors").is_file()
    ours, tokenizer = zeroforge.load_pretrained(run)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(run).eval()
    ids = torch.tensor([tokenizer.encode("### User:\nadd 2 and 3\n\n### Assistant:\n")])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, theirs(ids).logits, atol=1e-5, rtol=1e-5)
    # merged: the targeted projections moved away from the (seeded) start, the others did not
    from zeroforge.registry import create_model

    torch.manual_seed(1337)  # train.seed: finetune seeds before building the fresh preset
    start = create_model("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=96).state_dict()
    final = ours.state_dict()
    assert not torch.allclose(
        final["model.layers.0.self_attn.q_proj.weight"], start["model.layers.0.self_attn.q_proj.weight"]
    )
    assert torch.equal(
        final["model.layers.0.self_attn.k_proj.weight"], start["model.layers.0.self_attn.k_proj.weight"]
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "sft" and metrics["val_loss"] is not None


def test_sft_packing_and_unpacked_validation_losses_agree(tmp_path, char_tokenizer):
    """The same model and validation rows, packed or not, give the same token-weighted val loss."""
    from zeroforge.data.sft import encode_rows, eval_batches, read_jsonl
    from zeroforge.train.runtime import evaluate_batches

    config = {
        "model": {"name": "llama-tiny", "tokenizer": str(char_tokenizer), "config": {"block_size": 96}},
        "data": {"dataset": str(sft_rows(tmp_path / "sft.jsonl", 12)), "max_length": 96},
        "train": {"out_dir": str(tmp_path / "x"), "progress": False},
        "finetune": {"task": "sft"},
    }
    recipe = load_recipe(config, finetune=True)
    base, tok = load_base(recipe.model)
    model = build_model(recipe, base, None).eval()
    examples, _ = encode_rows(read_jsonl(tmp_path / "sft.jsonl"), tok, 96)
    one = evaluate_batches(model, eval_batches(examples, 64), torch.device("cpu"))
    packed = evaluate_batches(model, eval_batches(examples, 64, packed_length=96), torch.device("cpu"))
    assert one["loss"] == pytest.approx(packed["loss"], rel=1e-5)


def test_continued_lm_training_on_a_corpus(tmp_path, char_tokenizer, tiny_corpus):
    config = {
        "model": {"name": "gpt-tiny", "tokenizer": str(char_tokenizer), "config": {"block_size": 32}},
        "data": {"dataset": str(tiny_corpus), "max_length": 32, "splits": [0.9, 0.1], "eval_batch_size": 8},
        "train": {
            "out_dir": str(tmp_path / "clm"),
            "max_steps": 40,
            "batch_size": 8,
            "lr": 1e-2,
            "eval_every": 10,
            "progress": False,
        },
        "finetune": {"task": "clm", "method": "freeze", "freeze_top_n": 1},
    }
    run = finetune(config)
    metrics = json.loads((run / "metrics.json").read_text())
    from zeroforge.eval.plots import read_metrics_csv

    val = [r["val_loss"] for r in read_metrics_csv(run / "metrics.csv") if r.get("val_loss") is not None]
    assert metrics["val_perplexity"] == pytest.approx(np.exp(metrics["val_loss"]))
    # the top block and final norm alone learn something: validation loss falls at every evaluation
    assert len(val) == 4 and all(b < a for a, b in zip(val, val[1:])) and val[-1] < val[0] - 0.05
    assert json.loads((run / "config.json").read_text())["model_type"] == "gpt2"


def test_cli_finetune_and_compare(tmp_path, char_tokenizer, capsys):
    data = sentiment_csv(tmp_path / "reviews.csv", n=80)
    runs = []
    for method in ("full", "head"):
        config = classification_recipe(tmp_path, char_tokenizer, data, method)
        config["train"]["max_steps"] = 5
        path = tmp_path / f"{method}.yaml"
        import yaml

        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        assert main(["finetune", "--config", str(path), "train.lr=1e-3"]) == 0
        runs.append(config["train"]["out_dir"])
    capsys.readouterr()
    assert main(["evaluate", "--compare", *runs]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split(" | ")[:4] == ["run", "method", "accuracy", "F1"] or "accuracy" in table[0]
    assert table[2].startswith(runs[0]) and " full " in table[2] and " head " in table[3]
    assert main(["evaluate", runs[0]]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "test"


def test_recipe_errors_are_one_line(tmp_path, char_tokenizer):
    with pytest.raises(ConfigError, match=r"^finetune.methd: unknown key"):
        load_recipe({"finetune": {"methd": "lora"}}, finetune=True)
    with pytest.raises(ConfigError, match=r"^recipe: unknown section 'fine_tune'"):
        load_recipe({"fine_tune": {}}, finetune=True)
    with pytest.raises(ConfigError, match="finetune.method: head needs task classification"):
        load_recipe({"finetune": {"task": "sft", "method": "head"}}, finetune=True)
    with pytest.raises(ConfigError, match="finetune.lora.rank: must be >= 1"):
        load_recipe(None, ["finetune.lora.rank=0"], finetune=True)
    with pytest.raises(ConfigError, match="model.pretrained: set exactly one"):
        load_recipe({"model": {"pretrained": "x", "name": "gpt-tiny"}}, finetune=True)
    with pytest.raises(ConfigError, match=r"clean.dedup.threshold: must be in \(0, 1\]"):
        load_recipe({"clean": {"dedup": {"threshold": 2}}}, finetune=True)
    with pytest.raises(ConfigError, match="data.splits: expected 2 or 3 fractions"):
        load_recipe(None, ["data.splits=[0.5,0.2]"], finetune=True)
    with pytest.raises(
        ConfigError, match="train.monitor: expected val_loss or a val_<metric> name, got 'f1'"
    ):
        load_recipe(None, ["train.monitor=f1"], finetune=True)
    with pytest.raises(ConfigError, match="data.pack: packing is for sft and clm"):
        load_recipe(None, ["data.pack=true"], finetune=True)


def test_data_errors_name_the_row_and_field(tmp_path, char_tokenizer):
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood,pos\n,neg\n", encoding="utf-8")
    config = classification_recipe(tmp_path, char_tokenizer, data)
    config["data"]["text_column"] = "text"
    with pytest.raises(DataError, match=rf"^{data}:3: text: empty text$"):
        finetune(config)
    data.write_text("body,label\ngood,pos\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no column 'text' \(data.text_column"):
        finetune(config)
    # a tokenizer bigger than the model's embedding
    config = classification_recipe(tmp_path, char_tokenizer, sentiment_csv(tmp_path / "r.csv"))
    config["model"]["config"]["vocab_size"] = 20
    with pytest.raises(
        ConfigError, match=r"^model: the tokenizer has \d+ tokens but the model's embedding has 20 rows"
    ):
        finetune(config)


def test_clean_section_runs_before_splitting(tmp_path, char_tokenizer):
    data = sentiment_csv(tmp_path / "reviews.csv", n=60)
    text = data.read_text(encoding="utf-8") + "good   good good 1,pos\nGOOD GOOD GOOD 1,pos\n"
    data.write_text(text, encoding="utf-8")
    config = classification_recipe(tmp_path, char_tokenizer, data)
    config["train"]["max_steps"] = 2
    config["clean"] = {"normalize": {"lowercase": True}, "dedup": {"near": False}}
    run = finetune(config)
    report = json.loads((run / "clean_report.json").read_text())
    assert report["rows_out"] < report["rows_in"]
    assert (run / "data" / "reviews.clean.csv").is_file()


def test_public_api_and_every_shipped_recipe_loads():
    import importlib

    importlib.import_module("zeroforge.finetuning")
    assert zeroforge.finetune is finetune  # the function, not a submodule
    recipes = sorted(Path(__file__).resolve().parents[1].glob("recipes/finetune-*.yaml"))
    for path in recipes:
        load_recipe(path, finetune=True)


def test_train_command_fine_tunes_a_recipe_with_a_finetune_section(tmp_path, char_tokenizer):
    import yaml

    config = classification_recipe(tmp_path, char_tokenizer, sentiment_csv(tmp_path / "r.csv", n=40))
    config["train"]["max_steps"] = 2
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", "--config", str(path)]) == 0
    metrics = json.loads((Path(config["train"]["out_dir"]) / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["train_steps"] == 2
    with pytest.raises(ConfigError, match="finetune: this recipe fine-tunes"):
        zeroforge.pretrain(config)
