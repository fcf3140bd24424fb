"""The clip plugin's :class:`~embedline.contracts.TokenCounter`: the folder's ``tokenizer.json``
and CLIP's text context (77 tokens for OpenAI's models), read without torch or the weights, so
that ``chunk = { by = "structure" }`` packs texts to what CLIP's text tower takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embedline.toolkit import resolve_model_source, tokenizer_file_counter


def counter(spec, default_name: str) -> Any:
    """The counter of the CLIP model ``spec`` names, or None when it is not in a local folder
    with a ``tokenizer.json`` (a hub id not cached yet: the core then counts words)."""
    resolved = resolve_model_source(spec.name or default_name, revision=spec.revision, base_dir=spec.base_dir)
    if resolved.path is None:
        return None
    folder = Path(resolved.path)
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    context = int(_read(folder / "config.json").get("text_config", {}).get("max_position_embeddings") or 77)
    limit = _read(folder / "tokenizer_config.json").get("model_max_length")
    if isinstance(limit, int) and 0 < limit < context:
        context = limit
    return tokenizer_file_counter(path, context)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
