"""Search filters every store understands, and a way to pass a store's own syntax through.

A portable filter is written as a mapping (JSON-friendly, the same in Python, TOML or JSON)::

    {"modality": "image"}                      # equality
    {"lang": {"in": ["en", "fr"]}}             # one of
    {"year": {"gte": 2000, "lt": 2010}}        # ranges: gt, gte, lt, lte
    {"uri": {"prefix": "docs/"}}               # starts with

Several keys (or several operators on one key) must all hold.  ``uri``, ``modality`` and ``chunk``
are row fields; any other name is a key of the row's metadata.  A row whose value is missing, or
of another kind than the filter's value (text, number, true/false), never matches.

:func:`as_filter` turns what a caller gives into a :class:`Filter` (immutable; stores translate
its :attr:`Filter.clauses`) or a :class:`Native` expression, passed to the store untouched.
:func:`parse_where` reads the command line's ``--where`` strings.  No heavy imports here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Union

import attrs

from embedline.errors import ConfigError, StoreError

#: Fields of every row; any other filter key names a metadata key.
ROW_FIELDS = ("uri", "modality", "chunk")
#: The portable operators; ``eq`` is what a bare value means.
OPERATORS = ("eq", "in", "gt", "gte", "lt", "lte", "prefix")
RANGES = ("gt", "gte", "lt", "lte")

Scalar = Union[str, int, float, bool]
_MISSING = object()


def _kind(value: Any) -> str | None:
    """What a value is for comparison: "bool", "number", "text", or None (lists, tables, null)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


@attrs.frozen
class Clause:
    """One condition: ``field op value``.  ``value`` is a tuple for ``in``, a scalar otherwise."""

    field: str
    op: str
    value: Any

    @property
    def on_metadata(self) -> bool:
        """True when ``field`` is a metadata key rather than a row field."""
        return self.field not in ROW_FIELDS

    def matches(self, actual: Any = _MISSING) -> bool:
        """Whether a row whose value for ``field`` is ``actual`` (omit it when missing) passes."""
        kind = _kind(actual)
        if kind is None:
            return False
        if self.op == "in":
            return any(_kind(v) == kind and v == actual for v in self.value)
        if _kind(self.value) != kind:
            return False
        if self.op == "eq":
            return actual == self.value
        if self.op == "prefix":
            return actual.startswith(self.value)
        if kind == "bool":
            return False
        return {
            "gt": actual > self.value,
            "gte": actual >= self.value,
            "lt": actual < self.value,
            "lte": actual <= self.value,
        }[self.op]


@attrs.frozen
class Filter:
    """A portable filter: every clause must hold.  Build it with :func:`as_filter`."""

    clauses: tuple[Clause, ...]

    def matches(self, uri: str, modality: str, chunk: int, metadata: Mapping[str, Any]) -> bool:
        """The reference meaning, for stores that filter rows in Python."""
        row = {"uri": uri, "modality": modality, "chunk": chunk}
        for clause in self.clauses:
            actual = row[clause.field] if not clause.on_metadata else metadata.get(clause.field, _MISSING)
            if not clause.matches(actual):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The mapping form (``as_filter(f.to_dict()) == f`` when no field repeats an operator)."""
        out: dict[str, dict[str, Any]] = {}
        for clause in self.clauses:
            value = list(clause.value) if clause.op == "in" else clause.value
            out.setdefault(clause.field, {})[clause.op] = value
        return out

    def __str__(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@attrs.frozen
class Native:
    """An expression in the store's own syntax, passed through untouched (``chunk >= 1`` for
    Milvus).  A store that has no syntax of its own raises :class:`~embedline.errors.StoreError`."""

    expression: str

    def __str__(self) -> str:
        return self.expression


def as_filter(value: Any, *, key: str = "filter") -> Filter | Native | None:
    """``value`` as what :meth:`embedline.VectorStore.search` receives.

    Accepts None (no filter), a mapping (the portable form), a :class:`Filter`, a :class:`Native`,
    or a plain string, which is the store's own syntax (``Native(string)``), as before portable
    filters existed.  Raises :class:`~embedline.errors.ConfigError` naming ``key`` for anything
    else, an unknown operator or a value of the wrong type.
    """
    if value is None or isinstance(value, (Filter, Native)):
        return value
    if isinstance(value, str):
        return Native(value) if value.strip() else None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"expected a mapping such as {{'lang': 'en'}}, a Filter or a Native expression, got {type(value).__name__}",
            key=key,
        )
    clauses = []
    for field, condition in value.items():
        if not isinstance(field, str) or not field:
            raise ConfigError(f"field names must be non-empty strings, got {field!r}", key=key)
        where = f"{key}.{field}"
        if isinstance(condition, Mapping):
            if not condition:
                raise ConfigError(f"no operator given; use one of {', '.join(OPERATORS)}", key=where)
            for op, operand in condition.items():
                clauses.append(_clause(field, op, operand, where))
        else:
            clauses.append(_clause(field, "eq", condition, where))
    return Filter(tuple(clauses)) if clauses else None


def _clause(field: str, op: Any, value: Any, where: str) -> Clause:
    if op not in OPERATORS:
        raise ConfigError(f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}", key=where)
    if op == "in":
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"'in' expects a non-empty list, got {_shown(value)}", key=where)
        for item in value:
            _check_value(field, "in", item, where)
        return Clause(field, op, tuple(value))
    if op == "eq" and isinstance(value, (list, tuple)):
        raise ConfigError(f"a list needs an operator: {{'in': {list(value)!r}}}", key=where)
    _check_value(field, op, value, where)
    return Clause(field, op, value)


def _check_value(field: str, op: str, value: Any, where: str) -> None:
    kind = _kind(value)
    if kind is None:
        raise ConfigError(f"expected text, a number or true/false, got {_shown(value)}", key=where)
    if kind == "number" and not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {value!r}", key=where)
    if op == "prefix" and kind != "text":
        raise ConfigError(f"'prefix' expects text, got {_shown(value)}", key=where)
    if op in RANGES and kind == "bool":
        raise ConfigError(f"{op!r} expects a number or text, got {_shown(value)}", key=where)
    if field == "chunk" and not (kind == "number" and isinstance(value, int)):
        raise ConfigError(f"chunk is an integer, got {_shown(value)}", key=where)
    if field in ("uri", "modality") and kind != "text":
        raise ConfigError(f"{field} is text, got {_shown(value)}", key=where)


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def only_portable(value: Any, where: str) -> Filter | None:
    """For a store with no filter syntax of its own: the :class:`Filter` in ``value``, None for
    no filter, and a one-line :class:`~embedline.errors.StoreError` naming ``where`` (the store)
    for a native expression."""
    parsed = as_filter(value)
    if isinstance(parsed, Native):
        raise StoreError(
            f"{where} has no filter syntax of its own, so it cannot read {parsed.expression!r}: "
            "give a portable filter such as {'modality': 'text'} (on the command line: --where modality=text)"
        )
    return parsed


# -- the command line ----------------------------------------------------------------------------

_WHERE = re.compile(r"(?P<field>[^\s=<>^:!]+)(?P<op>:in=|\^=|>=|<=|=|>|<)(?P<value>.*)", re.DOTALL)
_WHERE_OPS = {"=": "eq", ":in=": "in", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "^=": "prefix"}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")
_INTEGER = re.compile(r"[+-]?\d+")
WHERE_HELP = (
    "KEY=VALUE, KEY>N, KEY>=N, KEY<N, KEY<=N, KEY^=PREFIX or KEY:in=A,B,C; "
    'numbers and true/false are read as such, "quoted" text stays text'
)


def parse_where(strings: Iterable[str]) -> Filter | None:
    """A portable filter from command-line conditions (all must hold), None if there are none.

    ``KEY=VALUE`` equality, ``KEY>N`` / ``KEY>=N`` / ``KEY<N`` / ``KEY<=N`` ranges, ``KEY^=TEXT``
    prefix, ``KEY:in=A,B,C`` one of (split at commas).  A value that reads as a number is a number
    and ``true``/``false`` are booleans, except for ``uri`` and ``modality``, which are always text;
    write ``KEY="2001"`` (JSON string quotes) to keep a value as text.  An argument starting with
    ``{`` is the mapping form as JSON, e.g. ``{"lang": {"in": ["en", "fr,be"]}}``.
    """
    clauses: list[Clause] = []
    for text in strings:
        where = f"--where {text!r}"
        if text.lstrip().startswith("{"):
            try:
                mapping = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"not valid JSON: {exc}", key=where) from None
            parsed = as_filter(mapping, key=where)
            clauses.extend(parsed.clauses if parsed else ())
            continue
        match = _WHERE.fullmatch(text.strip())
        if match is None:
            hint = "; != is not portable: use --filter with the store's own syntax" if "!=" in text else ""
            raise ConfigError(f"expected {WHERE_HELP}{hint}", key=where)
        field, op = match["field"], _WHERE_OPS[match["op"]]
        raw = match["value"]
        if op == "in":
            value: Any = [_where_value(field, part.strip()) for part in raw.split(",")]
        elif op == "prefix":
            value = _unquote(raw)
        else:
            value = _where_value(field, raw)
        clauses.append(_clause(field, op, value, where))
    return Filter(tuple(clauses)) if clauses else None


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(value, str):
            return value
    return raw


def _where_value(field: str, raw: str) -> Any:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return _unquote(raw)
    if field in ("uri", "modality"):
        return raw
    if _NUMBER.fullmatch(raw):
        return int(raw) if _INTEGER.fullmatch(raw) else float(raw)
    if raw in ("true", "false"):
        return raw == "true"
    return raw
