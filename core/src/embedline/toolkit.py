"""Helpers for writing plugins: where weights come from, which device to use, hooks from a backend.

Part of the plugin API (see ``docs/hooks.md``): plugins may import from this module, and its names
keep their meaning across releases.

* :func:`resolve_model_source` / :class:`ResolvedSource` / :func:`pin_downloaded` /
  :func:`weights_hash` — a hub id, a local folder or ``package:NAME`` to a folder and a revision,
  with no network unless the hub answers; :func:`file_sha256` (a file's hash, remembered between
  processes while its size, inode and times are unchanged).
* :func:`cache_root` — the folder for a plugin's rebuildable files (``$EMBEDLINE_CACHE/<name>``, else
  ``~/.cache/embedline/<name>``).
* :func:`resolve_device` / :func:`parse_device` — the ``device`` key of a model section.
* :func:`model_hooks` — the three model hooks of a plugin whose work lives in a lazily imported
  backend module, so the plugin's own module stays a declaration.
* :func:`nearest` / :data:`METRICS` (from :mod:`embedline.exact`) — exact nearest neighbours in
  NumPy, scored as the store contract wants, for a store whose database has no vector search.
* :func:`redact_uri` / :func:`redact_uris_in` (from :mod:`embedline.uris`) — a URI (or every URI in
  a message) with the password and token-like query parameters shown as ``***``.
* :func:`tokenizer_file_counter` — a :class:`~embedline.contracts.TokenCounter` from a
  ``tokenizer.json`` (the ``tokenizers`` library, imported when called), for ``PluginInfo.tokenizer``.

Importing this module imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from embedline import hookimpl
from embedline.devices import parse_device, resolve_device
from embedline.exact import METRICS, nearest
from embedline.modelsource import (
    ResolvedSource,
    cache_root,
    file_sha256,
    pin_downloaded,
    resolve_model_source,
    weights_hash,
)
from embedline.uris import redact_uri, redact_uris_in

__all__ = [
    "METRICS",
    "ResolvedSource",
    "cache_root",
    "file_sha256",
    "model_hooks",
    "nearest",
    "parse_device",
    "pin_downloaded",
    "redact_uri",
    "redact_uris_in",
    "resolve_device",
    "resolve_model_source",
    "tokenizer_file_counter",
    "weights_hash",
]


def model_hooks(backend: str) -> tuple[Any, Any, Any]:
    """``load_model``, ``preprocess`` and ``embed`` hook implementations that call the functions
    ``load(spec)``, ``preprocess(model, items, mode)`` and ``embed(model, inputs, mode)`` of the
    module ``backend``, importing it on first call::

        from embedline.toolkit import model_hooks

        load_model, preprocess, embed = model_hooks("embedline_mymodel._backend")

    The backend may import torch and friends at its top: nothing imports it until a pipeline
    loads a model, so ``embedline plugins`` and ``--help`` stay fast.
    """

    def module() -> Any:
        return importlib.import_module(backend)

    @hookimpl
    def load_model(spec: Any) -> Any:
        return module().load(spec)

    @hookimpl
    def preprocess(model: Any, items: Sequence[Any], mode: str) -> Any:
        return module().preprocess(model, items, mode)

    @hookimpl
    def embed(model: Any, inputs: Sequence[Any], mode: str) -> Any:
        return module().embed(model, inputs, mode)

    return load_model, preprocess, embed


class _FileTokens:
    """Counts tokens with a ``tokenizers`` tokenizer, special tokens left out (see
    :func:`tokenizer_file_counter`)."""

    def __init__(self, tokenizer: Any, *, max_length: int, prompt: str, lower: bool, file_hash: str):
        self._tokenizer, self._lower = tokenizer, lower
        specials = tokenizer.num_special_tokens_to_add(False)
        prompt_tokens = self.count([prompt])[0] if prompt else 0
        self.limit = max(1, max_length - specials - prompt_tokens)
        self.identity = f"{file_hash[:16]}/{self.limit}/lower={int(lower)}"

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        texts = [t.lower() for t in texts] if self._lower else list(texts)
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def __repr__(self) -> str:
        return f"<TokenCounter limit={self.limit} {self.identity}>"


def tokenizer_file_counter(path: Any, max_length: int, *, prompt: str = "", lower: bool = False) -> Any:
    """A :class:`~embedline.contracts.TokenCounter` for a model whose tokenizer is the
    ``tokenizer.json`` at ``path`` and that accepts ``max_length`` tokens, special tokens included.

    Its ``limit`` is ``max_length`` less the tokenizer's special tokens and the tokens of
    ``prompt`` (a document prompt the model puts before every text); ``lower`` lower-cases texts
    first, as models with ``do_lower_case`` do.  Its ``identity`` is the file's hash and the limit.
    Imports ``tokenizers`` (a Rust library, no torch) when called; thread-safe."""
    from pathlib import Path

    from tokenizers import Tokenizer

    path = Path(path)
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return _FileTokens(tokenizer, max_length=max_length, prompt=prompt, lower=lower, file_hash=file_sha256(path))
