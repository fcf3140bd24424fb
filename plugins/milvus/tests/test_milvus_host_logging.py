"""A host that uses pymilvus itself keeps its logging as it set it up: embedline quiets pymilvus and
Milvus Lite only for the records its own calls emit, on the thread that makes them (issue 11)."""

from __future__ import annotations

import logging
import threading

import pymilvus  # noqa: F401  (a host that uses pymilvus has imported it: it configures its loggers then)
import pytest
from embedline.pipeline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager, lite_store

LOGGERS = ("pymilvus", "pymilvus.milvus_client", "pymilvus.decorators", "milvus_lite", "milvus_lite.server_manager")


def configuration():
    loggers = [logging.getLogger(name) for name in LOGGERS]
    return [(lg.name, lg.level, lg.propagate, list(lg.handlers), list(lg.filters)) for lg in loggers]


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def host():
    """The host's own handler on the pymilvus and milvus_lite loggers, removed afterwards."""
    handler = Collect()
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).removeHandler(handler)


def test_run_and_search_leave_the_hosts_pymilvus_logging_as_it_was(tmp_path, host):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("Milvus stores vectors.\n\nSearch finds the nearest ones.")
    config = {"source": {"path": "docs"}, "model": {"plugin": "fake"}, "store": lite_store(tmp_path)}
    before = configuration()
    warn = logging.getLogger("pymilvus.decorators").warning

    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(FakeTextModel())) as p:
        stored = p.run().embedded
        assert stored >= 1
        assert p.search("vectors", k=1)[0].uri == "docs/a.md"
        assert p.store.count("missing") == 0  # pymilvus logs an RPC error for this call: ours, dropped
        warn("host, between two of our calls")

        client = p.store.client
        query = client.query

        def query_while_the_host_logs(*args, **kwargs):  # another thread of the host logs meanwhile
            thread = threading.Thread(target=warn, args=("host, another thread during our call",))
            thread.start()
            thread.join()
            return query(*args, **kwargs)

        client.query = query_while_the_host_logs
        try:
            assert p.store.count("test") == stored
        finally:
            del client.query

    assert configuration() == before
    warn("host, after the pipeline closed")
    assert host.messages == [
        "pymilvus.decorators: host, between two of our calls",
        "pymilvus.decorators: host, another thread during our call",
        "pymilvus.decorators: host, after the pipeline closed",
    ]
