"""Fixtures for the model2vec plugin tests: tiny models built once, and the STS-B dev pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
from embedline.plugins import get_plugin_manager
from embedline.testing import load_plugin_model, read_sts_pairs

STSB = Path(__file__).resolve().parents[3].parent / "shared/data/stsb/sts-dev.tsv"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # Without these a hub id spends ~78 s in retries before failing.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # Never touch the user's cache of distilled models.
    monkeypatch.setenv("EMBEDLINE_CACHE", str(tmp_path / "embedline-cache"))


@pytest.fixture(scope="session")
def tiny_static(tmp_path_factory) -> Path:
    from embedline.tinymodels import build_tiny_static_model

    return build_tiny_static_model(tmp_path_factory.mktemp("tiny") / "static32", dim=16, seed=0)


@pytest.fixture(scope="session")
def tiny_static_f16(tmp_path_factory) -> Path:
    from embedline.tinymodels import build_tiny_static_model

    return build_tiny_static_model(tmp_path_factory.mktemp("tiny") / "static16", dim=16, seed=1, dtype="float16")


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    from embedline.tinymodels import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny") / "teacher", dim=32, seed=0)


@pytest.fixture(scope="session")
def pm():
    return get_plugin_manager()


@pytest.fixture
def load(pm, tmp_path):
    """Load a model through the plugin manager exactly as a pipeline does."""

    def load(name: str | None, **fields):
        fields = {**fields.pop("options", {}), **fields}
        return load_plugin_model("model2vec", name, pm=pm, base_dir=tmp_path, **fields)

    return load


@pytest.fixture(scope="session")
def stsb() -> tuple[list[str], list[str], list[float]]:
    """STS-B dev: sentence1, sentence2, gold score (0-5)."""
    if not STSB.is_file():
        pytest.skip(f"STS-B dev data not found at {STSB}")
    return read_sts_pairs(STSB)
