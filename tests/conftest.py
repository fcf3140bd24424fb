import os

import pytest

# Never reach for a model hub from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fake_model():
    from embedline.testing import FakeTextModel

    return FakeTextModel()


@pytest.fixture
def pm(fake_model):
    from embedline.testing import fresh_plugin_manager

    return fresh_plugin_manager(fake_model)
