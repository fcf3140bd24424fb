"""Build a small random multimodal Perceiver IO checkpoint: what the perceiver plugin's tests embed
videos with, since no real weights exist offline."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_tiny_perceiver"]


def build_tiny_perceiver(
    path: str | os.PathLike[str],
    *,
    image_size: int = 16,
    num_frames: int = 2,
    audio_samples_per_frame: int = 64,
    num_latents: int = 16,
    d_latents: int = 32,
    seed: int = 0,
) -> Path:
    """Save a random ``PerceiverForMultimodalAutoencoding`` (the architecture of
    deepmind/multimodal-perceiver) with small frames, few latents and one self-attention layer.

    The input preprocessors (Fourier position encodings over frames x pixels and audio samples) and
    the reconstruction decoders are built as in the real model; only the sizes shrink.  Returns ``path``.
    """
    import torch
    from transformers import PerceiverConfig, PerceiverForMultimodalAutoencoding

    path = Path(path)
    config = PerceiverConfig(
        num_latents=num_latents,
        d_latents=d_latents,
        d_model=d_latents,
        num_blocks=1,
        num_self_attends_per_block=1,
        num_self_attention_heads=2,
        num_cross_attention_heads=1,
        image_size=image_size,
        num_frames=num_frames,
        audio_samples_per_frame=audio_samples_per_frame,
        samples_per_patch=16,
        output_shape=[1, num_frames, image_size, image_size],
        output_num_channels=16,
        num_labels=8,
    )
    config._label_trainable_num_channels = 16
    torch.manual_seed(seed)
    PerceiverForMultimodalAutoencoding(config).eval().save_pretrained(path)
    return path
