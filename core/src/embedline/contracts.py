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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from embedline.modalities import MODALITIES as MODALITIES  # part of the plugin API

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from embedline.filters import Filter, Native

MODES = ("document", "query")


# ---------------------------------------------------------------------------------------------
# What a plugin receives: its section of the pipeline file
# ---------------------------------------------------------------------------------------------


class Secret:
    """A value taken from the environment for a secret option.  Prints as ``***``."""

    __slots__ = ("_value", "variable")

    def __init__(self, value: str, variable: str = ""):
        self._value = value
        self.variable = variable

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = lambda self: "***"  # noqa: E731

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def reveal(value: Any) -> Any:
    """The real value of an option that may be a :class:`Secret`."""
    return value.reveal() if isinstance(value, Secret) else value


@attrs.frozen
class ModelSpec:
    """A ``[model]`` / ``[[models]]`` section as the ``load_model`` hook receives it.

    The common keys are attributes; the plugin's own keys are in ``options``, type-checked against
    its :class:`PluginInfo` with defaults filled (read them with :meth:`option`, which reveals
    secrets).  ``base_dir`` is the folder of the pipeline file: resolve relative paths against it.
    """

    plugin: str
    name: str | None = None
    revision: str | None = None
    modalities: tuple[str, ...] | None = None
    batch_size: int = 32
    device: str = "auto"
    normalize: bool = True
    trust_remote_code: bool = False
    collection: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    base_dir: Path = Path(".")
    key: str = "model"  # where it was declared, for messages

    def option(self, name: str, default: Any = None) -> Any:
        return reveal(self.options.get(name, default))


@attrs.frozen
class StoreSpec:
    """The ``[store]`` section as the ``store`` hook receives it (options as for :class:`ModelSpec`)."""

    plugin: str = "milvus"
    collection: str = "embedline"
    options: Mapping[str, Any] = attrs.field(factory=dict)
    base_dir: Path = Path(".")

    def option(self, name: str, default: Any = None) -> Any:
        return reveal(self.options.get(name, default))


@attrs.frozen
class ExecutorSpec:
    """The ``[executor]`` section as the ``executor`` hook receives it (no section: ``local``)."""

    plugin: str = "local"
    options: Mapping[str, Any] = attrs.field(factory=dict)
    base_dir: Path = Path(".")

    def option(self, name: str, default: Any = None) -> Any:
        return reveal(self.options.get(name, default))


# ---------------------------------------------------------------------------------------------
# Items, models, records
# ---------------------------------------------------------------------------------------------


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
class Block:
    """One piece of a parsed document, in reading order, as a ``read_document`` hook yields it.

    ``kind`` says how the chunker may cut it when it is too long for one chunk:

    * ``paragraph``: prose, cut between sentences, then between words;
    * ``table``, ``code``, ``list``: cut between lines, each part starting with ``header`` (a
      table's header and delimiter rows, a code fence line, a list's lead-in) and ending with
      ``footer`` (a closing fence);
    * ``missing``: no text where some was expected (a PDF page without a text layer): ``text`` is
      the reason, reported as a failure of ``<uri>#page=<page>``, and nothing is stored for it.

    ``section`` is the heading path the block sits under (``("Writing plugins", "5. Tests")``),
    ``page`` its page number (from 1) where the format has pages.  ``text`` holds the whole block,
    ``header`` and ``footer`` included.
    """

    text: str
    kind: str = "paragraph"
    section: tuple[str, ...] = ()
    page: int | None = None
    header: str = ""
    footer: str = ""


BLOCK_KINDS = ("paragraph", "table", "code", "list", "missing")


class TokenCounter(Protocol):
    """How a model counts the tokens of a text, given by ``PluginInfo.tokenizer``: the chunker
    packs chunks to the model's own limit with it (``chunk = { by = "structure" }``).

    ``limit`` is the most tokens of text one input may hold with nothing cut: the model's maximum
    sequence length less its special tokens and any document prompt.  ``identity`` changes
    whenever counts or the limit change (the tokenizer file's hash, the limit): it is part of
    the chunks' ids, so a new tokenizer re-chunks and re-embeds.  ``count`` must be safe to call
    from a worker thread and cheap: it runs while the source is read, before the model is loaded.
    """

    limit: int
    identity: str

    def count(self, texts: Sequence[str]) -> list[int]:
        """The number of tokens of each text, special tokens and prompt excluded."""
        ...


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
    ``runtime`` records how the vectors were computed where that does not change them (the minilm
    plugin's ``{"backend": "onnx"}``): kept in the fingerprint for people to read, but not part of the
    model's identity, so a collection may switch between runtimes.  Put there only what a test
    shows gives the same vectors (within 1e-5); anything else belongs in ``settings``.
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
    runtime: Mapping[str, Any] = attrs.field(factory=dict)
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
            **({"runtime": dict(sorted(self.runtime.items()))} if self.runtime else {}),
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

    Semantics every store keeps (``embedline.testing.StoreConformance`` checks them):

    * **Scores: higher is closer**, whatever the metric.  A distance is negated (an ``L2`` store
      returns minus the distance), a similarity (``COSINE``, ``IP``) is returned as it is.
    * **Threads.** During a run the core calls :meth:`existing_ids` from worker threads while one
      writer thread calls :meth:`upsert` and :meth:`delete`; :meth:`search`, :meth:`count` and
      :meth:`get_fingerprint` may come from any thread.  A store whose client is not safe for that
      takes its own lock.
    * **Close.** After :meth:`close` everything upserted is durable and visible to a store opened
      later on the same location.  ``close`` may be called twice; nothing else is called after it.
    * **Filters** are an :class:`embedline.filters.Filter` (portable: translate every operator) or
      an :class:`embedline.filters.Native` expression in the store's own syntax (pass it through;
      a store without a syntax of its own raises ``StoreError``).
    """

    @abc.abstractmethod
    def get_fingerprint(self, collection: str) -> dict[str, Any] | None:
        """The fingerprint recorded when ``collection`` was created, or None if it does not exist."""

    @abc.abstractmethod
    def create_collection(self, collection: str, fingerprint: Mapping[str, Any]) -> None:
        """Create ``collection`` for vectors of ``fingerprint['dim']`` and record the fingerprint."""

    @abc.abstractmethod
    def existing_ids(self, collection: str, ids: Sequence[str], model: str) -> set[str]:
        """The subset of ``ids`` already stored with fingerprint id ``model`` (empty if the
        collection is missing).  Called from several worker threads at once during a run."""

    @abc.abstractmethod
    def upsert(self, collection: str, records: Sequence[Record]) -> None:
        """Insert or replace rows by id (never duplicates); a vector of another dimension than the
        collection's is a ``StoreError``.  Called from one writer thread at a time."""

    @abc.abstractmethod
    def search(
        self, collection: str, vectors: np.ndarray, k: int, filter: Filter | Native | None = None
    ) -> list[list[Hit]]:
        """Top-``k`` hits for each row of ``vectors`` (``(n, dim)`` float32), best first: higher
        ``score`` is closer.  Only rows that ``filter`` keeps are searched.  A missing collection
        is a ``StoreError``."""

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

    def flush(self, collection: str) -> None:  # noqa: B027 - optional
        """Called at the end of a run that wrote or removed rows, once for each collection of the
        run: make its rows quick to search (e.g. seal and index what is buffered).  Rows are
        searchable before this too; a store with nothing to do here leaves it out."""

    def close(self) -> None:  # noqa: B027 - optional
        """Make every upserted row durable and visible to a store opened later on the same
        location, then release the connection.  Idempotent; nothing is called afterwards."""


class Plan(Protocol):
    """One run, cut into stages, as an :class:`Executor` sees it (``embedline.stages.RunPlan``).

    Data flows one way: :meth:`windows` -> :meth:`prepare` -> :meth:`embed` -> :meth:`write`.
    The stages return what they did (rows, and an outcome with counts and failures) instead of
    changing shared objects; the executor hands every outcome to :meth:`record`, on the thread
    that called :meth:`windows`, which turns them into the run's summary, the failure report and
    ``on_error = "fail"``.
    """

    config: Any  # the bound pipeline (embedline.config.PipelineConfig): picklable
    targets: Sequence[Any]  # one embedline.stages.Target per model: collection, identity, batch size

    def windows(self) -> Iterator[Any]:
        """The reader stage: read the source, route items to models, drop duplicates; yields
        ``Window``s (a target index and items).  Not thread-safe: iterate it on one thread."""

    def prepare(self, window: Any) -> Any:
        """Skip ids already stored, then ``preprocess``: a ``Prepared`` window.  Safe on any thread."""

    def embed(self, prepared: Any) -> Iterator[tuple[Any, Any]]:
        """``embed`` a prepared window batch by batch: ``(Rows, Outcome)`` pairs.  Safe on any thread
        that may use the model (one at a time per model)."""

    def write(self, rows: Any) -> None:
        """Upsert rows into their collection.  Called from one writer thread at a time."""

    def record(self, outcome: Any) -> None:
        """Add an outcome to the run (counts, failures; raises on the first failure with
        ``on_error = "fail"``).  Call it on the thread that iterates :meth:`windows`."""


class Executor(abc.ABC):
    """What the ``executor`` hook returns: it drives the stages of one run.

    The built-in ``local`` executor reads on the calling thread, prepares windows on a thread pool,
    embeds on the calling thread and writes on one writer thread.  Another executor may run the
    same stages elsewhere (an actor pool per model, workers that write straight to a server),
    provided every window from :meth:`Plan.windows` is prepared, embedded and written, and every
    outcome reaches :meth:`Plan.record`.
    """

    @abc.abstractmethod
    def run(self, plan: Plan) -> None:
        """Run every stage of ``plan`` to the end; return when every row is written.  On an
        exception (including KeyboardInterrupt) write what was embedded, then re-raise."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release workers and connections; called once after the last run."""


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

    ``duration`` (models whose :attr:`Model.segment` cuts files into windows): called as
    ``duration(path, modality)``, returns the file's length in seconds, or raises ``ValueError``
    with the reason (the item then fails alone).  It runs before the model is loaded (an unchanged
    re-run never loads it), so it must be cheap and must not need the model.

    ``model_sources`` (model plugins whose weights :func:`embedline.toolkit.resolve_model_source`
    finds): called with the :class:`ModelSpec` ``load_model`` will get, returns for each key that
    names weights the source ``load_model`` will resolve, with the plugin's default applied when
    ``name`` is not set and short names expanded (``{"name": "sentence-transformers/all-MiniLM-L6-v2"}``;
    empty when there is nothing to find).  ``embedline check`` and the core, before calling
    ``load_model``, check each source exists without reading weights, and name the file and key
    when it does not.  Without it, the model's source is only checked by ``load_model``.

    ``tokenizer`` (text models): called with the :class:`ModelSpec`, returns a
    :class:`TokenCounter` for the model (or None when it cannot count), without loading the model.

    ``formats`` (``kind="reader"``, plugins implementing ``read_document``): the document formats
    the plugin parses into :class:`Block` (``"markdown"``, ``"html"``, ``"pdf"``).
    """

    kind: str  # "model", "store", "executor" or "reader"
    modalities: tuple[str, ...] = ()
    options: Mapping[str, Option] = attrs.field(factory=dict)
    description: str = ""
    validate: Callable[[Mapping[str, Any]], None] | None = attrs.field(default=None, eq=False)
    duration: Callable[[str, str], float] | None = attrs.field(default=None, eq=False)
    model_sources: Callable[[ModelSpec], Mapping[str, str]] | None = attrs.field(default=None, eq=False)
    tokenizer: Callable[[ModelSpec], TokenCounter | None] | None = attrs.field(default=None, eq=False)
    formats: tuple[str, ...] = ()
