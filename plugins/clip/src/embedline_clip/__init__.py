"""embedline plugin ``clip``: images, texts (and video frames) in one CLIP vector space.

The default is ``openai/clip-vit-base-patch32`` (512-d); ``openai/clip-vit-large-patch14`` (768-d)
and any other ``CLIPModel`` work by hub id or folder.  A collection filled with image vectors can be
searched with a text query, or with an image.  This module only declares the plugin; the work
happens in ``_backend``, imported inside the hooks, so listing plugins never pays for torch.
"""

from __future__ import annotations

from typing import Any

from embedline.contracts import PluginInfo
from embedline.toolkit import model_hooks
from embedline_media import duration as media_duration
from embedline_media.frames import VIDEO_OPTIONS, validate_video_options

__version__ = "0.1.0"
DEFAULT_NAME = "openai/clip-vit-base-patch32"


plugin_info = PluginInfo(
    kind="model",
    modalities=("image", "text", "video"),
    options=dict(VIDEO_OPTIONS),
    description="CLIP images and texts in one space (default openai/clip-vit-base-patch32, 512-d); video as mean of frames",
    validate=validate_video_options,
    duration=media_duration,
    model_sources=lambda spec: {"name": spec.name or DEFAULT_NAME},
    tokenizer=lambda spec: _token_counter(spec),
)


def _token_counter(spec: Any) -> Any:
    from embedline_clip._tokens import counter

    return counter(spec, DEFAULT_NAME)


load_model, preprocess, embed = model_hooks("embedline_clip._backend")
