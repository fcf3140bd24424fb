"""The host API: load a pipeline, run it, embed inputs, search.

A run is a pipeline of stages joined by bounded queues, so memory stays flat and the model is
never waiting on decoding or on the database:

    reader (this thread)     source -> items -> routed, segmented, gathered into windows
    workers (N threads)      skip ids already stored -> ``preprocess`` a window
    embedder (this thread)   order the window's inputs by size, cut into batches -> ``embed``
    writer (one thread)      ``upsert``: every write of a run goes through it

Each stage works on a batch and keeps no state between batches beyond the objects it is given, so
the same steps can run on a distributed engine.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from embedline.config import PipelineConfig, bind_plugins, load_config, parse_config, reveal
from embedline.contracts import Hit, Item, Record, VectorStore, describe_fingerprint
from embedline.errors import ConfigError, EmbedlineError, ItemError, ModelMismatchError
from embedline.models import EmbeddingModel, Prepared, as_item, load_model, model_identity, window_size
from embedline.plugins import PluginManager, get_plugin_manager
from embedline.sources import SeenUris, Source, content_id

log = logging.getLogger("embedline")

#: Embedded batches waiting for the writer; a full queue makes the embedder wait (back-pressure).
WRITE_QUEUE = 4


@attrs.define
class RunSummary:
    units: int = 0  # files or rows read
    items: int = 0  # chunks/segments they produced
    embedded: int = 0
    skipped: int = 0  # already stored with the same model
    removed: int = 0  # stale rows deleted after the run
    failed: list[ItemError] = attrs.field(factory=list)
    unrouted: dict[str, int] = attrs.field(factory=dict)  # modality -> items no model takes
    counters: dict[str, int] = attrs.field(factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    report: str | None = None  # where failures were written

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, filter=lambda a, _: a.name != "failed")
        data["failed"] = [{"uri": e.uri, "stage": e.stage, "reason": e.reason} for e in self.failed]
        return data

    def format(self) -> str:
        lines = [
            f"read {self.units} source item(s) -> {self.items} item(s): "
            f"embedded {self.embedded}, skipped as unchanged {self.skipped}, failed {len(self.failed)} "
            f"in {self.seconds:.1f} s"
        ]
        if self.removed:
            lines.append(f"  removed {self.removed} stale row(s)")
        for modality, n in sorted(self.unrouted.items()):
            lines.append(f"  not embedded: {n} {modality} item(s) (no model in the pipeline takes {modality})")
        for name, n in sorted(self.counters.items()):
            lines.append(f"  {name}: {n}")
        for err in self.failed[:20]:
            lines.append(f"  failed: {err}")
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failure(s)")
        if self.report:
            lines.append(f"  failures written to {self.report}")
        if self.interrupted:
            lines.append("  interrupted: what was embedded before the interrupt is stored")
        return "\n".join(lines)


@attrs.define
class _Target:
    """One model's collection during a run: what the stages need to know about it."""

    index: int
    collection: str
    identity: str
    segment: tuple[float, float] | None
    batch_size: int
    fresh: bool = False  # created by this run: nothing stored before it, nothing to look up or clean
    produced: set[str] = attrs.field(factory=set)  # ids of every item read this run
    seen: SeenUris = attrs.field(factory=SeenUris)  # uris read this run

    def window(self, modality: str) -> int:
        return window_size(self.batch_size, modality)


@attrs.define
class _Work:
    target: _Target
    prepared: Prepared | None
    skipped: int


class Pipeline:
    """A pipeline file, bound to its plugins.  Models and the store open on first use."""

    def __init__(self, config: PipelineConfig, *, pm: PluginManager | None = None):
        self.pm = pm or get_plugin_manager()
        self.config = bind_plugins(config, self.pm)
        self._models: dict[int, EmbeddingModel] = {}
        self._model_lock = threading.Lock()
        self._store: VectorStore | None = None
        self._checked: dict[str, str] = {}  # collection -> identity of the model checked against it

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], *, pm: PluginManager | None = None) -> Pipeline:
        return cls(load_config(path), pm=pm)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".", pm: PluginManager | None = None
    ) -> Pipeline:
        return cls(parse_config(data, origin="<dict>", base_dir=base_dir), pm=pm)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self._checked.clear()

    # -- parts -------------------------------------------------------------------------------

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = self.pm.call("store", self.config.store.plugin, spec=self.config.store)
        return self._store

    def model(self, modality: str | None = None) -> EmbeddingModel:
        """The model for ``modality`` (the first model when None), loaded on first use."""
        return self.model_at(self._model_index(modality))

    def model_at(self, index: int) -> EmbeddingModel:
        with self._model_lock:  # workers may ask at the same time
            if index not in self._models:
                try:
                    self._models[index] = EmbeddingModel.load(self.pm, self.config.models[index])
                except ConfigError as exc:  # a plugin's config complaint: say which file it is about
                    if exc.source is not None:
                        raise
                    raise ConfigError(exc.reason, source=self.config.origin, key=exc.key) from exc
            return self._models[index]

    def collection(self, index: int) -> str:
        return self.config.collection_for(self.config.models[index])

    def _model_index(self, modality: str | None) -> int:
        for i, spec in enumerate(self.config.models):
            if modality is None or modality in (spec.modalities or ()):
                return i
        raise EmbedlineError(f"{self.config.origin}: no model in the pipeline embeds {modality}")

    def _routes(self) -> dict[str, int]:
        routes: dict[str, int] = {}
        for i, spec in enumerate(self.config.models):
            for modality in spec.modalities or ():
                routes.setdefault(modality, i)
        return routes

    # -- the model a collection remembers ---------------------------------------------------------

    def _spec_key(self, index: int) -> str | None:
        """A cheap key for "this model section, these weights": equal keys, equal identity."""
        from embedline.modelsource import source_stamp

        spec = self.config.models[index]
        stamp = source_stamp(spec.name, revision=spec.revision, base_dir=spec.base_dir)
        if stamp is None:
            return None
        options = {k: reveal(v) for k, v in spec.options.items()}
        blob = json.dumps(
            [spec.plugin, self.pm.version(spec.plugin), spec.name, spec.revision, spec.normalize,
             sorted(spec.modalities or ()), spec.trust_remote_code, options, stamp],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _check(self, model: EmbeddingModel, collection: str, stored: Mapping[str, Any]) -> None:
        if model_identity(stored) != model.identity:
            raise ModelMismatchError(
                f"collection {collection!r} was filled by {describe_fingerprint(stored)}, but this pipeline's model is "
                f"{describe_fingerprint(model.fingerprint)}; vectors of different models cannot be compared. "
                f"Use the collection's model, or another `collection` name to embed with this one"
            )

    def _open(self, index: int, create: bool, lazy: bool = False) -> _Target:
        """Check (or create) the collection of model ``index`` against the model's fingerprint.

        With ``lazy``, a collection created by this very model section (same spec key, same weights
        stamp) is trusted without loading the model: an unchanged re-run loads no model at all.
        """
        self.store  # connect first: a wrong URI fails in milliseconds, a model takes seconds to load
        name = self.collection(index)
        spec = self.config.models[index]
        stored = self.store.get_fingerprint(name)
        key = self._spec_key(index) if lazy else None
        fresh = False
        if stored is not None and key is not None and stored.get("spec_key") == key and index not in self._models:
            identity, segment = model_identity(stored), stored.get("segment")
        else:
            model = self.model_at(index)
            if stored is None:
                if not create:
                    raise EmbedlineError(
                        f"collection {name!r} does not exist yet: run `embedline run {self.config.origin}` first"
                    )
                key = key or self._spec_key(index)
                self.store.create_collection(name, {**model.fingerprint, "identity": model.identity, "spec_key": key})
                fresh = True
            else:
                self._check(model, name, stored)
            identity, segment = model.identity, model.model.segment
            self._checked[name] = identity
        return _Target(index, name, identity, tuple(segment) if segment else None, spec.batch_size, fresh)

    def _loaded(self, target: _Target) -> EmbeddingModel:
        """The target's model, loading it now if the run started without it (and checking it)."""
        model = self.model_at(target.index)
        if self._checked.get(target.collection) != model.identity:
            stored = self.store.get_fingerprint(target.collection) or {}
            self._check(model, target.collection, stored)
            self._checked[target.collection] = model.identity
        return model

    # -- run ---------------------------------------------------------------------------------

    def run(self, *, progress: bool = False, prune: bool = False) -> RunSummary:
        """Ingest the source.  Unchanged items (same id, same model) are not embedded again.

        After a complete run, rows left from older versions of the files read are removed; with
        ``prune``, so are rows whose source file or row no longer exists.
        """
        if self.config.source is None:
            raise EmbedlineError(f"{self.config.origin}: the pipeline has no [source] to run")
        summary = RunSummary()
        started = time.perf_counter()
        source = Source(self.config.source)
        try:
            total = source.total()
        except ItemError as exc:
            raise EmbedlineError(f"{self.config.origin}: source.path: {exc.uri}: {exc.reason}") from None
        report = _FailureReport(self.config.failures)
        targets = [self._open(i, create=True, lazy=True) for i in range(len(self.config.models))]
        failed_uris: set[str] = set()
        bar = _progress(total, enabled=progress)
        writer = _Writer(self.store)
        complete = False
        try:
            with ThreadPoolExecutor(self.config.workers, thread_name_prefix="embedline-prep") as pool:
                inflight: collections.deque[Future[_Work]] = collections.deque()
                try:
                    for target, batch in self._batches(source, targets, summary, report, failed_uris, bar):
                        inflight.append(pool.submit(self._prepare_batch, target, batch))
                        while len(inflight) > 2 * self.config.workers:
                            self._finish(inflight.popleft().result(), writer, summary, report)
                    while inflight:
                        self._finish(inflight.popleft().result(), writer, summary, report)
                    complete = True
                finally:
                    for future in inflight:
                        future.cancel()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            writer.close()  # store what was embedded, whatever stopped the run
            report.close()
            summary.report = str(report.path) if report.written else None
            for model in self._models.values():
                for name, n in model.model.counters.items():
                    summary.counters[name] = summary.counters.get(name, 0) + n
            summary.seconds = time.perf_counter() - started
        if complete:
            for target in targets:
                summary.removed += self._remove_stale(target, failed_uris, prune)
            summary.seconds = time.perf_counter() - started
        return summary

    def _batches(
        self, source: Source, targets: list[_Target], summary: RunSummary, report: _FailureReport,
        failed_uris: set[str], bar: Any,
    ) -> Iterator[tuple[_Target, list[Item]]]:
        """Read the source and yield windows of items per model and modality (the reader stage)."""
        routes = self._routes()
        pending: dict[tuple[int, str], list[Item]] = {}
        for unit in source:
            summary.units += 1
            bar.update(1)
            if unit.error is not None:
                failed_uris.add(unit.uri)
                self._fail(unit.error, summary, report)
                continue
            for item in unit.items:
                index = routes.get(item.modality)
                if index is None:
                    summary.items += 1
                    summary.unrouted[item.modality] = summary.unrouted.get(item.modality, 0) + 1
                    continue
                target = targets[index]
                try:
                    timed = target.segment and item.path and item.modality in ("audio", "video")
                    pieces = segments(item, *target.segment) if timed else [item]
                except ItemError as exc:
                    failed_uris.add(item.uri)
                    self._fail(exc, summary, report)
                    continue
                summary.items += len(pieces)
                target.seen.add(item.uri, unit.origin, unit.line)
                window = pending.setdefault((index, item.modality), [])
                for piece in pieces:
                    if piece.id in target.produced:  # identical content read before: one row
                        summary.skipped += 1
                        continue
                    target.produced.add(piece.id)
                    window.append(piece)
                if len(window) >= target.window(item.modality):
                    yield target, window
                    pending[index, item.modality] = []
        for (index, _), window in pending.items():
            if window:
                yield targets[index], window

    def _prepare_batch(self, target: _Target, items: list[Item]) -> _Work:
        """Skip what is stored, then ``preprocess`` (a worker stage: runs on a pool thread)."""
        if target.fresh:  # ids are unique within a run, so a new collection holds none of them
            todo = items
        else:
            stored = self.store.existing_ids(target.collection, [it.id for it in items], target.identity)
            todo = [it for it in items if it.id not in stored]
        skipped = len(items) - len(todo)
        if not todo:
            return _Work(target, None, skipped)
        return _Work(target, self._loaded(target).prepare(todo, mode="document"), skipped)

    def _finish(self, work: _Work, writer: _Writer, summary: RunSummary, report: _FailureReport) -> None:
        """``embed`` a prepared window, batch by batch, and hand the rows to the writer (the
        embedder stage)."""
        summary.skipped += work.skipped
        if work.prepared is None:
            return
        for error in work.prepared.failures:
            self._fail(error, summary, report)
        model = self.model_at(work.target.index)
        for batch in model.batches(work.prepared):
            result = model.embed_prepared(batch, mode="document")
            for error in result.failures:
                self._fail(error, summary, report)
            if not result.items:
                continue
            records = [
                Record(
                    id=item.id,
                    vector=vector,
                    uri=item.uri,
                    modality=item.modality,
                    chunk=item.chunk,
                    text=item.text or "",
                    metadata=dict(item.metadata),
                    model=model.identity,
                )
                for item, vector in zip(result.items, result.vectors)
            ]
            writer.put(work.target.collection, records)
            summary.embedded += len(records)

    def _fail(self, error: ItemError, summary: RunSummary, report: _FailureReport) -> None:
        summary.failed.append(error)
        report.write(error)
        log.warning("%s", error)
        if self.config.on_error == "fail":
            raise error

    def _remove_stale(self, target: _Target, failed_uris: set[str], prune: bool) -> int:
        """Delete rows left by older versions of the files read, and with ``prune`` rows whose
        source is gone.  Only after a complete run: an interrupted run cannot tell."""
        if target.fresh:
            return 0
        stale = [
            row_id
            for row_id, uri in self.store.scan(target.collection)
            if row_id not in target.produced
            and (uri in target.seen or (prune and uri not in failed_uris))
        ]
        if stale:
            self.store.delete(target.collection, stale)
        return len(stale)

    # -- embed & search ------------------------------------------------------------------------

    def embed(self, inputs: Sequence[str | os.PathLike[str]], *, mode: str = "document", modality: str | None = None) -> Any:
        """Vectors for texts or files with the pipeline's model (for ``modality``, default the first)."""
        return self.model(modality).embed(inputs, mode=mode)

    def search(
        self, query: str | os.PathLike[str] | Iterable[str], *, k: int = 10, filter: str | None = None
    ) -> list[Hit] | list[list[Hit]]:
        """Nearest stored items for a text or a file path (or a list of them, searched in one call)."""
        many = not isinstance(query, (str, os.PathLike))
        queries = list(query) if many else [query]  # type: ignore[arg-type]
        items = [as_item(q) for q in queries]
        modality = items[0].modality if items else "text"
        if any(it.modality != modality for it in items):
            raise EmbedlineError("search: all queries in one call must have the same modality")
        target = self._open(self._model_index(modality), create=False)
        vectors = self.model_at(target.index).embed(items, mode="query")
        hits = self.store.search(target.collection, vectors, k, filter)
        return hits if many else hits[0]


def segments(item: Item, seconds: float, overlap: float) -> list[Item]:
    """Cut an audio/video item into windows of ``seconds`` (sharing ``overlap``), one item each.

    Ids hash the file's id with the window settings, plus the window index, so changing the
    windows never reuses a stored vector.  Raises :class:`ItemError` for files with no duration.
    """
    from embedline.media import MediaError, duration

    step = seconds - overlap
    if step <= 0:
        raise ValueError(f"segment overlap ({overlap}) must be shorter than the window ({seconds})")
    try:
        total = duration(item.path, item.modality)
    except MediaError as exc:
        raise ItemError(item.uri, "read", str(exc)) from None
    except ImportError as exc:
        raise ItemError(item.uri, "read", f"cannot decode {item.modality}: {exc}") from None
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


class _Writer:
    """The one thread that writes to the store during a run, fed through a bounded queue."""

    def __init__(self, store: VectorStore, maxsize: int = WRITE_QUEUE):
        self.store = store
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[str, list[Record]] | None] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._loop, name="embedline-writer", daemon=True)
        self._thread.start()

    def put(self, collection: str, records: list[Record]) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((collection, records))

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self.error is None:
                try:
                    self.store.upsert(*job)
                except BaseException as exc:  # handed to the embedder thread at the next put/close
                    self.error = exc

    def close(self) -> None:
        """Wait until everything queued is written; raise the writer's error, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class _FailureReport:
    """Failures as JSON lines (uri, stage, reason), written as they happen so a crash keeps them."""

    def __init__(self, path: Path | None):
        self.path = path
        self.written = 0
        self._file: Any = None
        if path is not None and path.is_file():
            path.unlink()  # a report describes one run

    def write(self, error: ItemError) -> None:
        if self.path is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")
        self._file.write(json.dumps({"uri": error.uri, "stage": error.stage, "reason": error.reason}, ensure_ascii=False) + "\n")
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="item", dynamic_ncols=True, smoothing=0.1)


__all__ = ["EmbeddingModel", "Pipeline", "RunSummary", "as_item", "load_model", "segments"]
