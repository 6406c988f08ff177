"""One type check for every configuration dataclass, driven by its field annotations.

`Profile`, `TuneConfig` and `DataConfig` call `check_fields(self)` first thing in `__post_init__`
(and `TransferStudy` is meant to, before it turns its lists into tuples); `Profile.replace`,
`TuneConfig.from_dict` (and any other place that takes overrides from a notebook parameter or the
command line, e.g. `check_overrides(TransferStudy, overrides, "transfer-study")`) call
`check_overrides` before they build anything. A wrong type is
then one `ConfigError` line that names the field, the value and what is valid, raised before any
work is done or any file is written:

    tune.lr must be a finite number, got '0.01' (a string); write 0.01 without quotes
    tasks must be a list of strings, got 'sst2' (a string); write a list, e.g. ["sst2"]
    seeds[1] must be an integer, got True (a bool)

The rules: a bool is not an integer; a string is not a number and not a list; an integer is
accepted where a float is expected (and stored as a float); floats must be finite; a list is
accepted where a tuple is expected (and stored as a tuple); numpy scalars count as the Python
number they hold (and are stored as one, so they never reach a JSON file as a string).
Checks of ranges and of relations between fields stay in each class's `__post_init__`.

Names that become folder or file names (profile names, task names, unit ids) go through
`check_path_component` as well: letters, digits, '_', '-' and '.', no '..' and no leading '.', so a
name such as '../../x' is refused before anything is written, never turned into a path outside
the results folder.

A small hand-written checker rather than pydantic: pydantic is not a declared dependency of the
library, its errors are multi-line, and its lax mode would turn '0.01' into 0.01 silently; the
annotations the dataclasses already carry are all this needs.
"""
from __future__ import annotations

CACHE_NEUTRAL = True  # lib.code_identity: nothing here changes what a cached result contains

import dataclasses
import functools
import json
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping as AbcMapping
from typing import Any, Mapping

from .errors import ConfigError

_NONE = type(None)
# A name used as one folder or file name: no separator, no '..', no leading '.' (hidden files are the
# namespace of lock files and temporaries, see lib.io and lib.units).
PATH_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _describe(tp: Any, plural: bool = False) -> str:
    """What a value of annotation `tp` must be, in words."""
    if tp is Any:
        return "anything"
    if _is_union(tp):
        args = typing.get_args(tp)
        parts = [_describe(a, plural) for a in args if a is not _NONE]
        return " or ".join(parts + (["None"] if _NONE in args else []))
    origin = typing.get_origin(tp)
    if origin is tuple or tp is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            inner = _describe(args[0], plural=True)
            return f"lists of {inner}" if plural else f"a list of {inner}"
        if args:
            short = {int: "integer", float: "number", str: "string", bool: "bool"}
            inner = f"[{', '.join(short.get(a, _describe(a)) for a in args)}]"
            kind = "pair" if len(args) == 2 else "list"
            return f"{inner} {kind}s" if plural else f"a {inner} {kind}"
        return "lists" if plural else "a list"
    if origin in (dict, AbcMapping) or tp in (dict, AbcMapping):
        args = typing.get_args(tp)
        inner = f" of {_describe(args[0], True)} to {_describe(args[1], True)}" if args else ""
        return f"mappings{inner}" if plural else f"a mapping{inner}"
    names = {bool: ("true or false", "true or false"), int: ("an integer", "integers"),
             float: ("a finite number", "finite numbers"), str: ("a string", "strings"), _NONE: ("None", "None")}
    if tp in names:
        return names[tp][plural]
    if dataclasses.is_dataclass(tp):
        return f"{tp.__name__}s" if plural else f"a {tp.__name__} (or a dict of its fields)"
    name = getattr(tp, "__name__", str(tp))
    return f"{name}s" if plural else f"a {name}"


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    kinds = {bool: "a bool", int: "an integer", float: "a float", str: "a string", list: "a list",
             tuple: "a list", dict: "a dict"}
    for cls, word in kinds.items():
        if type(value) is cls:
            return word
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(name: str, value: Any, tp: Any, hint: str = "") -> ConfigError:
    if isinstance(value, float) and not math.isfinite(value):
        got = f"got {value!r}"
    else:
        got = f"got {_shown(value)} ({_kind(value)})"
    return ConfigError(f"{name} must be {_describe(tp)}, {got}{'; ' + hint if hint else ''}")


def _example_list(item: Any, value: str) -> str:
    if item is str:
        return json.dumps([value])
    if item is int:
        return "[0, 1]"
    if item is float:
        return "[0.0, 0.01]"
    if typing.get_origin(item) is tuple and typing.get_args(item) == (str, str):  # (source, target) pairs
        parts = [p.strip() for p in value.split(",")]
        return json.dumps([parts if len(parts) == 2 and all(parts) else ["source", "target"]])
    return "[...]"


def _number_hint(value: Any, tp: Any) -> str:
    """'write 0.01 without quotes' when a string holds the number that was meant."""
    if not isinstance(value, str):
        return ""
    try:
        number = int(value) if tp is int else float(value)
    except ValueError:
        return ""
    return f"write {number!r} without quotes" if math.isfinite(number) else ""


def coerce(value: Any, tp: Any, name: str) -> Any:
    """`value` checked against annotation `tp` (and normalised), or a `ConfigError` naming `name`."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None:
            if _NONE in args:
                return None
            raise _fail(name, value, tp)
        candidates = [a for a in args if a is not _NONE]
        for arg in candidates:
            try:
                return coerce(value, arg, name)
            except ConfigError:
                continue
        hint = _number_hint(value, candidates[0]) if len(candidates) == 1 else ""
        raise _fail(name, value, tp, hint)
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, (bool, _np_bool())):
            return bool(value)
        raise _fail(name, value, tp)
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, _np_bool())):
            return int(value)
        raise _fail(name, value, tp, _number_hint(value, int))
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, _np_bool())):
            number = float(value)
            if math.isfinite(number):
                return number
        raise _fail(name, value, tp, _number_hint(value, float))
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise _fail(name, value, tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, bytes)):
            item = args[0] if args else None
            example = _example_list(item, value) if isinstance(value, str) else "[...]"
            raise _fail(name, value, tp, f"write a list, e.g. {example}")
        if not isinstance(value, (list, tuple)):
            raise _fail(name, value, tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _fail(name, value, tp, f"it needs exactly {len(args)} items")
        return tuple(coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, AbcMapping):
        if not isinstance(value, AbcMapping):
            raise _fail(name, value, tp)
        args = typing.get_args(tp)
        if not args:
            return dict(value)
        return {coerce(k, args[0], f"{name} key"): coerce(v, args[1], f"{name}[{k!r}]") for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _fail(name, value, tp)
    return value  # an annotation this checker does not know: left to the class's own checks


@functools.lru_cache(maxsize=1)
def _np_bool() -> type:
    try:
        import numpy as np

        return np.bool_
    except ImportError:  # pragma: no cover - numpy is a dependency
        return bool


def check_fields(obj: Any, prefix: str = "") -> None:
    """Type-check every field of a dataclass instance against its annotation, normalising in place.

    Call it first thing in `__post_init__` (frozen dataclasses included). `prefix` goes before field
    names in messages (e.g. 'tune.').
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init or f.name not in hints:
            continue
        value = getattr(obj, f.name)
        new = coerce(value, hints[f.name], prefix + f.name)
        if new is not value:
            object.__setattr__(obj, f.name, new)


def check_path_component(value: Any, what: str) -> str:
    """`value` if it can be one folder name under the results or data folder, else one `ConfigError`.

    Why: task names, profile names and unit ids are joined into paths (results/<profile>/.../prompts/<task>);
    '../../x' would write outside the results folder.
    """
    if not isinstance(value, str) or not PATH_COMPONENT.fullmatch(value) or ".." in value:
        raise ConfigError(f"{what} {_shown(value)} cannot be used as a folder name: use letters, digits, "
                          f"'_', '-' and '.' only (no '/', no '..', no leading '.')")
    return value


def check_overrides(cls: type, overrides: Mapping[str, Any], label: str | None = None,
                    prefix: str = "") -> dict[str, Any]:
    """Overrides of `cls`'s fields, checked (unknown names, types) and normalised, before anything is built.

    A dict given for a field whose type is a dataclass (a profile's `tune` and `data`) is checked
    field by field against that class, its names prefixed ('tune.lr'), and returned as a dict.
    """
    if not isinstance(overrides, AbcMapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'overrides'} must be a dict of field values, "
                          f"got {_shown(overrides)} ({_kind(overrides)})")
    label = label or cls.__name__
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    bad = set(overrides) - set(fields)
    if bad:
        raise ConfigError(f"unknown {label} field(s) {sorted(bad, key=str)}; valid: {', '.join(sorted(fields))}")
    hints = _hints(cls)
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        tp = hints.get(key, Any)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(value, AbcMapping):
            out[key] = check_overrides(tp, value, key, f"{prefix}{key}.")
        else:
            out[key] = coerce(value, tp, prefix + key)
    return out


__all__ = ["check_fields", "check_overrides", "check_path_component", "coerce"]
