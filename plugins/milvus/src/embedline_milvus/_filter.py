"""Portable filters (``embedline.filters``) as Milvus boolean expressions.

Row fields are columns (``uri``, ``modality``, ``chunk``); any other key lives in the JSON column
``metadata``.  Milvus already gives the portable meaning: a JSON value of another type, or a
missing key, compares false.  Pure Python: no pymilvus here.
"""

from __future__ import annotations

import json
from typing import Any

from embedline.filters import Clause, Native, as_filter

_COMPARE = {"eq": "==", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def milvus_expression(value: Any) -> str:
    """The expression for a ``search`` filter: "" for none, a :class:`Native` (or plain string) as is."""
    parsed = as_filter(value)
    if parsed is None:
        return ""
    if isinstance(parsed, Native):
        return parsed.expression
    return " and ".join(_clause(clause) for clause in parsed.clauses)


def literal(value: Any) -> str:
    """A Milvus literal: JSON's (``"text"``, ``12``, ``1.5``, ``true``).  Non-ASCII stays as is:
    Milvus Lite rejects \\u escapes."""
    return json.dumps(value, ensure_ascii=False)


def _clause(clause: Clause) -> str:
    field = f"metadata[{literal(clause.field)}]" if clause.on_metadata else clause.field
    if clause.op == "in":
        if clause.on_metadata:  # Milvus' `in` takes a column only, not a JSON path
            return "(" + " or ".join(f"{field} == {literal(v)}" for v in clause.value) + ")"
        return f"{field} in [{', '.join(literal(v) for v in clause.value)}]"
    if clause.op == "prefix":
        if any(ch in clause.value for ch in "\\%_"):
            # Escaping `_` and `%` in a `like` pattern works on Milvus Lite but not on a Milvus 2.3
            # server, which takes the backslash as a character, nor on a JSON path: a prefix holding
            # one of them is the range of the texts that start with it, the same everywhere.
            upper = clause.value[:-1] + chr(ord(clause.value[-1]) + 1)
            return f"({field} >= {literal(clause.value)} and {field} < {literal(upper)})"
        return f"{field} like {literal(clause.value + '%')}"
    return f"{field} {_COMPARE[clause.op]} {literal(clause.value)}"
