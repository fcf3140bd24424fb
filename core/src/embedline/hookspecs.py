"""The hook specifications: the whole contract between the core and its plugins.

Calling convention (for every hook below): the core calls the hook on **one** plugin, the one a
pipeline section names with ``plugin = "..."`` (for ``preprocess``/``embed``: the plugin that loaded
the model).  Wrappers (``@hookimpl(wrapper=True)``) from any registered plugin run around it, so a
plugin can observe or time another's work.  Every hook is ``firstresult``: the first non-None result
is the answer; a named plugin that returns None is an error.

Implementations must not import heavy libraries (torch, transformers, ...) at module import time;
import them inside the hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from embedline.contracts import Block, Executor, ExecutorSpec, Item, Model, ModelSpec, StoreSpec, VectorStore

hookspec = pluggy.HookspecMarker("embedline")


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_model(spec: ModelSpec) -> Model | None:
    """Load the model a ``[model]`` section describes and return it as a :class:`Model`.

    ``spec.name`` is the model source as the user wrote it; resolve it with
    :func:`embedline.toolkit.resolve_model_source` (hub id, local folder or ``package:NAME``).
    ``spec.options`` holds the plugin's own keys, already type-checked against its ``plugin_info``,
    with defaults filled in.  Raise :class:`embedline.errors.ModelSourceError` when the model cannot
    be found, naming the source and how to point at a local copy.

    Called once per model section, on the plugin the section names.  Stops at first non-None result.
    """


@hookspec(firstresult=True)
def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any] | None:
    """Turn a batch of items into model inputs, one per item, in order.

    ``mode`` is ``"document"`` (ingest) or ``"query"`` (search).  For an item that cannot be used
    (undecodable, wrong modality, ...) put :class:`embedline.contracts.Failed` with the reason in
    its slot instead of raising: the rest of the batch goes on.  Must be safe to run in a worker
    thread while ``embed`` runs on another batch.

    Called on the plugin that loaded ``model``.  Stops at first non-None result.
    """


@hookspec(firstresult=True)
def embed(model: Model, inputs: Sequence[Any], mode: str) -> np.ndarray | None:
    """Embed a batch of inputs (as returned by ``preprocess``, failures removed).

    Return a ``(len(inputs), model.dim)`` array; the core converts it to C-contiguous float32 and
    rejects any other shape.  If ``model.normalized`` is true the rows must have unit L2 norm.
    An exception fails the batch; the core then retries the inputs one by one to isolate the bad
    ones.

    Called on the plugin that loaded ``model``.  Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def store(spec: StoreSpec) -> VectorStore | None:
    """Open the vector store a ``[store]`` section describes and return a :class:`VectorStore`.

    ``spec.options`` holds the plugin's own keys (URI, token, index, metric, ...), type-checked and
    validated against its ``plugin_info`` before any model is loaded or data written.  The core
    writes and searches through the returned object and calls its ``close()`` at the end.

    Called once per pipeline, on the plugin the section names.  Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def read_document(path: str, format: str, encoding: str) -> Iterable[Block] | None:
    """Parse the document at ``path`` into :class:`~embedline.contracts.Block` in reading order.

    ``format`` is one of the plugin's ``PluginInfo.formats`` (``"markdown"``, ``"html"``,
    ``"pdf"``), sniffed by the core from the file's bytes and name.  ``encoding`` is the
    ``[source]`` encoding, for formats that do not declare their own.  Return an iterable that reads
    the file as it is iterated, so that a large document is never held whole; raise
    :class:`ValueError` (or :class:`OSError`) with the reason when the file cannot be read
    (encrypted, corrupt): that file fails alone, named with the reason.  Pages or parts without
    text are ``Block(kind="missing")``, not empty blocks.

    Called on the reader plugin the ``[source]`` section names (``reader``, default
    ``"documents"``).  Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def executor(spec: ExecutorSpec) -> Executor | None:
    """Return the :class:`~embedline.contracts.Executor` the ``[executor]`` section describes.

    ``spec.options`` holds the plugin's own keys, type-checked against its ``plugin_info``
    (``kind="executor"``).  The executor receives each run as a
    :class:`~embedline.contracts.Plan` (the stages of :mod:`embedline.stages`) and drives them;
    the built-in ``local`` executor (threads in this process) is used when a pipeline has no
    ``[executor]`` section.  The core calls ``close()`` on the executor when the pipeline closes.

    Called once per pipeline, on the plugin the section names.  Stops at first non-None result.
    """


HOOKS = ("load_model", "preprocess", "embed", "store", "executor", "read_document")
