"""Fixtures for the ray executor's tests: one local Ray for the in-process tests, a fake text
model installed as a real plugin distribution (Ray workers import plugins by entry point, not
from the test's plugin manager), and a check that no Ray process outlives the tests."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import pytest

if importlib.util.find_spec("ray") is None or importlib.util.find_spec("embedline_ray") is None:
    collect_ignore_glob = ["test_*.py"]  # pip install -e plugins/ray (which pulls ray) to run them

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _testing():
    from embedline_ray import testing

    return testing


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    # Module-scoped with ray_session: the extra `fake` entry point is on sys.path for one module only.
    from embedline.testing import write_plugin_distribution

    return write_plugin_distribution(tmp_path_factory.mktemp("site"), "fake", _testing().FAKE_PLUGIN)


@pytest.fixture(scope="module")
def ray_session(site):
    """A local Ray started the way the executor starts one (2 actors of whole CPUs fit), with the
    fake plugin importable by its workers; shut down at the end, and no process of it left."""
    import ray
    from embedline_ray._executor import Settings, local_cpus, start_local_ray

    if ray.is_initialized():
        pytest.skip("Ray is already initialized in this process")
    TAG = _testing().TAG
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", TAG)}
    tag = uuid.uuid4().hex
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), saved["PYTHONPATH"]) if p)
    os.environ[TAG] = tag
    sys.path.insert(0, str(site))
    # Another test module may have imported its own `embedline_fake` (write_plugin_distribution's
    # module for a plugin named "fake"): this process must load the same one as the workers.
    sys.modules.pop("embedline_fake", None)
    try:
        start_local_ray(local_cpus(Settings(actors=2, cpus_per_actor=1.0), models=1))
        yield ray
    finally:
        ray.shutdown()
        sys.path.remove(str(site))
        sys.modules.pop("embedline_fake", None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        left = _testing().reap(tag, wait=30)
        assert not left, f"Ray processes still running after ray.shutdown(): {left}"


def pytest_collection_modifyitems(items):
    """Every test that starts Ray is an integration test (`make test` runs them; `-m "not
    integration"` leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and (item.path.name == "test_ray_kill.py" or "ray_session" in item.fixturenames):
            item.add_marker(pytest.mark.integration)
