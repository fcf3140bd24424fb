"""Fixtures for the whisper plugin tests: tiny random Whisper models built once, generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from embedline.testing import fresh_plugin_manager, load_plugin_model


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Without these a hub id spends ~78 s in retries before failing.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """2 s window: 200 mel frames, 100 encoder positions, 32-d states."""
    from embedline.tinymodels import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny") / "whisper-2s", chunk_length=2)


@pytest.fixture(scope="session")
def tiny_whisper_30(tmp_path_factory) -> Path:
    """The real 30 s window (3000 frames, 1500 positions), still 32-d and one layer."""
    from embedline.tinymodels import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny") / "whisper-30s", chunk_length=30)


@pytest.fixture(scope="session")
def pm():
    return fresh_plugin_manager()


@pytest.fixture
def load(pm, tmp_path):
    """Load a model through the plugin manager exactly as a pipeline does."""

    def load(name, **keys):
        keys.setdefault("device", "cpu")
        return load_plugin_model("whisper", str(name), pm=pm, base_dir=tmp_path, **keys)

    return load


@pytest.fixture(scope="session")
def tone():
    """``tone(seconds, freq=440, rate=16000, amplitude=0.3)``: a sine; ``freq=0`` gives white noise."""

    def tone(seconds: float, freq: float = 440.0, rate: int = 16000, amplitude: float = 0.3) -> np.ndarray:
        n = int(round(seconds * rate))
        if freq == 0:
            return (amplitude * np.random.default_rng(0).uniform(-1, 1, n)).astype(np.float32)
        return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)

    return tone
