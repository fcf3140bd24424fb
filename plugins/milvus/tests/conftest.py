"""Fixtures for the milvus plugin's tests: a real Milvus server for the whole session, and a
``backend`` that runs a test on Milvus Lite and on that server.

The server (``embedline_milvus.testing.start_server``, from the ``milvus`` package) starts the
first time a test asks for it, listens on free loopback ports with its data in a temporary folder,
and is stopped (SIGTERM, then SIGKILL) at the end of the session.  Each test gets a database of
its own on it, dropped afterwards, so tests never see each other's collections.  Without the
``milvus`` package those tests fail (they do not skip): ``make test`` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from embedline_milvus.testing import Backend, MilvusServer, start_server, temporary_database

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STOP_TIMEOUT_S = 3  # SIGTERM, then SIGKILL: a 2.3 standalone's graceful stop takes 10 s or more; the data goes


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory) -> Iterator[MilvusServer]:
    """A Milvus 2.3.5 standalone server for this test session."""
    folder = tmp_path_factory.mktemp("milvus-server")
    server = start_server(folder)
    try:
        yield server
    finally:
        server.stop(timeout=STOP_TIMEOUT_S)  # raises if a process of it is left
    assert not server.running()
    shutil.rmtree(folder / "data", ignore_errors=True)  # ~200 MB; its configs and logs stay


@pytest.fixture
def server_backend(milvus_server: MilvusServer, tmp_path) -> Iterator[Backend]:
    """A database of its own on the session's server, for one test."""
    with temporary_database(milvus_server) as db:
        yield Backend.server(milvus_server.uri, db, tmp_path)


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.integration)])
def backend(request, tmp_path) -> Backend:
    """Run the test twice: on a Milvus Lite database in ``tmp_path``, and on the session's server."""
    if request.param == "lite":
        return Backend.lite(tmp_path)
    return request.getfixturevalue("server_backend")
