"""Recipes: one YAML schema for every kind of training, one loader, one override syntax.

    model:        what to train: a registry preset from a random start (``name``) with its config
                  fields inline (``n_layer: 6``), or pretrained weights (``pretrained``)
    data:         where the examples come from and how they are cut (``source``, ``objective``...)
    train:        the one training loop's settings (``lr``, ``max_steps``, ``batch_size``...)
    distributed:  how the run spreads over torchrun's processes (optional)
    finetune:     the fine-tuning task and method (optional: its presence makes a fine-tuning run)
    clean:        a cleaning step run on ``data.source`` first (optional, ``zeroforge.data.clean``)

Every section is a typed dataclass validated by ``zeroforge.schema.from_dict``; bad input is a one-line
``ConfigError`` naming the file and field (``recipe.yaml: train.lr: must be > 0, got -1.0``). Dotted
overrides (``train.lr=3e-4``) are parsed as YAML scalars and applied before validation.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from zeroforge.errors import ConfigError
from zeroforge.modules.lora import LoRAConfig
from zeroforge.schema import from_dict, require

DEFAULT_MODEL = "gpt-char-small"
"""The model of a pretraining recipe without a ``model`` section (``zeroforge pretrain`` alone)."""
DEFAULT_FINETUNE_MODEL = "all-minilm-l6-v2"
DEFAULT_FINETUNE_SOURCE = "sms-spam"

# ----------------------------------------------------------------------------- model


@dataclass
class ModelArgs:
    """What to train: a registry preset from a random start, or pretrained weights."""

    name: str | None = None
    """A registry preset or family (``zeroforge models``), initialised at random."""
    pretrained: str | None = None
    """Named weights (``all-minilm-l6-v2``, ``smollm2-135m-instruct``), an HF folder, a GGUF file or a
    run directory; its own tokenizer comes with it (fine-tuning)."""
    tokenizer: str | None = None
    """Fine-tuning a fresh ``name``: a tokenizer folder, or ``gpt2``. (Pretraining builds its tokenizer
    from the corpus as ``data.tokenizer`` says.)"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """The dtype pretrained weights are loaded in."""
    config: dict[str, Any] = field(default_factory=dict)
    """The family's config fields, written inline in the recipe (``n_layer: 6``, ``dropout: 0.1``)."""

    def __post_init__(self) -> None:
        require(
            (self.pretrained is None) != (self.name is None),
            "pretrained",
            "set exactly one of model.pretrained (weights) and model.name (a fresh preset)",
        )

    def to_dict(self) -> dict[str, Any]:
        """The recipe's ``model`` section: the named keys, then the config fields inline."""
        named = {k: getattr(self, k) for k in MODEL_KEYS if getattr(self, k) is not None}
        return {**named, **self.config}


MODEL_KEYS = ("name", "pretrained", "tokenizer", "dtype")


def model_args(values: dict[str, Any], where: str = "model") -> ModelArgs:
    """``model:`` mapping -> ModelArgs: the keys of MODEL_KEYS by name, every other key a config field."""
    config = {k: v for k, v in values.items() if k not in MODEL_KEYS}
    named = {k: v for k, v in values.items() if k in MODEL_KEYS}
    return from_dict(ModelArgs, {**named, "config": config}, where)


# ----------------------------------------------------------------------------- data


@dataclass
class InstructionArgs:
    """FLAN-style instruction rows from the labelled datasets (``data.source: instructions``)."""

    tasks: list[str] = field(default_factory=lambda: ["sms-spam", "rotten-tomatoes", "bbc-news"])
    """Tasks of ``zeroforge.data.instructions.TASKS``."""
    train: int = 600
    """Training rows per task (train phrasings, train-split examples)."""
    val: int = 40
    """Validation rows per task (held-out phrasings, val-split examples)."""
    test: int = 200
    """Test rows per task (held-out phrasings, test-split examples): the before/after accuracy."""

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(len(self.tasks) > 0, "tasks", "name at least one task")


@dataclass
class DataArgs:
    """Where the examples come from and how they are cut. Which fields apply depends on the run:
    pretraining reads ``data.objective``, fine-tuning ``finetune.task``."""

    # --- every run
    source: str = "shakespeare"
    """A dataset name (``zeroforge.datasets``; ``mnist``, ``fashion-mnist``, ``mnist-5k`` for images;
    ``instructions`` for SFT rows built from the labelled datasets), a file, or a folder of .txt files."""
    objective: Literal["clm", "mlm_nsp", "images", "translation"] = "clm"
    """Pretraining: ``clm`` = next-token prediction; ``mlm_nsp`` = BERT's masked LM + next sentence
    prediction; ``images`` = supervised image classification (MLP, LeNet, ResNet...); ``translation`` =
    an encoder-decoder on a parallel corpus (``source`` names a language pair: ``en-es``)."""
    val_fraction: float = 0.1
    """``clm``: the last fraction of the text is validation (contiguous, like nanoGPT). ``mlm_nsp``: this
    fraction of the documents (at least 2) is held out whole. ``images``: a random fraction of the
    training split (``seed``) is held out."""
    max_examples: int | None = None
    """Use at most this many training examples (a stratified sample for tables), for quick runs."""
    seed: int = 0
    """Seed of the split (fixed apart from ``train.seed`` so runs with other training seeds share a test set)."""

    # --- pretraining on text: the tokenizer built from the corpus and the prepared token files
    tokenizer: str = "char"
    """``char``, ``bpe`` (byte-level BPE trained on the corpus), ``gpt2`` (shipped GPT-2 BPE), ``wordpiece``
    (BERT's, trained on the training documents), or for ``mlm_nsp`` a vocab.txt / tokenizer.json path."""
    vocab_size: int = 4096
    """Target vocabulary size when training a BPE or WordPiece tokenizer."""
    prepared_dir: str | None = None
    """Where ``prepare`` writes the token files; default ``<cache>/prepared/<source>-<tokenizer>``."""
    lowercase: bool = True
    """WordPiece: lowercase and strip accents before tokenizing (an uncased model)."""

    # --- mlm_nsp (BERT, Devlin et al. 2019)
    mask_prob: float = 0.15
    """Fraction of tokens selected for prediction (80% [MASK], 10% random, 10% kept)."""
    eval_mask_prob: float | None = None
    """The same for the held-out pairs; default ``mask_prob``. Training with more masking (Wettig et
    al. 2023: 15% is not optimal) while scoring at BERT's 15% keeps runs comparable."""
    whole_word_mask: bool = False
    """Select whole words (a token with its ``##`` pieces) instead of single tokens."""
    dupe_factor: int = 5
    """Differently cut and paired copies of the training documents (BERT's dupe_factor)."""
    extra_sources: list[str] = field(default_factory=list)
    """More documents for the training side only (validation stays ``source``'s held-out documents):
    domain-adaptive pretraining (Gururangan et al. 2020). Each is a text corpus name or path, or
    ``<labelled dataset>:train``: the texts of that table's training split, split as fine-tuning splits
    it (``splits``, ``seed``, repeats dropped), one document per text, labels unused."""
    nfkc: bool = False
    """WordPiece: apply Unicode NFKC before BERT's normaliser, so full-width and half-width forms
    (１ and 1, ， and ,) are one token."""

    # --- fine-tuning: labelled tables (classification), instruction rows (sft), a text corpus (clm)
    format: Literal["auto", "csv", "tsv", "jsonl"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    header: bool = True
    """CSV/TSV: the first row names the columns (else columns are ``0``, ``1``, ...)."""
    labels: list[str] | None = None
    """The label set and its order (ids); a row with another label is an error. Default: the sorted labels seen."""
    splits: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """train / val / test fractions (stratified by label for classification; clm: the last val+test of the text)."""
    max_length: int = 128
    """Tokens per example (longer ones are cut; for ``pack`` the length of a packed row)."""
    drop_duplicates: bool = True
    """Drop repeated texts (normalised) before splitting, so no text is in both train and test."""
    eval_batch_size: int = 64
    pack: bool = False
    """sft: pack several examples per row (block-diagonal attention, no cross-example attention)."""
    group_by_length: bool = False
    """Training batches of similar-length examples (less padding; each epoch still sees every example once)."""
    instructions: InstructionArgs = field(default_factory=InstructionArgs)

    def __post_init__(self) -> None:
        require(0 < self.val_fraction < 1, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        minimum = {
            "vocab_size": 2,
            "dupe_factor": 1,
            "max_length": 3,
            "eval_batch_size": 1,
            "max_examples": 2,
        }
        for name, low in minimum.items():
            value = getattr(self, name)  # max_examples None: all of them
            require(value is None or value >= low, name, f"must be >= {low}, got {value}")
        require(0 < self.mask_prob < 1, "mask_prob", f"must be in (0, 1), got {self.mask_prob}")
        require(
            self.eval_mask_prob is None or 0 < self.eval_mask_prob < 1,
            "eval_mask_prob",
            f"must be in (0, 1) or null, got {self.eval_mask_prob}",
        )
        require(
            2 <= len(self.splits) <= 3
            and all(f >= 0 for f in self.splits)
            and math.isclose(sum(self.splits), 1.0),
            "splits",
            f"expected 2 or 3 fractions (train, val[, test]) that sum to 1, got {self.splits}",
        )
        require(self.splits[1] > 0, "splits", f"the validation fraction must be > 0, got {self.splits}")


# ----------------------------------------------------------------------------- train, distributed


@dataclass
class TrainArgs:
    """The one training loop's settings (shared by every model)."""

    name: str = "run"
    """Run name; the run directory is ``out_dir`` or ``runs/<name>``."""
    out_dir: str | None = None
    max_steps: int | None = 1000
    """Optimizer steps; ``null`` to stop on ``max_minutes`` alone."""
    max_minutes: float | None = None
    """Wall-clock budget for training (evaluation excluded); the schedule then follows time."""
    batch_size: int = 12
    grad_accum: int = 1
    block_size: int | None = None
    """Training sequence length; default the model's block size."""
    optimizer: Literal["adamw", "adam", "sgd", "muon"] = "adamw"
    """``muon``: Muon for the blocks' matrices, AdamW for the rest (train/optim.py)."""
    lr: float = 1e-3
    adamw_lr_scale: float = 1.0
    """With ``optimizer: muon``: the AdamW side's learning rate (embeddings, heads, biases, norms)
    as a multiple of ``lr``; the schedule scales both alike."""
    min_lr: float | None = None
    """Floor of the cosine decay; default lr / 10."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    momentum: float = 0.9
    """SGD's momentum; Muon's too (0.95 is Muon's usual value)."""
    eps: float = 1e-8
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float = 1.0
    """Clip the global gradient norm; 0 disables."""
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    eval_every: int = 250
    eval_batches: int = 20
    early_stopping_patience: int = 0
    """Stop after this many evaluations without improvement of ``monitor``; 0 disables."""
    monitor: str = "val_loss"
    """The validation metric that early stopping and ``keep_best`` watch: ``val_loss`` or any
    ``val_<metric>`` the model reports (``val_accuracy``, ``val_f1``, ``val_mlm_accuracy``...)."""
    monitor_mode: Literal["auto", "min", "max"] = "auto"
    """Whether lower or higher ``monitor`` is better; auto: lower for a loss, higher otherwise."""
    keep_best: bool = False
    """Keep the checkpoint with the best ``monitor`` value (``checkpoints/best-step-N``) and publish it,
    not the last step, as the run's final model."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    resume: bool = False
    seed: int = 1337
    device: str = "auto"
    compile: bool = False
    threads: int = 0
    """torch threads; 0 leaves torch's default."""
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.adamw_lr_scale > 0, "adamw_lr_scale", f"must be > 0, got {self.adamw_lr_scale}")
        require(
            self.adamw_lr_scale == 1.0 or self.optimizer == "muon",
            "adamw_lr_scale",
            f"only applies with optimizer muon (got optimizer {self.optimizer}); leave it at 1.0",
        )
        require(self.min_lr is None or self.min_lr >= 0, "min_lr", f"must be >= 0, got {self.min_lr}")
        for name in ("batch_size", "grad_accum", "max_steps", "eval_every", "eval_batches", "block_size"):
            value = getattr(self, name)  # None (max_steps, block_size) means "not set"
            require(value is None or value >= 1, name, f"must be >= 1, got {value}")
        for name in ("warmup_steps", "weight_decay", "grad_clip"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require(
            self.max_minutes is None or self.max_minutes > 0,
            "max_minutes",
            f"must be > 0, got {self.max_minutes}",
        )
        require(
            self.max_steps is not None or self.max_minutes is not None,
            "max_steps",
            "set max_steps or max_minutes (both are null)",
        )
        require(
            self.monitor == "val_loss" or self.monitor.startswith("val_"),
            "monitor",
            f"expected val_loss or a val_<metric> name, got {self.monitor!r}",
        )

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


@dataclass
class DistributedArgs:
    """How one run spreads over the processes ``torchrun`` starts (see docs/distributed.md)."""

    strategy: Literal["single", "ddp", "fsdp"] = "single"
    """``single``: one process. ``ddp``: every rank holds the whole model, gradients are averaged.
    ``fsdp``: parameters, gradients and optimizer state are sharded over the ranks (FSDP2)."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Collective backend; ``auto`` = nccl on CUDA, gloo on CPU."""
    timeout_s: float = 600.0
    """Seconds a rank waits for the others (rendezvous or a collective) before failing with a message."""
    mixed_precision: Literal["fp32", "bf16"] = "fp32"
    """``fsdp``: dtype the gathered parameters compute in; gradients are reduced and stepped in fp32."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of keeping them (less memory)."""

    def __post_init__(self) -> None:
        require(self.timeout_s > 0, "timeout_s", f"must be > 0, got {self.timeout_s}")
        require(
            self.mixed_precision == "fp32" or self.strategy == "fsdp",
            "mixed_precision",
            f"{self.mixed_precision} needs strategy fsdp (for single/ddp use train.precision=bf16)",
        )


# ----------------------------------------------------------------------------- finetune


@dataclass
class FinetuneArgs:
    """What changes in a pretrained model, and how it is judged (docs/finetuning.md)."""

    task: Literal["classification", "clm", "sft", "distill"] = "classification"
    """``classification``: a new Linear head on the pooled body; ``clm``: continued next-token training
    on a corpus; ``sft``: instruction tuning with the loss on response tokens only; ``distill``:
    classification that also learns from ``teacher``'s logits (Hinton et al. 2015)."""
    method: Literal["full", "head", "freeze", "lora"] = "full"
    """``full`` (every weight), ``head`` (the new head alone), ``freeze`` (the top ``freeze_top_n``
    blocks, the final norm and the head), ``lora`` (low-rank adapters, Hu et al. 2021)."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    freeze_top_n: int = 2
    """method ``freeze``: the top N transformer blocks train (with the final norm and the head)."""
    pooling: Literal["auto", "last", "mean", "cls"] = "auto"
    """classification: ``last`` token (decoders), ``cls`` (BERT's pooler) or ``mean``; auto = last / cls."""
    head_dropout: float = 0.1
    epochs: float | None = None
    """Train for this many passes over the training data (sets train.max_steps)."""
    eval_before: bool = False
    """sft with instructions: also score the model before training (the before/after comparison)."""
    eval_batch_size: int = 16
    """Prompts per batch when scoring instruction accuracy by generation."""
    eval_max_new_tokens: int = 24
    """Tokens a reply may take when scoring instructions (a chatty model names its answer late)."""
    teacher: str | None = None
    """task distill: the teacher, a classifier run directory (e.g. runs/finetune-sms-spam) that reads
    the same tokens as the student."""
    temperature: float = 2.0
    """task distill: T, which softens both models' distributions (the soft loss is scaled by T^2)."""
    alpha: float = 0.5
    """task distill: the weight of the soft (teacher) loss; 1 - alpha weighs the hard-label loss."""

    def __post_init__(self) -> None:
        require(self.freeze_top_n >= 1, "freeze_top_n", f"must be >= 1, got {self.freeze_top_n}")
        require(0.0 <= self.head_dropout < 1.0, "head_dropout", f"must be in [0, 1), got {self.head_dropout}")
        require(self.epochs is None or self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(0.0 <= self.alpha <= 1.0, "alpha", f"must be in [0, 1], got {self.alpha}")
        require(self.task != "distill" or self.teacher is not None, "teacher", "task distill needs a teacher")
        require(
            self.method != "head" or self.task in ("classification", "distill"),
            "method",
            "head needs task classification",
        )
        require(
            self.pooling == "auto" or self.task in ("classification", "distill"),
            "pooling",
            f"only for task classification (task is {self.task})",
        )


# ----------------------------------------------------------------------------- the recipe


@dataclass
class Recipe:
    """A whole run. Without a ``finetune`` section it pretrains ``model.name`` from a random start on
    ``data.objective``; with one it fine-tunes (``model.pretrained`` or a fresh ``model.name``)."""

    model: ModelArgs = field(default_factory=lambda: ModelArgs(name=DEFAULT_MODEL))
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    distributed: DistributedArgs = field(default_factory=DistributedArgs)
    finetune: FinetuneArgs | None = None
    clean: dict[str, Any] | None = None
    """Cleaning run on ``data.source`` first (``zeroforge.data.clean``'s options); the cleaned file and its
    report go into the run directory."""

    def __post_init__(self) -> None:
        m, ft = self.model, self.finetune
        if ft is None and m.pretrained is not None:
            raise ConfigError("model.pretrained: training pretrained weights needs a finetune: section")
        if ft is None and m.tokenizer is not None:
            raise ConfigError("model.tokenizer: for fine-tuning; pretraining uses data.tokenizer")
        if ft is not None and m.name is not None and m.tokenizer is None:
            raise ConfigError("model.tokenizer: a fresh model.name needs model.tokenizer (a folder, or gpt2)")
        if self.data.pack and (ft is None or ft.task in ("classification", "distill")):
            raise ConfigError("data.pack: packing is for sft and clm, not classification")
        if self.clean is not None and ft is not None and ft.task not in ("classification", "distill"):
            raise ConfigError("clean: the clean step runs on labelled tables (task classification)")

    def model_config(self) -> Any:
        """The typed config of ``model.name`` with the recipe's fields applied (validated)."""
        from zeroforge.registry import model_config

        if self.model.name is None:
            raise ConfigError("model.name: missing (e.g. name: gpt-char-small)")
        return model_config(self.model.name, **self.model.config)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as YAML writes it (run.yaml): model fields inline, no ``finetune`` when pretraining."""
        out = {name: dataclasses.asdict(getattr(self, name)) for name in ("data", "train", "distributed")}
        out = {"model": self.model.to_dict(), **out, "clean": self.clean}
        if self.finetune is not None:
            out["finetune"] = dataclasses.asdict(self.finetune)
        return out


SECTIONS = ("model", "data", "train", "distributed", "finetune", "clean")


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Older spellings in their current form: ``data.dataset`` is ``data.source``, and ``model.config:``
    (a mapping of config fields) is written inline in ``model``."""
    data = dict(data)
    values = data.get("data")
    if isinstance(values, dict) and "dataset" in values:
        if "source" in values:
            raise ConfigError("data.dataset: renamed to data.source; give only data.source")
        data["data"] = {("source" if k == "dataset" else k): v for k, v in values.items()}
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("config"), dict):
        inline = model["config"]
        clash = sorted(set(inline) & set(model))
        if clash:
            raise ConfigError(f"model.config.{clash[0]}: also set in model; write config fields inline only")
        data["model"] = {**{k: v for k, v in model.items() if k != "config"}, **inline}
    return data


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.n_layer=6"]`` -> nested dict, values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``, mappings merged key by key (overrides onto a recipe)."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections model, data, train")
    return data


def recipe_from_dict(data: dict[str, Any], finetune: bool = False) -> Recipe:
    """Validate a recipe mapping. ``finetune=True`` adds an empty ``finetune:`` section when it has none.

    Sections left out take their defaults; a fine-tuning recipe defaults to all-MiniLM-L6-v2 on SMS spam.
    """
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"recipe: unknown section {unknown[0]!r} (expected: {', '.join(SECTIONS)})")
    for name in SECTIONS:
        value = data.get(name)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping of fields, got {value!r}")
    data = upgrade(data)
    if finetune and data.get("finetune") is None:
        data["finetune"] = {}
    finetuning = data.get("finetune") is not None
    model = data.get("model") or (
        {"pretrained": DEFAULT_FINETUNE_MODEL} if finetuning else {"name": DEFAULT_MODEL}
    )
    data_values = dict(data.get("data") or {})
    if finetuning:
        data_values.setdefault("source", DEFAULT_FINETUNE_SOURCE)
    recipe = Recipe(
        model=model_args(model),
        data=from_dict(DataArgs, data_values, "data"),
        train=from_dict(TrainArgs, data.get("train"), "train"),
        distributed=from_dict(DistributedArgs, data.get("distributed"), "distributed"),
        finetune=from_dict(FinetuneArgs, data["finetune"], "finetune") if finetuning else None,
        clean=data.get("clean"),
    )
    if recipe.model.name is not None:
        recipe.model_config()  # unknown model names and config fields fail now, not mid-run
    if recipe.clean is not None:
        from zeroforge.data.clean import load_clean_config

        load_clean_config(recipe.clean)  # unknown cleaning keys fail now, not after the data step
    return recipe


def load_recipe(
    source: str | os.PathLike[str] | dict[str, Any] | Recipe | None = None,
    overrides: list[str] | None = None,
    *,
    finetune: bool = False,
) -> Recipe:
    """A recipe from a YAML file, a mapping, a Recipe or None (the defaults), with dotted overrides.

    ``finetune=True`` (``zeroforge finetune``) makes it a fine-tuning recipe when it has no
    ``finetune:`` section. Errors name the file: ``recipe.yaml: train.lr: must be > 0, got -1.0``.
    """
    path = None
    if isinstance(source, Recipe):
        if not overrides and (source.finetune is not None or not finetune):
            return source
        data = source.to_dict()
    elif source is None:  # the built-in default: a small GPT on Shakespeare, or fine-tuning defaults
        data = {} if finetune else {"model": {"name": DEFAULT_MODEL}}
    elif isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        path = source
        data = read_yaml(path)
    data = merge(data, parse_overrides(overrides or []))
    try:
        return recipe_from_dict(data, finetune=finetune)
    except ConfigError as err:
        if path is None:
            raise
        raise ConfigError(f"{path}: {str(err).removeprefix('recipe: ')}") from None


def read_run_recipe(run_dir: str | os.PathLike[str]) -> Recipe:
    """The recipe a run directory was trained with (its ``run.yaml``)."""
    run_yaml = Path(run_dir) / "run.yaml"
    if not run_yaml.is_file():
        raise ConfigError(f"{run_yaml}: missing (not a zeroforge run directory)")
    return load_recipe(run_yaml)
