"""Fixtures for the perceiver plugin tests: a tiny random multimodal Perceiver, synthetic videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from embedline.testing import model_plugin_fixtures

offline_hub, pm, load = model_plugin_fixtures("perceiver")


@pytest.fixture(scope="session")
def tiny_perceiver(tmp_path_factory) -> Path:
    """16 px frames, 2 frames per window, 64 audio samples per frame, 16 latents of 32."""
    from embedline_perceiver.testing import build_tiny_perceiver

    return build_tiny_perceiver(tmp_path_factory.mktemp("tiny") / "perceiver")


@pytest.fixture(scope="session")
def make_video():
    """``make_video(path, seconds, fps=10, tone=440, size=(48, 64))``: a square sweeping over a
    coloured background (the colour shifts over time), with a sine tone unless ``tone`` is None."""
    from embedline_media.video import write_video

    def make_video(path, seconds: float, fps: float = 10, tone: float | None = 440, size=(48, 64), hue: int = 0):
        count = int(round(seconds * fps))
        height, width = size
        frames = np.zeros((count, height, width, 3), dtype=np.uint8)
        for i in range(count):
            frames[i, :, :, hue % 3] = int(255 * i / max(1, count - 1))
            x = int((width - 16) * i / max(1, count - 1))
            frames[i, 16:32, x : x + 16] = 255
        audio = None
        if tone is not None:
            t = np.arange(int(seconds * 48000)) / 48000
            audio = (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
        return Path(write_video(path, frames, fps, audio=audio, audio_rate=48000))

    return make_video
