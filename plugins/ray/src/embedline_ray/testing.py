"""Test helpers for the ray executor: a fake model plugin that Ray workers can import, and a way
to find (and end) the processes of one Ray instance.  Nothing here is imported by the plugin.

Ray workers load model plugins by entry point, so a test's in-process plugin manager does not
reach them: install :data:`FAKE_PLUGIN` with :func:`embedline.testing.write_plugin_distribution`
and put its folder on ``PYTHONPATH`` before Ray starts.  Tag a Ray with :data:`TAG` in the
environment of the process that starts it; every Ray process inherits it, and :func:`tagged`
finds them again (Linux ``/proc``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["FAKE_PLUGIN", "TAG", "reap", "tagged"]

#: A module for ``write_plugin_distribution(root, "fake", FAKE_PLUGIN)``: embedline's
#: ``FakeTextModel`` (its ``embed`` fails on texts containing "poison").  ``EMBEDLINE_TEST_SLOW``
#: adds seconds per embed call; with ``EMBEDLINE_TEST_KILL_FILE`` and ``EMBEDLINE_TEST_KILL_AT=N``
#: the N-th embed call of a process sends ``EMBEDLINE_TEST_KILL_SIGNAL`` (default ``SIGKILL``;
#: ``SIGINT`` is a Ctrl-C) to the process whose pid the file holds (the driver: under the ray
#: executor, ``embed`` runs in a Ray worker), if it is still an embedline run; only the first
#: worker to get there sends it (a file ``<KILL_FILE>.sent`` says it was sent).  With
#: ``EMBEDLINE_TEST_DRIVER_PID`` set, a process with another pid (a worker) loads another model
#: (``EMBEDLINE_TEST_IN_WORKER=other``) or none (``fail``).
FAKE_PLUGIN = """
import os, signal, time
from embedline import hookimpl
from embedline.testing import FakeTextModel

_model = FakeTextModel(fail_on=["poison"])
plugin_info = _model.plugin_info
preprocess = _model.preprocess
_calls = 0

@hookimpl
def load_model(spec):
    # In a process other than EMBEDLINE_TEST_DRIVER_PID (a Ray worker): EMBEDLINE_TEST_IN_WORKER
    # "fail" fails to load, "other" loads another model (twice the dimensions).
    driver = os.environ.get("EMBEDLINE_TEST_DRIVER_PID")
    if driver is not None and driver != str(os.getpid()):
        what = os.environ.get("EMBEDLINE_TEST_IN_WORKER")
        if what == "fail":
            from embedline.errors import ModelSourceError
            raise ModelSourceError("the weights are not on this worker")
        if what == "other":
            import attrs
            spec = attrs.evolve(spec, options={**spec.options, "dim": 2 * spec.option("dim", 16)})
    return _model.load_model(spec)

def _kill_driver():
    path = os.environ["EMBEDLINE_TEST_KILL_FILE"]
    try:  # once per run, whichever worker gets there first
        os.close(os.open(path + ".sent", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    with open(path) as fh:
        pid = int(fh.read())
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"embedline" not in fh.read():
                return
    except OSError:
        return
    os.kill(pid, getattr(signal, os.environ.get("EMBEDLINE_TEST_KILL_SIGNAL", "SIGKILL")))

@hookimpl
def embed(model, inputs, mode):
    global _calls
    _calls += 1
    if _calls == int(os.environ.get("EMBEDLINE_TEST_KILL_AT", "0")):
        _kill_driver()
    time.sleep(float(os.environ.get("EMBEDLINE_TEST_SLOW", "0")))
    return _model.embed(model, inputs, mode)
"""

#: The environment variable that tags the processes of one Ray instance.
TAG = "EMBEDLINE_RAY_TEST_TAG"


def tagged(tag: str) -> list[int]:
    """Pids of live processes (of this user) whose environment holds ``TAG=tag``."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def reap(tag: str, wait: float) -> list[int]:
    """Wait up to ``wait`` seconds for the tagged processes to end; SIGKILL (by pid) and return
    the ones still there."""
    deadline = time.monotonic() + wait
    while True:
        left = tagged(tag)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, getattr(signal, os.environ.get("EMBEDLINE_TEST_KILL_SIGNAL", "SIGKILL")))
        except OSError:
            pass
    return left
