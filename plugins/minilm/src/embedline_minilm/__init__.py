"""embedline plugin ``minilm``: text embeddings from any sentence-transformers model.

The default is all-MiniLM-L6-v2 (384-d).  This module only declares the plugin; the work happens in
``_backend``, imported inside the hooks, so listing plugins never pays for torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedline.contracts import Option, PluginInfo
from embedline.toolkit import model_hooks

__version__ = "0.1.0"


def _validate(options: Mapping[str, Any]) -> None:
    length = options.get("max_seq_length")
    if length is not None and length < 1:
        raise ValueError(f"max_seq_length: expected a positive number of tokens, got {length}")


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
    },
    description="Sentence-transformers text models (default all-MiniLM-L6-v2, 384-d)",
    validate=_validate,
)


load_model, preprocess, embed = model_hooks("embedline_minilm._backend")
