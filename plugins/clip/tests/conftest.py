"""Fixtures for the clip plugin tests: a tiny random CLIP, photos, and a short video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from embedline.testing import model_plugin_fixtures

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "horse", "camera", "coins", "logo")


offline_hub, pm, load = model_plugin_fixtures("clip", default="tiny_clip")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from embedline_clip.testing import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "clip")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """Public-domain photos from scikit-image (``logo`` is RGBA, ``camera`` grayscale)."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(PHOTOS):
        array = getattr(data, name)()
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        Image.fromarray(array).save(folder / f"{name}.{'png' if i % 2 else 'jpg'}")
    return folder


def write_video(path: Path, seconds: float = 3.5, fps: int = 10, size: tuple[int, int] = (64, 48)) -> Path:
    """An MPEG-4 video whose colour changes every second (so windows differ), written with PyAV."""
    import av

    colours = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (220, 220, 30)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            frame = np.empty((size[1], size[0], 3), dtype=np.uint8)
            frame[:] = colours[(i // fps) % len(colours)]
            frame[: size[1] // 2, : size[0] // 2] = (i * 7) % 256  # a moving shade, so frames are not identical
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_video():
    """``write_video`` (tests cannot import conftest under --import-mode=importlib)."""
    pytest.importorskip("av")
    return write_video
