"""The store conformance suite: every behaviour the core relies on, checked against a real store.

Exported as :class:`embedline.testing.StoreConformance`.  A store plugin's test module subclasses
it, fills one fixture and sets the capability flags that apply::

    import pytest
    from embedline.testing import StoreConformance

    class TestMyStore(StoreConformance):
        metrics = ("COSINE", "L2")          # what open_store(metric=...) can open
        native_filter = "chunk = 1"         # or None when the store has no syntax of its own

        @pytest.fixture
        def open_store(self, tmp_path):
            def open_store(metric="COSINE"):
                return embedline_mystore.store(StoreSpec(plugin="mystore", options={...}, base_dir=tmp_path))
            return open_store

Every ``test_*`` method below then runs against that store.  Stores are opened through
``open_store`` (each call opens the same location again) and closed by the suite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from embedline.contracts import Record, VectorStore, fingerprint_id
from embedline.errors import StoreError
from embedline.filters import Native, as_filter

DIM = 8
COLLECTION = "conformance"
FINGERPRINT: dict[str, Any] = {
    "plugin": "conformance",
    "plugin_version": "1.0",
    "source": "embedline/store-suite",
    "revision": "r1",
    "dim": DIM,
    "normalized": True,
    "settings": {"max_length": 128, "prompt": "query: "},
    "segment": [30.0, 5.0],
}
MODEL = fingerprint_id(FINGERPRINT)
OTHER_MODEL = "0123456789abcdef"
INVALID_NATIVE = "chunk >>> 1 )("

# Rows for the filter tests: (id, uri, modality, chunk, metadata).  Values of one key differ in
# kind on purpose (``year`` is text in row d): a filter never matches a value of another kind.
CATALOG = [
    ("a", "docs/intro.md", "text", 0, {"lang": "en", "year": 1999, "score": 0.5, "draft": True, "tag": "alpha"}),
    ("b", "docs/intro.md", "text", 1, {"lang": "fr", "year": 2005, "score": 0.75, "draft": False}),
    ("c", "docs/guide_v2/setup.md", "text", 0, {"lang": "de", "year": 2010, "tag": "beta"}),
    ("d", "images/cat.png", "image", 0, {"lang": "en", "year": "2003", "date": "2021-03-01"}),
    ("e", "images/dog.png", "image", 0, {"year": 2003.5, "date": "2020-12-31", "tag": "alphabet"}),
    ("f", "audio/talk.wav", "audio", 2, {}),
    ("g", "docs/100%.md", "text", 0, {"lang": "en_GB"}),
]

# (name, portable filter, ids it keeps)
FILTER_CASES = [
    ("eq-modality", {"modality": "image"}, "de"),
    ("eq-uri", {"uri": "docs/intro.md"}, "ab"),
    ("eq-chunk", {"chunk": 1}, "b"),
    ("eq-text", {"lang": "en"}, "ad"),
    ("eq-integer", {"year": 2005}, "b"),
    ("eq-float", {"score": 0.75}, "b"),
    ("eq-text-not-number", {"year": "2003"}, "d"),
    ("eq-true", {"draft": True}, "a"),
    ("eq-false", {"draft": False}, "b"),
    ("eq-nothing", {"lang": "xx"}, ""),
    ("in-text", {"lang": {"in": ["en", "fr"]}}, "abd"),
    ("in-numbers", {"year": {"in": [1999, 2010]}}, "ac"),
    ("in-modality", {"modality": {"in": ["image", "audio"]}}, "def"),
    ("in-chunk", {"chunk": {"in": [1, 2]}}, "bf"),
    ("gt", {"year": {"gt": 2005}}, "c"),
    ("gte", {"year": {"gte": 2005}}, "bc"),
    ("lt", {"year": {"lt": 2003.5}}, "a"),
    ("lte", {"year": {"lte": 2003.5}}, "ae"),
    ("range", {"year": {"gte": 2000, "lt": 2010}}, "be"),
    ("range-chunk", {"chunk": {"gte": 1}}, "bf"),
    ("range-text", {"date": {"gte": "2021-01-01"}}, "d"),
    ("range-missing-key", {"score": {"lt": 1}}, "ab"),
    ("prefix-uri", {"uri": {"prefix": "docs/"}}, "abcg"),
    ("prefix-metadata", {"tag": {"prefix": "alpha"}}, "ae"),
    ("prefix-underscore-is-literal", {"uri": {"prefix": "docs/guide_"}}, "c"),
    ("prefix-underscore-not-a-wildcard", {"uri": {"prefix": "docs_"}}, ""),
    ("prefix-percent-is-literal", {"uri": {"prefix": "docs/100%"}}, "g"),
    ("prefix-percent-not-a-wildcard", {"uri": {"prefix": "docs/%"}}, ""),
    ("prefix-underscore-in-metadata", {"lang": {"prefix": "en_"}}, "g"),
    ("and", {"modality": "text", "lang": "en"}, "a"),
    ("and-range-prefix", {"uri": {"prefix": "docs/"}, "year": {"gte": 2000}}, "bc"),
]


def vectors(n: int, seed: int = 0, *, normalized: bool = True) -> np.ndarray:
    """``n`` random float32 vectors of the suite's dimension (unit length unless asked)."""
    out = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    if normalized:
        out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def record(row_id: str, vector: np.ndarray, *, uri: str = "", modality: str = "text", chunk: int = 0,
           text: str = "", metadata: dict[str, Any] | None = None, model: str = MODEL) -> Record:  # fmt: skip
    return Record(id=row_id, vector=vector, uri=uri or f"docs/{row_id}.md", modality=modality, chunk=chunk,
                  text=text or f"text of {row_id}", metadata=metadata or {}, model=model)  # fmt: skip


class StoreConformance:
    """Base class of a store's conformance tests; see the module docstring for how to use it.

    Fill the ``open_store`` fixture and set the flags that differ from the defaults.
    """

    #: metrics ``open_store(metric=...)`` can open; the score tests of the others are skipped.
    metrics: tuple[str, ...] = ("COSINE",)
    #: closed and opened again on the same location, the store still holds everything.
    persistent: bool = True
    #: search, existing_ids and count may run in other threads while one thread upserts (the core
    #: does this during every run: say False only for a store that is never used in a pipeline).
    concurrent: bool = True
    #: an expression in the store's own syntax that keeps exactly the rows whose ``chunk`` is 1,
    #: or None when the store has no syntax of its own (it must then refuse a ``Native``).
    native_filter: str | None = None

    @pytest.fixture
    def open_store(self) -> Callable[..., VectorStore]:
        """Override: return ``open_store(metric="COSINE") -> VectorStore``, which opens the store
        on one location kept for the whole test (e.g. a file in ``tmp_path``)."""
        raise NotImplementedError(f"{type(self).__name__} must define the `open_store` fixture")

    # -- fixtures the tests share ------------------------------------------------------------

    @pytest.fixture
    def opener(self, open_store: Callable[..., VectorStore]) -> Iterator[Callable[..., VectorStore]]:
        """``open_store``, with every store it opened closed at the end of the test."""
        opened: list[VectorStore] = []

        def open_(**options: Any) -> VectorStore:
            store = open_store(**options)
            assert isinstance(store, VectorStore), f"open_store returned {type(store).__name__}, not a VectorStore"
            opened.append(store)
            return store

        yield open_
        for store in opened:
            store.close()

    @pytest.fixture
    def store(self, opener: Callable[..., VectorStore]) -> VectorStore:
        return opener()

    @pytest.fixture
    def catalog(self, store: VectorStore) -> VectorStore:
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(len(CATALOG), seed=1)
        store.upsert(COLLECTION, [record(row_id, rows[i], uri=uri, modality=modality, chunk=chunk, metadata=metadata)
                                  for i, (row_id, uri, modality, chunk, metadata) in enumerate(CATALOG)])  # fmt: skip
        return store

    # -- collections and fingerprints ----------------------------------------------------------

    def test_a_missing_collection_is_empty_and_cannot_be_searched(self, store):
        assert store.get_fingerprint("missing") is None
        assert store.count("missing") == 0
        assert store.existing_ids("missing", ["a", "b"], MODEL) == set()
        assert list(store.scan("missing")) == []
        store.delete("missing", ["a"])  # ignored
        with pytest.raises(StoreError):
            store.search("missing", vectors(1), k=1)

    def test_create_collection_records_the_fingerprint(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        assert store.get_fingerprint(COLLECTION) == FINGERPRINT
        assert store.count(COLLECTION) == 0

    def test_creating_again_for_the_same_model_keeps_the_rows(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        store.upsert(COLLECTION, [record("r0", vectors(1)[0])])
        store.create_collection(COLLECTION, dict(FINGERPRINT))
        assert store.count(COLLECTION) == 1 and store.get_fingerprint(COLLECTION) == FINGERPRINT

    @pytest.mark.parametrize("change", [{"revision": "r2"}, {"dim": DIM * 2}], ids=["another-model", "another-dim"])
    def test_creating_over_another_models_collection_is_refused(self, store, change):
        store.create_collection(COLLECTION, FINGERPRINT)
        store.upsert(COLLECTION, [record("r0", vectors(1)[0])])
        with pytest.raises(StoreError):
            store.create_collection(COLLECTION, {**FINGERPRINT, **change})
        assert store.get_fingerprint(COLLECTION) == FINGERPRINT and store.count(COLLECTION) == 1

    def test_collections_are_separate(self, store):
        wide = {**FINGERPRINT, "dim": DIM * 2}
        store.create_collection(COLLECTION, FINGERPRINT)
        store.create_collection("second", wide)
        store.upsert(COLLECTION, [record("r0", vectors(1)[0])])
        ones = np.ones(DIM * 2, np.float32)
        store.upsert("second", [record("w0", ones), record("w1", -ones)])
        assert (store.count(COLLECTION), store.count("second")) == (1, 2)
        assert store.get_fingerprint("second") == wide
        assert {row_id for row_id, _ in store.scan("second")} == {"w0", "w1"}
        assert store.existing_ids(COLLECTION, ["r0", "w0"], MODEL) == {"r0"}

    # -- rows ------------------------------------------------------------------------------------

    def test_upsert_then_search_round_trips_every_field(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(5)
        metadata = {"lang": "en", "n": 3, "x": 1.5, "ok": True, "tags": ["a", "b"], "nested": {"k": "v"}}
        text = "héllo wörld: ünïcode — “quotes” 'and' \\ back\\slash"
        wanted = record("r3", rows[3], uri="docs/ça va.md", modality="image", chunk=7, text=text, metadata=metadata)
        store.upsert(COLLECTION, [record(f"r{i}", v) for i, v in enumerate(rows) if i != 3] + [wanted])
        (hits,) = store.search(COLLECTION, rows[3:4], k=1)
        (hit,) = hits
        assert (hit.id, hit.uri, hit.modality, hit.chunk, hit.text) == ("r3", "docs/ça va.md", "image", 7, text)
        assert dict(hit.metadata) == metadata
        assert isinstance(hit.score, float)

    def test_upsert_is_idempotent_and_replaces_by_id(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(6, seed=2)
        first = [record(f"r{i}", v) for i, v in enumerate(rows[:4])]
        store.upsert(COLLECTION, first)
        store.upsert(COLLECTION, first)
        store.upsert(COLLECTION, [])
        assert store.count(COLLECTION) == 4
        store.upsert(COLLECTION, [record("r0", rows[5], text="replaced", metadata={"v": 2})])
        assert store.count(COLLECTION) == 4
        assert sorted(row_id for row_id, _ in store.scan(COLLECTION)) == ["r0", "r1", "r2", "r3"]
        top = store.search(COLLECTION, rows[5:6], k=1)[0][0]
        assert (top.id, top.text, dict(top.metadata)) == ("r0", "replaced", {"v": 2})
        assert "r0" not in [h.id for h in store.search(COLLECTION, rows[0:1], k=1)[0]]  # the old vector is gone

    def test_flush_keeps_every_row_searchable(self, store):
        store.flush("missing")  # nothing written there: nothing to do, no error
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(8, seed=9)
        store.upsert(COLLECTION, [record(f"r{i}", v) for i, v in enumerate(rows)])
        store.flush(COLLECTION)
        store.upsert(COLLECTION, [record("late", rows[0] * -1.0)])  # writes after a flush still count
        assert store.count(COLLECTION) == 9
        assert [hits[0].id for hits in store.search(COLLECTION, rows, k=1)] == [f"r{i}" for i in range(8)]
        store.flush(COLLECTION)
        assert store.search(COLLECTION, rows[:1] * -1.0, k=1)[0][0].id == "late"

    def test_a_vector_of_another_dimension_is_refused(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        with pytest.raises(StoreError):
            store.upsert(COLLECTION, [record("bad", np.ones(DIM - 1, np.float32))])
        assert store.count(COLLECTION) == 0
        store.upsert(COLLECTION, [record("r0", vectors(1)[0])])
        with pytest.raises(StoreError):
            store.search(COLLECTION, np.ones((1, DIM - 1), np.float32), k=1)

    def test_existing_ids_are_those_stored_by_that_model(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(6, seed=3)
        store.upsert(COLLECTION, [record(f"r{i}", v) for i, v in enumerate(rows[:4])])
        store.upsert(COLLECTION, [record(f"o{i}", v, model=OTHER_MODEL) for i, v in enumerate(rows[4:])])
        asked = ["r0", "r3", "o1", "missing"] + [f"x{i}" for i in range(2500)]  # more than one lookup's worth
        assert store.existing_ids(COLLECTION, asked, MODEL) == {"r0", "r3"}
        assert store.existing_ids(COLLECTION, asked, OTHER_MODEL) == {"o1"}
        assert store.existing_ids(COLLECTION, [], MODEL) == set()

    def test_count_follows_upserts_and_deletes(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(10, seed=4)
        store.upsert(COLLECTION, [record(f"r{i}", v) for i, v in enumerate(rows)])
        assert store.count(COLLECTION) == 10
        store.delete(COLLECTION, ["r0", "r1", "unknown"])
        assert store.count(COLLECTION) == 8
        store.delete(COLLECTION, [])
        assert store.count(COLLECTION) == 8

    def test_stale_rows_found_by_scan_are_deleted(self, store):
        """What a run does after a file changed from four chunks to two: scan, then delete the rest."""
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(5, seed=5)
        chunks = [record(f"a{i}", rows[i], uri="docs/a.md", chunk=i) for i in range(4)]
        store.upsert(COLLECTION, chunks + [record("b0", rows[4], uri="docs/b.md")])
        assert set(store.scan(COLLECTION)) == {("a0", "docs/a.md"), ("a1", "docs/a.md"), ("a2", "docs/a.md"),
                                               ("a3", "docs/a.md"), ("b0", "docs/b.md")}  # fmt: skip
        stale = [row_id for row_id, uri in store.scan(COLLECTION) if uri == "docs/a.md" and row_id in ("a2", "a3")]
        store.delete(COLLECTION, stale + ["never-stored"])
        assert set(store.scan(COLLECTION)) == {("a0", "docs/a.md"), ("a1", "docs/a.md"), ("b0", "docs/b.md")}
        found = {h.id for h in store.search(COLLECTION, rows, k=10)[0]}
        assert found == {"a0", "a1", "b0"}
        assert store.existing_ids(COLLECTION, ["a2", "a3", "a0"], MODEL) == {"a0"}

    def test_scan_streams_every_row(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(1500, seed=6)
        for start in range(0, 1500, 500):
            store.upsert(COLLECTION, [record(f"r{i}", rows[i], uri=f"u/{i % 7}") for i in range(start, start + 500)])
        scanned = list(store.scan(COLLECTION))
        assert len(scanned) == 1500 and set(scanned) == {(f"r{i}", f"u/{i % 7}") for i in range(1500)}

    # -- search ----------------------------------------------------------------------------------

    def test_search_answers_each_query_and_stops_at_k(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(12, seed=7)
        store.upsert(COLLECTION, [record(f"r{i}", v) for i, v in enumerate(rows)])
        results = store.search(COLLECTION, rows[[2, 9, 4]], k=3)
        assert [hits[0].id for hits in results] == ["r2", "r9", "r4"]
        assert [len(hits) for hits in results] == [3, 3, 3]
        assert len(store.search(COLLECTION, rows[:1], k=50)[0]) == 12

    @pytest.mark.parametrize("metric", ["COSINE", "IP", "L2"])
    def test_scores_are_higher_for_closer_rows(self, opener, metric):
        if metric not in self.metrics:
            pytest.skip(f"{metric} is not in {type(self).__name__}.metrics")
        store = opener(metric=metric)
        name = f"order_{metric.lower()}"
        store.create_collection(name, FINGERPRINT)
        rows = vectors(20, seed=8, normalized=False) * np.linspace(0.5, 3, 20, dtype=np.float32)[:, None]
        store.upsert(name, [record(f"r{i}", v) for i, v in enumerate(rows)])
        queries = np.vstack([rows[5], vectors(2, seed=9, normalized=False)]).astype(np.float32)
        expected = _reference_scores(rows, queries, metric)
        for query, hits, truth in zip(queries, store.search(name, queries, k=5), expected):
            ids = [int(h.id[1:]) for h in hits]
            assert ids == list(np.argsort(-truth, kind="stable")[:5]), f"{metric}: rows in the wrong order"
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True), f"{metric}: scores must decrease, got {scores}"
            for hit_id, score in zip(ids, scores):
                _check_score(metric, score, truth[hit_id])
        if metric == "L2":
            best = store.search(name, rows[5:6], k=1)[0][0]
            assert best.id == "r5" and abs(best.score) < 1e-3, "L2: the same vector scores 0 (minus a distance of 0)"

    # -- filters ---------------------------------------------------------------------------------

    @pytest.mark.parametrize("mapping,expected", [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES])
    def test_portable_filter(self, catalog, mapping, expected):
        hits = catalog.search(COLLECTION, vectors(1, seed=10), k=len(CATALOG) + 3, filter=as_filter(mapping))
        assert "".join(sorted(h.id for h in hits[0])) == expected, f"filter {mapping}"

    def test_filter_applies_before_the_top_k(self, store):
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(10, seed=11)
        store.upsert(COLLECTION, [record(f"r{i}", v, metadata={"keep": i in (7, 8, 9)}) for i, v in enumerate(rows)])
        query = rows[0:1] + 0.01  # nearest to rows the filter drops
        hits = store.search(COLLECTION, query, k=2, filter=as_filter({"keep": True}))[0]
        assert len(hits) == 2 and {h.id for h in hits} <= {"r7", "r8", "r9"}
        assert len(store.search(COLLECTION, query, k=5, filter=as_filter({"keep": True}))[0]) == 3

    def test_native_filter(self, catalog):
        query = vectors(1, seed=10)
        if self.native_filter is None:
            with pytest.raises(StoreError):
                catalog.search(COLLECTION, query, k=3, filter=Native("chunk == 1"))
            return
        hits = catalog.search(COLLECTION, query, k=len(CATALOG), filter=Native(self.native_filter))[0]
        assert [h.id for h in hits] == ["b"], f"native filter {self.native_filter!r} should keep the rows of chunk 1"
        with pytest.raises(StoreError):
            catalog.search(COLLECTION, query, k=3, filter=Native(INVALID_NATIVE))

    # -- close, reopen, threads ----------------------------------------------------------------

    def test_close_twice(self, opener):
        store = opener()
        store.create_collection(COLLECTION, FINGERPRINT)
        store.close()
        store.close()

    def test_close_then_reopen_keeps_everything(self, opener):
        if not self.persistent:
            pytest.skip(f"{type(self).__name__}.persistent is False")
        rows = vectors(8, seed=12)
        first = opener()
        first.create_collection(COLLECTION, FINGERPRINT)
        first.upsert(COLLECTION, [record(f"r{i}", v, metadata={"i": i}) for i, v in enumerate(rows)])
        first.delete(COLLECTION, ["r7"])
        first.close()
        first.close()
        second = opener()
        assert second.get_fingerprint(COLLECTION) == FINGERPRINT
        assert second.count(COLLECTION) == 7
        assert second.existing_ids(COLLECTION, ["r0", "r6", "r7"], MODEL) == {"r0", "r6"}
        top = second.search(COLLECTION, rows[4:5], k=1)[0][0]
        assert (top.id, dict(top.metadata)) == ("r4", {"i": 4})
        second.delete(COLLECTION, ["r0"])
        second.upsert(COLLECTION, [record("r7", rows[7])])
        second.close()
        third = opener()
        assert sorted(row_id for row_id, _ in third.scan(COLLECTION)) == [f"r{i}" for i in range(1, 8)]

    def test_reads_from_other_threads_while_one_thread_writes(self, store):
        """A run's pattern: workers call existing_ids, one writer upserts, searches come from anywhere."""
        if not self.concurrent:
            pytest.skip(f"{type(self).__name__}.concurrent is False")
        store.create_collection(COLLECTION, FINGERPRINT)
        rows = vectors(600, seed=13)
        batches = [[record(f"r{i}", rows[i]) for i in range(start, start + 50)] for start in range(0, 600, 50)]
        store.upsert(COLLECTION, batches[0])
        done = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for batch in batches[1:]:
                    store.upsert(COLLECTION, batch)
                store.delete(COLLECTION, ["r0"])
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                done.set()

        def reader(seed: int) -> None:
            ids = [f"r{i}" for i in range(600)]
            try:
                while not done.is_set():
                    assert {f"r{i}" for i in range(1, 50)} <= store.existing_ids(COLLECTION, ids, MODEL)
                    hits = store.search(COLLECTION, rows[seed : seed + 2], k=4)
                    assert len(hits) == 2 and all(1 <= len(h) <= 4 for h in hits)
                    assert store.count(COLLECTION) >= 49
                    assert store.get_fingerprint(COLLECTION) == FINGERPRINT
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(s,)) for s in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not errors, f"{len(errors)} error(s) in threads; first: {errors[0]!r}"
        assert store.count(COLLECTION) == 599
        assert store.existing_ids(COLLECTION, [f"r{i}" for i in range(600)], MODEL) == {f"r{i}" for i in range(1, 600)}


def _reference_scores(rows: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    rows64, queries64 = rows.astype(np.float64), queries.astype(np.float64)
    dots = queries64 @ rows64.T
    if metric == "IP":
        return dots
    if metric == "COSINE":
        return dots / np.outer(np.linalg.norm(queries64, axis=1), np.linalg.norm(rows64, axis=1))
    return -np.sqrt(((queries64[:, None, :] - rows64[None, :, :]) ** 2).sum(axis=2))


def _check_score(metric: str, score: float, truth: float) -> None:
    if metric == "L2":  # minus the distance, or minus its square (as Milvus measures it)
        squared = -(truth**2)
        assert score == pytest.approx(truth, rel=1e-3, abs=1e-4) or score == pytest.approx(squared, rel=1e-3, abs=1e-4), (
            f"L2: score {score} is neither minus the distance {truth} nor minus its square {squared}"
        )
    else:
        assert score == pytest.approx(truth, rel=1e-3, abs=1e-4), f"{metric}: score {score}, expected {truth}"
