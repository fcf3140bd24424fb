"""What the routes share: the pipeline's models by name, their batchers, locks and token counters.

Thread safety.  A model is used by one thread at a time: its batcher's worker and a search take
the model's lock (tokenizers and some backends are not safe for concurrent calls).  Searches are
serialised with one more lock, since ``Pipeline.search`` keeps per-collection state and a Milvus
Lite client is used from one thread at a time.  Loading a model is already guarded by the pipeline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from embedline import Pipeline

from embedline_serve.batching import DynamicBatcher

log = logging.getLogger("embedline.serve")


@dataclass(frozen=True)
class ServedModel:
    """One model of the pipeline as the API names it."""

    index: int
    id: str  # its collection name
    aliases: tuple[str, ...]
    plugin: str
    modalities: tuple[str, ...]
    batch_size: int

    @property
    def embeds_text(self) -> bool:
        return "text" in self.modalities


class Service:
    """The pipeline's models, warm, behind batchers.  Owns no pipeline: closing it stops the
    batchers only; whoever made the pipeline closes it."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        aliases: Mapping[str, str] | None = None,
        batching: bool = True,
        max_wait_ms: float = 5.0,
        max_batch: int | None = None,
    ):
        self.pipeline = pipeline
        self.batching = batching
        self.max_wait_ms = max_wait_ms
        self.max_batch = max_batch
        self.models: list[ServedModel] = []
        self._names: dict[str, ServedModel] = {}
        extra: dict[str, list[str]] = {}
        collections = {pipeline.collection(i) for i in range(len(pipeline.config.models))}
        for alias, target in (aliases or {}).items():
            if target not in collections:
                raise ValueError(f"alias {alias!r} names {target!r}, which is not a collection of this pipeline "
                                 f"(collections: {', '.join(sorted(collections))})")
            extra.setdefault(target, []).append(alias)
        for i, spec in enumerate(pipeline.config.models):
            collection = pipeline.collection(i)
            modalities = tuple(spec.modalities or pipeline.pm.info(spec.plugin).modalities)
            names = [*extra.get(collection, ()), *([spec.name] if spec.name else [])]
            self.models.append(
                ServedModel(i, collection, tuple(dict.fromkeys(names)), spec.plugin, modalities, spec.batch_size)
            )
        for model in self.models:  # collection names first: an alias never hides a collection
            self._names.setdefault(model.id, model)
        for model in self.models:
            for alias in model.aliases:
                self._names.setdefault(alias, model)
        self.model_locks = [threading.Lock() for _ in self.models]
        self.search_lock = threading.Lock()
        self._batchers: dict[int, DynamicBatcher] = {}
        self._counters: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- models ------------------------------------------------------------------------------

    def lookup(self, name: str) -> ServedModel | None:
        return self._names.get(name)

    def dim(self, model: ServedModel) -> int:
        return int(self.pipeline.model_at(model.index).dim)

    def index_for(self, modality: str) -> int | None:
        """The model a search with a ``modality`` query uses (the pipeline's own rule: the first)."""
        return next((m.index for m in self.models if modality in m.modalities), None)

    def batcher(self, model: ServedModel) -> DynamicBatcher:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            batcher = self._batchers.get(model.index)
            if batcher is None:
                loaded = self.pipeline.model_at  # bound now; the model loads on first use

                def embed(texts: list[str], mode: str, index: int = model.index) -> Any:
                    return loaded(index).embed(texts, mode=mode)

                batcher = DynamicBatcher(
                    embed,
                    max_batch=self.max_batch or model.batch_size,
                    max_wait_ms=self.max_wait_ms,
                    enabled=self.batching,
                    lock=self.model_locks[model.index],
                    name=f"embedline-batcher-{model.id}",
                )
                self._batchers[model.index] = batcher
            return batcher

    def count_tokens(self, model: ServedModel, texts: Sequence[str]) -> int:
        """Tokens in ``texts`` as the model's plugin counts them; whitespace words when it cannot."""
        counter = self._counter(model)
        if counter is not None:
            try:
                return int(sum(counter.count(list(texts))))
            except Exception:  # noqa: BLE001 - usage is informative: fall back, never fail the request
                log.debug("token counter of %s failed; counting words", model.id, exc_info=True)
        return sum(len(text.split()) for text in texts)

    def _counter(self, model: ServedModel) -> Any:
        with self._lock:
            if model.index not in self._counters:
                spec = self.pipeline.config.models[model.index]
                make = self.pipeline.pm.info(spec.plugin).tokenizer
                try:
                    self._counters[model.index] = make(spec) if make is not None else None
                except Exception:  # noqa: BLE001
                    log.debug("no token counter for %s", model.id, exc_info=True)
                    self._counters[model.index] = None
            return self._counters[model.index]

    # -- search --------------------------------------------------------------------------------

    def search(self, *, query: str | None = None, file: str | None = None, k: int, filter: Any) -> list[Any]:
        """``Pipeline.search`` for one text or one file, with the locks it needs (blocking)."""
        if query is not None:
            index = self.index_for("text")
            locks: Iterable[threading.Lock] = [self.model_locks[index]] if index is not None else []
        else:  # the file's modality is known once it is read: hold every model
            locks = self.model_locks
        with self.search_lock, ExitStack() as stack:
            for lock in locks:
                stack.enter_context(lock)
            if query is not None:
                return self.pipeline.search(query, k=k, filter=filter)  # type: ignore[return-value]
            return self.pipeline.search(file=file, k=k, filter=filter)  # type: ignore[return-value]

    # -- life ----------------------------------------------------------------------------------

    def warm(self, *, store: bool = True) -> None:
        """Load every model now (and open the store), and run each text model once, so the first
        request pays nothing; errors are raised as the pipeline raises them (one line)."""
        for model in self.models:
            loaded = self.pipeline.model_at(model.index)
            if model.embeds_text:
                with self.model_locks[model.index]:
                    loaded.embed(["warm up"], mode="query")
            self._counter(model)
        if store:
            self.pipeline.store  # noqa: B018 - connect now

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per model: model calls, texts and requests its batcher handled."""
        with self._lock:
            items = list(self._batchers.items())
        by_index = {m.index: m.id for m in self.models}
        return {by_index[i]: {"calls": b.calls, "texts": b.texts, "requests": b.jobs} for i, b in items}


__all__ = ["ServedModel", "Service"]
