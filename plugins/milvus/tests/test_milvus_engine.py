"""Milvus Lite's engine in a process of its own (``lite_engine = "process"``, the default): shared by
every process that opens the same ``.db``, stopped when its last user is gone, and safe against a
``kill -9`` of any participant."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from embedline.config import StoreSpec
from embedline.contracts import Record
from embedline.errors import StoreError

import embedline_milvus
from embedline_milvus import _engine
from embedline_milvus.testing import lite_engines, wait_lite_engines_gone

DIM = 8
FINGERPRINT = {"plugin": "fake", "plugin_version": "0.1.0", "source": "test/model", "revision": "abc", "dim": DIM}
MODEL = "f00dfeedf00dfeed"


def spec(base_dir, **overrides) -> StoreSpec:
    options = {name: opt.default for name, opt in embedline_milvus.plugin_info.options.items()}
    options.update(overrides)
    return StoreSpec(plugin="milvus", collection="c", options=options, base_dir=base_dir)


def rows(n: int, prefix: str = "r", seed: int = 0) -> list[Record]:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        Record(id=f"{prefix}{i}", vector=v, uri=f"docs/{prefix}{i}.md", modality="text", chunk=0, text=f"{prefix}{i}",
               metadata={}, model=MODEL)  # fmt: skip
        for i, v in enumerate(vectors)
    ]


# A user in another process: opens the store, says the engine's pid, then waits to be killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from embedline.config import StoreSpec
    import embedline_milvus
    options = {n: o.default for n, o in embedline_milvus.plugin_info.options.items()}
    store = embedline_milvus.store(StoreSpec(collection="c", options=options, base_dir=Path(sys.argv[1])))
    print(store._conn.lease.pid, flush=True)
    time.sleep(600)
    """
)


def test_the_users_of_a_file_share_one_engine_that_stops_after_the_last_one(tmp_path):
    db = tmp_path / "embed.db"
    first = embedline_milvus.store(spec(tmp_path))
    second = embedline_milvus.store(spec(tmp_path))
    try:
        assert first._conn.lease.pid == second._conn.lease.pid
        assert lite_engines(db) == [first._conn.lease.pid]
        assert first._conn.lease.pid != os.getpid()  # not in this process: it holds no GIL here
        first.create_collection("c", FINGERPRINT)
        first.upsert("c", rows(5))
        assert second.count("c") == 5  # what one user writes, another sees at once
    finally:
        first.close()
    assert lite_engines(db)  # one user left
    second.close()
    assert not wait_lite_engines_gone(db, timeout=_engine.LINGER + 20)
    # A new user after that starts a new engine, which has every row.
    again = embedline_milvus.store(spec(tmp_path))
    try:
        assert again.count("c") == 5
    finally:
        again.close()
    assert not wait_lite_engines_gone(db, timeout=_engine.LINGER + 20)


def test_a_user_killed_with_sigkill_ends_its_lease_and_the_engine_stops(tmp_path):
    db = tmp_path / "embed.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        engine = int(holder.stdout.readline())
        assert lite_engines(db) == [engine]
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert not wait_lite_engines_gone(db, timeout=_engine.LINGER + 20)  # no orphan holding the folder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
    store = embedline_milvus.store(spec(tmp_path))  # the folder is free again
    store.close()


def test_kill_9_of_the_engine_loses_no_acknowledged_row_and_says_so_in_one_line(tmp_path):
    db = tmp_path / "embed.db"
    store = embedline_milvus.store(spec(tmp_path, write_batch_size=50))
    try:
        store.create_collection("c", FINGERPRINT)
        store.upsert("c", rows(200))  # acknowledged
        os.kill(store._conn.lease.pid, signal.SIGKILL)
        with pytest.raises(StoreError) as raised:
            store.upsert("c", rows(10, prefix="late"))
        message = str(raised.value)
        assert str(db) in message and "engine" in message and "stopped" in message and "\n" not in message
    finally:
        store.close()
    store = embedline_milvus.store(spec(tmp_path))  # a new engine replays the killed one's log
    try:
        assert store.count("c") == 200
        assert {row_id for row_id, _ in store.scan("c")} == {f"r{i}" for i in range(200)}
    finally:
        store.close()
    assert not wait_lite_engines_gone(db, timeout=_engine.LINGER + 20)


def test_an_inline_holder_keeps_the_engine_from_starting_with_a_clear_error(tmp_path):
    inline = embedline_milvus.store(spec(tmp_path, lite_engine="inline"))
    try:
        with pytest.raises(StoreError, match=r"is in use: another process has it open with an in-process Milvus Lite"):
            embedline_milvus.store(spec(tmp_path))
    finally:
        inline.close()
    assert not wait_lite_engines_gone(tmp_path / "embed.db", timeout=20)  # the engine that could not open it exited


def test_users_starting_at_once_get_one_engine(tmp_path):
    db = tmp_path / "embed.db"
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from embedline.config import StoreSpec
        import embedline_milvus
        options = {n: o.default for n, o in embedline_milvus.plugin_info.options.items()}
        store = embedline_milvus.store(StoreSpec(collection="c", options=options, base_dir=Path(sys.argv[1])))
        print(store._conn.lease.pid, flush=True)
        sys.stdin.read()
        store.close()
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)  # fmt: skip
        for _ in range(4)
    ]
    try:
        pids = {int(p.stdout.readline()) for p in procs}
        assert len(pids) == 1 and lite_engines(db) == list(pids)
    finally:
        for p in procs:
            p.communicate(timeout=60)
    assert all(p.returncode == 0 for p in procs)
    assert not wait_lite_engines_gone(db, timeout=_engine.LINGER + 20)


def test_writes_from_two_users_at_once_are_all_kept(tmp_path):
    import threading

    stores = [embedline_milvus.store(spec(tmp_path, write_batch_size=25)) for _ in range(2)]
    try:
        stores[0].create_collection("c", FINGERPRINT)
        threads = [
            threading.Thread(target=s.upsert, args=("c", rows(300, prefix=p, seed=n)))
            for n, (s, p) in enumerate(zip(stores, ("a", "b")))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert stores[1].count("c") == 600
    finally:
        for s in stores:
            s.close()


def test_a_missing_engine_is_started_again_by_the_next_user(tmp_path):
    db = tmp_path / "embed.db"
    db.mkdir()
    lease = _engine.acquire(str(db), linger=0.2)
    pid = lease.pid
    lease.close()
    deadline = time.monotonic() + 20
    while lite_engines(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lite_engines(db)
    lease = _engine.acquire(str(db), linger=0.2)
    try:
        assert lease.pid != pid and lease.alive()
    finally:
        lease.close()


def test_a_database_deleted_and_made_again_while_its_engine_lingers_gets_a_new_engine(tmp_path):
    import shutil

    db = tmp_path / "embed.db"
    store = embedline_milvus.store(spec(tmp_path))
    try:
        store.create_collection("c", FINGERPRINT)
        store.upsert("c", rows(20))
        old = store._conn.lease.pid
    finally:
        store.close()
    shutil.rmtree(db)  # at once, while the engine still lingers on the deleted folder
    store = embedline_milvus.store(spec(tmp_path))
    try:
        assert store._conn.lease.pid != old
        assert store.get_fingerprint("c") is None  # the new, empty database; not the deleted one
        store.create_collection("c", FINGERPRINT)
        store.upsert("c", rows(3))
    finally:
        store.close()
    store = embedline_milvus.store(spec(tmp_path))
    try:
        assert store.count("c") == 3  # written to the folder that exists
    finally:
        store.close()
    assert not wait_lite_engines_gone(db, timeout=_engine.LINGER + 20)
