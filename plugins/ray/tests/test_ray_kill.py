"""`kill -9` of a Ray run's driver, then a rerun: exactly the rows of a clean run, and no Ray
process left behind.  The runs are `embedline run` subprocesses that start their own local Ray
(``address`` unset) with two actors of one whole CPU each on this 2-core machine: a pool whose CPU
requests did not fit would wait forever, which the subprocess timeout would catch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest
from embedline.config import load_config
from embedline.pipeline import Pipeline
from embedline.sources import Source
from embedline.testing import FakeTextModel, fresh_plugin_manager, write_plugin_distribution

from embedline_ray.testing import FAKE_PLUGIN, TAG, reap, tagged

pytestmark = pytest.mark.plugins("milvus")  # a durable store: what was written before the kill stays

PIPELINE = """
[source]
path = "docs"
chunk = {{ by = "paragraph", max_tokens = 8 }}

[model]
plugin = "fake"
batch_size = 16

[store]
plugin = "milvus"
uri = "{db}"
collection = "docs"

[executor]
plugin = "ray"
actors = 2
cpus_per_actor = 1.0
batch_size = 64
"""

N_FILES = 600


@pytest.fixture
def project(tmp_path):
    write_plugin_distribution(tmp_path / "site", "fake", FAKE_PLUGIN)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(N_FILES):
        text = f"note {i} about topic {i % 17}" + (f"\n\nfollow up {i} on topic {i % 5}" if i % 3 == 0 else "")
        (docs / f"{i:05d}.md").write_text(text)
    (tmp_path / "embed.toml").write_text(PIPELINE.format(db="kill.db"))
    (tmp_path / "clean.toml").write_text(PIPELINE.format(db="clean.db").split("[executor]")[0])  # local
    tags: list[str] = []
    yield tmp_path, tags
    for tag in tags:  # a SIGKILLed driver's agents end by themselves within about a minute: not waited for
        reap(tag, wait=0)


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default in the run, as in a terminal: a test session started in the background
    by a non-interactive shell (``cmd &``) ignores SIGINT, and its children would inherit that, so a
    Ctrl-C sent to the run would do nothing (Python keeps an inherited SIG_IGN)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(project, tag, **env):
    full = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
            TAG: tag, "EMBEDLINE_TEST_KILL_FILE": str(project / "driver.pid"), **env}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedline", "run", "--no-progress", "embed.toml"],
        cwd=project, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )  # fmt: skip
    (project / "driver.pid.sent").unlink(missing_ok=True)
    (project / "driver.pid").write_text(str(proc.pid))
    return proc


def rows(project, config):
    """id -> (vector, uri, chunk, text) of every stored row, and the store's count."""
    pm = fresh_plugin_manager(FakeTextModel())
    with Pipeline.from_toml(project / config, pm=pm) as p:
        ids = [row_id for row_id, _ in p.store.scan("docs")]
        count = p.store.count("docs")
        client = p.store.client  # the milvus store's MilvusClient: it releases the Lite file on close
        found = client.query("docs", filter='id != ""', output_fields=["vector", "uri", "chunk", "text"], limit=16384)
    assert sorted(ids) == sorted(r["id"] for r in found)
    return {r["id"]: (np.asarray(r["vector"], dtype=np.float32), r["uri"], r["chunk"], r["text"]) for r in found}, count


def test_interrupt_then_kill_9_of_the_driver_then_a_rerun_leave_exactly_the_rows_of_a_clean_run(project):
    project, tags = project
    config = load_config(project / "embed.toml")
    expected = {item.id for unit in Source(config.source) for item in unit.items}
    assert len(expected) == N_FILES + N_FILES // 3

    # Ctrl-C (SIGINT to the driver) at the 6th embed call of one of its actors: what was recorded
    # as embedded is stored, as with `local`, and the run says it was interrupted (exit 130).
    tags.append(uuid.uuid4().hex)
    proc = start(project, tags[-1], EMBEDLINE_TEST_KILL_AT="6", EMBEDLINE_TEST_KILL_SIGNAL="SIGINT",
                 EMBEDLINE_TEST_SLOW="0.05")  # fmt: skip
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert "interrupted: what was embedded before the interrupt is stored" in out, out
    ids, count = rows(project, "embed.toml")
    assert count == len(ids) and set(ids) <= expected
    assert f"embedded {len(ids)}," in out, out
    # The next run starts a Ray of its own: Ray gives its node 30 s to register, which a 2-core
    # machine still busy with the last one's shutdown can miss.
    reap(tags[-1], wait=30)

    # Killed (SIGKILL) at the 12th embed call of one of its actors (each sleeps 0.05 s per call of
    # 16 items, so the driver has written the first results by then).
    interrupted = len(ids)
    tags.append(uuid.uuid4().hex)
    proc = start(project, tags[-1], EMBEDLINE_TEST_KILL_AT="12", EMBEDLINE_TEST_SLOW="0.05")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, err
    ids, count = rows(project, "embed.toml")
    assert count == len(ids) and set(ids) <= expected  # no duplicates, no strangers
    assert interrupted < len(ids) < len(expected)  # the kill did land mid-way
    reap(tags[-1], wait=0)  # the killed driver's Ray processes would linger for about a minute

    tags.append(uuid.uuid4().hex)
    final = start(project, tags[-1])
    out, err = final.communicate(timeout=240)
    assert final.returncode == 0, err
    assert "failed 0" in out and f"embedded {len(expected) - len(ids)}," in out, out
    # This run's Ray was shut down when the pipeline closed: none of its processes is left.
    assert not reap(tags[-1], wait=20), "Ray processes left after a clean run"

    with Pipeline.from_toml(project / "clean.toml", pm=fresh_plugin_manager(FakeTextModel())) as clean:
        assert clean.run().embedded == len(expected)
    stored, count = rows(project, "embed.toml")
    clean, clean_count = rows(project, "clean.toml")
    assert count == len(stored) == clean_count == len(clean)
    assert set(stored) == set(clean) == expected
    for row_id, (vector, *fields) in clean.items():
        assert stored[row_id][1:] == tuple(fields)
        np.testing.assert_allclose(stored[row_id][0], vector, atol=1e-5, rtol=0)
    assert tagged(tags[-1]) == []
