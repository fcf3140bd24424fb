"""A model loaded through its plugin: batching, failure isolation, and pymilvus' interface.

Embedding is two steps so that a pipeline can run them on different threads: :meth:`prepare`
(the ``preprocess`` hook: decoding, tokenising) and :meth:`embed_prepared` (the ``embed`` hook).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from embedline.config import ChunkSpec, ModelSpec, SourceSpec, bind_plugins, parse_config
from embedline.contracts import Failed, Item, Model, describe_fingerprint
from embedline.errors import EmbedlineError, ItemError, PluginError
from embedline.fingerprints import model_identity
from embedline.modalities import is_size_batched
from embedline.plugins import PluginManager, get_plugin_manager

#: Text items gathered before they are ordered by size and cut into batches of ``batch_size``
#: (rounded down to whole batches): inputs of similar size in a batch mean less padding for
#: transformer models.  Other modalities are decoded in ``preprocess`` and are gathered one batch
#: at a time, which bounds memory.
LENGTH_GROUP_ITEMS = 2048

@attrs.define
class Prepared:
    """Inputs ready for ``embed``: ``inputs[i]`` belongs to ``items[i]``."""

    items: list[Item]
    inputs: list[Any]
    failures: list[ItemError]


@attrs.define
class Embedded:
    """Vectors for the items that worked, and why the others did not."""

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
            raise PluginError(
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

    # -- the two steps -------------------------------------------------------------------------

    def prepare(self, items: Sequence[Item], mode: str = "document") -> Prepared:
        """Run ``preprocess`` on one batch; items it cannot use come back as failures."""
        failures = [
            ItemError(it.uri, "preprocess", f"{self.model.plugin} cannot embed {it.modality}")
            for it in items
            if it.modality not in self.modalities
        ]
        batch = [it for it in items if it.modality in self.modalities]
        if not batch:
            return Prepared([], [], failures)
        try:
            inputs = self._call("preprocess", items=batch, mode=mode)
        except EmbedlineError:
            raise
        except Exception as exc:  # a plugin error on one item must not hide which item
            if len(batch) == 1:
                return Prepared([], [], failures + [ItemError(batch[0].uri, "preprocess", _reason(exc))])
            parts = [self.prepare([it], mode) for it in batch]
            return Prepared(
                [it for p in parts for it in p.items],
                [x for p in parts for x in p.inputs],
                failures + [f for p in parts for f in p.failures],
            )
        if len(inputs) != len(batch):
            raise PluginError(
                f"plugin {self.model.plugin!r}: preprocess returned {len(inputs)} inputs for {len(batch)} items"
            )
        kept, kept_inputs = [], []
        for item, value in zip(batch, inputs):
            if isinstance(value, Failed):
                failures.append(ItemError(item.uri, "preprocess", value.reason))
            else:
                kept.append(item)
                kept_inputs.append(value)
        return Prepared(kept, kept_inputs, failures)

    def embed_prepared(self, prepared: Prepared, mode: str = "document") -> Embedded:
        """Run ``embed``; if the batch fails, retry its inputs one by one to find the bad ones."""
        import numpy as np

        failures = list(prepared.failures)
        if not prepared.items:
            return Embedded([], np.zeros((0, self.dim), dtype=np.float32), failures)
        try:
            vectors = self._vectors(prepared.inputs, mode)
            items = list(prepared.items)
        except EmbedlineError:
            raise
        except Exception as exc:
            if len(prepared.items) == 1:
                failures.append(ItemError(prepared.items[0].uri, "embed", _reason(exc)))
                return Embedded([], np.zeros((0, self.dim), dtype=np.float32), failures)
            parts = [self.embed_prepared(Prepared([it], [x], []), mode) for it, x in zip(prepared.items, prepared.inputs)]
            items = [it for p in parts for it in p.items]
            vectors = np.concatenate([p.vectors for p in parts])
            failures += [f for p in parts for f in p.failures]
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            failures += [
                ItemError(it.uri, "embed", "the model produced NaN or infinite values")
                for it, ok in zip(items, finite)
                if not ok
            ]
            items, vectors = [it for it, ok in zip(items, finite) if ok], vectors[finite]
        return Embedded(items, vectors, failures)

    def window(self, modality: str) -> int:
        return window_size(self.batch_size, modality)

    def batches(self, prepared: Prepared) -> list[Prepared]:
        """Cut prepared inputs into batches of ``batch_size``, inputs of similar size together.

        The size of an input is its ``len()`` where it has one (a plugin can return objects whose
        length is their token count); other inputs keep their order.  Failures are not carried.
        """
        order = sorted(range(len(prepared.inputs)), key=lambda i: _size(prepared.inputs[i]))
        return [
            Prepared([prepared.items[i] for i in chunk], [prepared.inputs[i] for i in chunk], [])
            for chunk in (order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size))
        ]

    def embed_items(self, items: Sequence[Item], mode: str = "document") -> Embedded:
        """Both steps over any number of items, in batches of ``batch_size``; results keep the
        items' order."""
        import numpy as np

        kept, blocks, failures = [], [], []
        start = 0
        while start < len(items):
            modality, end = items[start].modality, start
            limit = start + self.window(modality)
            while end < min(limit, len(items)) and items[end].modality == modality:
                end += 1
            prepared = self.prepare(items[start:end], mode)
            failures += prepared.failures
            position = {id(item): i for i, item in enumerate(prepared.items)}
            done = [self.embed_prepared(batch, mode) for batch in self.batches(prepared)]
            got = [(position[id(item)], item, row) for r in done for item, row in zip(r.items, r.vectors)]
            got.sort(key=lambda t: t[0])
            kept += [item for _, item, _ in got]
            blocks.append(np.stack([row for _, _, row in got]) if got else np.zeros((0, self.dim), np.float32))
            failures += [f for r in done for f in r.failures]
            start = end
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, self.dim), dtype=np.float32)
        return Embedded(kept, matrix, failures)

    def _call(self, hook: str, **kwargs: Any) -> Any:
        return self.pm.call(hook, self.model.plugin, model=self.model, **kwargs)

    def _vectors(self, inputs: list[Any], mode: str) -> Any:
        import numpy as np

        raw = self._call("embed", inputs=inputs, mode=mode)
        if hasattr(raw, "detach"):  # a torch tensor slipped through
            raw = raw.detach().cpu().numpy()
        vectors = np.ascontiguousarray(raw, dtype=np.float32)
        if vectors.shape != (len(inputs), self.dim):
            raise PluginError(
                f"plugin {self.model.plugin!r}: embed returned shape {tuple(vectors.shape)}, "
                f"expected ({len(inputs)}, {self.dim})"
            )
        return vectors

    def embed(self, inputs: Sequence[str | os.PathLike[str] | Item], mode: str = "document") -> Any:
        """Vectors for texts (``str``), files (``pathlib.Path``) or items; raises :class:`ItemError`
        on the first failure.  A ``str`` is always a text, even one that names a file."""
        items = [as_item(x) for x in inputs]
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


def window_size(batch_size: int, modality: str) -> int:
    """How many items of ``modality`` are prepared together, then ordered by size into batches."""
    if not is_size_batched(modality):
        return batch_size
    return max(batch_size, LENGTH_GROUP_ITEMS // batch_size * batch_size)


def _size(value: Any) -> int:
    try:
        return len(value)
    except TypeError:  # no len(), or a 0-d array
        return 0


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def as_item(value: str | os.PathLike[str] | Item) -> Item:
    """An item for a query or an ad-hoc input.  Never guesses: a ``str`` is always a text, even one
    that names a file; an ``os.PathLike`` (``pathlib.Path``) is always a file (see :func:`file_item`)."""
    if isinstance(value, Item):
        return value
    if isinstance(value, os.PathLike):
        return file_item(value)
    if not isinstance(value, str):
        raise TypeError(f"expected a text (str), a file (pathlib.Path) or an Item, got {type(value).__name__}")
    key = hashlib.blake2b(value.encode(), digest_size=16).hexdigest()
    return Item(id=f"{key}:0", uri="<input>", modality="text", text=value)


def file_item(path: str | os.PathLike[str]) -> Item:
    """The whole file at ``path`` as one item (modality from its bytes); :class:`ItemError` if it
    cannot be read."""
    from embedline.sources import read_file

    path = Path(path)
    spec = SourceSpec(path=path.resolve(), chunk=ChunkSpec(by="none"), base_dir=Path.cwd())
    unit = read_file(path, spec)
    if unit.error is not None:
        raise unit.error
    return unit.items[0]


def load_model(spec: Mapping[str, Any] | ModelSpec, *, pm: PluginManager | None = None) -> EmbeddingModel:
    """Load one model from a ``[model]``-style dict, e.g. ``{"plugin": "minilm", "name": "..."}``."""
    pm = pm or get_plugin_manager()
    if not isinstance(spec, ModelSpec):
        config = bind_plugins(parse_config({"model": dict(spec), "store": {"plugin": "memory"}}, origin="<model>"), pm)
        spec = config.models[0]
    return EmbeddingModel.load(pm, spec)
