"""`embedline serve` as a user runs it: a subprocess of the command line, a real port, a model
plugin found through its entry point, Ctrl-C to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from embedline.testing import write_plugin_distribution

FAKE = """
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess, embed = _model.load_model, _model.preprocess, _model.embed
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _project(tmp_path):
    site = write_plugin_distribution(tmp_path / "site", "fake", FAKE)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cats.md").write_text("# Cats\n\nCats purr and sleep all day.\n")
    (tmp_path / "embed.toml").write_text(
        '[source]\npath = "docs"\nchunk = { by = "structure" }\n[model]\nplugin = "fake"\n'
        '[store]\nplugin = "memory"\npath = "store.npz"\ncollection = "docs"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "EMBEDLINE_SERVE_TOKEN": "s3cret-token"}
    return env


def test_serve_answers_embeddings_and_search_then_stops_on_ctrl_c(tmp_path):
    env = _project(tmp_path)
    assert subprocess.run([sys.executable, "-m", "embedline", "run"], cwd=tmp_path, env=env, capture_output=True).returncode == 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "embedline", "serve", "--port", str(port), "--alias", "bow=docs"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.poll() else "timeout"
            time.sleep(0.2)
        auth = {"Authorization": "Bearer s3cret-token"}
        assert httpx.post(f"{base}/v1/embeddings", json={"model": "docs", "input": "cats"}).status_code == 401
        answer = httpx.post(f"{base}/v1/embeddings", json={"model": "bow", "input": ["cats", "dogs"]}, headers=auth)
        assert answer.status_code == 200
        assert [row["index"] for row in answer.json()["data"]] == [0, 1]
        hits = httpx.post(f"{base}/search", json={"query": "do cats purr?", "k": 1}, headers=auth).json()["hits"]
        assert hits[0]["section"] == "Cats" and "purr" in hits[0]["snippet"]
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "s3cret-token" not in output  # the token is never printed


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    env = _project(tmp_path)
    del env["EMBEDLINE_SERVE_TOKEN"]
    done = subprocess.run(
        [sys.executable, "-m", "embedline", "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "without a token" in done.stderr


def test_a_bad_alias_is_a_usage_error(tmp_path):
    env = _project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "embedline", "serve", "--alias", "nocollection"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "NAME=COLLECTION" in done.stderr
