"""A faster flush for Milvus Lite, applied only inside the engine process that embedline starts.

Milvus Lite 3.2 turns its in-memory table into the table it writes to Parquet value by value:
every cell of every live row goes through ``as_py()`` into a Python list and back into Arrow
(``MemTable._build_data_table``).  For a 100k-row collection of 256-d vectors that is 25.6 million
Python floats, about 7 s of the engine's CPU at each flush, all of it holding the engine's GIL.
The same rows can be gathered in Arrow with one ``take``; the result is the same table (same
schema, same rows in the same order; ``tests/test_milvus_lite_speedups.py`` compares the two).

This changes a class of Milvus Lite in the process that imports it, so it is applied in the
engine process only (``python -m embedline_milvus._engine``), never in a host application's
process (``lite_engine = "inline"``).  It is skipped when the class does not look as expected
(another Milvus Lite version), leaving Milvus Lite's own code in place.
"""

from __future__ import annotations

from typing import Any

#: What the replacement reads; a Milvus Lite without them keeps its own ``_build_data_table``.
_NEEDS = ("_build_data_table", "_insert_batches", "_data_schema")


def build_data_table(memtable: Any, rows: list[tuple[int, int]]) -> Any:
    """``MemTable._build_data_table`` in Arrow: the live rows ``(batch index, row index)``, in
    that order, as a table of the memtable's data schema."""
    import pyarrow as pa

    schema = memtable._data_schema
    if not rows:
        return schema.empty_table()
    batches = memtable._insert_batches
    offsets = [0]
    for batch in batches:
        offsets.append(offsets[-1] + batch.num_rows)
    indices = pa.array([offsets[b] + r for b, r in rows], type=pa.int64())
    table = pa.Table.from_batches(batches).select(schema.names).take(indices)
    return table.cast(schema).combine_chunks()


def apply() -> bool:
    """Install :func:`build_data_table` on Milvus Lite's ``MemTable``; False if it does not fit."""
    try:
        from milvus_lite.storage.memtable import MemTable
    except ImportError:
        return False
    if getattr(MemTable, "_embedline_fast_flush", False):
        return True
    probe = MemTable.__init__.__code__.co_names
    if not callable(getattr(MemTable, _NEEDS[0], None)) or not all(name in probe for name in _NEEDS[1:]):
        return False

    def _build_data_table(self, rows):
        return build_data_table(self, rows)

    MemTable._build_data_table = _build_data_table
    MemTable._embedline_fast_flush = True
    return True
