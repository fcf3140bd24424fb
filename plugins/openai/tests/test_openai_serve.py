"""A real HTTP round trip: the openai plugin embedding through `embedline serve` (its app behind
a real uvicorn on a loopback port, with a token), vectors equal to the served model's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from embedline import Pipeline
from embedline.errors import EmbedlineError
from embedline.testing import fresh_plugin_manager

serve = pytest.importorskip("embedline_serve", reason="needs the embedline-serve distribution (make setup installs it)")
pytest.importorskip("embedline_minilm")

TOKEN = "serve-token-for-the-openai-plugin"
TEXTS = ["A man is playing a guitar.", "The cat sits on the table.", "Children play in the park.", "Rain falls."]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from embedline_minilm.testing import build_tiny_sentence_transformer

    tiny = build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny") / "st", dim=32, seed=3, normalize=True)
    config = {
        "model": {"plugin": "minilm", "name": str(tiny), "batch_size": 8, "device": "cpu"},
        "store": {"plugin": "memory", "collection": "tiny"},
    }
    with Pipeline.from_dict(config, base_dir=tmp_path_factory.mktemp("served"), pm=fresh_plugin_manager()) as pipeline:
        app = serve.create_app(pipeline, token=TOKEN)
        with serve.BackgroundServer(app) as server:
            yield server, pipeline


def section(server, **extra):
    return {
        "plugin": "openai", "name": "tiny", "base_url": f"{server.url}/v1", "api_key": "${SERVE_TOKEN}",
        "batch_size": 3, **extra,
    }  # fmt: skip


def test_vectors_through_embedline_serve_equal_the_served_models(served, monkeypatch, tmp_path):
    server, pipeline = served
    monkeypatch.setenv("SERVE_TOKEN", TOKEN)
    local = pipeline.model_at(0).embed(TEXTS, mode="document")
    config = {"model": section(server), "store": {"plugin": "memory", "collection": "remote"}}
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager()) as remote:
        model = remote.model_at(0)
        assert model.dim == 32 and model.fingerprint["settings"]["model"] == "tiny"
        got = model.embed(TEXTS, mode="document")  # 4 texts in batches of 3: two requests
    np.testing.assert_allclose(got, local, atol=1e-6)


def test_a_wrong_token_is_one_clear_line(served, monkeypatch, tmp_path):
    server, _ = served
    monkeypatch.setenv("SERVE_TOKEN", "not-the-token")
    config = {"model": section(server), "store": {"plugin": "memory", "collection": "remote"}}
    with pytest.raises(EmbedlineError) as caught:
        with Pipeline.from_dict(config, base_dir=Path(tmp_path), pm=fresh_plugin_manager()) as remote:
            remote.model_at(0)
    message = str(caught.value)
    assert "401" in message and "\n" not in message and "not-the-token" not in message
