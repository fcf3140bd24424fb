"""Fixtures for the embedline-serve tests: a small pipeline on the fake text model and the memory
store, already run over a folder of a few documents, and its app in-process."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from embedline import Pipeline, hookimpl
from embedline.testing import FakeTextModel, fresh_plugin_manager

DOCS = {
    "cats.md": "# Cats\n\nCats purr and sleep all day. A cat chases mice in the garden.",
    "space.md": "# Space\n\nRockets fly to orbit. The moon orbits the earth.",
    "food.md": "# Food\n\nBoil the pasta in salted water. Bread and cheese for lunch.",
    "notes/music.txt": "The guitar and the piano play a song together.",
}


class CountingModel(FakeTextModel):
    """The fake text model, counting its ``embed`` calls (thread-safe), each taking ``delay`` s."""

    def __init__(self, delay: float = 0.0, fail_on: tuple[str, ...] = ()):
        super().__init__(fail_on=fail_on)
        self.delay = delay
        self.calls = 0
        self.sizes: list[int] = []
        self.modes: list[str] = []
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    @hookimpl
    def embed(self, model: Any, inputs: Any, mode: str) -> Any:
        with self._lock:
            self.calls += 1
            self.sizes.append(len(inputs))
            self.modes.append(mode)
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.delay:
                time.sleep(self.delay)
            return super().embed(model, inputs, mode)
        finally:
            with self._lock:
                self.concurrent -= 1


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("EMBEDLINE_SERVE_TOKEN", raising=False)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def fake_config(corpus: Path | None, *, batch_size: int = 8, **model: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": {"plugin": "fake", "batch_size": batch_size, "name": "fake-bow", **model},
        "store": {"plugin": "memory", "collection": "docs"},
    }
    if corpus is not None:
        data["source"] = {"path": str(corpus), "chunk": {"by": "paragraph", "max_tokens": 64}}
    return data


@pytest.fixture(name="fake_config")
def fake_config_fixture() -> Any:
    """:func:`fake_config`: a pipeline dict on the fake model and the memory store."""
    return fake_config


@pytest.fixture(name="CountingModel")
def counting_model_class() -> type[CountingModel]:
    return CountingModel


@pytest.fixture
def fake_model() -> CountingModel:
    return CountingModel()


@pytest.fixture
def pipeline(tmp_path: Path, corpus: Path, fake_model: CountingModel) -> Any:
    """The fake pipeline, run over :data:`DOCS` (so searches find something)."""
    with Pipeline.from_dict(fake_config(corpus), base_dir=tmp_path, pm=fresh_plugin_manager(fake_model)) as p:
        summary = p.run()
        assert summary.embedded and not summary.failed
        yield p


@pytest.fixture
def make_client(pipeline: Any) -> Any:
    """``make_client(**create_app kwargs)``: a TestClient for the app of :func:`pipeline`."""
    from embedline_serve import create_app
    from fastapi.testclient import TestClient

    clients = []

    def make(p: Any = None, **kwargs: Any) -> TestClient:
        app = create_app(p or pipeline, **kwargs)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append((app, client))
        return client

    yield make
    for app, client in clients:
        client.close()
        app.state.service.close()


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client()
