"""``CleanConfig``: what ``zeroforge clean`` does to a corpus or a table, as one typed dataclass.

Loaded from YAML (``--config clean.yaml``), a dict (a recipe's ``clean:`` section) or built in
Python. Unknown keys and bad values are one-line ``ConfigError``s naming the field
(``clean.dedup.threshold: must be in (0, 1], got 1.5``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from zeroforge.errors import ConfigError
from zeroforge.schema import from_dict, require

# pandas.read_csv's default ``na_values``: the spellings of "no value" that real CSV files use.
PANDAS_NA_VALUES = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip

FILL_STRATEGIES = ("drop", "keep", "mean", "median", "mode")


@dataclass
class NormalizeArgs:
    """Text clean-up applied to every string cell (lowercasing: the text column only)."""

    unicode: Literal["NFKC", "NFC", "none"] = "NFKC"
    """Unicode normal form; NFKC folds compatibility forms (full-width letters, ligatures, NBSP)."""
    control_chars: bool = True
    """Remove C0/C1 control characters, zero-width spaces, soft hyphens and lone surrogates."""
    whitespace: bool = True
    """Collapse runs of spaces/tabs to one space, trim every line, keep at most one blank line."""
    lowercase: bool = False
    """Lowercase the text column (labels and other columns are left as they are)."""
    html: bool = False
    """Turn ``<br>`` into a newline, drop other HTML tags, unescape entities (``&amp;`` -> ``&``); runs first."""


@dataclass
class DedupArgs:
    """Exact and near-duplicate removal; the first row of each duplicate cluster is kept."""

    exact: bool = True
    """Drop rows whose key (the normalised text) was seen before (a 16-byte BLAKE2b digest per row)."""
    near: bool = True
    """Drop rows whose MinHash-estimated Jaccard similarity to a kept row is >= ``threshold``."""
    threshold: float = 0.8
    """Jaccard similarity of the shingle sets above which two rows are near duplicates."""
    num_perm: int = 128
    """MinHash permutations: more is a more precise Jaccard estimate (error ~ 1/sqrt(num_perm))."""
    shingle: Literal["char", "word"] = "char"
    """Shingles are character n-grams (robust for short texts) or word n-grams (each CJK ideograph
    is a word, so for Chinese word n-grams are character n-grams)."""
    ngram: int = 5
    """Shingle length in characters or words (for short Chinese texts 3 characters, ~1.5 words, is
    about what 5 characters are in English; see docs/chinese.md)."""
    seed: int = 1
    """Seed of the MinHash permutations (datasketch's ``seed``)."""
    columns: list[str] | None = None
    """Columns that make the duplicate key; default the text column, or every column of a table without one."""

    def __post_init__(self) -> None:
        require(0 < self.threshold <= 1, "threshold", f"must be in (0, 1], got {self.threshold}")
        require(self.num_perm >= 16, "num_perm", f"must be >= 16, got {self.num_perm}")
        require(self.ngram >= 1, "ngram", f"must be >= 1, got {self.ngram}")
        require(self.columns is None or len(self.columns) > 0, "columns", "must name at least one column")


@dataclass
class LabelArgs:
    """Label validation: rows whose label is not in ``allowed`` are reported, then dropped or kept."""

    column: str = "label"
    allowed: list[str] = field(default_factory=list)
    """The allowed labels, compared as strings (``[0, 1]`` in YAML matches "0" and "1"); empty: no check."""
    invalid: Literal["drop", "keep"] = "drop"


@dataclass
class CleanConfig:
    """Everything ``clean`` does, in the order it does it (see docs/cleaning.md)."""

    format: Literal["auto", "txt", "jsonl", "csv", "tsv"] = "auto"
    """Input format; ``auto`` goes by the suffix. The output has the input's format."""
    text_column: str | None = None
    """The column holding the text; default ``text`` when the table has one (a .txt file always does)."""
    normalize: NormalizeArgs = field(default_factory=NormalizeArgs)
    dedup: DedupArgs = field(default_factory=DedupArgs)
    missing: dict[str, Any] = field(default_factory=dict)
    """Column (or ``"*"`` for every other column) -> ``drop``, ``keep``, ``mean``, ``median``, ``mode``
    or ``{constant: VALUE}``. Columns not named are kept as they are (and counted in the report)."""
    missing_values: list[str] = field(default_factory=lambda: list(PANDAS_NA_VALUES))
    """Cell values (after normalisation) that mean "missing"; JSON null always does. Default: pandas'."""
    labels: LabelArgs = field(default_factory=LabelArgs)
    min_chars: int | None = None
    max_chars: int | None = None
    min_tokens: int | None = None
    """Tokens are whitespace-separated words; each CJK ideograph is a token (so a Chinese text's
    tokens are its characters). ``min_chars``/``max_chars`` count Unicode characters, for any script."""
    max_tokens: int | None = None
    languages: list[str] = field(default_factory=list)
    """Keep only rows whose text is in one of these languages (ISO 639-1, e.g. ``[en]``); needs py3langid."""
    min_language_prob: float = 0.0
    """With ``languages``: also drop rows whose detected language has a lower probability."""
    spelling: bool = False
    """Correct English misspellings of lowercase words in the text column (pyspellchecker, edit distance 1)."""
    encoding: str = "utf-8"
    """The input's text encoding (``latin-1``, ``cp1252``, ...); the output is always UTF-8."""
    encoding_errors: Literal["drop", "replace", "error"] = "drop"
    """Rows with bytes not valid in ``encoding``: dropped, kept with U+FFFD in their place, or a stop with an error."""
    malformed: Literal["drop", "error"] = "drop"
    """Malformed rows (wrong field count, bad JSON): dropped and reported with line numbers, or an error."""
    examples: int = 5
    """Examples per rule in the report."""
    clusters: int = 20
    """Largest duplicate clusters listed in the report."""

    def __post_init__(self) -> None:
        for name in ("min_chars", "max_chars", "min_tokens", "max_tokens"):
            value = getattr(self, name)
            require(value is None or value >= 0, name, f"must be >= 0, got {value}")
        for lo, hi in (("min_chars", "max_chars"), ("min_tokens", "max_tokens")):
            a, b = getattr(self, lo), getattr(self, hi)
            require(a is None or b is None or a <= b, hi, f"must be >= {lo} ({a}), got {b}")
        require(
            0 <= self.min_language_prob <= 1,
            "min_language_prob",
            f"must be in [0, 1], got {self.min_language_prob}",
        )
        require(self.examples >= 0, "examples", f"must be >= 0, got {self.examples}")
        require(self.clusters >= 0, "clusters", f"must be >= 0, got {self.clusters}")
        for column, strategy in self.missing.items():
            if isinstance(strategy, dict):
                require(
                    set(strategy) == {"constant"},
                    f"missing.{column}",
                    f"expected one of {', '.join(FILL_STRATEGIES)} or {{constant: VALUE}}, got {strategy!r}",
                )
            else:
                require(
                    strategy in FILL_STRATEGIES,
                    f"missing.{column}",
                    f"expected one of {', '.join(FILL_STRATEGIES)} or {{constant: VALUE}}, got {strategy!r}",
                )
        self.labels.allowed = [str(v) for v in self.labels.allowed]
        self.missing_values = [str(v) for v in self.missing_values]

    def strategy(self, column: str) -> str | dict[str, Any]:
        """The missing-value strategy for ``column`` (``keep`` when neither it nor ``"*"`` is named)."""
        return self.missing.get(column, self.missing.get("*", "keep"))

    @property
    def needs_text(self) -> list[str]:
        """The options that only make sense with a text column."""
        opts = {
            "min_chars": self.min_chars is not None,
            "max_chars": self.max_chars is not None,
            "min_tokens": self.min_tokens is not None,
            "max_tokens": self.max_tokens is not None,
            "languages": bool(self.languages),
            "spelling": self.spelling,
            "normalize.lowercase": self.normalize.lowercase,
        }
        return [name for name, on in opts.items() if on]


def _apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["dedup.threshold=0.9", "normalize.lowercase=true"]`` applied to ``data`` (values parsed as YAML)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {item!r}: expected key=value, e.g. dedup.threshold=0.9")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: clean.{part} is not a section")
        node[parts[-1]] = value
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    """A clean config file: the clean options themselves, or a recipe with a ``clean:`` section."""
    if not path.is_file():
        raise ConfigError(f"{path}: clean config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if (
        isinstance(data, dict)
        and "clean" in data
        and not set(data) - {"clean", "model", "data", "train", "finetune"}
    ):
        data = data["clean"]  # a recipe: its clean section
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of clean options (see docs/cleaning.md)")
    return data


def load_clean_config(
    config: CleanConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
) -> CleanConfig:
    """A ``CleanConfig`` from itself, a dict, a YAML file (its ``clean:`` section, or the whole file) or None,
    with dotted ``overrides`` (``dedup.threshold=0.9``) applied."""
    if isinstance(config, CleanConfig):
        if not overrides:
            return config
        config = dataclasses.asdict(config)
    source = ""  # the YAML file, named in errors
    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, str | os.PathLike):
        source = f"{config}: "
        data = _read_yaml(Path(config))
    elif isinstance(config, dict):
        data = config
    else:
        raise ConfigError(
            f"clean: expected a mapping, a YAML path or a CleanConfig, got {type(config).__name__}"
        )
    data = _apply_overrides(data, overrides or [])
    try:
        return from_dict(CleanConfig, data, where="clean")
    except ConfigError as err:
        raise ConfigError(f"{source}{err}") from None
