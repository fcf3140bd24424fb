"""The host API: load a pipeline, run it, embed inputs, search.

Data flows one way: source units -> items -> ``preprocess`` -> ``embed`` -> ``store`` (upsert).
Stages work on batches and keep no state between batches beyond what the objects hold, so the same
steps can later run on a distributed engine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from embedline.config import ModelSpec, PipelineConfig, bind_plugins, load_config, parse_config
from embedline.contracts import (
    Failed,
    Hit,
    Item,
    Model,
    Record,
    VectorStore,
    describe_fingerprint,
    fingerprint_id,
)
from embedline.errors import ConfigError, EmbedlineError, ItemError, ModelMismatchError, PluginLoadError
from embedline.plugins import PluginManager, get_plugin_manager
from embedline.sources import Source, Unit, read_file

log = logging.getLogger("embedline")

#: The fingerprint keys that decide whether two models make interchangeable vectors.  The plugin
#: version and the path the weights were read from are recorded but do not count.
IDENTITY_KEYS = ("plugin", "revision", "dim", "normalized", "settings", "segment")


def model_identity(fingerprint: Mapping[str, Any]) -> str:
    return fingerprint_id({k: fingerprint.get(k) for k in IDENTITY_KEYS})


# ---------------------------------------------------------------------------------------------
# A loaded model, bound to the plugin that made it
# ---------------------------------------------------------------------------------------------


@attrs.define
class Embedded:
    """What :meth:`EmbeddingModel.embed_items` returns: vectors for the items that worked."""

    items: list[Item]
    vectors: Any  # float32 (len(items), dim)
    failures: list[ItemError]


class EmbeddingModel:
    """A model loaded through its plugin.

    Besides embedline's own batch API it offers pymilvus' model-library interface
    (``encode_documents``, ``encode_queries``, ``dim``, calling it), so it drops into code written
    for ``pymilvus.model`` embedding functions.
    """

    def __init__(self, pm: PluginManager, model: Model):
        self.pm = pm
        self.model = model
        self.fingerprint = model.fingerprint()
        self.identity = model_identity(self.fingerprint)

    @classmethod
    def load(cls, pm: PluginManager, spec: ModelSpec) -> EmbeddingModel:
        model = pm.call("load_model", spec.plugin, spec=spec)
        if not isinstance(model, Model):
            raise PluginLoadError(
                f"plugin {spec.plugin!r}: load_model returned {type(model).__name__}, expected embedline.Model"
            )
        model.plugin = spec.plugin
        model.plugin_version = pm.version(spec.plugin)
        model.spec = spec
        if spec.modalities:
            model.modalities = tuple(m for m in model.modalities if m in spec.modalities)
        return cls(pm, model)

    def __repr__(self) -> str:
        return f"<EmbeddingModel {describe_fingerprint(self.fingerprint)}>"

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.model.modalities

    @property
    def batch_size(self) -> int:
        return self.model.spec.batch_size if self.model.spec else 32

    # -- embedline API -----------------------------------------------------------------------

    def embed_items(self, items: Sequence[Item], mode: str = "document") -> Embedded:
        """Embed ``items`` in batches; items that fail are returned as errors, never raised."""
        import numpy as np

        kept: list[Item] = []
        blocks = []
        failures: list[ItemError] = []
        for start in range(0, len(items), self.batch_size):
            batch = list(items[start : start + self.batch_size])
            ok, vectors, bad = self._embed_batch(batch, mode)
            kept.extend(ok)
            failures.extend(bad)
            if len(ok):
                blocks.append(vectors)
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, self.dim), dtype=np.float32)
        return Embedded(kept, matrix, failures)

    def _embed_batch(self, batch: list[Item], mode: str):
        failures = []
        wrong = [it for it in batch if it.modality not in self.modalities]
        for it in wrong:
            failures.append(ItemError(it.uri, "preprocess", f"{self.model.plugin} cannot embed {it.modality}"))
        batch = [it for it in batch if it.modality in self.modalities]
        if not batch:
            return [], None, failures
        try:
            inputs = self._call("preprocess", items=batch, mode=mode)
        except EmbedlineError:
            raise
        except Exception as exc:  # a plugin bug on one item must not hide which item
            if len(batch) == 1:
                return [], None, failures + [ItemError(batch[0].uri, "preprocess", _reason(exc))]
            return self._one_by_one(batch, mode, failures)
        if len(inputs) != len(batch):
            raise PluginLoadError(
                f"plugin {self.model.plugin!r}: preprocess returned {len(inputs)} inputs for {len(batch)} items"
            )
        good_items, good_inputs = [], []
        for item, value in zip(batch, inputs):
            if isinstance(value, Failed):
                failures.append(ItemError(item.uri, "preprocess", value.reason))
            else:
                good_items.append(item)
                good_inputs.append(value)
        if not good_items:
            return [], None, failures
        try:
            vectors = self._vectors(good_inputs, mode)
        except EmbedlineError:
            raise
        except Exception as exc:
            if len(good_items) == 1:
                return [], None, failures + [ItemError(good_items[0].uri, "embed", _reason(exc))]
            return self._one_by_one(good_items, mode, failures)
        return self._drop_non_finite(good_items, vectors, failures)

    def _one_by_one(self, batch: list[Item], mode: str, failures: list[ItemError]):
        """Isolate the items that break a batch by retrying each on its own."""
        import numpy as np

        kept, blocks = [], []
        for item in batch:
            ok, vectors, bad = self._embed_batch([item], mode)
            failures.extend(bad)
            if ok:
                kept.extend(ok)
                blocks.append(vectors)
        return kept, (np.concatenate(blocks) if blocks else None), failures

    def _drop_non_finite(self, items: list[Item], vectors: Any, failures: list[ItemError]):
        import numpy as np

        finite = np.isfinite(vectors).all(axis=1)
        if finite.all():
            return items, vectors, failures
        for item, ok in zip(items, finite):
            if not ok:
                failures.append(ItemError(item.uri, "embed", "the model produced NaN or infinite values"))
        return [it for it, ok in zip(items, finite) if ok], vectors[finite], failures

    def _call(self, hook: str, **kwargs: Any) -> Any:
        return self.pm.call(hook, self.model.plugin, model=self.model, **kwargs)

    def _vectors(self, inputs: list[Any], mode: str) -> Any:
        import numpy as np

        raw = self._call("embed", inputs=inputs, mode=mode)
        if hasattr(raw, "detach"):  # a torch tensor slipped through
            raw = raw.detach().cpu().numpy()
        vectors = np.ascontiguousarray(raw, dtype=np.float32)
        if vectors.shape != (len(inputs), self.dim):
            raise PluginLoadError(
                f"plugin {self.model.plugin!r}: embed returned shape {tuple(vectors.shape)}, "
                f"expected ({len(inputs)}, {self.dim})"
            )
        return vectors

    def embed(self, inputs: Sequence[str | os.PathLike[str] | Item], mode: str = "document") -> Any:
        """Vectors for texts (or file paths, or items); raises :class:`ItemError` on the first failure."""
        items = [as_item(x, self.modalities) for x in inputs]
        result = self.embed_items(items, mode)
        if result.failures:
            raise result.failures[0]
        return result.vectors

    # -- pymilvus model-library interface -------------------------------------------------------

    def encode_documents(self, documents: Sequence[str]) -> list[Any]:
        return list(self.embed(documents, mode="document"))

    def encode_queries(self, queries: Sequence[str]) -> list[Any]:
        return list(self.embed(queries, mode="query"))

    def __call__(self, texts: Sequence[str]) -> list[Any]:
        return self.encode_documents(texts)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def as_item(value: str | os.PathLike[str] | Item, modalities: Sequence[str] = ("text",)) -> Item:
    """An item for a query or an ad-hoc input: an existing file path becomes a file item."""
    if isinstance(value, Item):
        return value
    if isinstance(value, os.PathLike) or (isinstance(value, str) and "\n" not in value and len(value) < 4096 and _is_file(value)):
        path = Path(value)
        unit = read_file(path, _adhoc_source(path))
        if unit.error is not None:
            raise unit.error
        return unit.items[0]
    text = str(value)
    return Item(id=hashlib.blake2b(text.encode(), digest_size=16).hexdigest() + ":0", uri="<input>", modality="text", text=text)


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except OSError:
        return False


def _adhoc_source(path: Path):
    from embedline.config import ChunkSpec, SourceSpec

    return SourceSpec(path=path.resolve(), chunk=ChunkSpec(by="none"), base_dir=Path.cwd())


def load_model(spec: Mapping[str, Any] | ModelSpec, *, pm: PluginManager | None = None) -> EmbeddingModel:
    """Load one model from a ``[model]``-style dict, e.g. ``{"plugin": "minilm", "name": "..."}``."""
    pm = pm or get_plugin_manager()
    if not isinstance(spec, ModelSpec):
        config = parse_config({"model": dict(spec)}, origin="<model>")
        config = bind_plugins(config, pm)
        spec = config.models[0]
    return EmbeddingModel.load(pm, spec)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


@attrs.define
class RunSummary:
    units: int = 0  # files or rows read
    items: int = 0  # chunks/segments they produced
    embedded: int = 0
    skipped: int = 0  # already stored with the same model
    failed: list[ItemError] = attrs.field(factory=list)
    unrouted: dict[str, int] = attrs.field(factory=dict)  # modality -> items no model takes
    counters: dict[str, int] = attrs.field(factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

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
        for modality, n in sorted(self.unrouted.items()):
            lines.append(f"  not embedded: {n} {modality} item(s) (no model in the pipeline takes {modality})")
        for name, n in sorted(self.counters.items()):
            lines.append(f"  {name}: {n}")
        for err in self.failed[:20]:
            lines.append(f"  failed: {err}")
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failure(s)")
        if self.interrupted:
            lines.append("  interrupted: what was embedded before the interrupt is stored")
        return "\n".join(lines)


class Pipeline:
    """A pipeline file, bound to its plugins.  Models and the store open on first use."""

    def __init__(self, config: PipelineConfig, *, pm: PluginManager | None = None):
        self.pm = pm or get_plugin_manager()
        self.config = bind_plugins(config, self.pm)
        self._models: dict[int, EmbeddingModel] = {}
        self._store: VectorStore | None = None
        self._ready: set[str] = set()

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
        self._ready.clear()

    # -- parts -------------------------------------------------------------------------------

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = self.pm.call("store", self.config.store.plugin, spec=self.config.store)
        return self._store

    def model(self, modality: str | None = None) -> EmbeddingModel:
        """The model for ``modality`` (the first model when None), loaded on first use."""
        return self.model_at(self._model_index(modality))

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

    def collection(self, index: int) -> str:
        return self.config.collection_for(self.config.models[index])

    def _prepare(self, index: int, create: bool) -> tuple[EmbeddingModel, str]:
        """Load the model, and check (or create) its collection against the model's fingerprint."""
        self.store  # connect first: a wrong URI fails in milliseconds, a model takes seconds to load
        model = self.model_at(index)
        name = self.collection(index)
        if name in self._ready:
            return model, name
        stored = self.store.get_fingerprint(name)
        if stored is None:
            if not create:
                raise EmbedlineError(
                    f"collection {name!r} does not exist yet: run `embedline run {self.config.origin}` first"
                )
            self.store.create_collection(name, {**model.fingerprint, "identity": model.identity})
        elif model_identity(stored) != model.identity:
            raise ModelMismatchError(
                f"collection {name!r} was filled by {describe_fingerprint(stored)}, but this pipeline's model is "
                f"{describe_fingerprint(model.fingerprint)}; vectors of different models cannot be compared. "
                f"Use the collection's model, or another `collection` name to embed with this one"
            )
        self._ready.add(name)
        return model, name

    def model_at(self, index: int) -> EmbeddingModel:
        if index not in self._models:
            try:
                self._models[index] = EmbeddingModel.load(self.pm, self.config.models[index])
            except ConfigError as exc:  # a plugin's config complaint: say which file it is about
                if exc.source is not None:
                    raise
                raise ConfigError(exc.reason, source=self.config.origin, key=exc.key) from exc
        return self._models[index]

    # -- run ---------------------------------------------------------------------------------

    def run(self, *, progress: bool = False) -> RunSummary:
        """Ingest the source.  Unchanged items (same id, same model) are not embedded again."""
        if self.config.source is None:
            raise EmbedlineError(f"{self.config.origin}: the pipeline has no [source] to run")
        summary = RunSummary()
        started = time.perf_counter()
        source = Source(self.config.source)
        try:
            total = source.total()
        except ItemError as exc:
            raise EmbedlineError(f"{self.config.origin}: source.path: {exc.uri}: {exc.reason}") from None
        routes = self._routes()
        for index in range(len(self.config.models)):  # load and check every model before reading
            self._prepare(index, create=True)
        bar = _progress(total, enabled=progress)
        pending: dict[int, list[Item]] = {}
        try:
            for unit in source:
                summary.units += 1
                bar.update(1)
                self._take(unit, routes, pending, summary)
                for index, items in pending.items():
                    if len(items) >= self.model_at(index).batch_size:
                        self._flush(index, items, summary)
                        pending[index] = []
            for index, items in pending.items():
                if items:
                    self._flush(index, items, summary)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            for model in self._models.values():
                for name, n in model.model.counters.items():
                    summary.counters[name] = summary.counters.get(name, 0) + n
            summary.seconds = time.perf_counter() - started
        return summary

    def _take(self, unit: Unit, routes: Mapping[str, int], pending: dict[int, list[Item]], summary: RunSummary) -> None:
        if unit.error is not None:
            self._fail(unit.error, summary)
            return
        for item in unit.items:
            index = routes.get(item.modality)
            if index is None:
                summary.items += 1
                summary.unrouted[item.modality] = summary.unrouted.get(item.modality, 0) + 1
                continue
            segment = self.model_at(index).model.segment
            try:
                timed = segment and item.path and item.modality in ("audio", "video")
                pieces = segments(item, *segment) if timed else [item]
            except ItemError as exc:
                self._fail(exc, summary)
                continue
            summary.items += len(pieces)
            pending.setdefault(index, []).extend(pieces)

    def _fail(self, error: ItemError, summary: RunSummary) -> None:
        summary.failed.append(error)
        log.warning("%s", error)
        if self.config.on_error == "fail":
            raise error

    def _flush(self, index: int, items: list[Item], summary: RunSummary) -> None:
        model, collection = self._prepare(index, create=True)
        unique = list({item.id: item for item in items}.values())  # identical content, one row
        summary.skipped += len(items) - len(unique)
        stored = self.store.existing_ids(collection, [it.id for it in unique], model.identity)
        todo = [it for it in unique if it.id not in stored]
        summary.skipped += len(unique) - len(todo)
        if not todo:
            return
        result = model.embed_items(todo, mode="document")
        for error in result.failures:
            self._fail(error, summary)
        if not result.items:
            return
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
        self.store.upsert(collection, records)
        summary.embedded += len(records)

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
        items = [as_item(q, _all_modalities(self.config)) for q in queries]
        modality = items[0].modality if items else "text"
        if any(it.modality != modality for it in items):
            raise EmbedlineError("search: all queries in one call must have the same modality")
        index = self._model_index(modality)
        model, collection = self._prepare(index, create=False)
        vectors = model.embed(items, mode="query")
        hits = self.store.search(collection, vectors, k, filter)
        return hits if many else hits[0]


def segments(item: Item, seconds: float, overlap: float) -> list[Item]:
    """Cut an audio/video item into windows of ``seconds`` (sharing ``overlap``), one item each.

    Ids hash the file's id with the window settings, plus the window index, so changing the
    windows never reuses a stored vector.  Raises :class:`ItemError` for files with no duration.
    """
    from embedline.media import MediaError, duration
    from embedline.sources import content_id

    try:
        total = duration(item.path, item.modality)
    except MediaError as exc:
        raise ItemError(item.uri, "read", str(exc)) from None
    except ImportError as exc:
        raise ItemError(item.uri, "read", f"cannot decode {item.modality}: {exc}") from None
    if not total > 0:
        raise ItemError(item.uri, "read", f"{item.modality} has no content (duration 0)")
    step = seconds - overlap
    if step <= 0:
        raise ValueError(f"segment overlap ({overlap}) must be shorter than the window ({seconds})")
    key = content_id(item.id, f"segment={seconds}/{overlap}")
    out, start, k = [], 0.0, 0
    while True:
        end = min(start + seconds, total)
        meta = {**item.metadata, "start": round(start, 3), "end": round(end, 3)}
        out.append(attrs.evolve(item, id=f"{key}:{k}", chunk=k, metadata=meta))
        if end >= total:
            return out
        start, k = start + step, k + 1


def _all_modalities(config: PipelineConfig) -> tuple[str, ...]:
    out: list[str] = []
    for spec in config.models:
        out.extend(m for m in spec.modalities or () if m not in out)
    return tuple(out)


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


__all__ = ["EmbeddingModel", "Pipeline", "RunSummary", "as_item", "load_model"]
