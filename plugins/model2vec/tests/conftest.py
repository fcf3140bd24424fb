"""Fixtures for the model2vec plugin tests: tiny models built once, and the STS-B dev pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
from embedline.testing import model_plugin_fixtures, read_sts_pairs

STSB = Path(__file__).resolve().parents[3].parent / "shared/data/stsb/sts-dev.tsv"


offline_hub, pm, load = model_plugin_fixtures("model2vec", device=None)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # Never touch the user's cache of distilled models.
    monkeypatch.setenv("EMBEDLINE_CACHE", str(tmp_path / "embedline-cache"))


@pytest.fixture(scope="session")
def tiny_static(tmp_path_factory) -> Path:
    from embedline_model2vec.testing import build_tiny_static_model

    return build_tiny_static_model(tmp_path_factory.mktemp("tiny") / "static32", dim=16, seed=0)


@pytest.fixture(scope="session")
def tiny_static_f16(tmp_path_factory) -> Path:
    from embedline_model2vec.testing import build_tiny_static_model

    return build_tiny_static_model(tmp_path_factory.mktemp("tiny") / "static16", dim=16, seed=1, dtype="float16")


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A sentence-transformer to distil from, built by the minilm plugin's test helper."""
    minilm = pytest.importorskip("embedline_minilm.testing", reason="the tiny teacher is built by embedline-minilm")
    return minilm.build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny") / "teacher", dim=32, seed=0)


@pytest.fixture(scope="session")
def stsb() -> tuple[list[str], list[str], list[float]]:
    """STS-B dev: sentence1, sentence2, gold score (0-5)."""
    if not STSB.is_file():
        pytest.skip(f"STS-B dev data not found at {STSB}")
    return read_sts_pairs(STSB)
