"""The official ``openai`` client, unchanged, against a real uvicorn on a loopback port, serving
the minilm plugin's tiny random model; and ``main`` (what ``embedline serve`` runs) end to end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from embedline import Pipeline
from embedline.testing import FAKE_TEXT_PLUGIN, fresh_plugin_manager, write_plugin_distribution
from embedline_serve import BackgroundServer, create_app

openai = pytest.importorskip("openai")
pytest.importorskip("embedline_minilm")

TOKEN = "t0ken-for-the-openai-test"
TEXTS = [
    "A man is playing a guitar.",
    "The cat sits on the table near the window.",
    "Children play with a ball in the park.",
    "A woman reads a book on the train.",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from embedline_minilm.testing import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny") / "st", dim=32, seed=0, normalize=True)


@pytest.fixture(scope="module")
def served(tiny_dir, tmp_path_factory):
    """A pipeline on the tiny model, its app behind a real uvicorn with a token, and the pipeline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = {
        "model": {"plugin": "minilm", "name": str(tiny_dir), "batch_size": 8, "device": "cpu"},
        "store": {"plugin": "memory", "collection": "tiny"},
    }
    base = tmp_path_factory.mktemp("pipeline")
    with Pipeline.from_dict(config, base_dir=base, pm=fresh_plugin_manager()) as pipeline:
        app = create_app(pipeline, token=TOKEN, aliases={"text-embedding-3-small": "tiny"})
        app.state.service.warm(store=False)
        with BackgroundServer(app) as server:
            yield server, pipeline
        app.state.service.close()


def client(server, token=TOKEN):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0, timeout=30)


def test_the_openai_client_gets_the_local_vectors(served):
    server, pipeline = served
    local = pipeline.model_at(0).embed(TEXTS, mode="document")
    result = client(server).embeddings.create(model="tiny", input=TEXTS)  # the client asks for base64
    assert result.model == "tiny"
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    np.testing.assert_allclose(got, local, atol=1e-6)
    assert [d.index for d in result.data] == list(range(len(TEXTS)))
    assert result.usage.prompt_tokens == result.usage.total_tokens > len(TEXTS)


def test_float_encoding_a_single_string_and_an_alias(served):
    server, pipeline = served
    local = pipeline.model_at(0).embed(TEXTS[:1], mode="document")
    result = client(server).embeddings.create(model="text-embedding-3-small", input=TEXTS[0], encoding_format="float")
    np.testing.assert_allclose(np.array(result.data[0].embedding, dtype=np.float32), local[0], atol=1e-6)
    same = client(server).embeddings.create(model="tiny", input=TEXTS[:1], dimensions=32)
    np.testing.assert_allclose(np.array(same.data[0].embedding, dtype=np.float32), local[0], atol=1e-6)
    query = client(server).embeddings.create(model="tiny", input=TEXTS[:2], extra_body={"input_type": "query"})
    np.testing.assert_allclose(np.array([d.embedding for d in query.data], dtype=np.float32),
                               pipeline.model_at(0).embed(TEXTS[:2], mode="query"), atol=1e-6)


def test_usage_counts_the_models_tokens(served):
    server, pipeline = served
    from embedline_minilm import plugin_info

    counter = plugin_info.tokenizer(pipeline.config.models[0])
    result = client(server).embeddings.create(model="tiny", input=TEXTS)
    assert result.usage.prompt_tokens == sum(counter.count(TEXTS))


def test_the_openai_client_sees_errors_as_openai_errors(served):
    server, _ = served
    with pytest.raises(openai.NotFoundError) as missing:
        client(server).embeddings.create(model="no-such-model", input="hello")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as dims:
        client(server).embeddings.create(model="tiny", input="hello", dimensions=8)
    assert dims.value.param == "dimensions"
    with pytest.raises(openai.AuthenticationError):
        client(server, token="wrong").embeddings.create(model="tiny", input="hello")
    listed = client(server).models.list()
    assert [m.id for m in listed.data] == ["tiny"] and listed.data[0].owned_by == "embedline"


def test_concurrent_clients_get_their_own_vectors_in_fewer_calls(served):
    server, pipeline = served
    texts = [f"the {w} plays in the park" for w in ("dog", "cat", "child", "horse", "bird", "man", "woman", "team")] * 3
    local = pipeline.model_at(0).embed(texts, mode="document")
    before = server.server.config.app.state.service.stats()["tiny"]

    def one(i):
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            data = http.post("/v1/embeddings", json={"model": "tiny", "input": texts[i]}).json()["data"]
            return np.array(data[0]["embedding"], dtype=np.float32)

    with ThreadPoolExecutor(12) as pool:
        rows = list(pool.map(one, range(len(texts))))
    np.testing.assert_allclose(np.stack(rows), local, atol=1e-6)
    after = server.server.config.app.state.service.stats()["tiny"]
    assert after["requests"] - before["requests"] == len(texts)
    assert after["calls"] - before["calls"] < len(texts)


# -- main(), as `embedline serve` runs it --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_main_serves_a_pipeline_file_until_interrupted(tmp_path):
    site = write_plugin_distribution(tmp_path / "site", "fake", FAKE_TEXT_PLUGIN)  # found by entry point
    (tmp_path / "embed.toml").write_text(
        '[model]\nplugin = "fake"\n\n[store]\nplugin = "memory"\ncollection = "docs"\n'
    )
    port = free_port()
    code = (
        "import sys, embedline_serve\n"
        f"sys.exit(embedline_serve.main({str(tmp_path / 'embed.toml')!r}, port={port}, log_level='warning'))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "EMBEDLINE_SERVE_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert health.json() == {"status": "ok", "models": ["docs"]}
        assert httpx.get(f"{url}/v1/models").status_code == 401  # the token came from the environment
        ok = httpx.post(f"{url}/v1/embeddings", json={"model": "docs", "input": "hello"},
                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) == 16
        assert "server" not in ok.headers  # uvicorn does not advertise itself
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert TOKEN not in out.decode() + err.decode()
    assert "Traceback" not in err.decode()
