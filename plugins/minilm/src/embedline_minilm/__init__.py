"""embedline plugin ``minilm``: text embeddings from any sentence-transformers model.

The default is all-MiniLM-L6-v2 (384-d).  This module only declares the plugin; the work happens in
``_backend``, imported inside the hooks, so listing plugins never pays for torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedline.contracts import Option, PluginInfo
from embedline.toolkit import model_hooks

__version__ = "0.1.0"
DEFAULT_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ONNX_INSTALL = "`pip install 'embedline-minilm[onnx]'`"


def model_name(spec: Any) -> str:
    """The source ``load_model`` resolves: the default when ``name`` is not set, and
    ``all-MiniLM-L6-v2`` meaning ``sentence-transformers/all-MiniLM-L6-v2``, as in sentence-transformers."""
    name = spec.name or DEFAULT_NAME
    if "/" in name or ":" in name or name.startswith((".", "~")) or (Path(spec.base_dir) / name).exists():
        return name
    return f"sentence-transformers/{name}"


def _validate(options: Mapping[str, Any]) -> None:
    length = options.get("max_seq_length")
    if length is not None and length < 1:
        raise ValueError(f"max_seq_length: expected a positive number of tokens, got {length}")
    if options.get("quantize") and options.get("backend", "torch") != "onnx":
        raise ValueError(f'quantize: {options["quantize"]!r} needs backend = "onnx"')
    threads = options.get("threads")
    if threads is not None and threads < 1:
        raise ValueError(f"threads: expected a positive number of threads, got {threads}")
    if options.get("backend") == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise ValueError(f'backend: "onnx" needs onnxruntime, which is not installed: {ONNX_INSTALL}')


plugin_info = PluginInfo(
    kind="model",
    modalities=("text",),
    options={
        "max_seq_length": Option(
            int, None, "tokens per input, special tokens included; longer inputs are cut (default: the model's own)"
        ),
        "query_prompt": Option(
            str, None, "text put before every query (default: the model's saved 'query' prompt, else none)"
        ),
        "document_prompt": Option(
            str, None, "text put before every document (default: the model's saved 'document' prompt, else none)"
        ),
        "backend": Option(
            str, "torch", "torch (sentence-transformers) or onnx (ONNX Runtime + tokenizers, no torch at embed time)",
            choices=("torch", "onnx"),
        ),
        "quantize": Option(
            str, None, "onnx only: int8 quantizes the model once (faster, smaller, other vectors)", choices=("int8",)
        ),
        "threads": Option(int, None, "onnx only: ONNX Runtime intra-op threads (default: this machine's cores)"),
    },
    description="Sentence-transformers text models (default all-MiniLM-L6-v2, 384-d)",
    validate=_validate,
    model_sources=lambda spec: {"name": model_name(spec)},
    tokenizer=lambda spec: _token_counter(spec),
)


def _token_counter(spec: Any) -> Any:
    from embedline_minilm._tokens import counter

    return counter(spec)


load_model, preprocess, embed = model_hooks("embedline_minilm._backend")
