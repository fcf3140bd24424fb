"""`embedline serve` on a Milvus Lite pipeline while `embedline run` writes to the same `.db`: every
search answers, and new rows appear without a restart (the Lite engine is a process of its own
that both share)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from embedline.testing import SLOW_TEXT_PLUGIN, write_plugin_distribution

pytest.importorskip("embedline_milvus")

PIPELINE = """
[source]
path = "docs"

[model]
plugin = "fake"
batch_size = 8

[store]
plugin = "milvus"
uri = "live.db"
collection = "docs"
write_batch_size = 16
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_searches_answer_while_a_run_writes_the_same_lite_file_and_see_its_rows(tmp_path):
    from embedline_milvus.testing import wait_lite_engines_gone

    write_plugin_distribution(tmp_path / "site", "fake", SLOW_TEXT_PLUGIN)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.md").write_text("alpha bravo charlie")
    (tmp_path / "embed.toml").write_text(PIPELINE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "HF_HUB_OFFLINE": "1"}

    def embedline(*args, **extra):
        return subprocess.Popen([sys.executable, "-m", "embedline", *args], cwd=tmp_path, env={**env, **extra},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    first = embedline("run", "--no-progress")
    assert first.wait(timeout=120) == 0, first.communicate()[1]
    port = free_port()
    serve = embedline("serve", "--port", str(port))
    run = None
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert serve.poll() is None and time.monotonic() < deadline, serve.communicate()[1]
                time.sleep(0.1)

        def search(query: str, k: int = 50) -> list[dict]:
            response = httpx.post(f"{url}/search", json={"query": query, "k": k}, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()["hits"]

        assert [h["uri"] for h in search("alpha")] == ["docs/first.md"]
        for i in range(400):
            (docs / f"n{i:03d}.md").write_text(f"note {i} about delta")
        run = embedline("run", "--no-progress", EMBEDLINE_TEST_SLOW="0.05")  # 50 calls of 8: about 3 s of embedding
        seen = []
        while run.poll() is None:
            seen.append(len(search("delta")))  # answers while the run writes
            time.sleep(0.1)
        out, err = run.communicate()
        assert run.returncode == 0, err
        assert "embedded 400" in out
        assert len(seen) >= 3 and seen[-1] > seen[0]  # rows appeared during the run, without a restart
        assert len(search("delta")) == 50
        assert search("note 123 about delta", k=1)[0]["uri"] == "docs/n123.md"
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=30)
    assert serve.returncode == 0
    assert not wait_lite_engines_gone(tmp_path / "live.db", timeout=30)
