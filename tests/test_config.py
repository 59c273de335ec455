from pathlib import Path

import pytest

from zeroforge.config import TrainArgs, load_recipe, parse_overrides
from zeroforge.errors import ConfigError
from zeroforge.schema import from_dict

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_overrides_are_parsed_as_yaml_scalars():
    assert parse_overrides(["train.lr=0.5", "model.n_layer=6", "train.max_steps=null"]) == {
        "train": {"lr": 0.5, "max_steps": None},
        "model": {"n_layer": 6},
    }
    recipe = load_recipe(None, ["train.lr=3e-4", "train.resume=true"])  # YAML 1.1 reads 3e-4 as a string
    assert recipe.train.lr == 3e-4 and recipe.train.resume is True


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.lr=-1"], "train.lr: must be > 0"),
        (["train.lrr=1"], "train.lrr: unknown key"),
        (["train.batch_size=abc"], "train.batch_size: expected an integer"),
        (["train.precision=fp8"], "train.precision: expected one of fp32, bf16, auto"),
        (["nonsense"], "expected section.key=value"),
        (["model.n_layerz=3"], "model.n_layerz: unknown key"),
        (["model.name=nope"], "unknown model 'nope'"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_recipe(None, overrides)


def test_unknown_section_and_missing_file(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("modle: {}\n")
    with pytest.raises(ConfigError, match="unknown section 'modle'"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_int_to_float_and_float_strings():
    args = from_dict(TrainArgs, {"lr": 1, "min_lr": "1e-5"}, "train")
    assert args.lr == 1.0 and isinstance(args.lr, float) and args.min_lr == 1e-5


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_loads_and_validates(path):
    import yaml

    recipe = load_recipe(path)  # one schema: pretraining, fine-tuning and image recipes alike
    assert (recipe.finetune is not None) == ("finetune" in yaml.safe_load(path.read_text()))
    if recipe.model.name is not None:
        recipe.model_config()


def test_a_section_that_is_not_a_mapping_is_one_line(tmp_path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("train: 5\n")
    with pytest.raises(ConfigError, match=r"^.*recipe.yaml: train: expected a mapping of fields, got 5$"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match=r"^data: expected a mapping of fields, got \['a', 'b'\]$"):
        load_recipe({"data": ["a", "b"]})


def test_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(err.value) == f"{path}: train.lr: must be > 0, got -1.0"


def test_older_finetune_spellings_load_as_the_one_schema():
    """``data.dataset`` and a ``model.config:`` mapping (fine-tuning recipes and run.yaml files written
    before the one schema) read as ``data.source`` and inline model fields."""
    old = {
        "model": {"name": "gpt-tiny", "tokenizer": "gpt2", "config": {"block_size": 48}},
        "data": {"dataset": "reviews.csv"},
        "finetune": {"task": "classification"},
    }
    recipe = load_recipe(old)
    assert recipe.data.source == "reviews.csv" and recipe.model.config == {"block_size": 48}
    assert recipe.to_dict()["model"] == {
        "name": "gpt-tiny",
        "tokenizer": "gpt2",
        "dtype": "float32",
        "block_size": 48,
    }
    assert load_recipe(recipe.to_dict()) == recipe  # run.yaml reloads as the same recipe
    with pytest.raises(ConfigError, match="data.dataset: renamed to data.source; give only data.source"):
        load_recipe({"data": {"dataset": "a", "source": "b"}, "finetune": {}})


def test_one_schema_for_pretraining_and_finetuning():
    pre = load_recipe(None, ["model.n_layer=1"])
    assert pre.finetune is None and pre.model.name == "gpt-char-small" and pre.model.config == {"n_layer": 1}
    ft = load_recipe(None, finetune=True)
    assert (
        ft.finetune is not None and ft.model.pretrained == "all-minilm-l6-v2" and ft.data.source == "sms-spam"
    )
    with pytest.raises(
        ConfigError, match="model.pretrained: training pretrained weights needs a finetune: section"
    ):
        load_recipe({"model": {"pretrained": "all-minilm-l6-v2"}})
    with pytest.raises(ConfigError, match="model.tokenizer: a fresh model.name needs model.tokenizer"):
        load_recipe({"model": {"name": "gpt-tiny"}, "finetune": {}})
    with pytest.raises(ConfigError, match="data.objective: expected one of clm, mlm_nsp, images"):
        load_recipe(None, ["data.objective=rl"])
