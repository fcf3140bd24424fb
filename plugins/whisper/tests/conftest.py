"""Fixtures for the whisper plugin tests: tiny random Whisper models built once, generated audio."""

from __future__ import annotations

from pathlib import Path

import pytest
from embedline.testing import model_plugin_fixtures

offline_hub, pm, load = model_plugin_fixtures("whisper")


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """2 s window: 200 mel frames, 100 encoder positions, 32-d states."""
    from embedline_whisper.testing import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny") / "whisper-2s", chunk_length=2)


@pytest.fixture(scope="session")
def tiny_whisper_30(tmp_path_factory) -> Path:
    """The real 30 s window (3000 frames, 1500 positions), still 32-d and one layer."""
    from embedline_whisper.testing import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny") / "whisper-30s", chunk_length=30)


@pytest.fixture(scope="session")
def tone():
    """``tone(seconds, freq=440, rate=16000, amplitude=0.3)``: a sine; ``freq=0`` gives white noise."""
    from embedline_media.testing import tone

    return tone
