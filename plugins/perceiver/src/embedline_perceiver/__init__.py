"""embedline plugin ``perceiver``: video with its sound through DeepMind's multimodal Perceiver IO.

Each clip of a video (``clip_seconds``, cut by the core with start/end times) is read as windows of
``num_frames`` consecutive frames at ``fps`` plus the matching audio; the Perceiver's input
preprocessor and encoder turn each window into a latent array, and the clip's vector is the mean
of the latents, averaged over its windows.  The reconstruction decoder is never run.

This module only declares the plugin; the work happens in ``_backend``, imported inside the hooks,
so listing plugins never imports torch, transformers or PyAV.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedline.contracts import Option, PluginInfo
from embedline.toolkit import model_hooks
from embedline_media import duration as media_duration

__version__ = "0.1.0"
DEFAULT_NAME = "deepmind/multimodal-perceiver"


def _validate(options: Mapping[str, Any]) -> None:
    clip, overlap, fps = options.get("clip_seconds"), options.get("clip_overlap") or 0.0, options.get("fps")
    if clip is not None and clip <= 0:
        raise ValueError(f"clip_seconds: expected a positive number of seconds, got {clip}")
    if overlap < 0:
        raise ValueError(f"clip_overlap: expected 0 or more seconds, got {overlap}")
    if clip is not None and overlap >= clip:
        raise ValueError(f"clip_overlap: {overlap} s must be shorter than clip_seconds ({clip} s)")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps: expected a positive frame rate, got {fps}")
    for key in ("num_frames", "image_size"):
        value = options.get(key)
        if value is not None and value < 1:
            raise ValueError(f"{key}: expected a positive number, got {value}")
    size = options.get("image_size")
    if size is not None and size % 4:
        raise ValueError(f"image_size: must be a multiple of 4 (the model reads 4x4 patches), got {size}")


plugin_info = PluginInfo(
    kind="model",
    modalities=("video",),
    options={
        "clip_seconds": Option((int, float), 2.0, "seconds of video per vector (one row per clip, with start and end)"),
        "clip_overlap": Option((int, float), 0.0, "seconds shared by consecutive clips"),
        "fps": Option(
            (int, float), 25.0, "frames per second the model reads (Kinetics videos, which it was trained on, are 25 fps)"
        ),
        "num_frames": Option(int, None, "frames per model window (default: the model's, 16)"),
        "image_size": Option(int, None, "frame size in pixels after a centre square crop (default: the model's, 224)"),
    },
    description="DeepMind multimodal Perceiver IO video+audio embeddings (deepmind/multimodal-perceiver, 512-d)",
    validate=_validate,
    duration=media_duration,
    model_sources=lambda spec: {"name": spec.name or DEFAULT_NAME},
)


load_model, preprocess, embed = model_hooks("embedline_perceiver._backend")
