"""Killed at any moment (SIGKILL) and started again, a pipeline ends with exactly one row per item."""

import os
import signal
import subprocess
import sys
import time

import pytest

from embedline.config import load_config
from embedline.pipeline import Pipeline
from embedline.sources import Source
from embedline.testing import FakeTextModel, fresh_plugin_manager, write_plugin_distribution

# A durable store is the point here (every row written before the kill must survive it), and the
# second test is about Milvus Lite's lock: these check the core together with the milvus plugin.
pytestmark = pytest.mark.plugins("milvus")

# The fake model, installed as a real plugin; EMBEDLINE_TEST_KILL_AT=N makes the process SIGKILL
# itself at its N-th embed call, and EMBEDLINE_TEST_SLOW adds seconds per call.
PLUGIN = """
import os, signal, time
from embedline import hookimpl
from embedline.testing import FakeTextModel

_model = FakeTextModel()
plugin_info = _model.plugin_info
load_model, preprocess = _model.load_model, _model.preprocess
_calls = 0

@hookimpl
def embed(model, inputs, mode):
    global _calls
    _calls += 1
    if _calls == int(os.environ.get("EMBEDLINE_TEST_KILL_AT", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("EMBEDLINE_TEST_SLOW", "0")))
    return _model.embed(model, inputs, mode)
"""

PIPELINE = """
[source]
path = "docs"
chunk = { by = "paragraph", max_tokens = 8 }

[model]
plugin = "fake"
batch_size = 16

[store]
plugin = "milvus"
uri = "kill.db"
collection = "docs"
write_batch_size = 64
"""

N_FILES = 2000


@pytest.fixture
def project(tmp_path):
    write_plugin_distribution(tmp_path / "site", "fake", PLUGIN)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(N_FILES):
        # Two chunks for every third file, so files and items differ.
        text = f"note {i} about topic {i % 17}" + (f"\n\nfollow up {i} on topic {i % 5}" if i % 3 == 0 else "")
        (docs / f"{i:05d}.md").write_text(text)
    (tmp_path / "embed.toml").write_text(PIPELINE)
    return tmp_path


def start(project, **env):
    full = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "embedline", "run", "--no-progress"],
        cwd=project, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def expected_ids(project):
    config = load_config(project / "embed.toml")
    return {item.id for unit in Source(config.source) for item in unit.items}


def stored(project):
    pm = fresh_plugin_manager(FakeTextModel())
    with Pipeline.from_toml(project / "embed.toml", pm=pm) as p:
        ids = [row_id for row_id, _ in p.store.scan("docs")]
        return ids, p.store.count("docs")


def test_sigkill_at_several_moments_then_rerun_gives_exactly_the_expected_rows(project):
    expected = expected_ids(project)
    assert len(expected) > N_FILES
    for kill_at in (40, 3, 110):  # embed calls of 16 items: early, very early, late
        proc = start(project, EMBEDLINE_TEST_KILL_AT=str(kill_at))
        proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL
        ids, count = stored(project)
        assert len(ids) == count == len(set(ids)) and set(ids) <= expected  # no duplicates, no strangers
    ids, _ = stored(project)
    assert 0 < len(ids) < len(expected)  # the kills did land mid-way

    # A kill from outside at a moment the test does not choose, while the writer is busy.
    proc = start(project, EMBEDLINE_TEST_SLOW="0.01")
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    final = start(project)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert "failed 0" in out
    ids, count = stored(project)
    assert count == len(ids) == len(set(ids))
    assert set(ids) == expected


def test_searches_a_host_application_and_a_second_run_share_the_lite_file_with_a_running_run(project):
    """Milvus Lite's engine runs in a process of its own that every user of the file shares: a
    search, a host application and a second run work while a run writes, and see its rows so far."""
    from embedline_milvus.testing import lite_engines, wait_lite_engines_gone

    expected = expected_ids(project)
    env = {**os.environ, "PYTHONPATH": str(project / "site"), "HF_HUB_OFFLINE": "1"}
    first = start(project, EMBEDLINE_TEST_SLOW="0.05")
    second = None
    try:
        pm = fresh_plugin_manager(FakeTextModel())
        with Pipeline.from_toml(project / "embed.toml", pm=pm) as host:  # a host application, open all along
            deadline = time.monotonic() + 120
            while not (host.store.get_fingerprint("docs") and host.store.count("docs") >= 64):
                assert first.poll() is None and time.monotonic() < deadline, first.communicate()
                time.sleep(0.2)
            early = host.store.count("docs")
            hits = host.search("note 7", k=3)
            assert len(hits) == 3 and all(hit.uri.endswith(".md") for hit in hits)
            search = subprocess.run(
                [sys.executable, "-m", "embedline", "search", "note 7", "-k", "2"],
                cwd=project, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert search.returncode == 0, search.stderr
            assert "docs/" in search.stdout
            second = start(project, EMBEDLINE_TEST_SLOW="0.02")  # the same pipeline, at the same time
            while host.store.count("docs") <= early:  # new rows appear in an open pipeline
                assert first.poll() is None or host.store.count("docs") > early
                time.sleep(0.2)
            assert len(lite_engines(project / "kill.db")) == 1  # one engine for every user
            for proc in (first, second):
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
                assert "failed 0" in out
            ids = [row_id for row_id, _ in host.store.scan("docs")]
            assert len(ids) == host.store.count("docs") == len(set(ids))  # no duplicates
            assert set(ids) == expected  # no holes
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert not wait_lite_engines_gone(project / "kill.db")  # the last user gone, the engine stops


def test_kill_9_of_the_lite_engine_mid_run_loses_no_acknowledged_row(project):
    from embedline_milvus.testing import lite_engines, wait_lite_engines_gone

    expected = expected_ids(project)
    run = start(project, EMBEDLINE_TEST_SLOW="0.02")
    try:
        deadline = time.monotonic() + 120
        while not lite_engines(project / "kill.db"):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.1)
        time.sleep(3.0)  # let it write for a while
        (engine,) = lite_engines(project / "kill.db")
        os.kill(engine, signal.SIGKILL)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 1
    assert "kill.db" in err and "engine" in err and "stopped" in err and "Traceback" not in err
    ids, count = stored(project)  # a new engine replays what the killed one acknowledged
    assert 0 < len(ids) < len(expected) and count == len(set(ids)) == len(ids) and set(ids) <= expected

    final = start(project)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert f"skipped as unchanged {len(ids)}" in out  # every row written before the kill was kept
    ids, count = stored(project)
    assert count == len(ids) and set(ids) == expected
    assert not wait_lite_engines_gone(project / "kill.db")
