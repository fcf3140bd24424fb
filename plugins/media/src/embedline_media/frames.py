"""Images and video frames through an image model: the part the image plugins (resnet, clip) share.

A plugin hands over its own pixel preparation (``prepare``: PIL images to a float32
``(N, 3, H, W)`` array) and feature function (a pixel tensor to ``(N, dim)`` vectors); this module
does the rest the same way for all of them: the video options (:data:`VIDEO_OPTIONS`, checked by
:func:`validate_video_options`), the video settings that go into ``Model.segment`` and the
fingerprint (:func:`video_settings`), decoding items into per-item frame arrays with one failed
file failing alone (:func:`preprocess_items`), and forwarding frames in chunks and averaging them
per item (:func:`embed_frames`).  Decoding itself is :func:`embedline_media.image.item_frames`.

numpy and torch are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from embedline.contracts import Failed, Item, Model, Option

from embedline_media import MediaError
from embedline_media.image import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "VIDEO_OPTIONS",
    "describe_processor",
    "embed_frames",
    "preprocess_items",
    "validate_video_options",
    "video_settings",
]

#: The plugin options this module reads, for an image plugin's ``PluginInfo.options``.
VIDEO_OPTIONS = {
    "clip_seconds": Option((int, float), 10.0, "video: window length in seconds; one vector per window"),
    "clip_overlap": Option((int, float), 0.0, "video: seconds two consecutive windows share"),
    "frames_per_second": Option((int, float), 1.0, "video: frames sampled per second of a window"),
    "max_frames": Option(int, 32, "video: at most this many frames per window"),
    "max_pixels": Option(int, DEFAULT_MAX_PIXELS, "images with more pixels are refused (decompression bombs)"),
}


def validate_video_options(options: Mapping[str, Any]) -> None:
    """The checks of :data:`VIDEO_OPTIONS` for a plugin's ``validate``; raises ``ValueError("key: message")``."""
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


def video_settings(
    spec, plugin_modalities: Sequence[str]
) -> tuple[tuple[float, float] | None, dict[str, Any]]:
    """``Model.segment`` and the fingerprint settings for videos, if this model embeds video.

    ``plugin_modalities`` are what the plugin embeds when the pipeline names no ``modalities``.  An
    image-only pipeline (``modalities = ["image"]``) keeps the video settings out of its
    fingerprint, so tuning the video windows never invalidates a collection of images.  The
    options read (``clip_seconds``, ``clip_overlap``, ``frames_per_second``, ``max_frames``) must
    be declared by the plugin (:data:`VIDEO_OPTIONS`).
    """
    modalities = spec.modalities if spec.modalities is not None else plugin_modalities
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
    from embedline_media.image import item_frames

    spec = model.spec
    fps = float(spec.option("frames_per_second", 1.0)) if spec else 1.0
    max_frames = int(spec.option("max_frames", 32)) if spec else 32
    max_pixels = int(spec.option("max_pixels", DEFAULT_MAX_PIXELS)) if spec else DEFAULT_MAX_PIXELS
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


def describe_processor(processor: Any, keys: Sequence[str]) -> str:
    """One line naming a transformers image processor and its ``keys`` settings, for a fingerprint."""
    config = processor.to_dict()
    parts = [type(processor).__name__]
    for key in keys:
        value = config.get(key)
        if value is not None:
            parts.append(f"{key}={_compact(value)}")
    return " ".join(parts)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{_compact(v)}" for k, v in sorted(value.items()) if v is not None)
    if isinstance(value, (list, tuple)):
        return "/".join(_compact(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _stacked(frames: list[np.ndarray]) -> np.ndarray:
    """``np.stack(frames)``, without the copy when the frames are consecutive rows of one array.

    They usually are: preprocess hands out slices of the image processor's batch array, in order.
    """
    import numpy as np

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
