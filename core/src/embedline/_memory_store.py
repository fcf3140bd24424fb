"""MemoryStore: the ``memory`` plugin's VectorStore (see :mod:`embedline.memory`).

Rows live in NumPy arrays and lists, one set per collection, behind one lock.  With a ``path`` the
whole store is loaded when it opens and written on :meth:`MemoryStore.close` (only if something
changed): to a temporary file in the same folder, then renamed over ``path``, so a crash leaves
the previous file whole.  A killed process loses what it wrote since it opened the store.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedline.contracts import Hit, Record, StoreSpec, VectorStore, fingerprint_id
from embedline.errors import CollectionNotFoundError, StoreError
from embedline.exact import METRICS, nearest
from embedline.filters import Filter, only_portable

FORMAT = "embedline-memory"
VERSION = 1
_COLUMNS = ("uris", "modalities", "chunks", "texts", "metadata", "models")  # the saved file's row fields


class _Collection:
    """One collection: vectors in a growing array, the other fields in lists, ``index`` by id."""

    def __init__(self, fingerprint: Mapping[str, Any], metric: str, dim: int):
        self.fingerprint = dict(fingerprint)
        self.metric = metric
        self.dim = dim
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self.size = 0
        self.ids: list[str] = []
        # (uri, modality, chunk, text, metadata, model) per row, in the order of `ids` and `vectors`
        self.rows: list[tuple[str, str, int, str, dict[str, Any], str]] = []
        self.index: dict[str, int] = {}

    def put(self, record: Record, vector: np.ndarray) -> None:
        row = (record.uri, record.modality, int(record.chunk), record.text or "", _plain(record.metadata), record.model)
        at = self.index.get(record.id)
        if at is None:
            at = self.size
            if at == len(self.vectors):
                grown = np.zeros((max(16, 2 * len(self.vectors)), self.dim), dtype=np.float32)
                grown[:at] = self.vectors[:at]
                self.vectors = grown
            self.ids.append(record.id)
            self.rows.append(row)
            self.index[record.id] = at
            self.size += 1
        else:
            self.rows[at] = row
        self.vectors[at] = vector

    def remove(self, row_id: str) -> None:
        at = self.index.pop(row_id, None)
        if at is None:
            return
        last = self.size - 1
        if at != last:  # move the last row into the hole
            self.vectors[at] = self.vectors[last]
            self.ids[at], self.rows[at] = self.ids[last], self.rows[last]
            self.index[self.ids[at]] = at
        self.ids.pop()
        self.rows.pop()
        self.size = last

    def hit(self, at: int, score: float) -> Hit:
        uri, modality, chunk, text, metadata, _ = self.rows[at]
        return Hit(id=self.ids[at], score=score, uri=uri, modality=modality, chunk=chunk, text=text,
                   metadata=json.loads(json.dumps(metadata)))  # fmt: skip

    def to_json(self, name: str) -> dict[str, Any]:
        columns = list(zip(*self.rows)) if self.rows else [[]] * len(_COLUMNS)
        return {
            "name": name,
            "fingerprint": self.fingerprint,
            "metric": self.metric,
            "dim": self.dim,
            "ids": self.ids,
            **{key: list(column) for key, column in zip(_COLUMNS, columns)},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], vectors: np.ndarray) -> _Collection:
        collection = cls(data["fingerprint"], data["metric"], int(data["dim"]))
        collection.vectors = np.array(vectors, dtype=np.float32).reshape(-1, collection.dim)
        collection.size = len(data["ids"])
        collection.ids = list(data["ids"])
        collection.rows = [tuple(row) for row in zip(*(data[key] for key in _COLUMNS))]
        collection.index = {row_id: at for at, row_id in enumerate(collection.ids)}
        if len(collection.vectors) != collection.size or len(collection.rows) != collection.size:
            vectors = len(collection.vectors)
            raise ValueError(f"collection {data['name']!r} has {vectors} vectors for {collection.size} ids")
        return collection


class MemoryStore(VectorStore):
    """Exact search over vectors kept in this process; safe to use from several threads."""

    def __init__(self, path: Path | None = None, metric: str = "COSINE"):
        if metric not in METRICS:
            raise StoreError(f"memory store: unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        self.path = path
        self.metric = metric
        self.where = f"memory store {path}" if path is not None else "memory store (not saved)"
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {}
        self._dirty = False
        self._closed = False
        if path is not None:
            self._load(path)

    @classmethod
    def open(cls, spec: StoreSpec) -> MemoryStore:
        path = spec.option("path")
        if path:
            path = Path(path).expanduser()
            path = Path(os.path.abspath(path if path.is_absolute() else Path(spec.base_dir) / path))
        return cls(path or None, spec.option("metric", "COSINE"))

    def __repr__(self) -> str:
        return f"MemoryStore({self.where})"

    # -- collections -----------------------------------------------------------------------------

    def get_fingerprint(self, collection: str) -> dict[str, Any] | None:
        with self._lock:
            self._check_open()
            found = self._collections.get(collection)
            return json.loads(json.dumps(found.fingerprint)) if found is not None else None

    def create_collection(self, collection: str, fingerprint: Mapping[str, Any]) -> None:
        fingerprint = _plain(fingerprint)
        with self._lock:
            self._check_open()
            existing = self._collections.get(collection)
            if existing is not None:
                if fingerprint_id(existing.fingerprint) == fingerprint_id(fingerprint):
                    return
                raise StoreError(f"collection {collection!r} already exists in {self.where} for another model")
            self._collections[collection] = _Collection(fingerprint, self.metric, int(fingerprint["dim"]))
            self._dirty = True

    # -- rows ------------------------------------------------------------------------------------

    def existing_ids(self, collection: str, ids: Sequence[str], model: str) -> set[str]:
        with self._lock:
            self._check_open()
            found = self._collections.get(collection)
            if found is None:
                return set()
            return {row_id for row_id in ids if row_id in found.index and found.rows[found.index[row_id]][5] == model}

    def upsert(self, collection: str, records: Sequence[Record]) -> None:
        if not records:
            return
        with self._lock:
            target = self._collection(collection)
            vectors = [_vector(record, target.dim, collection) for record in records]  # check all before writing any
            for record, vector in zip(records, vectors):
                target.put(record, vector)
            self._dirty = True

    def search(self, collection: str, vectors: np.ndarray, k: int, filter: Any = None) -> list[list[Hit]]:
        portable = only_portable(filter, self.where)
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        with self._lock:
            target = self._collection(collection)
            if queries.shape[1] != target.dim:
                raise _dim_mismatch(collection, target.dim, queries.shape[1])
            rows = _selected(target, portable)
            stored = target.vectors[: target.size] if rows is None else target.vectors[rows]
            found = nearest(stored, queries, k, target.metric)
            return [[target.hit(at if rows is None else int(rows[at]), score) for at, score in hits] for hits in found]

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        with self._lock:
            self._check_open()
            found = self._collections.get(collection)
            if found is None:
                return
            for row_id in ids:
                found.remove(row_id)
            self._dirty = True

    def scan(self, collection: str) -> Iterator[tuple[str, str]]:
        with self._lock:
            self._check_open()
            found = self._collections.get(collection)
            rows = [(row_id, row[0]) for row_id, row in zip(found.ids, found.rows)] if found is not None else []
        yield from rows

    def count(self, collection: str) -> int:
        with self._lock:
            self._check_open()
            found = self._collections.get(collection)
            return found.size if found is not None else 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self.path is not None and self._dirty:
                    self._save(self.path)
            finally:
                self._closed = True
                self._collections = {}

    # -- helpers ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.where}: the store is closed")

    def _collection(self, collection: str) -> _Collection:
        self._check_open()
        found = self._collections.get(collection)
        if found is None:
            raise CollectionNotFoundError(collection, self.where)
        return found

    def _load(self, path: Path) -> None:
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.where}: cannot create folder {path.parent}: {exc.strerror}") from None
            return
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode("utf-8"))
                if header.get("format") != FORMAT or header.get("version") != VERSION:
                    raise ValueError(f"not a {FORMAT} file of version {VERSION}")
                for number, entry in enumerate(header["collections"]):
                    self._collections[entry["name"]] = _Collection.from_json(entry, data[f"vectors_{number}"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            raise StoreError(f"cannot read {self.where}: {reason}") from None

    def _save(self, path: Path) -> None:
        header = {"format": FORMAT, "version": VERSION, "collections": []}
        arrays: dict[str, np.ndarray] = {}
        for number, (name, found) in enumerate(self._collections.items()):
            header["collections"].append(found.to_json(name))
            arrays[f"vectors_{number}"] = found.vectors[: found.size]
        arrays["header"] = np.frombuffer(json.dumps(header, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise StoreError(f"cannot write {self.where}: {exc.strerror or exc}") from None
        self._dirty = False


def _selected(collection: _Collection, portable: Filter | None) -> np.ndarray | None:
    """Positions of the rows the filter keeps (None: every row)."""
    if portable is None:
        return None
    keep = [at for at, (uri, modality, chunk, _, metadata, _) in enumerate(collection.rows)
            if portable.matches(uri, modality, chunk, metadata)]  # fmt: skip
    return np.asarray(keep, dtype=np.int64)


def _vector(record: Record, dim: int, collection: str) -> np.ndarray:
    vector = np.asarray(record.vector, dtype=np.float32).ravel()
    if vector.shape[0] != dim:
        raise _dim_mismatch(collection, dim, vector.shape[0])
    return vector


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON copy: what the caller keeps cannot change what is stored, and values JSON cannot
    hold (dates, ...) become strings, as in the milvus store."""
    return json.loads(json.dumps(dict(mapping), default=str)) if mapping else {}


def _dim_mismatch(collection: str, stored: int, got: int) -> StoreError:
    return StoreError(
        f"dimension mismatch in collection {collection!r}: it stores vectors of dim {stored}, got {got}; "
        "use the model that filled it or another collection"
    )
