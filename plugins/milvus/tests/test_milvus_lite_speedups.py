"""The engine's faster Milvus Lite flush builds the same table as Milvus Lite's own code."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedline_milvus import _lite_speedups

milvus_lite = pytest.importorskip("milvus_lite")
from milvus_lite.db import MilvusLite  # noqa: E402
from milvus_lite.schema.types import CollectionSchema, DataType, FieldSchema  # noqa: E402


def _schema(dynamic: bool) -> CollectionSchema:
    return CollectionSchema(
        fields=[
            FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=128),
            FieldSchema("vector", DataType.FLOAT_VECTOR, dim=8),
            FieldSchema("uri", DataType.VARCHAR, max_length=4096),
            FieldSchema("chunk", DataType.INT64),
            FieldSchema("score", DataType.DOUBLE, nullable=True),
            FieldSchema("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=16),
            FieldSchema("metadata", DataType.JSON),
        ],
        enable_dynamic_field=dynamic,
    )


def _records(ids, rng, extra: bool) -> list[dict]:
    out = []
    for i in ids:
        record = {
            "id": f"doc-{i}",
            "vector": rng.standard_normal(8).astype(np.float32).tolist(),
            "uri": f"file:///data/ünïcode-{i}.txt",
            "chunk": i,
            "score": None if i % 3 == 0 else i / 7,
            "tags": ["a", "b"][: i % 3],
            "metadata": {"n": i, "nested": {"x": [1, 2]}} if i % 2 else {},
        }
        if extra:
            record["colour"] = "red" if i % 2 else "blue"
        out.append(record)
    return out


def _live_rows(memtable) -> list[tuple[int, int]]:
    """The (batch, row) pairs Milvus Lite's flush hands to ``_build_data_table``, in its order."""
    return [(batch, row) for _pk, (batch, row, _seq) in memtable.pk_index_snapshot()]


@pytest.mark.parametrize("dynamic", [False, True])
def test_the_fast_flush_table_equals_milvus_lites_own(tmp_path, dynamic):
    rng = np.random.default_rng(7)
    db = MilvusLite(str(tmp_path / "speed.db"))
    try:
        collection = db.create_collection("c", _schema(dynamic))
        collection.insert(_records(range(0, 40), rng, dynamic))
        collection.insert(_records(range(40, 90), rng, dynamic))
        collection.upsert(_records([5, 41, 88, 7], rng, dynamic))  # rows shadowed in earlier batches
        collection.delete(["doc-3", "doc-50"])
        collection.insert(_records(range(90, 95), rng, dynamic))
        memtable = collection._memtable
        rows = _live_rows(memtable)
        assert len(rows) == 93  # 95 ids, 2 deleted
        assert any(b > 0 for b, _ in rows[:10])  # the upserted rows point into a later batch

        own = memtable._build_data_table(rows)
        fast = _lite_speedups.build_data_table(memtable, rows)
        assert fast.schema.equals(own.schema, check_metadata=True)
        assert fast.equals(own)
        assert fast.to_pylist() == own.to_pylist()

        # rows out of batch order, and none
        shuffled = [rows[i] for i in rng.permutation(len(rows))]
        assert _lite_speedups.build_data_table(memtable, shuffled).equals(memtable._build_data_table(shuffled))
        assert _lite_speedups.build_data_table(memtable, []).equals(memtable._build_data_table([]))
    finally:
        db.close()


def test_apply_replaces_the_flush_in_a_process_of_its_own_and_the_data_reads_back(tmp_path):
    # In a child process: apply() changes a Milvus Lite class, which this test process must keep.
    script = textwrap.dedent(
        f"""
        import numpy as np
        from embedline_milvus import _lite_speedups
        from milvus_lite.db import MilvusLite
        from milvus_lite.storage.memtable import MemTable
        original = MemTable._build_data_table
        assert _lite_speedups.apply() is True
        assert MemTable._build_data_table is not original
        assert _lite_speedups.apply() is True  # a second call changes nothing
        from milvus_lite.schema.types import CollectionSchema, DataType, FieldSchema
        schema = CollectionSchema(fields=[
            FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=64),
            FieldSchema("vector", DataType.FLOAT_VECTOR, dim=4),
            FieldSchema("text", DataType.VARCHAR, max_length=64),
        ])
        db = MilvusLite({str(tmp_path / "apply.db")!r})
        c = db.create_collection("c", schema)
        c.insert([{{"id": f"r{{i}}", "vector": [float(i), 1.0, 0.0, 0.0], "text": f"t{{i}}"}} for i in range(50)])
        c.upsert([{{"id": "r7", "vector": [7.0, 2.0, 0.0, 0.0], "text": "seven"}}])
        c.flush()
        db.close()
        db = MilvusLite({str(tmp_path / "apply.db")!r})
        c = db.get_collection("c")
        c.load()
        got = c.get(["r7", "r49"])
        assert sorted((r["id"], r["text"]) for r in got) == [("r49", "t49"), ("r7", "seven")], got
        print("ok", c.num_entities)
        db.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "50"]
