"""embedline plugin ``model2vec``: Model2Vec static text embeddings, and offline distillation.

A static model looks up one vector per token and averages them: no transformer at embedding time,
about a hundred times faster than MiniLM on a CPU.  This module only declares the plugin; the work
happens in ``_backend``, imported inside the hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedline.contracts import Option, PluginInfo
from embedline.toolkit import model_hooks

__version__ = "0.1.0"
DEFAULT_NAME = "minishlab/potion-base-8M"


def model_name(spec: Any) -> str:
    """The model ``load_model`` resolves: the default when ``name`` is not set, and ``potion-base-8M``
    meaning ``minishlab/potion-base-8M`` unless a folder of that name exists."""
    name = spec.name or DEFAULT_NAME
    if name.startswith("potion-") and "/" not in name and not (Path(spec.base_dir) / name).exists():
        return f"minishlab/{name}"
    return name


def _model_sources(spec: Any) -> dict[str, str]:
    teacher = spec.option("distill_from")
    return {"distill_from": teacher} if teacher else {"name": model_name(spec)}


def _validate(options: Mapping[str, Any]) -> None:
    if options.get("distill_from") and options.get("name"):
        raise ValueError("distill_from: set either `name` (a Model2Vec model) or `distill_from` (a teacher to distill), not both")
    for key in ("pca_dims", "max_length"):
        value = options.get(key)
        if value is not None and value < 1:
            raise ValueError(f"{key}: expected a positive integer, got {value}")


plugin_info = PluginInfo(
    kind="model",
    modalities=("text",),
    options={
        "distill_from": Option(
            str,
            None,
            "distill a static model from this local sentence-transformer (folder or package:NAME) "
            "instead of loading `name`; the result is cached",
        ),
        "pca_dims": Option(int, 256, "dimensions of a distilled model (PCA); only with distill_from"),
        "cache_dir": Option(
            str,
            None,
            "where distilled models are kept (default: $EMBEDLINE_CACHE/model2vec or ~/.cache/embedline/model2vec)",
        ),
        "max_length": Option(
            int, None, "tokens per input; longer inputs are cut (default: the model's own, usually 512)"
        ),
    },
    description="Model2Vec static text embeddings (default potion-base-8M, 256-d); distills one offline from a local sentence-transformer",
    validate=_validate,
    model_sources=_model_sources,
)


load_model, preprocess, embed = model_hooks("embedline_model2vec._backend")
