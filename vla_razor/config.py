"""Typed experiment configs: dataclasses loaded from YAML, overridden from the command line.

Every config is a (nested) dataclass whose fields carry a one-line ``help`` in their metadata. The same
field is reachable three ways, with one spelling: in YAML (``train: {batch_size: 32}``), on the command line
(``--train.batch_size 32``) and from Python (``cfg.train.batch_size``). Unknown keys and wrong types fail
with a :class:`ConfigError` naming the key and the file, never deep inside a run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not match its dataclass."""


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    plain_name: bool = False,
    **kwargs: Any,
) -> Any:
    """A dataclass field with a help line (shown by ``--help`` and in the README's config tables) and, for numbers
    (or lists of them), the range a value must lie in, checked when the config is read (every float must also be
    finite). ``plain_name``: the value names a folder (experiment, run), so it must be a plain name."""
    bounds = {k: v for k, v in (("gt", gt), ("ge", ge), ("le", le), ("lt", lt)) if v is not None}
    metadata = {"help": help, "bounds": bounds, "plain_name": plain_name}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def check_plain_name(value: Any, where: str) -> None:
    """Refuses a folder name that is not a plain name: no separators, no ``..``, not absolute, not empty, so that a
    run or experiment folder can only land inside its parent (``..`` would write outside the runs folder)."""
    if value is None:
        return
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or ".." in value or len(value) > 120:
        raise ConfigError(
            f"{where}: expected a plain name (letters, digits and . _ + = -, starting with a letter or "
            f"digit, no '..', at most 120 characters), got {value!r}"
        )


_BOUND_TEXT = {"gt": ">", "ge": ">=", "le": "<=", "lt": "<"}


def check_range(value: Any, bounds: dict[str, float], where: str) -> None:
    """Refuses a non-finite float, or a number (or any number in a list) outside ``bounds``."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_range(item, bounds, f"{where}[{i}]")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    ok = {
        "gt": value > bounds.get("gt", -math.inf),
        "ge": value >= bounds.get("ge", -math.inf),
        "le": value <= bounds.get("le", math.inf),
        "lt": value < bounds.get("lt", math.inf),
    }
    if not all(ok.values()):
        allowed = " and ".join(f"{_BOUND_TEXT[k]} {bounds[k]:g}" for k in ("gt", "ge", "le", "lt") if k in bounds)
        raise ConfigError(f"{where}: expected a number {allowed}, got {value!r}")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Checks ``value`` against the annotation ``tp``; converts only what is lossless (int -> float)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option_tp in options:
            if option_tp is type(None):
                continue
            try:
                return _coerce(value, option_tp, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, bool) and ("off" if value is False else "on") in get_args(tp):
            value = "off" if value is False else "on"  # YAML 1.1 reads a bare off / on as a boolean
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {_coerce(k, key_tp, where): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-6" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def _build(cls: type[T], values: dict[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        source, _, path = where.rpartition(":")
        key = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"{source}: unknown key {key} (valid keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in values.items():
        default = fields[name].default_factory
        if isinstance(value, dict) and dataclasses.is_dataclass(hints[name]) and default is not dataclasses.MISSING:
            value = _merged(to_dict(default()), value)  # a section given in part keeps its field's own defaults
        sep = "" if where.endswith(":") or not where else "."
        kwargs[name] = _coerce(value, hints[name], f"{where}{sep}{name}")
        check_range(kwargs[name], fields[name].metadata.get("bounds", {}), f"{where}{sep}{name}")
        if fields[name].metadata.get("plain_name"):
            check_plain_name(kwargs[name], f"{where}{sep}{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without default
        raise ConfigError(f"{where}: {err}") from None


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Builds ``cls`` from plain data, checking every key and type; errors name ``source``."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(values).__name__}")
    return _build(cls, values, f"{source}:")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain data for YAML/JSON (paths as strings)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return convert(cfg)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives one key twice (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's data; a missing, unreadable, binary or invalid file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a readable UTF-8 text file ({type(err).__name__})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        where = f" at line {err.problem_mark.line + 1}" if err.problem_mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    return data or {}


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Loads ``cls`` from a YAML file, then applies dotted overrides (``{"train.lr": 1e-4}``)."""
    values = load_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"command line: --{dotted} sets inside {part}, which is not a mapping")
        node[leaf] = value
    try:
        return from_dict(cls, values, source)
    except ConfigError as err:  # a bad value given as a flag is named as the flag, not as the file's key
        for dotted in overrides or {}:
            prefix = f"{source}:{dotted}"
            if str(err).startswith(prefix) and str(err)[len(prefix) : len(prefix) + 1] in (":", "["):
                raise ConfigError(f"command line: --{dotted}{str(err)[len(prefix) :]}") from None
        raise


# ----------------------------------------------------------------------------------------- command line
def _leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_leaf_fields(tp, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", tp, f))
    return out


MAX_LISTED_CHOICES = 8
"""A choice field's help lists this many of its values, then their count (the task ids are 134)."""


def _metavar(tp: Any) -> str:
    if get_origin(tp) is not Literal:
        return _type_name(tp).upper()
    values = get_args(tp)
    if len(values) <= MAX_LISTED_CHOICES:
        return "{" + _type_name(tp) + "}"
    shown = " | ".join(repr(v) for v in values[:4])
    return "{" + f"{shown} | ... {len(values)} in all" + "}"


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one ``--dotted.name`` flag per config field; values are parsed as YAML scalars/lists."""
    group = parser.add_argument_group(f"{cls.__name__} fields (override the YAML file)")
    for name, tp, f in _leaf_fields(cls):
        group.add_argument(
            f"--{name}",
            dest=f"cfg::{name}",
            metavar=_metavar(tp),
            default=argparse.SUPPRESS,
            help=f.metadata.get("help", ""),
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--dotted.name VALUE`` flags the user gave, values parsed as YAML (``1e-4``, ``[1, 2]``)."""
    out = {}
    for key, raw in vars(args).items():
        if key.startswith("cfg::"):
            try:
                out[key[5:]] = yaml.safe_load(raw)
            except yaml.YAMLError:
                out[key[5:]] = raw
    return out
