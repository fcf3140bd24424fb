"""embedline plugin ``resnet``: image embeddings from ResNet-50 and other image backbones.

The default is ``microsoft/resnet-50`` through transformers: the pooled output of the last stage
(the layer before the classifier), 2048-d.  Any transformers image backbone works by hub id or
folder, and ``backend = "torchhub"`` loads ``resnet50`` from ``pytorch/vision``.  Videos are
embedded as the mean of frames sampled from each window.  This module only declares the plugin;
the work happens in ``_backend``, imported inside the hooks, so listing plugins never pays for torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedline.contracts import Option, PluginInfo
from embedline.toolkit import model_hooks
from embedline_media import duration as media_duration
from embedline_media.frames import VIDEO_OPTIONS, validate_video_options

__version__ = "0.1.0"
DEFAULT_NAME = "microsoft/resnet-50"


def _validate(options: Mapping[str, Any]) -> None:
    validate_video_options(options)
    size = options.get("image_size")
    if size is not None and size < 8:
        raise ValueError(f"image_size: expected at least 8 pixels, got {size}")
    if options["backend"] == "torchhub" and options["pooling"] == "mean":
        raise ValueError('pooling: the torchhub backend returns pooled features; use "auto"')


plugin_info = PluginInfo(
    kind="model",
    modalities=("image", "video"),
    options={
        "backend": Option(str, "transformers", "where the model comes from", choices=("transformers", "torchhub")),
        "pooling": Option(
            str,
            "auto",
            "auto: the model's pooled output if it has one, else the mean over spatial positions",
            choices=("auto", "pooler", "mean"),
        ),
        "image_size": Option(int, None, "input side in pixels (default: the model's processor, 224 for ResNet-50)"),
        "hub_model": Option(str, "resnet50", "torchhub: the entry point to load"),
        "hub_weights": Option(str, "IMAGENET1K_V2", "torchhub: the weights to ask the entry point for"),
        **VIDEO_OPTIONS,
    },
    description="ResNet-50 and other image backbones (default microsoft/resnet-50, 2048-d); video as mean of frames",
    validate=_validate,
    duration=media_duration,
    # the torchhub backend finds its repository itself (embedline_resnet._torchhub)
    model_sources=lambda spec: {} if spec.option("backend") == "torchhub" else {"name": spec.name or DEFAULT_NAME},
)


load_model, preprocess, embed = model_hooks("embedline_resnet._backend")
