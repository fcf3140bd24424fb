"""What both backends share: the device, video settings, items to pixel arrays, frames to vectors.

Imported only from hooks (it imports torch lazily too, but numpy eagerly).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from embedline.contracts import Failed, Item, Model
from embedline.errors import ConfigError
from embedline.media import MediaError

PLUGIN_MODALITIES = ("image", "video")


def resolve_device(requested: str, key: str = "model") -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist on this machine.

    The same rules as the minilm plugin's (plugins do not import each other).
    """
    import torch

    wanted = (requested or "auto").strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if wanted == "cpu":
        return "cpu"
    if re.fullmatch(r"cuda(:\d+)?", wanted):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(wanted.partition(":")[2] or 0) >= count:
            seen = f"{count} CUDA device(s)" if count else f"no CUDA device (torch {torch.__version__})"
            raise ConfigError(
                f'device {requested!r} is not available: torch sees {seen}; use "auto" or "cpu"', key=f"{key}.device"
            )
        return wanted
    if wanted == "mps":
        if not mps_ok:
            raise ConfigError(
                'device \'mps\' is not available on this machine; use "auto" or "cpu"', key=f"{key}.device"
            )
        return "mps"
    raise ConfigError(f"unknown device {requested!r}; expected auto, cpu, cuda, cuda:N or mps", key=f"{key}.device")


def video_settings(spec) -> tuple[tuple[float, float] | None, dict[str, Any]]:
    """``Model.segment`` and the fingerprint settings for videos, if this model embeds video.

    An image-only pipeline (``modalities = ["image"]``) keeps them out of its fingerprint, so tuning
    the video windows never invalidates a collection of images.
    """
    modalities = spec.modalities if spec.modalities is not None else PLUGIN_MODALITIES
    if "video" not in modalities:
        return None, {}
    seconds, overlap = float(spec.option("clip_seconds")), float(spec.option("clip_overlap"))
    return (seconds, overlap), {
        "clip_seconds": seconds,
        "clip_overlap": overlap,
        "frames_per_second": float(spec.option("frames_per_second")),
        "max_frames": int(spec.option("max_frames")),
        "video_pooling": "mean of frames",
    }


def preprocess_items(model: Model, items: Sequence[Item], prepare: Callable[[list[Any]], np.ndarray]) -> list[Any]:
    """One ``(frames, 3, H, W)`` float32 array per item (1 frame for an image), or ``Failed``.

    Decoding happens here, per item, so one bad file fails alone; the processor then runs once over
    all good frames of the batch.  Nothing shared is written: safe in worker threads.
    """
    from embedline.media.image import item_frames

    spec = model.spec
    fps = float(spec.option("frames_per_second", 1.0)) if spec else 1.0
    max_frames = int(spec.option("max_frames", 32)) if spec else 32
    max_pixels = int(spec.option("max_pixels", 89_478_485)) if spec else 89_478_485
    out: list[Any] = []
    frames: list[Any] = []
    counts: list[int] = []
    for item in items:
        if item.modality not in ("image", "video"):
            out.append(Failed(f"{model.plugin or 'this model'} embeds images and video, not {item.modality}"))
            continue
        try:
            pictures = item_frames(item, fps=fps, max_frames=max_frames, max_pixels=max_pixels)
        except MediaError as exc:
            out.append(Failed(str(exc)))
            continue
        out.append(None)  # filled below
        frames.extend(pictures)
        counts.append(len(pictures))
    if not frames:
        return out
    pixels = prepare(frames)
    start, k = 0, 0
    for i, value in enumerate(out):
        if value is None:
            out[i] = pixels[start : start + counts[k]]
            start, k = start + counts[k], k + 1
    return out


def embed_frames(model: Model, inputs: Sequence[np.ndarray], features: Callable[[Any], Any], device: str) -> np.ndarray:
    """Vectors for preprocessed inputs: frames forwarded in chunks of ``batch_size``, averaged per input.

    With ``normalize`` every frame is normalised before the mean and the mean again after, so each
    frame of a video window counts the same.
    """
    import torch

    counts = [len(x) for x in inputs]
    chunk = model.spec.batch_size if model.spec is not None else 32
    frames = [f for x in inputs for f in x]
    rows: list[Any] = [None] * len(frames)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):  # a processor without a crop can give differing sizes
        by_shape.setdefault(tuple(frame.shape), []).append(i)
    with torch.inference_mode():
        for indices in by_shape.values():
            for start in range(0, len(indices), chunk):
                part = indices[start : start + chunk]
                batch = torch.from_numpy(_stacked([frames[i] for i in part])).to(device)
                vectors = features(batch).float().cpu()
                for i, vector in zip(part, vectors):
                    rows[i] = vector
        matrix = torch.stack(rows)
        if model.normalized:
            matrix = torch.nn.functional.normalize(matrix, dim=-1)
        out, start = [], 0
        for n in counts:
            out.append(matrix[start : start + n].mean(dim=0))
            start += n
        result = torch.stack(out)
        if model.normalized:
            result = torch.nn.functional.normalize(result, dim=-1)
    return result.numpy()


def _stacked(frames: list[np.ndarray]) -> np.ndarray:
    """``np.stack(frames)``, without the copy when the frames are consecutive rows of one array.

    They usually are: preprocess hands out slices of the image processor's batch array, in order.
    """
    owner = frames[0].base
    if owner is not None and owner.flags.c_contiguous and owner.dtype == frames[0].dtype:
        size = frames[0].nbytes
        first = frames[0].__array_interface__["data"][0]
        offset = first - owner.__array_interface__["data"][0]
        consecutive = all(
            f.base is owner and f.__array_interface__["data"][0] == first + i * size for i, f in enumerate(frames)
        )
        if consecutive and offset % size == 0 and owner.nbytes % size == 0:
            rows = owner.reshape(-1, *frames[0].shape)
            return rows[offset // size : offset // size + len(frames)]
    return np.stack(frames)
