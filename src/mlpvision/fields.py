"""Dataclass configs as users write them: each field's type, default and the comment beside it (help text), and
values checked against the field types, so that a recipe, a flag or a stored config of the wrong type is one
clear error naming the field instead of a failure deep inside."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import math
import tokenize
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import ConfigError

__all__ = ["FieldDoc", "checked_fields", "coerce", "field_docs", "source_field_docs"]


class FieldDoc(NamedTuple):
    """A config field as a command line or an error message shows it."""

    name: str
    hint: Any  # the resolved type annotation
    default: Any
    help: str  # the field's comment in the class body


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment written beside it in ``cls``'s source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source shipped: fields without help
        return {}
    return _comments_in(source)


def _comments_in(source: str) -> dict[str, str]:
    """Field name -> the comment written beside it in a class's source (a comment line right under a field
    continues it)."""
    comments: dict[str, str] = {}
    current = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4:  # a statement of the class body
            head = tok.line[4:].split(":", 1)[0].strip()
            current = tok.string if head.isidentifier() and ":" in tok.line and tok.string != "def" else None
        elif tok.type == tokenize.COMMENT and current is not None and tok.start[1] >= 4:
            text = tok.string.lstrip("#").strip()
            comments[current] = f"{comments[current]} {text}" if current in comments else text
    return comments


# the names a config's annotations and defaults may use when read from source (see source_field_docs)
_SOURCE_NAMES = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "dict": dict,
    "list": list,
    "tuple": tuple,
    "None": None,
    "field": dataclasses.field,
}


def source_field_docs(
    path: str | Path, class_name: str, names: Mapping[str, Any] | None = None
) -> tuple[FieldDoc, ...]:
    """The fields of dataclass ``class_name`` as :func:`field_docs` gives them, read from the source file ``path``
    without importing it (and so without the heavy imports of its package): ``mlpvision --help`` stays fast.

    Annotations and defaults are evaluated with builtin types, ``dataclasses.field`` and ``names`` (e.g. a
    nested config rebuilt by :func:`source_dataclass`) only. Raises ValueError when the class is not found or
    a field uses anything else; callers then import the real class.
    """
    source = Path(path).read_text()
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if node is None:
        raise ValueError(f"no class {class_name} in {path}")
    scope = {"__builtins__": {}, **_SOURCE_NAMES, **(names or {})}
    comments = _comments_in("".join(source.splitlines(keepends=True)[node.lineno - 1 : node.end_lineno]))
    docs = []
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if stmt.value is None:
            raise ValueError(f"{class_name}.{stmt.target.id} has no default")
        try:
            # the package's own source, evaluated with the restricted names of `scope` only
            hint = eval(ast.unparse(stmt.annotation), scope)
            default = eval(ast.unparse(stmt.value), scope)
        except Exception as e:
            raise ValueError(f"{class_name}.{stmt.target.id}: cannot read it from source ({e})") from None
        if isinstance(default, dataclasses.Field):
            if default.default is not dataclasses.MISSING:
                default = default.default
            elif default.default_factory is not dataclasses.MISSING:
                default = default.default_factory()
            else:
                raise ValueError(f"{class_name}.{stmt.target.id} has no default")
        docs.append(FieldDoc(stmt.target.id, hint, default, comments.get(stmt.target.id, "")))
    return tuple(docs)


def source_dataclass(path: str | Path, class_name: str, names: Mapping[str, Any] | None = None) -> type:
    """A frozen dataclass with the fields, types and defaults of ``class_name`` in ``path`` (read as
    :func:`source_field_docs` reads it): a stand-in for a nested config whose module is heavy to import."""
    docs = source_field_docs(path, class_name, names)
    cls = dataclasses.make_dataclass(
        class_name, [(d.name, d.hint, dataclasses.field(default=d.default)) for d in docs], frozen=True
    )
    cls.__source_field_docs__ = docs
    return cls


@functools.cache
def field_docs(cls: type) -> tuple[FieldDoc, ...]:
    """The fields of dataclass ``cls`` with their types, defaults and comments."""
    comments = _comments(cls)
    hints = typing.get_type_hints(cls)
    docs = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        docs.append(FieldDoc(f.name, hints[f.name], default, comments.get(f.name, "")))
    return tuple(docs)


_TYPE_NAMES = {
    float: "a number",
    int: "a whole number",
    bool: "true or false",
    str: "a string",
    dict: "a mapping",
    list: "a list of strings",
    tuple: "a list",
}


def _options(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union type (``str | None`` -> (str, NoneType)), or ``(hint,)``."""
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _type_name(hint: Any) -> str:
    options = [a for a in _options(hint) if a is not type(None)]
    names = [_TYPE_NAMES.get(typing.get_origin(a) or a, getattr(a, "__name__", str(a))) for a in options]
    return " or ".join(names) or "none"


def coerce(hint: Any, value: Any) -> Any:
    """``value`` as type ``hint``: a recipe's YAML may give ``1e-3`` as a string, ``2`` for ``2.0`` and a list for
    a tuple. Raises ValueError (saying what was expected) when it is not one; non-finite numbers are refused."""
    options = _options(hint)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option) or option
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and not isinstance(value, bool):
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
        if origin is float and not isinstance(value, bool):
            number = value
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    continue
            if isinstance(number, int | float):
                if not math.isfinite(number):
                    raise ValueError(f"must be a finite number, got {value!r}")
                return float(number)
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if origin is tuple and isinstance(value, list | tuple):
            args = typing.get_args(option)
            item = args[0] if args else Any
            return tuple(value if item is Any else (coerce(item, v) for v in value))
        if origin is dict and isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    raise ValueError(f"expected {_type_name(hint)}, got {value!r}")


def checked_fields(
    cls: type, values: Mapping[str, Any], what: str, nested: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``values`` with each coerced to its field's type in dataclass ``cls`` (a nested dataclass field takes a
    mapping of its own fields). An unknown key, or values of the wrong type, are one :class:`ConfigError` that names
    every such field; ``what`` names the options ("training option"), ``nested`` those of nested fields."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what}s must be a mapping of option: value, got {values!r}")
    docs = {f.name: f for f in field_docs(cls)}
    unknown = sorted(k if isinstance(k, str) and k.isidentifier() else repr(k) for k in set(values) - set(docs))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {', '.join(unknown)}; valid: {', '.join(sorted(docs))}")
    out, bad = {}, []
    for key, value in values.items():
        hint = docs[key].hint
        try:
            if dataclasses.is_dataclass(hint):
                name = (nested or {}).get(key, f"{key} option")
                out[key] = value if isinstance(value, hint) else hint(**checked_fields(hint, value, name))
            else:
                out[key] = coerce(hint, value)
        except ConfigError:
            raise
        except ValueError as e:
            bad.append(f"{key}: {e}")
    if bad:
        raise ConfigError(f"invalid {what}(s): {'; '.join(bad)}")
    return out
