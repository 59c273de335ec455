"""Typed dataclass configs from YAML mappings: one validator for every config in the package.

``from_dict(TrainArgs, {"lr": "3e-4"}, "train")`` coerces each value to its field's type hint (YAML is
loose: ``1`` for a float, ``"3e-4"`` for a number), refuses unknown keys, and turns a ``ValueError``
from the dataclass's own ``__post_init__`` into a one-line ``ConfigError`` naming the field
(``train.lr: must be > 0, got -1.0``). Recipes (``config.py``), model configs and the cleaning
config all validate through it; it imports nothing of zeroforge but its errors, so every layer may use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from zeroforge.errors import ConfigError


def check_type(value: Any, hint: Any, where: str) -> Any:
    """Coerce ``value`` to ``hint`` where YAML is loose (int -> float), else raise ConfigError."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "3e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError.

    The dataclass's own ``__post_init__`` checks ranges; a ValueError it raises becomes a
    ConfigError prefixed with ``where``.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (expected one of: {', '.join(sorted(fields))})")
    kwargs = {name: check_type(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith(where) else f"{where}.{msg}") from None


def require(condition: bool, field_name: str, message: str) -> None:
    """For ``__post_init__``: ``require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")``."""
    if not condition:
        raise ValueError(f"{field_name}: {message}")


def require_positive(config: Any, *names: str) -> None:
    """For ``__post_init__``: every named field of ``config`` (a size or a count) is >= 1."""
    for name in names:
        value = getattr(config, name)
        require(value >= 1, name, f"must be >= 1, got {value}")


def require_token_ids(config: Any, *names: str) -> None:
    """Each named field is a token id of the config's vocabulary: 0 <= id < ``config.vocab_size``."""
    for name in names:
        value = getattr(config, name)
        require(
            0 <= value < config.vocab_size,
            name,
            f"must be in [0, vocab_size={config.vocab_size}), got {value}",
        )


def require_choices(config: Any) -> None:
    """For ``__post_init__``: every ``Literal``-typed field of dataclass ``config`` holds one of its
    values (``from_dict`` checks this too; a config built directly is checked here)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if typing.get_origin(hints[f.name]) is Literal:
            allowed = [str(a) for a in typing.get_args(hints[f.name])]
            value = getattr(config, f.name)
            names = f"{', '.join(allowed[:-1])} or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            require(value in allowed, f.name, f"expected {names}, got {value!r}")


def preset_config(
    cls: type, presets: dict[str, tuple[str, dict[str, Any]]], name: str, **overrides: Any
) -> Any:
    """Config ``cls`` from the values of preset ``name`` in ``presets`` (a model module's ``PRESETS``:
    name -> (family, values)), with ``overrides`` applied and validated."""
    if name not in presets:
        raise ConfigError(
            f"model.name: {name!r} is not a {cls.__name__} preset (known: {', '.join(presets)})"
        )
    return from_dict(cls, {**presets[name][1], **overrides}, where="model")
