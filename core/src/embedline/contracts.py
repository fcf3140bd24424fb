"""The objects that cross the boundary between the core and plugins.

Plugin authors build :class:`Model` (from ``load_model``), may return :class:`Failed` from
``preprocess``, implement :class:`VectorStore` (from ``store``) and declare a :class:`PluginInfo`.
Everything here is plain data: no heavy imports, no global state.
"""

from __future__ import annotations

import abc
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from embedline.config import ModelSpec

MODALITIES = ("text", "image", "audio", "video")
MODES = ("document", "query")


@attrs.frozen
class Item:
    """One unit to embed: a text chunk, an image, an audio segment, ...

    ``id`` is derived from the content (plus ``chunk``), so re-running a pipeline on unchanged
    input yields the same ids.  Text items carry their ``text``; file-backed items carry ``path``
    and are read lazily with :meth:`read_bytes`.
    """

    id: str
    uri: str
    modality: str
    chunk: int = 0
    text: str | None = None
    path: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    def read_bytes(self) -> bytes:
        if self.path is None:
            if self.text is not None:
                return self.text.encode("utf-8")
            raise ValueError(f"{self.uri}: item has neither a path nor text")
        with open(self.path, "rb") as fh:
            return fh.read()


@attrs.frozen
class Failed:
    """Returned in place of one input by ``preprocess`` when that item cannot be used.

    The core records the item as failed with ``reason`` and carries on with the rest of the batch.
    """

    reason: str


@attrs.define
class Model:
    """A loaded model, as returned by the ``load_model`` hook.

    Plugins fill ``dim``, ``modalities``, ``source``, ``revision``, ``normalized``, ``settings`` and
    ``impl`` (the library object, e.g. a ``SentenceTransformer``).  The core fills ``plugin``,
    ``plugin_version`` and ``spec`` after the hook returns.  ``settings`` lists every preprocessing
    setting that changes the vectors (max length, prompts, ...); it is part of the fingerprint.
    ``counters`` is where ``preprocess``/``embed`` count events worth reporting (e.g. truncated inputs).
    ``state`` is the plugin's own scratch space for this model (a private tokenizer copy, a cache):
    per model, so plugins need no module-level state.
    ``segment`` (audio/video models): ``(seconds, overlap)`` — the core cuts each file into windows
    of that length, one item per window with ``metadata["start"]``/``["end"]`` in seconds, before
    ``preprocess``; None embeds each file whole.
    """

    dim: int
    modalities: tuple[str, ...]
    source: str
    revision: str
    impl: Any = attrs.field(default=None, repr=False, eq=False)
    normalized: bool = False
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    plugin: str = ""
    plugin_version: str = ""
    spec: ModelSpec | None = attrs.field(default=None, repr=False, eq=False)
    segment: tuple[float, float] | None = None
    counters: dict[str, int] = attrs.field(factory=dict, eq=False)
    state: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, eq=False, repr=False)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (safe from the worker threads that run ``preprocess``)."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def fingerprint(self) -> dict[str, Any]:
        """The identity of the vectors this model makes; stored with every collection."""
        return {
            "plugin": self.plugin,
            "plugin_version": self.plugin_version,
            "source": self.source,
            "revision": self.revision,
            "dim": self.dim,
            "normalized": self.normalized,
            "settings": dict(sorted(self.settings.items())),
            **({"segment": list(self.segment)} if self.segment else {}),
        }


def fingerprint_id(fingerprint: Mapping[str, Any]) -> str:
    """A short stable hash of a fingerprint, stored on every row."""
    blob = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_fingerprint(fingerprint: Mapping[str, Any]) -> str:
    """One human line: ``minilm 0.1.0 <source>@<revision> dim=384 normalized``."""
    rev = str(fingerprint.get("revision", ""))[:12]
    parts = [
        f"{fingerprint.get('plugin')} {fingerprint.get('plugin_version')}",
        f"{fingerprint.get('source')}@{rev}",
        f"dim={fingerprint.get('dim')}",
    ]
    if fingerprint.get("normalized"):
        parts.append("normalized")
    settings = fingerprint.get("settings") or {}
    if settings:
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(settings.items())))
    return " ".join(parts)


@attrs.frozen
class Record:
    """One row written to a vector store."""

    id: str
    vector: Any  # 1-d float32 numpy array of length dim
    uri: str
    modality: str
    chunk: int
    text: str
    metadata: Mapping[str, Any]
    model: str  # fingerprint_id of the model that made the vector


@attrs.frozen
class Hit:
    """One search result."""

    id: str
    score: float
    uri: str
    modality: str = ""
    chunk: int = 0
    text: str = ""
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class VectorStore(abc.ABC):
    """What the ``store`` hook returns: an open connection to one vector database.

    A store holds several collections; each remembers the fingerprint of the model that filled it.
    The core decides policy (refusing a mismatched model, skipping stored ids); the store persists.
    All methods raise :class:`embedline.errors.StoreError` with one clear line on failure.
    """

    @abc.abstractmethod
    def get_fingerprint(self, collection: str) -> dict[str, Any] | None:
        """The fingerprint recorded when ``collection`` was created, or None if it does not exist."""

    @abc.abstractmethod
    def create_collection(self, collection: str, fingerprint: Mapping[str, Any]) -> None:
        """Create ``collection`` for vectors of ``fingerprint['dim']`` and record the fingerprint."""

    @abc.abstractmethod
    def existing_ids(self, collection: str, ids: Sequence[str], model: str) -> set[str]:
        """The subset of ``ids`` already stored with fingerprint id ``model``."""

    @abc.abstractmethod
    def upsert(self, collection: str, records: Sequence[Record]) -> None:
        """Insert or replace rows by id (never duplicates)."""

    @abc.abstractmethod
    def search(
        self, collection: str, vectors: np.ndarray, k: int, filter: str | None = None
    ) -> list[list[Hit]]:
        """Top-``k`` hits for each query vector, best first; ``filter`` is a store expression."""

    @abc.abstractmethod
    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Remove rows by id; unknown ids are ignored."""

    @abc.abstractmethod
    def scan(self, collection: str) -> Iterator[tuple[str, str]]:
        """Every row's ``(id, uri)``, in any order, streamed (nothing if the collection is missing).

        Used after a complete run to remove stale chunks of changed files and, with ``--prune``,
        rows whose source is gone.
        """

    @abc.abstractmethod
    def count(self, collection: str) -> int:
        """Number of rows in ``collection`` (0 if it does not exist)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the connection; the store must not be used afterwards."""


@attrs.frozen
class Option:
    """One plugin-specific key a pipeline section may set.

    ``type`` is a Python type (or tuple of types) the TOML value must have; ``secret`` options are
    expected to come from ``${ENV}`` and are never printed.
    """

    type: type | tuple[type, ...]
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    secret: bool = False


@attrs.frozen
class PluginInfo:
    """What a plugin module declares about itself as the module attribute ``plugin_info``.

    Read without importing any heavy library: ``embedline plugins`` and ``embedline check`` use it.
    ``validate`` (optional) receives the whole section as a plain dict (the common keys such as
    ``name`` or ``collection``, and the plugin's options, type-checked, defaults filled, secrets
    revealed) and raises ``ValueError("key: message")`` for what types cannot say (an index the
    store cannot build, two keys that exclude each other).  It runs at ``embedline check`` time.
    """

    kind: str  # "model" or "store"
    modalities: tuple[str, ...] = ()
    options: Mapping[str, Option] = attrs.field(factory=dict)
    description: str = ""
    validate: Callable[[Mapping[str, Any]], None] | None = attrs.field(default=None, eq=False)
