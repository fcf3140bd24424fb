"""Fixtures for the minilm plugin tests: a tiny model built once, and the STS-B dev pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
from embedline.testing import model_plugin_fixtures, read_sts_pairs

STSB = Path(__file__).resolve().parents[3].parent / "shared/data/stsb/sts-dev.tsv"


offline_hub, pm, load = model_plugin_fixtures("minilm")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from embedline_minilm.testing import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny") / "st", dim=32, seed=0)


@pytest.fixture(scope="session")
def stsb() -> tuple[list[str], list[str], list[float]]:
    """STS-B dev: sentence1, sentence2, gold score (0-5)."""
    if not STSB.is_file():
        pytest.skip(f"STS-B dev data not found at {STSB}")
    return read_sts_pairs(STSB)
