"""The built-in ``memory`` store: the store conformance suite, then what is its own (the file it
saves, its plugin declaration)."""

import json

import numpy as np
import pytest

from embedline.contracts import Record, StoreSpec
from embedline.errors import StoreError
from embedline.pipeline import Pipeline
from embedline.testing import StoreConformance, fresh_plugin_manager, memory_store


def open_memory(base_dir, **options):
    spec = StoreSpec(plugin="memory", options=options, base_dir=base_dir)
    return fresh_plugin_manager().call("store", "memory", spec=spec)


class TestMemoryStore(StoreConformance):
    metrics = ("COSINE", "IP", "L2")

    @pytest.fixture
    def open_store(self, tmp_path):
        return lambda metric="COSINE": open_memory(tmp_path, path="store/vectors.npz", metric=metric)


class TestMemoryStoreNotSaved(StoreConformance):
    metrics = ("COSINE", "IP", "L2")
    persistent = False

    @pytest.fixture
    def open_store(self, tmp_path):
        return lambda metric="COSINE": open_memory(tmp_path, metric=metric)


def row(row_id, vector):
    return Record(id=row_id, vector=vector, uri="u", modality="text", chunk=0, text="", metadata={}, model="m")


def test_the_file_is_written_on_close_by_a_rename_and_only_when_changed(tmp_path):
    store = open_memory(tmp_path, path="vectors.npz")
    store.create_collection("c", {"dim": 2})
    store.upsert("c", [row("a", np.ones(2, np.float32))])
    assert not (tmp_path / "vectors.npz").exists()
    store.close()
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.npz"]  # no temporary file left
    stamp = (tmp_path / "vectors.npz").stat().st_mtime_ns
    reader = open_memory(tmp_path, path="vectors.npz")
    assert reader.search("c", np.ones((1, 2), np.float32), k=1)[0][0].id == "a"
    reader.close()
    assert (tmp_path / "vectors.npz").stat().st_mtime_ns == stamp  # nothing changed: not rewritten


def test_an_unreadable_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "vectors.npz").write_bytes(b"not numpy")
    with pytest.raises(StoreError) as err:
        open_memory(tmp_path, path="vectors.npz")
    assert str(err.value).startswith(f"cannot read memory store {tmp_path / 'vectors.npz'}")
    assert "\n" not in str(err.value)


def test_the_metric_is_fixed_when_a_collection_is_created(tmp_path):
    first = open_memory(tmp_path, path="v.npz", metric="L2")
    first.create_collection("c", {"dim": 2})
    first.upsert("c", [row("a", np.array([3, 0], np.float32))])
    first.close()
    again = open_memory(tmp_path, path="v.npz", metric="COSINE")  # affects new collections only
    assert again.search("c", np.array([[1, 0]], np.float32), k=1)[0][0].score == pytest.approx(-4.0)


def test_calls_after_close_are_refused(tmp_path):
    store = open_memory(tmp_path)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count("c")


def test_a_pipeline_on_the_memory_store_with_only_the_core(tmp_path, pm):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("cats purr\n\nrockets fly")
    config = {"source": {"path": "docs"}, "model": {"plugin": "fake"}, "store": memory_store(tmp_path)}
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        assert p.run().embedded == 1
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        assert p.run().skipped == 1
        assert p.search("cats purr", k=1)[0].uri == "docs/a.md"


def test_the_plugin_is_built_in_listed_and_can_be_blocked():
    rows = {row["name"]: row for row in fresh_plugin_manager(autoload=False).describe()}
    assert rows["memory"]["kind"] == "store" and rows["memory"]["hooks"] == ["store"]
    assert rows["memory"]["options"] == ["metric", "path"]
    blocked = fresh_plugin_manager(blocked=["memory"])
    assert "memory" not in blocked.available()
    with pytest.raises(Exception, match="blocked"):
        blocked.load("memory")
    json.dumps(rows["memory"])
