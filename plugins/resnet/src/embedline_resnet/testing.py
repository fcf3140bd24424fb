"""Random-weight ResNet checkpoints small enough to build per test session, for the resnet
plugin's tests, examples and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["build_tiny_resnet"]


def build_tiny_resnet(path: str | os.PathLike[str], seed: int = 0, *, image_size: int = 32) -> Path:
    """Save a two-stage random ResNet (16-d pooled output) with its image processor at ``path``.

    Saved as ``ResNetForImageClassification`` with a ``ConvNextImageProcessor`` config, like
    ``microsoft/resnet-50``, so the same loading code (classifier dropped, PIL processor) runs.
    Returns ``path``.
    """
    import torch
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetForImageClassification

    path = Path(path)
    config = ResNetConfig(hidden_sizes=[8, 16], depths=[1, 1], embedding_size=8, num_labels=4)
    torch.manual_seed(seed)
    ResNetForImageClassification(config).eval().save_pretrained(path)
    ConvNextImageProcessorPil(size={"shortest_edge": image_size}).save_pretrained(path)
    return path
