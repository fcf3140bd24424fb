"""The stages of a run, as plain functions over batches, and the plan an executor drives.

    read      source -> units -> items routed to models, cut into segments, deduplicated, windows
    skip      ids already stored under the same model are dropped
    prepare   the ``preprocess`` hook over a window
    embed     the ``embed`` hook, batch by batch (inputs of similar size together) -> rows
    write     ``upsert`` rows into the model's collection

Every stage returns what it did: its output and an :class:`Outcome` (counts and failures).  It
changes no shared object: the reader's bookkeeping lives in a :class:`~embedline.ledger.RunLedger`
that only the reader touches, and outcomes are added up by :meth:`RunPlan.record` on one thread.
So an executor can run the middle stages anywhere (threads, processes, an actor pool per model),
as long as outcomes come back to the driver.  Part of the plugin API for executor plugins.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from embedline.contracts import Item, Record, VectorStore
from embedline.errors import ItemError
from embedline.ledger import RunLedger
from embedline.modalities import is_timed
from embedline.models import EmbeddingModel, Prepared, window_size
from embedline.sources import Source, Unit, content_id

__all__ = [
    "Outcome",
    "PreparedWindow",
    "Rows",
    "RunPlan",
    "Target",
    "Window",
    "embed_window",
    "prepare_window",
    "read_windows",
    "route_unit",
    "segments",
    "skip_stored",
    "write_rows",
]


@attrs.frozen
class Target:
    """One model's collection during a run: what the stages need to know about it (picklable)."""

    index: int  # the model's position in the pipeline file
    collection: str
    identity: str  # model identity recorded on every row
    batch_size: int
    segment: tuple[float, float] | None = None  # (seconds, overlap) for timed media
    duration: Callable[[str, str], float] | None = None  # the plugin's PluginInfo.duration
    fresh: bool = False  # created by this run: nothing stored before it, nothing to look up or clean

    def window(self, modality: str) -> int:
        return window_size(self.batch_size, modality)


@attrs.define
class Outcome:
    """What a stage did: counts and failures.  Outcomes add up into the run's summary."""

    units: int = 0  # files or rows read
    items: int = 0  # chunks/segments they produced
    embedded: int = 0
    skipped: int = 0  # already stored with the same model, or identical content read before
    failures: list[ItemError] = attrs.field(factory=list)
    unrouted: dict[str, int] = attrs.field(factory=dict)  # modality -> items no model takes

    def __bool__(self) -> bool:
        return bool(self.units or self.items or self.embedded or self.skipped or self.failures or self.unrouted)


@attrs.frozen
class Window:
    """Items of one modality for one target, prepared together."""

    target: int
    items: list[Item]


@attrs.frozen
class PreparedWindow:
    """Model inputs for the items of a window that are not stored yet (failures are in ``outcome``)."""

    target: int
    prepared: Prepared | None  # None when every item was already stored
    outcome: Outcome


@attrs.frozen
class Rows:
    collection: str
    records: list[Record]


# ---------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------


def segments(item: Item, seconds: float, overlap: float, duration: Callable[[str, str], float] | None) -> list[Item]:
    """Cut an audio/video item into windows of ``seconds`` (sharing ``overlap``), one item each.

    ``duration(path, modality)`` is the model plugin's (``PluginInfo.duration``): the core decodes
    no media itself.  Ids hash the file's id with the window settings, plus the window index, so
    changing the windows never reuses a stored vector.  Raises :class:`ItemError` for files with no
    duration.
    """
    step = seconds - overlap
    if step <= 0:
        raise ValueError(f"segment overlap ({overlap}) must be shorter than the window ({seconds})")
    if duration is None:
        raise ItemError(item.uri, "read", "the model cuts files into windows but its plugin declares no `duration`")
    try:
        total = duration(item.path or "", item.modality)
    except ImportError as exc:
        raise ItemError(item.uri, "read", f"cannot decode {item.modality}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise ItemError(item.uri, "read", str(exc)) from None
    if not total > 0:
        raise ItemError(item.uri, "read", f"{item.modality} has no content (duration 0)")
    key = content_id(item.id, f"segment={seconds}/{overlap}")
    out, start, k = [], 0.0, 0
    while True:
        end = min(start + seconds, total)
        meta = {**item.metadata, "start": round(start, 3), "end": round(end, 3)}
        out.append(attrs.evolve(item, id=f"{key}:{k}", chunk=k, metadata=meta))
        if end >= total:
            return out
        start, k = start + step, k + 1


def route_unit(
    unit: Unit, targets: Sequence[Target], routes: Mapping[str, int], ledger: RunLedger
) -> tuple[list[tuple[int, Item]], Outcome]:
    """One file or row: its items assigned to targets, segmented, items already produced in this
    run dropped (identical content is one row).  The reader's step; records what it read in
    ``ledger``.  (:func:`read_windows` takes the items one at a time instead, so that a large
    file is never held whole.)"""
    outcome = Outcome(units=1)
    return list(_routed(unit, targets, routes, ledger, outcome)), outcome


def _routed(
    unit: Unit, targets: Sequence[Target], routes: Mapping[str, int], ledger: RunLedger, outcome: Outcome
) -> Iterator[tuple[int, Item]]:
    """:func:`route_unit`, item by item, counting into ``outcome``.  ``unit.items`` is iterated
    once, as it is produced; if producing it fails (:class:`ItemError`), the failure is counted
    and the items before it stand."""
    if unit.error is not None:
        ledger.failed(unit.uri)
        outcome.failures.append(unit.error)
        return
    items = iter(unit.items)
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except ItemError as exc:  # a text file that became unreadable while it was chunked
            ledger.failed(unit.uri)
            outcome.failures.append(exc)
            return
        if isinstance(item, ItemError):  # a part of a document without text (a scanned page)
            outcome.failures.append(item)
            continue
        index = routes.get(item.modality)
        if index is None:
            outcome.items += 1
            outcome.unrouted[item.modality] = outcome.unrouted.get(item.modality, 0) + 1
            continue
        target = targets[index]
        try:
            timed = target.segment and item.path and is_timed(item.modality)
            pieces = segments(item, *target.segment, target.duration) if timed else [item]
        except ItemError as exc:
            ledger.failed(item.uri)
            outcome.failures.append(exc)
            continue
        outcome.items += len(pieces)
        ledger.saw(index, item.uri, unit.origin, unit.line)
        for piece in pieces:
            if ledger.admit(index, piece.id):
                yield index, piece
            else:
                outcome.skipped += 1


def read_windows(
    units: Iterator[Unit], targets: Sequence[Target], routes: Mapping[str, int], ledger: RunLedger
) -> Iterator[tuple[list[Window], Outcome]]:
    """The reader stage: the windows that filled up (often none) and what reading did, once per
    unit read, and also as soon as a window fills up within a unit (a large file).  Items of
    one target and modality gather until ``Target.window`` of them; the rest come out after the
    last unit."""
    pending: dict[tuple[int, str], list[Item]] = {}
    for unit in units:
        outcome = Outcome(units=1)
        full: list[Window] = []
        for index, item in _routed(unit, targets, routes, ledger, outcome):
            window = pending.setdefault((index, item.modality), [])
            window.append(item)
            if len(window) >= targets[index].window(item.modality):
                full.append(Window(index, window))
                pending[index, item.modality] = []
                yield full, _take(outcome)  # a large file: its windows go on while it is read
                full = []
        yield full, outcome
    rest = [Window(index, items) for (index, _), items in pending.items() if items]
    if rest:
        yield rest, Outcome()


def _take(outcome: Outcome) -> Outcome:
    """What ``outcome`` counted so far, handed on; ``outcome`` counts on from zero."""
    taken = attrs.evolve(outcome)
    outcome.units = outcome.items = outcome.embedded = outcome.skipped = 0
    outcome.failures, outcome.unrouted = [], {}
    return taken


def skip_stored(store: VectorStore, target: Target, items: list[Item]) -> tuple[list[Item], Outcome]:
    """The items whose id is not stored yet under the target's model."""
    if target.fresh:  # ids are unique within a run, so a new collection holds none of them
        return items, Outcome()
    stored = store.existing_ids(target.collection, [it.id for it in items], target.identity)
    todo = [it for it in items if it.id not in stored]
    return todo, Outcome(skipped=len(items) - len(todo))


def prepare_window(model: EmbeddingModel, target: int, items: list[Item]) -> PreparedWindow:
    """``preprocess`` the items; the ones it cannot use are failures in the outcome."""
    if not items:
        return PreparedWindow(target, None, Outcome())
    prepared = model.prepare(items, mode="document")
    failures, prepared.failures = prepared.failures, []
    return PreparedWindow(target, prepared, Outcome(failures=failures))


def embed_window(model: EmbeddingModel, target: Target, prepared: Prepared) -> Iterator[tuple[Rows, Outcome]]:
    """``embed`` prepared inputs in batches of ``batch_size`` (similar sizes together): rows for
    the target's collection, and the items that failed."""
    for batch in model.batches(prepared):
        result = model.embed_prepared(batch, mode="document")
        records = [
            Record(
                id=item.id,
                vector=vector,
                uri=item.uri,
                modality=item.modality,
                chunk=item.chunk,
                text=item.text or "",
                metadata=dict(item.metadata),
                model=target.identity,
            )
            for item, vector in zip(result.items, result.vectors)
        ]
        yield Rows(target.collection, records), Outcome(embedded=len(records), failures=list(result.failures))


def write_rows(store: VectorStore, rows: Rows) -> None:
    if rows.records:
        store.upsert(rows.collection, rows.records)


# ---------------------------------------------------------------------------------------------
# The plan: the stages bound to one pipeline's source, models and store
# ---------------------------------------------------------------------------------------------


class RunPlan:
    """One run of a pipeline, as its executor sees it (the :class:`embedline.contracts.Plan`
    protocol).  ``record`` is the one place where outcomes turn into the run's result."""

    def __init__(
        self,
        config: Any,
        targets: Sequence[Target],
        *,
        source: Source,
        store: VectorStore,
        model: Callable[[int], EmbeddingModel],
        record: Callable[[Outcome], None],
    ):
        self.config = config
        self.targets = tuple(targets)
        self.ledger = RunLedger(len(self.targets))
        self._source = source
        self._store = store
        self._model = model
        self._record = record
        self._routes: dict[str, int] = {}
        for i, spec in enumerate(config.models):
            for modality in spec.modalities or ():
                self._routes.setdefault(modality, i)

    @property
    def store(self) -> VectorStore:
        return self._store

    def model(self, target: int) -> EmbeddingModel:
        """The target's model, loaded (and checked against its collection) on first use."""
        return self._model(target)

    def windows(self) -> Iterator[Window]:
        for windows, outcome in read_windows(iter(self._source), self.targets, self._routes, self.ledger):
            if outcome:
                self.record(outcome)
            yield from windows

    def prepare(self, window: Window) -> PreparedWindow:
        target = self.targets[window.target]
        todo, skipped = skip_stored(self._store, target, window.items)
        if not todo:
            return PreparedWindow(window.target, None, skipped)
        prepared = prepare_window(self.model(window.target), window.target, todo)
        prepared.outcome.skipped += skipped.skipped
        return prepared

    def embed(self, prepared: PreparedWindow) -> Iterator[tuple[Rows, Outcome]]:
        if prepared.prepared is None:
            return iter(())
        return embed_window(self.model(prepared.target), self.targets[prepared.target], prepared.prepared)

    def write(self, rows: Rows) -> None:
        write_rows(self._store, rows)

    def record(self, outcome: Outcome) -> None:
        self._record(outcome)


class Writer:
    """The one thread that writes during a run, fed through a bounded queue: ``put(rows)`` queues
    rows for ``write(rows)`` (``RunPlan.write``), waiting while ``maxsize`` are queued; ``close()``
    waits until everything queued is written.  An error of ``write`` is raised on the caller's
    thread at the next ``put`` or at ``close``, and nothing queued after it is written.  Used by
    the built-in ``local`` executor and by executor plugins."""

    def __init__(self, write: Callable[[Any], Any], maxsize: int, name: str = "embedline-writer"):
        self._write = write
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, rows: Any) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(rows)

    def _loop(self) -> None:
        while True:
            rows = self._queue.get()
            if rows is None:
                return
            if self.error is None:
                try:
                    self._write(rows)
                except BaseException as exc:  # handed to the caller's thread at the next put/close
                    self.error = exc

    def close(self) -> None:
        """Wait until everything queued is written; raise the writer's error, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

