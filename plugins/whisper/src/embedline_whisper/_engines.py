"""The two ways to run Whisper's encoder: transformers (PyTorch) and CTranslate2.

Each engine is a callable taking log-mel features ``(N, n_mels, 2 * positions)`` and returning the
encoder states ``(N, positions, dim)`` as float32 numpy.  Both are safe to call from several
threads: neither keeps per-call state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from embedline.errors import ConfigError, ModelSourceError
from embedline.toolkit import ResolvedSource, parse_device, resolve_device


@attrs.frozen
class Engine:
    run: Any = attrs.field(repr=False)  # features -> states
    extractor: Any = attrs.field(repr=False)  # a WhisperFeatureExtractor matching the encoder
    dim: int
    positions: int  # encoder positions per window (1500 for real models)
    settings: dict[str, Any] = attrs.field(factory=dict)

    @property
    def window_seconds(self) -> float:
        return self.extractor.n_samples / self.extractor.sampling_rate


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_ctranslate2_folder(path: Path) -> bool:
    """CTranslate2 folders hold model.bin and a config.json without a transformers ``model_type``."""
    config = path / "config.json"
    if not (path / "model.bin").is_file() or not config.is_file():
        return False
    try:
        return "model_type" not in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def _extractor(path: Path | None, n_mels: int, positions: int | None) -> Any:
    """The folder's own feature extractor if it has one, else Whisper's defaults for ``n_mels``.

    ``positions`` (when known) is the encoder's length; the extractor must make twice as many frames.
    """
    from transformers import WhisperFeatureExtractor

    if path is not None and (path / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(str(path), local_files_only=True)
    elif positions is not None:
        hop, rate = 160, 16000
        extractor = WhisperFeatureExtractor(feature_size=n_mels, chunk_length=2 * positions * hop // rate)
    else:
        extractor = WhisperFeatureExtractor(feature_size=n_mels)
    if extractor.feature_size != n_mels or (positions is not None and extractor.nb_max_frames != 2 * positions):
        raise ModelSourceError(
            f"the feature extractor makes {extractor.feature_size} x {extractor.nb_max_frames} mel frames, "
            f"the encoder takes {n_mels} x {2 * positions if positions else 'any'}"
        )
    return extractor


# -- transformers ------------------------------------------------------------------------------


def load_transformers(resolved: ResolvedSource, spec: Any) -> Engine:
    import torch
    from transformers import WhisperModel

    if resolved.path is not None and _is_ctranslate2_folder(resolved.path):
        raise ModelSourceError(
            f"model {resolved.source!r} is a CTranslate2 model; set backend = \"ctranslate2\" to use it"
        )
    device = resolve_device(spec.device, spec.key)
    try:
        # float32 whatever the checkpoint stores: half precision is slow or missing on CPU, and the
        # vectors must not depend on how a checkpoint happened to be saved.
        if resolved.path is not None:
            whole = WhisperModel.from_pretrained(str(resolved.path), local_files_only=True, dtype=torch.float32)
        else:
            whole = WhisperModel.from_pretrained(resolved.hub_id, revision=spec.revision, dtype=torch.float32)
    except Exception as exc:  # any loader failure becomes one line naming the model
        raise ModelSourceError(
            f"model {resolved.source!r}: cannot load a Whisper model from {resolved.location}: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    # Keep the encoder only: the decoder is never run, and dropping it frees half the memory.
    encoder = whole.get_encoder().eval().to(device)
    config = whole.config
    del whole
    extractor = _extractor(resolved.path, config.num_mel_bins, config.max_source_positions)

    def run(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensor = torch.from_numpy(features).to(device=device, dtype=encoder.dtype)
            states = encoder(input_features=tensor).last_hidden_state
        return states.float().cpu().numpy()

    return Engine(
        run=run,
        extractor=extractor,
        dim=int(config.d_model),
        positions=int(config.max_source_positions),
        settings={"backend": "transformers"},
    )


# -- CTranslate2 ---------------------------------------------------------------------------------


def _ct2_device(requested: str, key: str) -> tuple[str, int]:
    """CTranslate2's device and index: the core's device names, checked against what CTranslate2 sees.

    Not :func:`embedline.toolkit.resolve_device`: CTranslate2 has its own CUDA runtime (a CPU-only
    torch does not mean CTranslate2 has no GPU, nor the reverse), and it does not run on mps.
    """
    import ctranslate2

    kind, index = parse_device(requested, key)
    cuda = ctranslate2.get_cuda_device_count()
    if kind == "auto":
        return ("cuda", 0) if cuda else ("cpu", 0)
    if kind == "cpu":
        return "cpu", 0
    if kind == "cuda" and (index or 0) < cuda:
        return "cuda", index or 0
    raise ConfigError(
        f"device {requested!r} is not available to CTranslate2 here ({cuda} CUDA device(s)); use \"auto\" or \"cpu\"",
        key=f"{key}.device",
    )


def load_ctranslate2(resolved: ResolvedSource, spec: Any) -> Engine:
    try:
        import ctranslate2
    except ImportError:
        raise ModelSourceError(
            "backend \"ctranslate2\" needs the ctranslate2 package: pip install \"embedline-whisper[ctranslate2]\""
        ) from None
    if resolved.path is None:
        raise ModelSourceError(f"model {resolved.source!r}: the ctranslate2 backend loads from a folder or package")
    device, index = _ct2_device(spec.device, spec.key)
    compute_type = spec.option("compute_type") or "auto"
    if compute_type == "auto":
        # "default" keeps the saved type; a float16 model on CPU then falls back to float32 with a
        # warning on every load.  Asking for float32 gives the same numbers without the warning.
        compute_type = "float32" if device == "cpu" else "default"
    try:
        model = ctranslate2.models.Whisper(
            str(resolved.path), device=device, device_index=index, compute_type=compute_type,
            intra_threads=spec.option("threads") or 0,
        )
    except (RuntimeError, ValueError) as exc:
        raise ModelSourceError(
            f"model {resolved.source!r}: cannot load a CTranslate2 Whisper model from {resolved.path}: {_first_line(exc)}"
        ) from exc
    # The converter records neither the window nor the state size: the window comes from the
    # folder's preprocessor_config.json when there is one (else Whisper's 30 s), and the state size
    # from a one-window probe, which also checks that the two agree.
    extractor = _extractor(resolved.path, model.n_mels, None)
    probe = np.zeros((1, model.n_mels, extractor.nb_max_frames), dtype=np.float32)
    try:
        dim = int(_ct2_run(model, probe).shape[-1])
    except (RuntimeError, ValueError) as exc:
        raise ModelSourceError(
            f"model {resolved.source!r}: the encoder rejects a {extractor.chunk_length} s window of "
            f"{extractor.nb_max_frames} mel frames ({_first_line(exc)})"
        ) from exc

    def run(features: np.ndarray) -> np.ndarray:
        return _ct2_run(model, features)

    return Engine(
        run=run,
        extractor=extractor,
        dim=dim,
        positions=extractor.nb_max_frames // 2,
        settings={"backend": "ctranslate2", "compute_type": compute_type},
    )


def _ct2_run(model: Any, features: np.ndarray) -> np.ndarray:
    import ctranslate2

    view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
    return np.asarray(model.encode(view, to_cpu=True), dtype=np.float32)
