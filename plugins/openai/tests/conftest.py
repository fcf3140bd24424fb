"""Fixtures for the openai plugin tests: a fake OpenAI-compatible server on a loopback port, the
key in the environment, and waits recorded instead of slept."""

from __future__ import annotations

import pytest
from embedline.testing import model_plugin_fixtures

from embedline_openai import _backend
from embedline_openai.testing import FakeEmbeddingServer

#: The key the fake server accepts; no message, fingerprint or log may ever hold it.
KEY = "sk-test-7Hq2ZpX9fakeKEYdoNotLeak"
KEY_VAR = "FAKE_OPENAI_KEY"

offline_hub, pm, load = model_plugin_fixtures("openai", device=None)


@pytest.fixture
def api_key() -> str:
    """The key the fake server accepts (in the environment as ``${FAKE_OPENAI_KEY}``)."""
    return KEY


@pytest.fixture(autouse=True)
def _key_in_environment(monkeypatch):
    monkeypatch.setenv(KEY_VAR, KEY)


@pytest.fixture(autouse=True)
def waits(monkeypatch) -> list[float]:
    """Every wait between retries, in order; nothing sleeps for real."""
    recorded: list[float] = []
    monkeypatch.setattr(_backend, "sleep", recorded.append)
    return recorded


@pytest.fixture(autouse=True)
def _estimated_tokens(monkeypatch):
    """Tokens estimated as characters / 4 whether or not tiktoken is installed here."""
    monkeypatch.setattr(_backend, "tiktoken_encoding", lambda name: None)


@pytest.fixture
def server():
    with FakeEmbeddingServer({"fake-embed": 16, "other-embed": 16, "wide-embed": 24}, api_key=KEY) as fake:
        yield fake


@pytest.fixture
def section(server):
    """A ``[model]`` section for the fake server, with these keys changed."""

    def section(**keys):
        return {
            "plugin": "openai",
            "name": "fake-embed",
            "base_url": server.url,
            "api_key": "${" + KEY_VAR + "}",
            "max_retries": 3,
            **keys,
        }

    return section


@pytest.fixture
def open_model(pm, section):
    """``embedline.load_model`` for the fake server: an ``EmbeddingModel`` (its hooks run through
    the plugin manager, found by entry point)."""
    import embedline

    def open_model(**keys):
        return embedline.load_model(section(**keys), pm=pm)

    return open_model
