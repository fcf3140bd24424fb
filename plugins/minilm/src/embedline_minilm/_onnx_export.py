"""Where the onnx backend's ONNX file comes from: the model folder's ``onnx/model.onnx``, else an
export from the torch weights made once and cached, and the int8 quantization of either.

The cache is ``$EMBEDLINE_CACHE/minilm`` (else ``$XDG_CACHE_HOME/embedline/minilm``, else
``~/.cache/embedline/minilm``), one folder per model: a hash of its weights' revision and
``config.json``.  Files are written under a temporary name and renamed into place, so a crash or a
concurrent process never leaves a half-written model where a later load would pick it up.  An export is checked against the
torch model before it is kept.

This is the only module of the onnx backend that imports torch and transformers, and only when
there is something to export.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedline.errors import ModelSourceError
from embedline.toolkit import ResolvedSource, resolve_model_source
from embedline.toolkit import cache_root as toolkit_cache_root

from embedline_minilm import ONNX_INSTALL
from embedline_minilm._backend import first_line

log = logging.getLogger("embedline_minilm")

EXPORT_FORMAT = 1  # bump when an export would come out differently: old cache entries are then unused
EXPORT_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
RECORD_FILE = "export.json"
QUANTIZED = {"int8": "model.int8.onnx"}
FOLDER_ONNX = Path("onnx") / "model.onnx"  # where hub models keep theirs
# Checked after every export: shapes and values the export never saw (3 rows, padding, another length).
_CHECK_TEXTS = (
    "The quick brown fox jumps over the lazy dog.", "hello world", "a man is playing a guitar on the street",
)
_EXAMPLE_TEXTS = ("a cat sits on the mat", "the weather is nice today and the sun is out")


def cache_root() -> Path:
    return toolkit_cache_root("minilm")


def cache_dir(revision: str, config: Path) -> Path:
    """The cache folder of the weights whose revision (sha256 of the weight files, or hub commit) is
    given, with the transformer's ``config.json`` (same weights, another architecture setting: another
    export)."""
    digest = hashlib.sha256(f"{revision}\0onnx-export-{EXPORT_FORMAT}\0".encode())
    if config.is_file():
        digest.update(config.read_bytes())
    return cache_root() / digest.hexdigest()[:24]


def is_cached(path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(cache_root().resolve())
    except OSError:
        return False


def on_disk(resolved: ResolvedSource, spec) -> ResolvedSource:
    """``resolved`` with a local folder: a hub id not yet cached is downloaded first (only when the
    hub is reachable; ``resolve_model_source`` has already failed otherwise)."""
    if resolved.path is not None:
        return resolved
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=resolved.hub_id, revision=spec.revision)
    except Exception as exc:
        raise ModelSourceError(
            f"model {resolved.source!r}: cannot download it: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    return resolve_model_source(resolved.source, revision=spec.revision, base_dir=spec.base_dir)


def onnx_files(resolved: ResolvedSource, config, spec, *, quantize: str | None) -> tuple[Path, Path]:
    """The ONNX file to run and the tokenizer.json to read, exporting or quantizing on a cache miss."""
    folder = resolved.path
    assert folder is not None
    own = folder / FOLDER_ONNX
    cache = cache_dir(resolved.revision, config.transformer_dir / "config.json")
    tokenizer = config.tokenizer_file()
    if own.is_file():
        fp32, origin = own, "folder"
    else:
        fp32, origin = cache / EXPORT_FILE, "export"
        if not fp32.is_file():
            export(resolved, config, spec, cache)
    if tokenizer is None:
        tokenizer = cache / TOKENIZER_FILE  # written by the export from the slow tokenizer's files
        if not tokenizer.is_file():
            raise ModelSourceError(
                f"model {resolved.source!r}: backend \"onnx\" needs a tokenizer.json in {config.transformer_dir}; "
                "save the model with a fast tokenizer, or use backend = \"torch\""
            )
    if not quantize:
        return fp32, tokenizer
    target = cache / (QUANTIZED[quantize] if origin == "export" else f"folder-{QUANTIZED[quantize]}")
    if not target.is_file():
        _quantize(fp32, target, resolved.source, quantize)
    return target, tokenizer


@contextlib.contextmanager
def _scratch(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final``, deleted when the block ends."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _written(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final`` that becomes ``final`` if the block succeeds."""
    with _scratch(final) as tmp:
        yield tmp
        tmp.chmod(0o644)
        os.replace(tmp, final)


# -- export ----------------------------------------------------------------------------------


def export(resolved: ResolvedSource, config, spec, cache: Path) -> None:
    """Export the folder's transformer to ``cache/model.onnx`` (and its tokenizer, if the folder has
    no tokenizer.json), check it against torch, and keep it.  Raises :class:`ModelSourceError`
    naming the model when that is impossible."""
    source = resolved.source
    log.warning(
        "model %r: exporting it to ONNX for backend \"onnx\" (once; tens of seconds for MiniLM) into %s", source, cache
    )
    start = time.perf_counter()
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise ModelSourceError(
            f"model {source!r}: it has no onnx/model.onnx, and exporting one needs torch and transformers ({exc}); "
            f"install them ({ONNX_INSTALL}) or put an ONNX export in the model folder"
        ) from None
    try:
        with _quiet_exporter():
            folder = str(config.transformer_dir)
            model = AutoModel.from_pretrained(
                folder, local_files_only=True, trust_remote_code=spec.trust_remote_code
            ).eval()
            hf_tokenizer = AutoTokenizer.from_pretrained(
                folder, local_files_only=True, trust_remote_code=spec.trust_remote_code
            )
            wrapper = _wrap(model).eval()
            names = wrapper.input_names
            example = _batch(hf_tokenizer, _EXAMPLE_TEXTS, names)
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            with _written(cache / EXPORT_FILE) as tmp, torch.no_grad():
                torch.onnx.export(
                    wrapper,
                    tuple(example[n] for n in names),
                    str(tmp),
                    input_names=list(names),
                    output_names=["last_hidden_state"],
                    dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
                difference = _check(wrapper, hf_tokenizer, tmp, names)
                if config.tokenizer_file() is None:
                    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
                    if backend is not None:
                        with _written(cache / TOKENIZER_FILE) as tok:
                            tok.write_text(backend.to_str())
    except ModelSourceError:
        raise
    except Exception as exc:  # the exporter fails in many ways; the user needs the model and the way out
        raise ModelSourceError(
            f"model {source!r}: cannot export it to ONNX for backend \"onnx\": {type(exc).__name__}: "
            f"{first_line(exc)}; use backend = \"torch\", or put an ONNX export at onnx/model.onnx in the model folder"
        ) from exc
    record = {
        "source": source,
        "revision": resolved.revision,
        "torch": torch.__version__,
        "max_abs_difference": difference,
        "seconds": round(time.perf_counter() - start, 1),
    }
    with _written(cache / RECORD_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    log.warning("model %r: exported to %s in %.0f s", source, cache / EXPORT_FILE, record["seconds"])


def _wrap(model: Any) -> Any:
    """The transformer with plain tensor inputs and its last hidden state as the one output."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: Any):
            import inspect

            super().__init__()
            self.model = model
            accepted = inspect.signature(model.forward).parameters
            self.input_names = ("input_ids", "attention_mask") + (
                ("token_type_ids",) if "token_type_ids" in accepted and _type_vocab(model) > 1 else ()
            )

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    return LastHiddenState(model)


def _type_vocab(model: Any) -> int:
    return int(getattr(model.config, "type_vocab_size", 0) or 0)


def _batch(hf_tokenizer: Any, texts, names) -> dict[str, Any]:
    """Real token ids with padding: an export traced on all-ones inputs specializes wrongly."""
    encoded = hf_tokenizer(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt")
    if "token_type_ids" in names and "token_type_ids" not in encoded:
        import torch

        encoded["token_type_ids"] = torch.zeros_like(encoded["input_ids"])
    return {n: encoded[n] for n in names}


def _check(wrapper: Any, hf_tokenizer: Any, path: Path, names) -> float:
    """Largest difference between ONNX Runtime and torch on inputs the export never saw; an export
    that is off by more than float noise is refused."""
    import numpy as np
    import onnxruntime as ort
    import torch

    inputs = _batch(hf_tokenizer, _CHECK_TEXTS, names)
    with torch.no_grad():
        expected = wrapper(**inputs).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: inputs[n].numpy() for n in names})[0]
    difference = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    if not difference <= 1e-3 * scale:
        raise ValueError(
            f"the ONNX export differs from the torch model by {difference:.3g} (hidden states up to {scale:.3g})"
        )
    return difference


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's warnings and notes ("torchvision is not installed", deprecations) are not the
    user's business: silenced for the export only, then the levels are put back."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    saved = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, saved):
            logger.setLevel(level)


# -- quantization ----------------------------------------------------------------------------


def _quantize(fp32: Path, target: Path, source: str, kind: str) -> None:
    log.warning("model %r: quantizing its ONNX model to %s (once) into %s", source, kind, target)
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelSourceError(
            f"model {source!r}: quantize = {kind!r} needs onnxruntime's quantization tools ({exc}); "
            f"{ONNX_INSTALL}"
        ) from None
    try:
        # Weights per output channel: on all-MiniLM-L6-v2 the mean cosine to the fp32 vectors is 0.99
        # (0.96 per tensor) for the same speed.  Pre-processing (shape inference, fusions) first.
        with _quiet_exporter(), _scratch(target) as pre, _written(target) as tmp:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:
        raise ModelSourceError(
            f"model {source!r}: cannot quantize {fp32} to {kind}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
