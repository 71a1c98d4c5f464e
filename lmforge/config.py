"""Typed configs, YAML recipes and dotted command-line overrides.

Every stage describes its settings as a tree of small dataclasses with defaults that work.
A recipe is a YAML file with the same tree; the command line may override any leaf with
`a.b.c=value` (the value is read as YAML, so `4`, `3e-4`, `true`, `[1, 2]` and `null` mean
what they look like). Everything is checked against the dataclasses before any work starts:
an unknown key is an error that names the closest valid key, a value of the wrong type is an
error that names the key, and (for a recipe) the file and line it came from. The resolved
config is what a run saves as `config.yaml`, so a run can be repeated from its directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError

__all__ = ["load_config", "from_dict", "to_dict", "apply_override", "dump_yaml", "config_keys"]


# --------------------------------------------------------------------------- reading YAML


def _read_yaml(path: str | os.PathLike) -> tuple[dict, dict[str, int]]:
    """A recipe as a dict, and the line (1-based) where each dotted key was written."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("recipe file not found", path=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"recipe is not valid UTF-8 ({e.reason} at byte {e.start})", path=path) from None
    except IsADirectoryError:
        raise ConfigError("recipe must be a YAML file, not a directory", path=path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"invalid YAML: {problem}", path=path, line=line) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError("a recipe must be a mapping of keys to values", path=path, line=1)
    lines: dict[str, int] = {}

    def walk(n, prefix):
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    walk(node, "")
    return data, lines


# --------------------------------------------------------------------------- type checking


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_keys(cls, prefix: str = "") -> list[str]:
    """Every dotted key of a config class, leaves and sections alike."""
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        keys.append(key)
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys.extend(config_keys(tp, key + "."))
    return keys


def _closest(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not match:  # a typo in a deep key: compare the last parts only
        tails = {c.rsplit(".", 1)[-1]: c for c in candidates}
        last = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(tails), n=1, cutoff=0.6)
        match = [tails[last[0]]] if last else []
    return f"; did you mean '{match[0]}'?" if match else ""


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str, where: dict) -> Any:
    """Check `value` against the annotation `tp`, converting where the meaning is clear."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, where)
            except ConfigError as e:
                errors.append(e)
        raise errors[-1]
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"must be one of {', '.join(map(repr, args))}, got {value!r}", field=key, **where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"must be a section (a mapping), got {value!r}", field=key, **where)
        return value  # nested sections are built by from_dict
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"must be a list, got {value!r}", field=key, **where)
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"must be a mapping, got {value!r}", field=key, **where)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"must be true or false, got {value!r}", field=key, **where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"must be an integer, got {value!r}", field=key, **where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"must be a number, got {value!r}", field=key, **where)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"must be a string, got {value!r}", field=key, **where)
    if tp is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise ConfigError(f"must be a path, got {value!r}", field=key, **where)
    raise TypeError(f"lmforge.config does not know how to check {tp} (key {key})")


def _field_default(cls, name: str):
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def from_dict(cls, data: dict, *, prefix: str = "", source: str | None = None, lines: dict | None = None, root=None, check: bool = True, base=None):
    """Build config `cls` from a nested dict, checking every key and type.

    Keys not given keep their defaults, and a section's defaults are the ones its parent gives
    it: a key set inside a section changes that key only, not the rest of the section back to
    the section class's own defaults. `base` is the instance to start from (the parent's
    default for this section). With `check`, each section's own `validate()` (cross-field
    rules) runs too; its errors name the full dotted key.
    """
    lines = lines or {}
    root = root or cls
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    data = dict(data)
    for key, leaf in getattr(cls, "PATH_OF_SECTION", {}).items():  # tokenizer=DIR: a path where a section may stand
        if isinstance(data.get(key), str) and leaf not in data:
            data[leaf] = data.pop(key)
    for key, value in data.items():
        full = prefix + str(key)
        where = {"path": source, "line": lines.get(full)} if source else {}
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'{_closest(full, config_keys(root))}", **where)
        tp = hints[key]
        value = _coerce(value, tp, full, where)
        if dataclasses.is_dataclass(tp):
            section = getattr(base, key) if base is not None else _field_default(cls, key)
            value = from_dict(tp, value, prefix=full + ".", source=source, lines=lines, root=root, check=check, base=section)
        kwargs[key] = value
    cfg = dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    if check:
        for name in (f.name for f in dataclasses.fields(cls)):  # sections left at their defaults too
            if name not in kwargs and dataclasses.is_dataclass(hints[name]):
                _validate(getattr(cfg, name), prefix + name + ".")
        _validate(cfg, prefix)
    return cfg


def _validate(cfg, prefix: str) -> None:
    check = getattr(cfg, "validate", None)
    if not callable(check):
        return
    try:
        check()
    except ConfigError as e:
        if e.field is not None and prefix and not e.field.startswith(prefix):
            e.field = prefix + e.field
        raise


def to_dict(cfg) -> dict:
    """A config as plain data (Paths become strings), ready for YAML or JSON."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (for example model.n_layer=4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key before '='")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(data: dict, cls, text: str) -> None:
    """Set the dotted key of `text` ("a.b=c") in the nested dict `data`, checked against `cls`."""
    key, value = _parse_override(text)
    parts = key.split(".")
    valid = config_keys(cls)
    node_cls, node = cls, data
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(node_cls)}
        if part not in names:
            raise ConfigError(f"unknown config key '{key}' (in override '{text}'){_closest(key, valid)}")
        tp = _hints(node_cls)[part]
        if i == len(parts) - 1:
            node[part] = value
        else:
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is a value, not a section (in override '{text}')")
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is a section, not a value")
            node_cls = tp


def load_config(cls, recipe: str | os.PathLike | None = None, overrides: list[str] | tuple = ()):
    """The config of a stage: defaults, then the recipe, then command-line overrides."""
    data, lines, source = {}, {}, None
    if recipe is not None:
        data, lines = _read_yaml(recipe)
        source = str(recipe)
        # A mistake in the recipe is reported against the recipe's own line.
        from_dict(cls, data, source=source, lines=lines, check=False)
    for text in overrides:
        apply_override(data, cls, text)
    try:
        return from_dict(cls, data, source=source, lines=lines)
    except ConfigError as e:
        if e.field is not None and e.field not in lines and overrides:
            e.path, e.line = None, None  # the bad value came from the command line
            e.message += " (from a command-line override)"
        raise


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def layered_data(cls, base: str | os.PathLike, recipe: str | os.PathLike | None, overrides: list[str] | tuple = ()) -> tuple[dict, dict, str | None]:
    """A config's data in layers, for commands with presets (`lmforge run`, `lmforge scaling`):
    the `base` file (a preset), the recipe merged over it (a mistake in it reported at its own
    line), the command-line overrides over both. Returns (data, the recipe's lines, its path)."""
    data, _ = _read_yaml(base)
    lines, source = {}, None
    if recipe is not None:
        mine, lines = _read_yaml(recipe)
        source = str(recipe)
        from_dict(cls, mine, source=source, lines=lines, check=False)
        data = _merge(data, mine)
    for text in overrides:
        apply_override(data, cls, text)
    return data, lines, source
