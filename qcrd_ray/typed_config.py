"""Frozen dataclasses from plain data: type checks and ``--set a.b=c`` overrides, errors naming the key path."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def check(cond: bool, path: str, expected: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{path}: expected {expected}, got {value!r}")


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict)
    if origin is tuple:  # tuple[X, ...]: a YAML list of X
        return isinstance(value, (list, tuple)) and all(_matches(v, typing.get_args(tp)[0]) for v in value)
    return isinstance(value, tp)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def build(cls: type, raw: Any, path: str) -> Any:
    """A ``cls`` instance from a nested mapping: unknown keys and wrong types raise, then ``validate(path)`` runs."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in raw.items():
        key_path = f"{path}.{name}" if path else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, key_path)
            continue
        check(_matches(value, tp), key_path, _describe(tp), value)
        # Everywhere, a number is a finite one: train.lr=.inf would train to NaN and still write a report.
        check(not isinstance(value, float) or math.isfinite(value), key_path, "a finite number", value)
        if typing.get_origin(tp) is tuple:
            value = tuple(value)  # frozen all the way down
        if tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp)):
            value = float(value) if isinstance(value, int) else value
        kwargs[name] = value
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(path)
    return obj


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for ``dotted == "a.b"``; the key must already exist."""
    keys = dotted.split(".")
    node = raw
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node.get(key), dict):
            raise ConfigError(f"{'.'.join(keys[: i + 1])}: unknown section in override {dotted!r}")
        node = node[key]
    if keys[-1] not in node:
        raise ConfigError(f"{dotted}: unknown key in override")
    node[keys[-1]] = value


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "run.method=dss"]`` -> ``{"train.lr": 0.0003, "run.method": "dss"}`` (YAML scalars)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(err).splitlines()[0]})") from None
        # YAML 1.1 reads 3e-4 as a string (it wants 3.0e-4); accept the usual float spelling.
        if isinstance(value, str) and _FLOAT.match(value):
            value = float(value)
        out[key.strip()] = value
    return out
