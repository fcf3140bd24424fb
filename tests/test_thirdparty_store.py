"""A third-party store (tests/thirdparty/embedline-sqlitestore), written only from the section
"Writing a store" of docs/writing-plugins.md, passes the store conformance suite from its source
folder.  tests/test_thirdparty_plugin.py installs it with pip and runs it from a pipeline file."""

from pathlib import Path

import pytest

from embedline.contracts import StoreSpec
from embedline.testing import StoreConformance

SRC = Path(__file__).resolve().parent / "thirdparty" / "embedline-sqlitestore" / "src"


class TestSqliteStore(StoreConformance):
    metrics = ("COSINE", "IP", "L2")
    native_filter = "chunk = 1"

    @pytest.fixture
    def open_store(self, tmp_path, monkeypatch):
        monkeypatch.syspath_prepend(str(SRC))
        import embedline_sqlitestore

        def open_store(metric="COSINE"):
            options = {"path": "data/v.sqlite", "metric": metric}
            return embedline_sqlitestore.store(StoreSpec(plugin="sqlitestore", options=options, base_dir=tmp_path))

        return open_store
