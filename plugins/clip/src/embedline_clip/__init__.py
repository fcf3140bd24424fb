"""embedline plugin ``clip``: images, texts (and video frames) in one CLIP vector space.

The default is ``openai/clip-vit-base-patch32`` (512-d); ``openai/clip-vit-large-patch14`` (768-d)
and any other ``CLIPModel`` work by hub id or folder.  A collection filled with image vectors can be
searched with a text query, or with an image.  This module only declares the plugin; the work
happens in ``_backend``, imported inside the hooks, so listing plugins never pays for torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embedline import hookimpl
from embedline.contracts import Option, PluginInfo

__version__ = "0.1.0"


def _validate(options: Mapping[str, Any]) -> None:
    if options["clip_seconds"] <= 0:
        raise ValueError(f"clip_seconds: expected a positive number of seconds, got {options['clip_seconds']}")
    if not 0 <= options["clip_overlap"] < options["clip_seconds"]:
        raise ValueError(
            f"clip_overlap: expected 0 <= clip_overlap < clip_seconds ({options['clip_seconds']}), "
            f"got {options['clip_overlap']}"
        )
    if options["frames_per_second"] <= 0:
        raise ValueError(f"frames_per_second: expected a positive number, got {options['frames_per_second']}")
    if options["max_frames"] < 1:
        raise ValueError(f"max_frames: expected at least 1, got {options['max_frames']}")
    if options["max_pixels"] < 1:
        raise ValueError(f"max_pixels: expected a positive number of pixels, got {options['max_pixels']}")


plugin_info = PluginInfo(
    kind="model",
    modalities=("image", "text", "video"),
    options={
        "clip_seconds": Option((int, float), 10.0, "video: window length in seconds; one vector per window"),
        "clip_overlap": Option((int, float), 0.0, "video: seconds two consecutive windows share"),
        "frames_per_second": Option((int, float), 1.0, "video: frames sampled per second of a window"),
        "max_frames": Option(int, 32, "video: at most this many frames per window"),
        "max_pixels": Option(int, 89_478_485, "images with more pixels are refused (decompression bombs)"),
    },
    description="CLIP images and texts in one space (default openai/clip-vit-base-patch32, 512-d); video as mean of frames",
    validate=_validate,
)


@hookimpl
def load_model(spec):
    from embedline_clip import _backend

    return _backend.load(spec)


@hookimpl
def preprocess(model, items: Sequence, mode: str):
    from embedline_clip import _backend

    return _backend.preprocess(model, items, mode)


@hookimpl
def embed(model, inputs: Sequence, mode: str):
    from embedline_clip import _backend

    return _backend.embed(model, inputs, mode)
