"""The store conformance suite (``embedline.testing.StoreConformance``) on Milvus Lite and on a
real Milvus server, and the translation of portable filters into Milvus expressions."""

from __future__ import annotations

import pytest
from embedline.contracts import StoreSpec
from embedline.filters import Native, as_filter, parse_where
from embedline.testing import StoreConformance

import embedline_milvus
from embedline_milvus._filter import milvus_expression
from embedline_milvus.testing import Backend, temporary_database


class TestMilvusLite(StoreConformance):
    metrics = ("COSINE", "IP", "L2")
    native_filter = "chunk == 1"

    @pytest.fixture
    def open_store(self, tmp_path):
        def open_store(metric="COSINE"):
            options = {name: opt.default for name, opt in embedline_milvus.plugin_info.options.items()}
            options.update(uri="conformance.db", metric=metric)
            return embedline_milvus.store(StoreSpec(plugin="milvus", options=options, base_dir=tmp_path))

        return open_store


@pytest.mark.integration
class TestMilvusServer(StoreConformance):
    """The same suite on a Milvus 2.3.5 standalone server (conftest's ``milvus_server``), each test
    in a database of its own.

    The filter tests only search the suite's catalog: it is written once for all of them (through
    the store, as the suite writes it), since a server takes ~3 s to load each new collection.
    """

    metrics = ("COSINE", "IP", "L2")
    native_filter = "chunk == 1"

    @pytest.fixture
    def open_store(self, server_backend):
        return lambda metric="COSINE": server_backend.store(metric=metric)

    @pytest.fixture
    def catalog(self, shared_server_catalog):
        store = shared_server_catalog.store()
        yield store
        store.close()


@pytest.fixture(scope="module")
def shared_server_catalog(milvus_server, tmp_path_factory):
    """A database on the server holding the conformance suite's catalog, written once."""
    with temporary_database(milvus_server) as db:
        backend = Backend.server(milvus_server.uri, db, tmp_path_factory.mktemp("catalog"))
        store = backend.store()
        try:
            _fill_catalog(store)
        finally:
            store.close()
        yield backend


def _fill_catalog(store):
    """What ``StoreConformance.catalog`` writes."""
    from embedline._store_suite import CATALOG, COLLECTION, FINGERPRINT, record, vectors

    store.create_collection(COLLECTION, FINGERPRINT)
    rows = vectors(len(CATALOG), seed=1)
    store.upsert(COLLECTION, [record(row_id, rows[i], uri=uri, modality=modality, chunk=chunk, metadata=metadata)
                              for i, (row_id, uri, modality, chunk, metadata) in enumerate(CATALOG)])  # fmt: skip


@pytest.mark.parametrize(
    "given,expression",
    [
        (None, ""),
        ('metadata["k"] == 4', 'metadata["k"] == 4'),
        (Native("chunk >= 1"), "chunk >= 1"),
        ({"modality": "image", "chunk": {"gte": 1, "lt": 3}}, 'modality == "image" and chunk >= 1 and chunk < 3'),
        ({"lang": {"in": ["en", "fr"]}}, '(metadata["lang"] == "en" or metadata["lang"] == "fr")'),
        ({"chunk": {"in": [0, 2]}}, "chunk in [0, 2]"),
        ({"draft": False, "title": "ça"}, 'metadata["draft"] == false and metadata["title"] == "ça"'),
        ({"uri": {"prefix": "docs/"}}, 'uri like "docs/%"'),
        ({"uri": {"prefix": "a_b%c\\"}}, '(uri >= "a_b%c\\\\" and uri < "a_b%c]")'),  # no `like` escapes
        ({"tag": {"prefix": "v1_"}}, '(metadata["tag"] >= "v1_" and metadata["tag"] < "v1`")'),
        (parse_where(['say="hi"']), 'metadata["say"] == "hi"'),
        (as_filter({'we"ird': 1}), 'metadata["we\\"ird"] == 1'),
    ],
)
def test_filters_as_milvus_expressions(given, expression):
    assert milvus_expression(given) == expression


def test_l2_scores_follow_the_collections_metric_after_reopening(tmp_path):
    import numpy as np
    from embedline.contracts import Record

    def open_store(metric):
        options = {name: opt.default for name, opt in embedline_milvus.plugin_info.options.items()}
        return embedline_milvus.store(StoreSpec(options={**options, "metric": metric}, base_dir=tmp_path))

    vectors = np.eye(4, dtype=np.float32) * 2
    first = open_store("L2")
    first.create_collection("c", {"dim": 4})
    first.upsert("c", [Record(id=f"r{i}", vector=v, uri="u", modality="text", chunk=0, text="", metadata={}, model="m")
                       for i, v in enumerate(vectors)])  # fmt: skip
    first.close()
    again = open_store("COSINE")  # the option only affects new collections
    try:
        hits = again.search("c", vectors[:1], k=2)[0]
    finally:
        again.close()
    assert [h.id for h in hits] == ["r0", "r1"]
    assert hits[0].score == pytest.approx(0.0, abs=1e-4) and hits[1].score == pytest.approx(-8.0, rel=1e-4)
