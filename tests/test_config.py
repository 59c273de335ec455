from pathlib import Path

import pytest

from zeroforge.config import TrainArgs, from_dict, load_recipe, parse_overrides
from zeroforge.errors import ConfigError

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

    if "finetune" in yaml.safe_load(path.read_text()):  # a fine-tuning recipe has its own schema
        from zeroforge.finetuning import load_finetune_recipe

        load_finetune_recipe(path)
    else:
        load_recipe(path).model_config()
