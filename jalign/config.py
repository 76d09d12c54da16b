"""params.yaml sections -> frozen, documented, validated dataclasses.

params.yaml is the single source of values: stage config dataclasses declare fields with `param(help,
ranges)` and no defaults, so what runs is what params.yaml (composed from `conf/`) says. Every stage
reads its own section through `load_section`, which rejects, before any work starts and naming the
key's full dotted name:
- unknown keys (a typo in `dvc exp run -S dpo.betta=0.1` fails instead of silently using nothing),
- wrong types, values outside a field's declared range, NaN and infinities,
- duplicate keys in the YAML file (the last one would silently win).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from jalign.errors import JalignError

T = TypeVar("T")

_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class ConfigError(JalignError, ValueError):
    """A params.yaml value that does not fit its dataclass field."""


def param(
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default: Any = dataclasses.MISSING,
    inherit: str | None = None,
) -> Any:
    """A documented config field (TRL's `metadata={"help": ...}`), with an optional numeric range.

    The only default a field may have is `None` (absent / not used, e.g. no adapter): every value that
    changes behaviour comes from params.yaml, so code and params cannot disagree. Ranges apply to
    numbers (and to each number of a tuple); `None` is allowed only where the type says `| None`.
    `inherit="limits"`: when the section leaves the field out, it takes the same-named key of the
    top-level `limits` section (still from params.yaml; one value shared by every stage that has it).
    """
    if default is not dataclasses.MISSING and default is not None:
        raise TypeError(
            f"param default must be None or absent, got {default!r}: put the value in params.yaml"
        )
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if inherit is not None:
        bounds["inherit"] = inherit
        help = f"{help} Absent: `{inherit}.<same key>`."
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


def range_text(metadata: typing.Mapping[str, Any]) -> str:
    """'>= 0, < 1' for a field's declared bounds ('' when none)."""
    return ", ".join(f"{_BOUNDS[k]} {metadata[k]}" for k in _BOUNDS if k in metadata)


def _check_unique_keys(
    loader: yaml.SafeLoader, node: yaml.Node, key: str, done: set[int] | None = None
) -> None:
    """Reject a key repeated in one mapping (YAML would keep the last silently), naming its dotted key."""
    done = set() if done is None else done
    if id(node) in done:  # an alias of a node already checked (or a recursive one)
        return
    done.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            name = loader.construct_object(key_node, deep=True)
            dotted = f"{key}.{name}" if key else str(name)
            if name in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{dotted}: duplicate key (first at line {seen[name]})", key_node.start_mark
                )
            seen[name] = key_node.start_mark.line + 1
            _check_unique_keys(loader, value_node, dotted, done)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(loader, item, f"{key}[{i}]", done)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-05` as a number as YAML 1.2 does (PyYAML's YAML 1.1 wants a dot:
    `1.0e-05`). DVC writes floats that way: `dvc exp run -S train.learning_rate=1e-5` must stay a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file, rejecting duplicate keys; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_unique_keys(loader, node, "")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def load_section(cls: type[T], section: str, params_path: str | Path = "params.yaml") -> T:
    """Build `cls` from the `section` of params.yaml (dotted for nested sections); LLM roles in it are
    resolved against the file's `llms` section."""
    params: Any = read_params(params_path)
    data = params
    for part in section.split("."):
        if not isinstance(data, dict) or part not in data:
            raise ConfigError(f"{params_path}: missing section '{section}'")
        data = data[part]
    return from_dict(cls, data, section, params)


def from_dict(cls: type[T], data: Any, prefix: str, params: typing.Mapping[str, Any] | None = None) -> T:
    """Recursively convert a mapping into the dataclass `cls`, checking keys, types and ranges. `params`
    is the whole params mapping, for fields whose type resolves names in it (an LLM role's `llm`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields), key=str)  # YAML may give non-string keys (on:, 1:)
    if unknown:
        tag = _tag_of(cls)
        where = f" for {tag[0]} {tag[1]!r}" if tag else ""
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key{where} (allowed: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}"
        found = (key, data[name]) if name in data else _inherited(field, params)
        if found is not None:
            where, value = found
            kwargs[name] = _convert(hints[name], value, where, params)
            _check_range(kwargs[name], field.metadata, where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            also = f" (or set {field.metadata['inherit']}.{name})" if "inherit" in field.metadata else ""
            raise ConfigError(f"{key}: required key is missing{also}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise ConfigError(f"{prefix}: {exc}") from exc


def _inherited(field: dataclasses.Field, params: typing.Mapping[str, Any] | None) -> tuple[str, Any] | None:
    """(key, value) of the shared section's entry for a field declared `inherit=...`; None if none."""
    section = field.metadata.get("inherit")
    shared = (params or {}).get(section) if section else None
    if isinstance(shared, dict) and field.name in shared:
        return f"{section}.{field.name}", shared[field.name]
    return None


def _check_range(value: Any, metadata: typing.Mapping[str, Any], key: str) -> None:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        ok = all(
            (
                ("ge" not in metadata or v >= metadata["ge"]),
                ("gt" not in metadata or v > metadata["gt"]),
                ("le" not in metadata or v <= metadata["le"]),
                ("lt" not in metadata or v < metadata["lt"]),
            )
        )
        if not ok:
            raise ConfigError(f"{key}: {v!r} is out of range (allowed: {range_text(metadata)})")


def from_value(tp: Any, value: Any, key: str, params: typing.Mapping[str, Any] | None = None) -> Any:
    """Convert one value to the type `tp` (a dataclass, a tagged union of them, a list ...), checked."""
    return _convert(tp, value, key, params)


def _tag_of(cls: type) -> tuple[str, Any] | None:
    """(field, value) when `cls` is one arm of a tagged union: its first field is a one-value Literal."""
    first = dataclasses.fields(cls)[0]
    tp = typing.get_type_hints(cls)[first.name]
    if typing.get_origin(tp) is typing.Literal and len(typing.get_args(tp)) == 1:
        return first.name, typing.get_args(tp)[0]
    return None


def tagged_arms(tp: Any) -> tuple[str, dict[Any, type]] | None:
    """A union of dataclasses told apart by one tag field (`backend: vllm`): (tag, value -> arm)."""
    arms = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(arms) < 2 or not all(dataclasses.is_dataclass(a) for a in arms):
        return None
    tags = [_tag_of(a) for a in arms]
    if any(t is None for t in tags) or len({t[0] for t in tags}) != 1:  # type: ignore[index]
        return None
    return tags[0][0], {t[1]: a for t, a in zip(tags, arms, strict=True)}  # type: ignore[index]


def _convert(tp: Any, value: Any, key: str, params: typing.Mapping[str, Any] | None = None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        tagged = tagged_arms(tp)
        if tagged is not None:
            tag, arms = tagged
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
            allowed = ", ".join(map(str, arms))
            if tag not in value:
                raise ConfigError(f"{key}.{tag}: required key is missing (one of: {allowed})")
            if value[tag] not in arms:
                raise ConfigError(f"{key}.{tag}: {value[tag]!r} is not one of: {allowed}")
            return from_dict(arms[value[tag]], value, key, params)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key, params)
            except ConfigError as exc:
                errors.append(str(exc))
        if value is None:
            raise ConfigError(f"{key}: null is not allowed here")
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        item_tp = args[0] if args else Any
        return tuple(_convert(item_tp, v, f"{key}[{i}]", params) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(val_tp, v, f"{key}.{k}", params) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if hasattr(tp, "from_params"):  # written in another shape, resolved against params (LLMConfig)
            return tp.from_params(value, key, params)
        return from_dict(tp, value, key, params)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} is not a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")


def as_dict(obj: Any) -> Any:
    """Dataclass -> plain JSON-able dict (for logging resolved params and writing cards)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [as_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return obj


def describe(cls: type, prefix: str, shared: tuple[type, ...] = ()) -> list[tuple[str, str, str, str]]:
    """(dotted key, type, allowed range, help) for every field of `cls`, nested dataclasses expanded
    except the `shared` ones (documented once, elsewhere). The source of docs/params.md: help text
    lives once, on the field."""
    rows = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key, tp = f"{prefix}.{field.name}", hints[field.name]
        tp = getattr(tp, "params_shape", tp)  # what params.yaml writes (an LLM role: LLMRole)
        nested = [a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)]
        type_name = _type_name(tp)
        if nested and nested[0] in shared:
            type_name = f"{nested[0].__name__} (below)"
        rows.append((key, type_name, range_text(field.metadata), field.metadata.get("help", "")))
        if nested and nested[0] not in shared:
            item = "[]" if typing.get_origin(tp) in (list, tuple) else ""
            rows += describe(nested[0], key + item, shared)
    return rows


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is dict:
        return f"mapping[str, {_type_name(args[1])}]" if len(args) == 2 else "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))
