import importlib.util
import os

import pytest

# Never reach for a model hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _installed(plugin: str) -> bool:
    return importlib.util.find_spec(f"embedline_{plugin}") is not None


def pytest_collection_modifyitems(config, items):
    """The core's tests run with only the core installed (``pip install -e core``); a test marked
    ``@pytest.mark.plugins("minilm", "milvus")`` exercises the core with real plugins and is
    skipped, saying which, when one of them is not installed."""
    for item in items:
        for mark in item.iter_markers("plugins"):
            missing = [name for name in mark.args if not _installed(name)]
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"cross-plugin test: needs {', '.join(missing)} installed"))


@pytest.fixture
def fake_model():
    from embedline.testing import FakeTextModel

    return FakeTextModel()


@pytest.fixture
def pm(fake_model):
    from embedline.testing import fresh_plugin_manager

    return fresh_plugin_manager(fake_model)
