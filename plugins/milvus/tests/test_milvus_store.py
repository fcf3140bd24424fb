"""MilvusStore against a real Milvus Lite database in tmp_path (no mocks); the tests taking
``backend`` run on a real Milvus server too (conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from embedline.config import Secret, StoreSpec
from embedline.contracts import Record
from embedline.errors import StoreError

import embedline_milvus

DIM = 8
FINGERPRINT = {
    "plugin": "fake",
    "plugin_version": "0.1.0",
    "source": "test/model",
    "revision": "abc",
    "dim": DIM,
    "normalized": True,
    "settings": {"max_seq_length": 128},
}
MODEL = "f00dfeedf00dfeed"


def make_spec(base_dir, **overrides) -> StoreSpec:
    options = {name: opt.default for name, opt in embedline_milvus.plugin_info.options.items()}
    options.update(overrides)
    return StoreSpec(plugin="milvus", collection="c", options=options, base_dir=base_dir)


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def records(vectors, model=MODEL, prefix="r", text="chunk text"):
    return [
        Record(
            id=f"{prefix}{i}",
            vector=v,
            uri=f"file:///docs/{i}.txt",
            modality="text",
            chunk=i % 3,
            text=f"{text} {i}",
            metadata={"k": i, "tags": ["a", "b"], "nested": {"x": 1.5}},
            model=model,
        )
        for i, v in enumerate(vectors)
    ]


@pytest.fixture
def store(tmp_path):
    s = embedline_milvus.store(make_spec(tmp_path))
    yield s
    s.close()


@pytest.fixture
def filled(store):
    store.create_collection("c", FINGERPRINT)
    vectors = unit_vectors(20)
    store.upsert("c", records(vectors))
    return store, vectors


@pytest.fixture
def any_store(backend):
    """A store on Milvus Lite, then on the session's Milvus server."""
    s = backend.store()
    yield s
    s.close()


@pytest.fixture
def any_filled(any_store):
    any_store.create_collection("c", FINGERPRINT)
    vectors = unit_vectors(20)
    any_store.upsert("c", records(vectors))
    return any_store, vectors


def test_open_creates_the_database_folder_relative_to_base_dir(tmp_path):
    s = embedline_milvus.store(make_spec(tmp_path, uri="data/sub/embed.db"))
    try:
        assert (tmp_path / "data" / "sub" / "embed.db").is_dir()
        assert "embed.db" in repr(s)
    finally:
        s.close()


def test_fingerprint_round_trip(store):
    assert store.get_fingerprint("c") is None
    assert store.count("c") == 0
    store.create_collection("c", FINGERPRINT)
    assert store.get_fingerprint("c") == FINGERPRINT
    store.create_collection("c", FINGERPRINT)  # same model again: nothing to do
    with pytest.raises(StoreError, match="already exists"):
        store.create_collection("c", {**FINGERPRINT, "revision": "other"})


def test_collection_without_fingerprint_is_refused(any_store):
    any_store.client.create_collection("plain", dimension=DIM)
    with pytest.raises(StoreError, match="not created by embedline"):
        any_store.get_fingerprint("plain")


def test_invalid_collection_name_is_refused_even_though_lite_would_accept_it(store):
    with pytest.raises(StoreError, match="invalid Milvus collection name 'my-docs'"):
        store.create_collection("my-docs", FINGERPRINT)


def test_upsert_twice_keeps_one_row_per_id(tmp_path):
    s = embedline_milvus.store(make_spec(tmp_path, write_batch_size=3))  # several batches
    try:
        s.create_collection("c", FINGERPRINT)
        rows = records(unit_vectors(10))
        s.upsert("c", rows)
        s.upsert("c", rows)
        assert s.count("c") == 10
    finally:
        s.close()


def _writer_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("embedline-milvus-write")]


def test_batches_written_several_at_once_are_all_stored_and_the_threads_end_with_the_store(tmp_path):
    s = embedline_milvus.store(make_spec(tmp_path, write_batch_size=4, write_concurrency=3))
    try:
        s.create_collection("c", FINGERPRINT)
        vectors = unit_vectors(50, seed=4)
        s.upsert("c", records(vectors))  # 13 batches, 3 at a time
        assert 1 <= len(_writer_threads()) <= 3
        assert s.count("c") == 50
        hits = s.search("c", vectors[[7, 42]], k=1)
        assert [h[0].id for h in hits] == ["r7", "r42"]
        assert hits[0][0].text == "chunk text 7" and hits[0][0].metadata["k"] == 7

        bad = records(unit_vectors(30, seed=5), prefix="b")
        bad[21] = records([np.ones(DIM + 1, np.float32)], prefix="b21-")[0]
        with pytest.raises(StoreError, match="dimension mismatch in collection 'c'.*dim 8, got 9"):
            s.upsert("c", bad)
        stored = s.existing_ids("c", [r.id for r in bad], MODEL)
        assert "b21-0" not in stored and {"b0", "b1", "b2", "b3"} <= stored  # the batches before it landed
    finally:
        s.close()
    assert _writer_threads() == []


def test_an_in_process_lite_writes_one_batch_at_a_time(tmp_path):
    s = embedline_milvus.store(make_spec(tmp_path, lite_engine="inline", write_batch_size=4, write_concurrency=3))
    try:
        s.create_collection("c", FINGERPRINT)
        s.upsert("c", records(unit_vectors(20)))
        assert s.count("c") == 20
        assert _writer_threads() == []  # no threads: nothing would overlap in this process
    finally:
        s.close()


def test_existing_ids_respects_the_model_id(filled):
    store, vectors = filled
    store.upsert("c", records(vectors[:2], model="0123456789abcdef", prefix="other"))
    asked = ["r0", "r5", "missing", "other0"] + [f"x{i}" for i in range(1200)]  # several query chunks
    assert store.existing_ids("c", asked, MODEL) == {"r0", "r5"}
    assert store.existing_ids("c", asked, "0123456789abcdef") == {"other0"}
    assert store.existing_ids("nope", ["r0"], MODEL) == set()


def test_search_returns_nearest_first_with_fields_round_tripped(filled):
    store, vectors = filled
    queries = vectors[[7, 12]] + 0.01
    hits = store.search("c", queries, k=3)
    assert [h[0].id for h in hits] == ["r7", "r12"]
    assert all(len(h) == 3 for h in hits)
    best = hits[0][0]
    assert best.uri == "file:///docs/7.txt" and best.modality == "text"
    assert best.chunk == 7 % 3 and best.text == "chunk text 7"
    assert best.metadata == {"k": 7, "tags": ["a", "b"], "nested": {"x": 1.5}}
    assert best.score > hits[0][1].score  # COSINE: higher is closer, as Milvus returns it


def test_filters(filled):
    store, vectors = filled
    hits = store.search("c", vectors[0], k=20, filter="chunk >= 1")[0]
    assert hits and all(h.chunk >= 1 for h in hits)
    assert "r0" not in {h.id for h in hits}
    hits = store.search("c", vectors[0], k=5, filter='metadata["k"] == 4')[0]
    assert [h.id for h in hits] == ["r4"]


def test_bad_filter_is_one_line_with_expression_and_reason(any_filled):
    store, vectors = any_filled
    with pytest.raises(StoreError) as err:
        store.search("c", vectors[:1], k=3, filter="chunk >>> 1")
    message = str(err.value)
    assert "'chunk >>> 1'" in message and "\n" not in message
    assert "unexpected token" in message or "cannot parse expression" in message  # Lite, or a 2.3 server


def test_text_is_cut_on_a_utf8_boundary(backend):
    s = backend.store(text_max_length=10)  # a server counts the bytes of a VARCHAR, Lite its characters
    try:
        s.create_collection("c", FINGERPRINT)
        vectors = unit_vectors(2)
        long = Record(id="long", vector=vectors[0], uri="u", modality="text", chunk=0,
                      text="ab" + "€" * 5, metadata={}, model=MODEL)  # fmt: skip
        short = Record(id="short", vector=vectors[1], uri="u", modality="text", chunk=0,
                       text="€€€", metadata={}, model=MODEL)  # fmt: skip
        s.upsert("c", [long, short])
        texts = {h.id: h.text for h in s.search("c", vectors, k=1)[0] + s.search("c", vectors[1], k=1)[0]}
        assert texts == {"long": "ab€€", "short": "€€€"}  # 2 + 3 + 3 bytes; a third € would make 11
    finally:
        s.close()


def test_dimension_mismatch_is_one_line_with_both_dims(any_filled):
    store, _ = any_filled
    bad = Record(id="bad", vector=np.ones(DIM - 1, np.float32), uri="u", modality="text", chunk=0,
                 text="", metadata={}, model=MODEL)  # fmt: skip
    for call in (lambda: store.upsert("c", [bad]), lambda: store.search("c", np.ones((1, DIM - 1)), k=2)):
        with pytest.raises(StoreError) as err:
            call()
        message = str(err.value)
        assert "'c'" in message and f"dim {DIM}" in message and f"got {DIM - 1}" in message
        assert "\n" not in message


def test_delete_and_count(filled):
    store, _ = filled
    store.delete("c", ["r0", "r1", "unknown"])
    assert store.count("c") == 18
    store.delete("missing_collection", ["r0"])  # ignored


def test_missing_collection_search_names_it(backend, any_store):
    where = "Milvus at http://127.0.0.1:" if backend.is_server else "Milvus Lite database"
    with pytest.raises(StoreError, match=f"collection 'nope' does not exist in {where}"):
        any_store.search("nope", np.ones((1, DIM)), k=1)


def test_reopened_database_is_loaded_and_searchable(tmp_path):
    spec = make_spec(tmp_path)
    first = embedline_milvus.store(spec)
    first.create_collection("c", FINGERPRINT)
    vectors = unit_vectors(5)
    first.upsert("c", records(vectors))
    first.close()
    # Milvus Lite reopens collections unloaded; the store loads them on first use.
    second = embedline_milvus.store(spec)
    try:
        assert second.get_fingerprint("c") == FINGERPRINT
        assert second.search("c", vectors[3], k=1)[0][0].id == "r3"
        assert second.count("c") == 5
    finally:
        second.close()


_OPEN_IN_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from embedline.config import StoreSpec
    from embedline.errors import StoreError
    import embedline_milvus
    options = {n: o.default for n, o in embedline_milvus.plugin_info.options.items()}
    try:
        store = embedline_milvus.store(StoreSpec(collection="c", options=options, base_dir=Path(sys.argv[1])))
        try:
            print("OPENED", store.count("c") if store.get_fingerprint("c") else "-")
        finally:
            store.close()
    except StoreError as exc:
        print("STOREERROR", exc)
    """
)


def _open_in_child(base_dir) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _OPEN_IN_CHILD, str(base_dir)], capture_output=True, text=True, timeout=120, env=env
    )
    return result.stdout.strip() + result.stderr.strip()


def test_another_process_uses_the_database_while_this_one_has_it_open(tmp_path):
    holder = embedline_milvus.store(make_spec(tmp_path))
    try:
        holder.create_collection("c", FINGERPRINT)
        holder.upsert("c", records(unit_vectors(5)))
        assert _open_in_child(tmp_path) == "OPENED 5"  # the shared engine: no lock error, the rows so far
        holder.upsert("c", records(unit_vectors(3, seed=1), prefix="s"))
        assert _open_in_child(tmp_path) == "OPENED 8"
    finally:
        holder.close()


def test_an_inline_holder_gives_others_a_clear_error_until_it_closes(tmp_path):
    holder = embedline_milvus.store(make_spec(tmp_path, lite_engine="inline"))
    try:
        out = _open_in_child(tmp_path)
        assert out.startswith("STOREERROR"), out
        assert str(tmp_path / "embed.db") in out and "in use" in out and 'lite_engine = "inline"' in out
        assert "Traceback" not in out and len(out.splitlines()) == 1  # quiet logs, one line
    finally:
        holder.close()
    # close() releases the Lite lock even though this process lives on
    assert _open_in_child(tmp_path) == "OPENED -"


def test_token_never_shows(tmp_path):
    token = "s3cr3t-t0ken-value"
    s = embedline_milvus.store(make_spec(tmp_path, token=Secret(token, "MILVUS_TOKEN")))
    try:
        assert token not in repr(s) and token not in str(s)
        with pytest.raises(StoreError) as err:
            s.search("nope", np.ones((1, DIM)), k=1)
        assert token not in str(err.value)
    finally:
        s.close()
    spec = make_spec(tmp_path, uri="http://root:pw-in-uri@127.0.0.1:1", token=Secret(token, "MILVUS_TOKEN"))
    with pytest.raises(StoreError) as err:
        embedline_milvus.store(spec)
    message = str(err.value)
    assert message.startswith("cannot connect to Milvus at http://root:***@127.0.0.1:1")  # embedline.toolkit.redact_uri
    assert token not in message and "pw-in-uri" not in message and token not in repr(err.value)


def test_lite_path_must_be_a_folder(tmp_path):
    (tmp_path / "old.db").write_bytes(b"not a folder")
    with pytest.raises(StoreError, match="is a file"):
        embedline_milvus.store(make_spec(tmp_path, uri="old.db"))


class _CountingClient:
    """The real MilvusClient, recording the name of every method called on it (the round trips)."""

    def __init__(self, client):
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def _counted(store) -> _CountingClient:
    store._client = _CountingClient(store._client)
    return store._client


def test_a_reopened_collection_costs_one_call_to_check_and_one_per_search(tmp_path):
    spec = make_spec(tmp_path, metric="L2")
    first = embedline_milvus.store(spec)
    first.create_collection("c", FINGERPRINT)
    assert first.client.list_indexes("c") == ["vector"]  # at once: the engine indexes segments as they seal
    vectors = unit_vectors(5)
    first.upsert("c", records(vectors))
    assert first.search("c", vectors[2], k=2)[0][1].score < 0  # searchable before it, with its metric
    first.flush("c")
    index = first.client.describe_index("c", index_name="vector")
    assert (index["index_type"], index["metric_type"]) == ("AUTOINDEX", "L2")
    first.close()

    second = embedline_milvus.store(spec)
    try:
        client = _counted(second)
        assert second.get_fingerprint("c") == FINGERPRINT
        assert client.calls == ["describe_collection"]
        assert second.get_fingerprint("missing") is None
        client.calls.clear()
        hit = second.search("c", vectors[3], k=1)[0][0]
        # The metric came back with the fingerprint: no describe_index; L2 distances still negated.
        assert hit.id == "r3" and hit.score == pytest.approx(0.0, abs=1e-5)
        assert second.search("c", vectors[3], k=2)[0][1].score < 0
        assert "describe_index" not in client.calls and "describe_collection" not in client.calls
        client.calls.clear()
        second.search("c", vectors[1], k=1)
        assert client.calls == ["search"]
    finally:
        second.close()


def test_with_an_inline_engine_the_index_comes_with_the_first_flush(tmp_path):
    store = embedline_milvus.store(make_spec(tmp_path, lite_engine="inline"))
    try:
        store.create_collection("c", FINGERPRINT)
        assert store.client.list_indexes("c") == []  # built once over the rows, not per segment in this process
        vectors = unit_vectors(5)
        store.upsert("c", records(vectors))
        assert store.search("c", vectors[2], k=1)[0][0].id == "r2"  # searchable before it
        store.flush("c")
        assert store.client.list_indexes("c") == ["vector"]
    finally:
        store.close()


def test_a_collection_without_a_recorded_metric_asks_its_index(tmp_path):
    """Collections created before the metric was recorded in their properties still search right."""
    import json

    from pymilvus import MilvusClient

    spec = make_spec(tmp_path, metric="L2")
    store = embedline_milvus.store(spec)
    try:
        raw = store.client
        schema = store._schema(DIM)
        index = raw.prepare_index_params()
        index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2")
        raw.create_collection(
            "old", schema=schema, index_params=index, consistency_level="Strong",
            properties={"embedline.fingerprint": json.dumps(FINGERPRINT)},
        )
        assert isinstance(raw, MilvusClient)
    finally:
        store.close()
    reopened = embedline_milvus.store(make_spec(tmp_path, metric="COSINE"))  # the option changed since
    try:
        vectors = unit_vectors(4)
        reopened.upsert("old", records(vectors))
        client = _counted(reopened)
        hits = reopened.search("old", vectors[2], k=2)[0]
        assert "describe_index" in client.calls
        assert hits[0].id == "r2" and hits[0].score == pytest.approx(0.0, abs=1e-5) and hits[1].score < 0
    finally:
        reopened.close()


def test_a_pipeline_notices_a_collection_dropped_between_searches(tmp_path):
    from embedline.errors import CollectionNotFoundError
    from embedline.pipeline import Pipeline
    from embedline.testing import FakeTextModel, fresh_plugin_manager

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("the moon orbits the earth")
    (docs / "b.txt").write_text("boil the pasta")
    config = {
        "source": {"path": str(docs)},
        "model": {"plugin": "fake"},
        "store": {"plugin": "milvus", "uri": str(tmp_path / "v.db"), "collection": "docs"},
    }
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(FakeTextModel())) as p:
        p.run()
        assert p.search("the moon", k=1)[0].uri == "docs/a.txt"
        p.store.client.drop_collection("docs")
        with pytest.raises(CollectionNotFoundError, match="'docs'"):
            p.search("the moon", k=1)
        p.run()  # makes it again; the next search checks it again
        assert p.search("pasta", k=1)[0].uri == "docs/b.txt"


def test_close_indexes_a_collection_a_run_never_flushed(backend):
    store = backend.store(metric="IP")
    store.create_collection("c", FINGERPRINT)
    store.upsert("c", records(unit_vectors(4)))
    store.close()
    reopened = backend.store(metric="IP")
    try:
        index = reopened.client.describe_index("c", index_name="vector")
        assert (index["index_type"], index["metric_type"]) == ("AUTOINDEX", "IP")
    finally:
        reopened.close()


def test_a_collection_left_without_an_index_by_a_crash_is_indexed_by_the_next_run(backend):
    """A run killed before its flush leaves rows and no index: the next store searches them (a
    server, which loads no collection without an index, gets it then), and its flush builds the
    index with the metric the collection was created for, if it is still missing."""
    import json

    crashed = backend.store(metric="L2")
    raw = crashed.client
    raw.create_collection(
        "c", schema=crashed._schema(DIM), consistency_level="Strong",
        properties={"embedline.fingerprint": json.dumps(FINGERPRINT), "embedline.metric": "L2"},
    )
    vectors = unit_vectors(6)
    crashed.upsert("c", records(vectors))
    crashed._client = None  # gone without closing, as after kill -9 (the connection is released below)
    crashed._conn.close()

    after = backend.store(metric="COSINE")
    try:
        assert after.get_fingerprint("c") == FINGERPRINT
        hits = after.search("c", vectors[4], k=2)[0]
        assert hits[0].id == "r4" and hits[1].score < 0  # L2, as created, though the option says COSINE now
        after.flush("c")
        assert after.client.describe_index("c", index_name="vector")["metric_type"] == "L2"
        assert after.search("c", vectors[1], k=1)[0][0].id == "r1"
    finally:
        after.close()
