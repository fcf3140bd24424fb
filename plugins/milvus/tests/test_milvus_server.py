"""embedline behaves the same on Milvus Lite and on a real Milvus server (conftest's ``backend``
runs each test on both; the server is a Milvus 2.3.5 standalone from the ``milvus`` package).

See "Lite and a server: differences" in the plugin's README for what differs underneath.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from embedline.contracts import Record
from embedline.errors import ModelMismatchError
from embedline.pipeline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager, write_plugin_distribution

DIM = 8
FINGERPRINT = {"plugin": "fake", "plugin_version": "0.1.0", "source": "test/model", "revision": "abc", "dim": DIM}
MODEL = "f00dfeedf00dfeed"


def row(row_id: str, vector, text: str = "", uri: str = "docs/x.md") -> Record:
    return Record(id=row_id, vector=np.asarray(vector, np.float32), uri=uri, modality="text", chunk=0,
                  text=text or row_id, metadata={"text": text}, model=MODEL)  # fmt: skip


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i % DIM] = 1.0
    return v


def raw_count(store, collection: str) -> int:
    """count(*) asked of Milvus directly (every physical row, duplicates included)."""
    rows = store.client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


# -- duplicate ids ----------------------------------------------------------------------------------


def test_an_id_repeated_in_one_upsert_is_stored_once_with_its_last_record(backend):
    """A 2.3 server stores every copy of an id repeated within one upsert request (count(*)
    counts them, query and search return the first); the store sends one row per id, the last."""
    store = backend.store(write_batch_size=2)  # several requests per upsert call
    try:
        store.create_collection("c", FINGERPRINT)
        a1, a2, a3 = row("a", unit(0), "first"), row("a", unit(2), "second"), row("a", unit(3), "third")
        store.upsert("c", [a1, row("b", unit(1)), a2, a3])
        store.upsert("c", [row("d", unit(4)), row("d", unit(5), "last d")])
        assert store.count("c") == raw_count(store, "c") == 3
        assert sorted(row_id for row_id, _ in store.scan("c")) == ["a", "b", "d"]
        top = store.search("c", unit(3)[None, :], k=1)[0][0]
        assert (top.id, top.text) == ("a", "third")
        texts = [h.text for h in store.search("c", unit(0)[None, :], k=10)[0]]
        assert sorted(texts) == ["b", "last d", "third"]  # the earlier copies are nowhere
        # Across calls, an upsert replaces: still one row per id.
        store.upsert("c", [row("a", unit(6), "again"), row("b", unit(7), "again")])
        assert store.count("c") == raw_count(store, "c") == 3
        hits = store.search("c", unit(6)[None, :], k=3, filter={"text": "again"})[0]
        assert {h.id for h in hits} == {"a", "b"}
    finally:
        store.close()


# -- pipelines: re-runs, stale rows, filters, fingerprints ---------------------------------------------


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("alpha one\n\nalpha two\n\nalpha three")
    (folder / "b.md").write_text("beta one\n\nbeta two")
    (folder / "c_1%.md").write_text("gamma one")  # `_` and `%` in a prefix filter are plain characters
    return folder


def pipeline(backend, model, **model_options):
    config = {
        "source": {"path": "docs", "chunk": {"by": "paragraph", "max_tokens": 2}},
        "model": {"plugin": "fake", "batch_size": 2, **model_options},
        "store": backend.store_section("docs", write_batch_size=3),
    }
    return Pipeline.from_dict(config, base_dir=backend.base_dir, pm=fresh_plugin_manager(model))


def stored(p) -> list[tuple[str, str]]:
    """The (id, uri) rows of the pipeline's collection, checked for duplicates."""
    rows = sorted(p.store.scan("docs"))
    assert p.store.count("docs") == raw_count(p.store, "docs") == len(rows) == len({i for i, _ in rows})
    return rows


def uris(hits) -> set[str]:
    return {h.uri for h in hits}


def test_pipeline_runs_reruns_filters_and_fingerprints(backend, corpus):
    """One collection through a pipeline's life (one test: a server takes seconds to load each
    new collection): a run, a re-run that embeds nothing, searches with portable and native
    filters, a changed file whose stale rows go, --prune, and another model refused."""
    model = FakeTextModel()
    with pipeline(backend, model) as p:
        first = p.run()
        rows = stored(p)
        assert (first.embedded, model.embedded, len(rows)) == (6, 6, 6)
        recorded = p.store.get_fingerprint("docs")
        assert recorded["dim"] == 16 and recorded["plugin"] == "fake"

    with pipeline(backend, model) as p:  # a new store and client, as a second `embedline run`
        again = p.run()
        assert (again.embedded, again.skipped, model.embedded) == (0, 6, 6)
        assert stored(p) == rows

        assert uris(p.search("one", k=10, filter={"uri": {"prefix": "docs/c_1%"}})) == {"docs/c_1%.md"}
        assert p.search("one", k=10, filter={"uri": {"prefix": "docs/c_1_"}}) == []  # `_` is no wildcard
        assert p.search("one", k=10, filter={"uri": {"prefix": "docs/c%"}}) == []  # nor is `%`
        assert uris(p.search("one", k=10, filter={"uri": {"prefix": "docs/b"}})) == {"docs/b.md"}
        hits = p.search("alpha", k=10, filter={"uri": "docs/a.md", "chunk": {"gte": 1}})
        assert sorted(h.chunk for h in hits) == [1, 2]
        hits = p.search("alpha", k=10, filter='uri == "docs/a.md" and chunk in [0, 2]')  # native
        assert sorted(h.text for h in hits) == ["alpha one", "alpha three"]

    (corpus / "a.md").write_text("alpha one\n\nalpha changed")  # two chunks now, one of them new
    with pipeline(backend, model) as p:
        changed = p.run()
        assert (changed.embedded, changed.removed) == (2, 3)
        after = stored(p)
        assert [uri for _, uri in after].count("docs/a.md") == 2 and len(after) == 5
        assert {h.text for h in p.search("alpha", k=10, filter={"uri": "docs/a.md"})} == {"alpha one", "alpha changed"}

    (corpus / "b.md").unlink()
    with pipeline(backend, model) as p:
        assert p.run().removed == 0 and len(stored(p)) == 5  # without --prune, rows of gone files stay
        assert p.run(prune=True).removed == 2
        assert {uri for _, uri in stored(p)} == {"docs/a.md", "docs/c_1%.md"}

    with pipeline(backend, FakeTextModel(), dim=8) as p:
        with pytest.raises(ModelMismatchError, match="dim=16"):
            p.run()
        with pytest.raises(ModelMismatchError):
            p.search("alpha")
        assert p.store.count("docs") == 3 and p.store.get_fingerprint("docs") == recorded


# -- kill -9 of a client mid-run (the server lives on) ----------------------------------------------

# The fake model, installed as a real plugin for the `embedline run` subprocess, as in the core's
# tests/test_reliability.py: EMBEDLINE_TEST_KILL_AT=N makes the process SIGKILL itself at its N-th
# embed call (of 16 items), and EMBEDLINE_TEST_SLOW adds seconds per call (the writer keeps up).
KILL_PLUGIN = """
import os, signal, time
from embedline import hookimpl
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess = _model.load_model, _model.preprocess
_calls = 0

@hookimpl
def embed(model, inputs, mode):
    global _calls
    _calls += 1
    if _calls == int(os.environ.get("EMBEDLINE_TEST_KILL_AT", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("EMBEDLINE_TEST_SLOW", "0")))
    return _model.embed(model, inputs, mode)
"""

KILL_PIPELINE = """
[source]
path = "docs"

[model]
plugin = "fake"
batch_size = 16

[store]
plugin = "milvus"
uri = "{uri}"
db_name = "{db}"
collection = "docs"
write_batch_size = 32
"""

N_FILES = 300


@pytest.mark.integration
def test_a_client_killed_mid_run_then_run_again_leaves_exactly_the_rows_of_a_clean_run(server_backend):
    from embedline.config import load_config
    from embedline.sources import Source

    project = server_backend.base_dir
    write_plugin_distribution(project / "site", "fake", KILL_PLUGIN)
    docs = project / "docs"
    docs.mkdir()
    for i in range(N_FILES):
        (docs / f"{i:04d}.md").write_text(f"note {i} about topic {i % 17}")
    location = server_backend.location
    (project / "embed.toml").write_text(KILL_PIPELINE.format(uri=location["uri"], db=location["db_name"]))
    source = Source(load_config(project / "embed.toml").source)
    expected = {(item.id, item.uri) for unit in source for item in unit.items}
    env = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1"}

    def embedline_run(**extra):
        return subprocess.Popen(
            [sys.executable, "-m", "embedline", "run", "--no-progress"], cwd=project, env={**env, **extra},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    proc = embedline_run(EMBEDLINE_TEST_KILL_AT="12", EMBEDLINE_TEST_SLOW="0.02")  # at 192 of 300 items
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL, out + err
    store = server_backend.store()
    try:
        partial = set(store.scan("docs"))
        assert 0 < len(partial) < len(expected)  # the kill landed mid-way, after some rows were written
        assert store.count("docs") == raw_count(store, "docs") == len(partial) and partial <= expected
    finally:
        store.close()

    final = embedline_run()
    out, err = final.communicate(timeout=180)
    assert final.returncode == 0, err
    assert "failed 0" in out and f"skipped as unchanged {len(partial)}" in out

    store = server_backend.store()
    try:
        rows = list(store.scan("docs"))
        assert set(rows) == expected and len(rows) == len(expected)  # no holes, no duplicates, no strangers
        assert store.count("docs") == raw_count(store, "docs") == len(expected)
    finally:
        store.close()
