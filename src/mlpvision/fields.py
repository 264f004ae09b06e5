"""Dataclass configs as users write them: each field's type, default, range and the comment beside it (help text),
and one checker that every input passes: command-line flags, recipes (YAML), configs stored in model files and
checkpoints, and configs built in Python. A value of the wrong type or out of its range, or an unknown key, is
one :class:`~mlpvision.errors.ConfigError` that names every such field of the input at once.

A field declares its range where it is defined, with :func:`option`::

    depth: int = option(8, ge=1, le=1024)  # number of blocks

Why typed dataclasses with this checker rather than pydantic: every config here is a frozen standard dataclass
that the rest of the code builds with ``dataclasses.replace`` and reads with ``dataclasses.asdict``, the fields'
comments are the flags' help text, and a config must stay importable and printable by the model code without a
second type system. The checker needs only the field annotations plus a small range record in each field's
``metadata``, it coerces the forms YAML and JSON give (``"1e-3"``, ``2.0`` for 2, a list for a tuple) and it
collects every problem of an input in one pass, which is what a pydantic model would add.
"""

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

from .errors import ConfigError, brief

__all__ = [
    "FieldDoc",
    "Limits",
    "check_config",
    "checked_fields",
    "coerce",
    "config_problems",
    "field_docs",
    "option",
    "source_field_docs",
]


@dataclasses.dataclass(frozen=True)
class Limits:
    """The range of a field's value (of each item, for a tuple): bounds and/or a set of choices."""

    ge: float | None = None  # at least
    gt: float | None = None  # more than
    le: float | None = None  # at most
    lt: float | None = None  # less than
    choices: tuple | None = None  # one of these
    max_items: int | None = None  # a tuple or list: at most this many items

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (already of the field's type) is out of range, or None."""
        if isinstance(value, tuple | list):
            if self.max_items is not None and len(value) > self.max_items:
                return f"must have at most {self.max_items} items, got {len(value)}"
            return next((f"item {p}" for p in map(self._one, value) if p), None)
        return self._one(value)

    def _one(self, value: Any) -> str | None:
        if value is None or isinstance(value, bool):
            return None
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {brief(value)}"
        if not isinstance(value, int | float):
            return None
        for bound, ok in (
            (self.ge, lambda b: value >= b),
            (self.gt, lambda b: value > b),
            (self.le, lambda b: value <= b),
            (self.lt, lambda b: value < b),
        ):
            if bound is not None and not ok(bound):
                return f"must be {self._describe()}, got {brief(value)}"
        return None

    def _describe(self) -> str:
        low = f">= {_num(self.ge)}" if self.ge is not None else (f"> {_num(self.gt)}" if self.gt is not None else "")
        high = f"<= {_num(self.le)}" if self.le is not None else (f"< {_num(self.lt)}" if self.lt is not None else "")
        return " and ".join(p for p in (low, high) if p)


def _num(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def option(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    max_items: int | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a range: ``depth: int = option(8, ge=1, le=1024)``; ``choices`` lists the allowed
    values of a string field; on a tuple field the range applies to each item."""
    limits = Limits(ge, gt, le, lt, tuple(choices) if choices is not None else None, max_items)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"limits": limits})
    return dataclasses.field(default=default, metadata={"limits": limits})


class FieldDoc(NamedTuple):
    """A config field as a command line or an error message shows it."""

    name: str
    hint: Any  # the resolved type annotation
    default: Any
    help: str  # the field's comment in the class body
    limits: Limits | None = None  # the field's range, when it declares one


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
    "option": lambda *args, **kwargs: option(*args, **kwargs),  # defined below; a field with its range
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
        limits = None
        if isinstance(default, dataclasses.Field):
            limits = default.metadata.get("limits")
            if default.default is not dataclasses.MISSING:
                default = default.default
            elif default.default_factory is not dataclasses.MISSING:
                default = default.default_factory()
            else:
                raise ValueError(f"{class_name}.{stmt.target.id} has no default")
        docs.append(FieldDoc(stmt.target.id, hint, default, comments.get(stmt.target.id, ""), limits))
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
        limits = f.metadata.get("limits")
        docs.append(FieldDoc(f.name, hints[f.name], default, comments.get(f.name, ""), limits))
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
            if isinstance(value, str) and len(value) < 40 and value.strip().lstrip("+-").isdigit():
                return int(value)
        if origin is float and not isinstance(value, bool):
            number = value
            if isinstance(value, str):
                try:
                    number = float(value) if len(value) < 40 else None
                except ValueError:
                    continue
            if isinstance(number, int | float):
                if not math.isfinite(number):
                    raise ValueError(f"must be a finite number, got {brief(value)}")
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
    raise ValueError(f"expected {_type_name(hint)}, got {brief(value)}")


def _problems(cls: type, values: Mapping[str, Any], prefix: str) -> tuple[dict[str, Any], list[str]]:
    """``values`` coerced to ``cls``'s field types, and every problem found (unknown keys, wrong types, values out
    of range), each naming its field (``aug.hflip``) - nested dataclass fields included."""
    if not isinstance(values, Mapping):
        return {}, [f"{prefix.rstrip('.') or 'the options'}: expected a mapping of option: value, got {brief(values)}"]
    docs = {f.name: f for f in field_docs(cls)}
    unknown = [k for k in values if k not in docs]
    problems = []
    if unknown:
        names = ", ".join(
            prefix + (k if isinstance(k, str) and k.isidentifier() and len(k) < 40 else brief(k)) for k in unknown[:8]
        )
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        problems.append(f"unknown option(s) {names}{more} (valid: {', '.join(sorted(docs))})")
    out = {}
    for key, value in values.items():
        if key not in docs:
            continue
        doc = docs[key]
        if dataclasses.is_dataclass(doc.hint):
            if isinstance(value, doc.hint):
                value = dataclasses.asdict(value)
            sub, more_problems = _problems(doc.hint, value, f"{prefix}{key}.")
            problems += more_problems
            if not more_problems:
                out[key] = doc.hint(**sub)
            continue
        try:
            out[key] = coerce(doc.hint, value)
        except ValueError as e:
            problems.append(f"{prefix}{key}: {e}")
            continue
        why = doc.limits.problem(out[key]) if doc.limits is not None else None
        if why:
            problems.append(f"{prefix}{key} {why}")
    return out, problems


def checked_fields(
    cls: type, values: Mapping[str, Any], what: str, nested: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``values`` with each coerced to its field's type in dataclass ``cls`` (a nested dataclass field takes a
    mapping of its own fields) and checked against the field's range. Unknown keys, values of the wrong type and
    values out of range are one :class:`ConfigError` naming every such field; ``what`` names the options
    ("training option"); ``nested`` is accepted for compatibility (nested fields are named ``aug.hflip``)."""
    out, problems = _problems(cls, values, "")
    if problems:
        raise ConfigError(f"invalid {what}(s): {'; '.join(problems)}")
    return out


def config_problems(config: Any) -> list[str]:
    """Every field of dataclass instance ``config`` whose value is not of its type or out of its range."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return _problems(type(config), values, "")[1]


def check_config(config: Any, what: str | None = None) -> None:
    """Raises one :class:`ConfigError` naming every field of ``config`` that is of the wrong type or out of range
    (a config's ``__post_init__`` calls it, so no config, however built, holds an impossible value)."""
    problems = config_problems(config)
    if problems:
        raise ConfigError(f"invalid {what or type(config).__name__}: {'; '.join(problems)}")
