"""The host API: load a pipeline, run it, embed inputs, search.

:class:`Pipeline` binds a pipeline file to its plugins and owns what lives as long as it does: the
models (loaded on first use, one per section), the store connection, and the executor.  A run
checks each model's collection against its fingerprint (:mod:`embedline.fingerprints`), hands
the stages (:mod:`embedline.stages`) to the executor, and adds up what they report into a
:class:`RunSummary`.  With no ``[executor]`` section the executor is ``local``: threads in this
process (:mod:`embedline.local`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from embedline import fingerprints
from embedline.config import PipelineConfig, bind_plugins, check_model_sources, check_source, load_config, parse_config
from embedline.contracts import Executor, Hit, VectorStore
from embedline.errors import (
    CollectionNotFoundError,
    ConfigError,
    EmbedlineError,
    ItemError,
    ModelSourceError,
    PipelineClosedError,
)
from embedline.filters import as_filter
from embedline.models import EmbeddingModel, as_item, file_item, load_model
from embedline.plugins import PluginManager, get_plugin_manager
from embedline.sources import Documents, Source, printable
from embedline.stages import Outcome, RunPlan, Target, segments

log = logging.getLogger("embedline")


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

    def add(self, outcome: Outcome) -> None:
        self.units += outcome.units
        self.items += outcome.items
        self.embedded += outcome.embedded
        self.skipped += outcome.skipped
        self.failed.extend(outcome.failures)
        for modality, n in outcome.unrouted.items():
            self.unrouted[modality] = self.unrouted.get(modality, 0) + n

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, filter=lambda a, _: a.name != "failed")
        data["failed"] = [{"uri": printable(e.uri), "stage": e.stage, "reason": printable(e.reason)} for e in self.failed]
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
            lines.append(f"  failed: {printable(str(err))}")
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failure(s)")
        if self.report:
            lines.append(f"  failures written to {self.report}")
        if self.interrupted:
            lines.append("  interrupted: what was embedded before the interrupt is stored")
        return "\n".join(lines)


class Pipeline:
    """A pipeline file, bound to its plugins.  Models, the store and the executor open on first use."""

    def __init__(self, config: PipelineConfig, *, pm: PluginManager | None = None):
        self.pm = pm or get_plugin_manager()
        self.config = bind_plugins(config, self.pm)
        self._models: dict[int, EmbeddingModel] = {}
        self._model_lock = threading.Lock()
        self._store: VectorStore | None = None
        self._executor: Executor | None = None
        self._checked: dict[str, str] = {}  # collection -> identity of the model checked against it
        self._search_targets: dict[int, Target] = {}  # model index -> its collection, checked once per pipeline
        self._closed = False

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
        """Release the executor, the store connection and the models; idempotent.  A closed
        pipeline raises :class:`PipelineClosedError` when used again (it never reopens)."""
        self._closed = True
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.close()
        if self._store is not None:
            store, self._store = self._store, None
            store.close()
        self._checked.clear()
        self._search_targets.clear()
        self._models.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise PipelineClosedError(
                f"{self.config.origin}: this pipeline is closed (after close() or its `with` block); "
                "create a new Pipeline to use it again"
            )

    # -- parts -------------------------------------------------------------------------------

    @property
    def store(self) -> VectorStore:
        self._check_open()
        if self._store is None:
            self._store = self.pm.call("store", self.config.store.plugin, spec=self.config.store)
        return self._store

    @property
    def executor(self) -> Executor:
        self._check_open()
        if self._executor is None:
            self._executor = self.pm.call("executor", self.config.executor.plugin, spec=self.config.executor)
        return self._executor

    def model(self, modality: str | None = None) -> EmbeddingModel:
        """The model for ``modality`` (the first model when None), loaded on first use."""
        return self.model_at(self._model_index(modality))

    def model_at(self, index: int) -> EmbeddingModel:
        self._check_open()
        with self._model_lock:  # workers may ask at the same time
            if index not in self._models:
                spec = self.config.models[index]
                try:
                    check_model_sources(self.config, self.pm, index)  # the error `check` gives, file and key named
                    self._models[index] = EmbeddingModel.load(self.pm, spec)
                except ConfigError as exc:  # a plugin's config complaint: say which file it is about
                    if exc.source is not None:
                        raise
                    raise ConfigError(exc.reason, source=self.config.origin, key=exc.key) from exc
                except ModelSourceError as exc:  # from load_model: name the file and the key too
                    if exc.source is not None:
                        raise
                    key = f"{spec.key}.name" if spec.name else spec.key
                    raise ModelSourceError(exc.reason, source=self.config.origin, key=key) from exc
            return self._models[index]

    def collection(self, index: int) -> str:
        return self.config.collection_for(self.config.models[index])

    def _model_index(self, modality: str | None) -> int:
        for i, spec in enumerate(self.config.models):
            if modality is None or modality in (spec.modalities or ()):
                return i
        raise EmbedlineError(f"{self.config.origin}: no model in the pipeline embeds {modality}")

    def _open_with_model(self, index: int) -> None:
        """Load model ``index`` on a helper thread while this one connects the store: a first
        search pays the longer of the two, not their sum.  Errors surface here, the store's first
        (its failure does not wait for the model); the model's own, if any, from ``model_at``."""
        if self._store is not None or index in self._models:
            return
        def load() -> None:
            try:
                self.model_at(index)
            except BaseException:  # noqa: S110 - model_at raises it again, on this thread, when asked
                pass

        loader = threading.Thread(target=load, name="embedline-model-load", daemon=True)
        loader.start()
        self.store  # noqa: B018 - connect while the model loads
        loader.join()

    # -- the model a collection remembers ---------------------------------------------------------

    def _target(self, index: int, create: bool, lazy: bool = False) -> Target:
        """Check (or create) the collection of model ``index`` against the model's fingerprint.

        With ``lazy``, a collection created by this very model section is trusted without loading
        the model: an unchanged re-run loads no model at all.
        """
        self.store  # connect first: a wrong URI fails in milliseconds, a model takes seconds to load
        spec = self.config.models[index]
        binding = fingerprints.bind(
            self.store,
            self.collection(index),
            key=lambda: fingerprints.spec_key(spec, self.pm.version(spec.plugin)),
            model=lambda: self.model_at(index),
            create=create,
            lazy=lazy and index not in self._models,
            origin=self.config.origin,
        )
        if binding.loaded:
            self._checked[binding.collection] = binding.identity
        return Target(
            index=index,
            collection=binding.collection,
            identity=binding.identity,
            batch_size=spec.batch_size,
            segment=binding.segment,
            duration=self.pm.info(spec.plugin).duration,
            fresh=binding.fresh,
        )

    def _loaded(self, target: Target) -> EmbeddingModel:
        """The target's model, loading it now if the run started without it (and checking it)."""
        model = self.model_at(target.index)
        if self._checked.get(target.collection) != model.identity:
            stored = self.store.get_fingerprint(target.collection) or {}
            fingerprints.check(target.collection, stored, model.fingerprint)
            self._checked[target.collection] = model.identity
        return model

    def _documents(self) -> Documents:
        """The reader plugin (``[source] reader``) and the text model's tokenizer, for the source.

        Without the default reader installed, markdown is read as plain text and HTML and PDF
        files fail one by one, saying what to install; a reader named in the file must exist."""
        spec = self.config.source
        assert spec is not None
        read, formats, reader = None, (), ""
        name = spec.reader
        if name in self.pm.available():
            info = self.pm.info(name)
            if info.kind != "reader":
                raise ConfigError(f"plugin {name!r} is a {info.kind} plugin, not a reader", source=self.config.origin, key="source.reader")
            formats, reader = tuple(info.formats), f"{name}@{self.pm.version(name)}"

            def read(path: str, fmt: str, encoding: str) -> Any:
                return self.pm.call("read_document", name, path=path, format=fmt, encoding=encoding)

        elif name != "documents":
            known = ", ".join(self.pm.available()) or "none"
            raise ConfigError(f"reader plugin {name!r} is not installed (installed: {known})", source=self.config.origin, key="source.reader")
        counter = None
        if spec.chunk.by == "structure":
            index = next((i for i, m in enumerate(self.config.models) if "text" in (m.modalities or ())), None)
            if index is not None:
                model = self.config.models[index]
                make = self.pm.info(model.plugin).tokenizer
                counter = make(model) if make is not None else None
        return Documents(read, formats, reader, counter)

    # -- run ---------------------------------------------------------------------------------

    def run(self, *, progress: bool = False, prune: bool = False) -> RunSummary:
        """Ingest the source.  Unchanged items (same id, same model) are not embedded again.

        After a complete run, rows left from older versions of the files read are removed; with
        ``prune``, so are rows whose source file or row no longer exists.
        """
        self._check_open()  # before anything is read or written
        if self.config.source is None:
            raise EmbedlineError(f"{self.config.origin}: the pipeline has no [source] to run")
        check_source(self.config)  # the ConfigError `embedline check` gives: a missing path, an unknown encoding
        summary = RunSummary()
        started = time.perf_counter()
        source = Source(self.config.source, self._documents())
        try:
            total = source.total()
        except ItemError as exc:  # gone since check_source looked
            raise ConfigError(f"{exc.uri}: {exc.reason}", source=self.config.origin, key="source.path") from None
        targets = [self._target(i, create=True, lazy=True) for i in range(len(self.config.models))]
        executor = self.executor
        report = _FailureReport(self.config.failures)  # touches no file before the first failure
        bar = _progress(total, enabled=progress)

        def record(outcome: Outcome) -> None:
            summary.add(outcome)
            bar.add(outcome)
            for error in outcome.failures:
                report.write(error)
                log.warning("%s", error)
            if outcome.failures and self.config.on_error == "fail":
                raise outcome.failures[0]

        plan = RunPlan(
            self.config, targets, source=source, store=self.store,
            model=lambda i: self._loaded(targets[i]), record=record,
        )
        complete = False
        try:
            executor.run(plan)
            complete = True
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            report.close()  # no failure in this run: the report of an earlier run is removed
            summary.report = str(report.path) if report.written else None
            for model in self._models.values():
                for name, n in model.model.counters.items():
                    summary.counters[name] = summary.counters.get(name, 0) + n
            summary.seconds = time.perf_counter() - started
        if complete:
            for target in targets:
                if not target.fresh:  # a new collection holds only this run's rows
                    stale = list(plan.ledger.stale(target.index, self.store.scan(target.collection), prune))
                    if stale:
                        self.store.delete(target.collection, stale)
                    summary.removed += len(stale)
            if summary.embedded or summary.removed:
                for target in targets:  # the run is over: make its rows quick to search
                    self.store.flush(target.collection)
            summary.seconds = time.perf_counter() - started
        return summary

    # -- embed & search ------------------------------------------------------------------------

    def embed(self, inputs: Sequence[str | os.PathLike[str]], *, mode: str = "document", modality: str | None = None) -> Any:
        """Vectors with the pipeline's model (for ``modality``, default the first): a ``str`` is a
        text, even one that names a file; a ``pathlib.Path`` is a file."""
        return self.model(modality).embed(inputs, mode=mode)

    def search(
        self,
        query: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
        *,
        file: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
        k: int = 10,
        filter: Any = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Nearest stored items for one query, or for a list of queries searched in one call.

        ``query`` is text: a ``str`` is never taken for a file name, even when a file of that name
        exists.  To search with files (an image, a sound, a document), pass ``file=`` a path or a
        list of paths; a ``pathlib.Path`` given as ``query`` is a file too.  Give one of the two.
        ``filter`` is a portable filter (a mapping such as ``{"modality": "image"}``, see
        :mod:`embedline.filters`), or a string in the store's own syntax, passed through.
        """
        if (query is None) == (file is None):
            raise TypeError("search() takes a text query or file=..., exactly one of them")
        given, to_item = (query, as_item) if file is None else (file, file_item)
        many = not isinstance(given, (str, os.PathLike))
        items = [to_item(q) for q in (list(given) if many else [given])]  # type: ignore[arg-type]
        modality = items[0].modality if items else "text"
        if any(it.modality != modality for it in items):
            raise EmbedlineError("search: all queries in one call must have the same modality")
        index = self._model_index(modality)
        # The collection is checked against the model on the first search only: later searches are
        # one store call.  If it disappears meanwhile, the store says so and the next search checks again.
        target = self._search_targets.get(index)
        if target is None or self._checked.get(target.collection) != target.identity:
            self._open_with_model(index)
            target = self._search_targets[index] = self._target(index, create=False)
        vectors = self.model_at(target.index).embed(items, mode="query")
        try:
            hits = self.store.search(target.collection, vectors, k, as_filter(filter))
        except CollectionNotFoundError:
            self._search_targets.pop(index, None)
            self._checked.pop(target.collection, None)
            raise
        return hits if many else hits[0]


class _FailureReport:
    """Failures as JSON lines (uri, stage, reason), written as they happen so a crash keeps them.

    A report describes one run: the file is created (replacing an earlier run's) at this run's
    first failure, and :meth:`close` removes an earlier run's report when this run had none.
    Nothing is touched before that, so a run refused at its checks leaves the report alone.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.written = 0
        self._file: Any = None

    def write(self, error: ItemError) -> None:
        if self.path is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")
        line = {"uri": printable(error.uri), "stage": error.stage, "reason": printable(error.reason)}
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self.path is not None and self.path.is_file():
            self.path.unlink()  # an earlier run's failures, none of which happened in this run


class RunProgress:
    """What a run's progress bar shows: items done (embedded, skipped or failed) against the items
    known so far, and the files (or rows) read as a second figure.  So 100% means done: the bar
    may step back while files are read and their items become known, and reaches its end when
    the last item is stored.  ``bar`` is a tqdm bar, or None to only count."""

    def __init__(self, files: int | None = None, bar: Any = None):
        self.files_total = files  # None for rows: their number is not known before reading
        self.files = 0
        self.known = 0
        self.done = 0
        self._bar = bar

    def add(self, outcome: Outcome) -> None:
        self.files += outcome.units
        # A file that failed to read, or an audio file that could not be cut, made no item: it
        # is one item known and done.  Items that no model takes are done when they are read.
        self.known += outcome.items + sum(1 for error in outcome.failures if error.stage == "read")
        self.done += outcome.embedded + outcome.skipped + len(outcome.failures) + sum(outcome.unrouted.values())
        if self._bar is not None:
            self._bar.total = self.known
            self._bar.set_postfix_str(self.read(), refresh=False)
            self._bar.update(self.done - self._bar.n)

    def read(self) -> str:
        return f"files {self.files}/{self.files_total}" if self.files_total is not None else f"rows {self.files}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _progress(total: int | None, enabled: bool) -> RunProgress:
    if not enabled:
        return RunProgress(total)
    from tqdm import tqdm

    return RunProgress(total, tqdm(total=0, unit="item", dynamic_ncols=True, smoothing=0.1))


__all__ = ["EmbeddingModel", "Pipeline", "RunSummary", "as_item", "file_item", "load_model", "segments"]
