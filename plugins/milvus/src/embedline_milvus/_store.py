"""MilvusStore: the VectorStore the ``store`` hook returns."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import numpy as np
from embedline.contracts import Hit, Record, StoreSpec, VectorStore
from embedline.errors import CollectionNotFoundError, StoreError
from pymilvus import DataType, MilvusClient, MilvusException

from embedline_milvus._connect import Connection, connect, option
from embedline_milvus._filter import literal, milvus_expression
from embedline_milvus._logs import ours, quiet
from embedline_milvus._options import COLLECTION_NAME

FINGERPRINT_KEY = "embedline.fingerprint"
METRIC_KEY = "embedline.metric"  # the metric the index was built with, recorded at creation
OUTPUT_FIELDS = ["uri", "modality", "chunk", "text", "metadata"]
ID_MAX_LENGTH = 128
URI_MAX_LENGTH = 4096
_IDS_PER_CALL = 500  # keeps `id in [...]` expressions and delete requests well under server limits
_COLLECTION_NOT_FOUND = 100
_SCAN_BATCH = 5000
_DIM_ERROR = re.compile(r"expected dim (\d+), got (\d+)")


class MilvusStore(VectorStore):
    def __init__(self, conn: Connection, spec: StoreSpec):
        self._conn = conn
        self._client: MilvusClient | None = conn.client
        self._index = option(spec, "index")
        self._metric = option(spec, "metric")
        self._index_params = dict(option(spec, "index_params") or {})
        self._search_params = dict(option(spec, "search_params") or {})
        self._batch = option(spec, "write_batch_size")
        # An in-process Milvus Lite serves one write at a time and shares this process's GIL:
        # nothing to overlap.
        self._concurrency = 1 if conn.lite_path is not None else option(spec, "write_concurrency")
        self._pool: ThreadPoolExecutor | None = None
        self._text_max = option(spec, "text_max_length")
        self._dims: dict[str, int] = {}
        self._metrics: dict[str, str] = {}  # the metric each collection's index was built with
        self._loaded: set[str] = set()
        self._unindexed: set[str] = set()  # created here, vector index not made yet (flush or close makes it)
        self._load_lock = threading.Lock()  # worker threads may all find a collection unloaded

    @classmethod
    def open(cls, spec: StoreSpec) -> MilvusStore:
        return cls(connect(spec), spec)

    def __repr__(self) -> str:  # the token is never kept on the store, so it cannot leak from here
        return f"MilvusStore({self._conn.where})"

    __str__ = __repr__

    # -- collections -----------------------------------------------------------------------------

    @quiet
    def get_fingerprint(self, collection: str) -> dict[str, Any] | None:
        with self._failing(collection, f"reading collection {collection!r}"):
            # One round trip: a missing collection is the describe call's "not found" (code 100);
            # servers that report it otherwise are asked once more.
            try:
                info = self.client.describe_collection(collection)
            except MilvusException as exc:
                if exc.code == _COLLECTION_NOT_FOUND or not self.client.has_collection(collection):
                    return None
                raise
        properties = info.get("properties") or {}
        raw = properties.get(FINGERPRINT_KEY)
        if raw is None:
            raise StoreError(
                f"collection {collection!r} in {self._conn.where} was not created by embedline "
                f"(it has no {FINGERPRINT_KEY!r} property); choose another collection name"
            )
        try:
            fingerprint = json.loads(raw)
        except ValueError:
            raise StoreError(f"collection {collection!r}: unreadable {FINGERPRINT_KEY!r} property") from None
        self._dims[collection] = _vector_dim(info)
        if properties.get(METRIC_KEY):  # collections made before the metric was recorded ask the index
            self._metrics[collection] = str(properties[METRIC_KEY]).upper()
        return fingerprint

    @quiet
    def create_collection(self, collection: str, fingerprint: Mapping[str, Any]) -> None:
        if not COLLECTION_NAME.fullmatch(collection):
            raise StoreError(
                f"invalid Milvus collection name {collection!r}: use letters, digits and underscores, "
                "starting with a letter or underscore (at most 255 characters)"
            )
        dim = int(fingerprint["dim"])
        existing = self.get_fingerprint(collection)
        if existing is not None:
            if _canonical(existing) == _canonical(fingerprint):
                return  # created meanwhile (e.g. by another run) for the same model: nothing to do
            raise StoreError(f"collection {collection!r} already exists in {self._conn.where} for another model")
        schema = self._schema(dim)
        what = f"creating collection {collection!r} ({self._index}, {self._metric}, dim {dim})"
        with self._failing(collection, what):
            # The fingerprint goes in with the create call, so a collection never exists without it.
            # Strong consistency: rows written by one run are seen by the next search or skip check.
            # (A server's default, Bounded, answers from a snapshot up to seconds old: a count right
            # after an upsert misses its rows there, never on Milvus Lite.)  Reads also ask for it.
            self.client.create_collection(
                collection,
                schema=schema,
                consistency_level="Strong",
                properties={
                    FINGERPRINT_KEY: json.dumps(dict(fingerprint), sort_keys=True, default=str),
                    METRIC_KEY: self._metric,  # read back with the fingerprint: no describe_index per process
                },
            )
        self._dims[collection] = dim
        self._metrics[collection] = self._metric
        self._unindexed.add(collection)
        if self._conn.lease is not None:
            # Milvus Lite's engine in its own process: with the index made now, it indexes each
            # segment as it seals it, on its own core while this process encodes; its Flush waits
            # for the last ones (see _engine).
            # Nothing to build yet: not waiting saves pymilvus' first 0.5 s poll of the build.
            with self._failing(collection, f"indexing collection {collection!r}"):
                self._index_if_missing(collection, wait=False)
        # Otherwise the vector index comes with the first flush (the end of the run), built once over
        # sealed rows: searches right after a run are then as fast as later ones.  Until then Milvus Lite
        # searches the rows one by one; a server, which cannot load a collection without an index,
        # gets one as soon as anything needs the collection loaded (see _ensure_loaded).

    def _schema(self, dim: int):
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, max_length=ID_MAX_LENGTH, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("uri", DataType.VARCHAR, max_length=URI_MAX_LENGTH)
        schema.add_field("modality", DataType.VARCHAR, max_length=16)
        schema.add_field("chunk", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=self._text_max)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("model", DataType.VARCHAR, max_length=64)
        return schema

    # -- rows ------------------------------------------------------------------------------------

    @quiet
    def existing_ids(self, collection: str, ids: Sequence[str], model: str) -> set[str]:
        found: set[str] = set()
        with self._failing(collection, f"looking up ids in collection {collection!r}", missing_ok=True):
            self._ensure_loaded(collection)
            for chunk in _chunks(list(ids), _IDS_PER_CALL):
                # Filter on the primary key only and compare the model here: adding
                # `and model == ...` makes Milvus Lite scan the collection (1.9 s per call at 50k rows,
                # against 3-7 ms for the key lookup).
                expr = f"id in [{', '.join(map(literal, chunk))}]"
                rows = self.client.query(collection, filter=expr, output_fields=["model"], consistency_level="Strong")
                found.update(row["id"] for row in rows if row.get("model") == model)
        return found

    @quiet
    def upsert(self, collection: str, records: Sequence[Record]) -> None:
        if not records:
            return
        dim = self._dim(collection)
        # One row per id, the last record given for it: a server (2.3 at least) stores every copy
        # of an id repeated within one upsert request (count(*) counts them all, query and search
        # show the first), where Milvus Lite keeps the last.
        latest = {record.id: record for record in records}
        batches = list(_chunks(list(latest.values()), self._batch))
        if len(batches) == 1 or self._concurrency == 1:
            for batch in batches:
                self._write(collection, dim, batch)
            return
        # Several calls in flight: while the database stores one batch, the next is turned into
        # rows and packed by pymilvus (Python work in this process).  The batches hold distinct
        # ids, so the order in which they land does not matter.
        pool = self._writers()
        futures = [pool.submit(self._write_quietly, collection, dim, batch) for batch in batches]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.cancel()  # after a failure: the batches not started stay unwritten
            wait(futures)

    def _write_quietly(self, collection: str, dim: int, batch: list[Record]) -> None:
        with ours():  # a thread of the store's own: its pymilvus logs are dropped too
            self._write(collection, dim, batch)

    def _write(self, collection: str, dim: int, batch: list[Record]) -> None:
        rows = [self._row(collection, dim, record) for record in batch]
        try:
            # Always upsert, never insert: an insert of an id already stored adds a second row
            # (on a server and on Lite alike: count(*) counts both).
            self.client.upsert(collection, rows)
        except MilvusException as exc:
            raise self._error(exc, collection, f"writing to collection {collection!r}") from exc

    def _writers(self) -> ThreadPoolExecutor:
        with self._load_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="embedline-milvus-write")
            return self._pool

    def _row(self, collection: str, dim: int, record: Record) -> dict[str, Any]:
        vector = np.asarray(record.vector, dtype=np.float32).ravel()
        if vector.shape[0] != dim:
            raise _dim_mismatch(collection, dim, vector.shape[0])
        return {
            "id": record.id,
            "vector": vector.tolist(),
            "uri": record.uri,
            "modality": record.modality,
            "chunk": int(record.chunk),
            "text": _clip_utf8(record.text or "", self._text_max),
            # Round-trip through JSON so dates and other non-JSON values are stored as strings.
            "metadata": json.loads(json.dumps(dict(record.metadata), default=str)) if record.metadata else {},
            "model": record.model,
        }

    @quiet
    def search(self, collection: str, vectors: np.ndarray, k: int, filter: Any = None) -> list[list[Hit]]:
        """``filter``: a portable ``Filter`` (translated), a ``Native`` Milvus expression (as is)."""
        expression = milvus_expression(filter)
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if len(queries) == 0:
            return []
        if k < 1:
            return [[] for _ in queries]
        dim = self._dim(collection)
        if queries.shape[1] != dim:  # Milvus Lite fails with an empty message here, so check first
            raise _dim_mismatch(collection, dim, queries.shape[1])
        params = dict(self._search_params) if "params" in self._search_params else {"params": self._search_params}
        metric = self._metric_of(collection)
        params.setdefault("metric_type", metric)  # a collection not indexed yet is searched with its own metric too
        what = f"searching collection {collection!r}" + (f" with filter {expression!r}" if expression else "")
        with self._failing(collection, what, expression=expression):
            self._ensure_loaded(collection)
            # One call for all queries: each search call has a fixed cost that grows with the collection.
            results = self.client.search(
                collection,
                data=queries.tolist(),
                limit=k,
                filter=expression,
                output_fields=OUTPUT_FIELDS,
                search_params=params,
                consistency_level="Strong",  # sees every write acknowledged before it (see create_collection)
            )
        sign = -1.0 if metric == "L2" else 1.0  # higher is closer: negate L2 distances
        return [[_hit(h, sign) for h in hits] for hits in results]

    @quiet
    def flush(self, collection: str) -> None:
        """Seal the growing segments and index them: a search over unsealed rows scans them one by
        one (Milvus Lite, 5,000 MiniLM rows: ~130 ms a search before, ~6 ms after)."""
        with self._failing(collection, f"flushing collection {collection!r}", missing_ok=True):
            self.client.flush(collection)
            self._index_if_missing(collection, wait=True)

    @quiet
    def delete(self, collection: str, ids: Sequence[str]) -> None:
        with self._failing(collection, f"deleting from collection {collection!r}", missing_ok=True):
            self._ensure_loaded(collection)
            for chunk in _chunks(list(ids), _IDS_PER_CALL):
                self.client.delete(collection, ids=chunk)

    def scan(self, collection: str) -> Iterator[tuple[str, str]]:
        # Quiet around each call only: between batches this thread runs the caller's code.
        with self._failing(collection, f"listing collection {collection!r}", missing_ok=True):
            with ours():
                if not self.client.has_collection(collection):
                    return
                self._ensure_loaded(collection)
                rows = self.client.query_iterator(
                    collection, batch_size=_SCAN_BATCH, filter="", output_fields=["id", "uri"]
                )
            try:
                while True:
                    with ours():
                        batch = rows.next()
                    if not batch:
                        return
                    for row in batch:
                        yield str(row["id"]), str(row["uri"])
            finally:
                with ours():
                    rows.close()

    @quiet
    def count(self, collection: str) -> int:
        with self._failing(collection, f"counting collection {collection!r}", missing_ok=True):
            self._ensure_loaded(collection)
            # count(*) sees deletes and upserts at once; get_collection_stats lags on a server.
            rows = self.client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
            return int(rows[0]["count(*)"])
        return 0

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._client is not None:
            try:
                self._index_unindexed()
            finally:
                self._client = None
                self._conn.close()

    # -- helpers ---------------------------------------------------------------------------------

    @quiet
    def _index_unindexed(self) -> None:
        """At close: the index of each collection created here and never flushed.  A failure is not
        raised from close (the next flush or load of the collection makes the index instead)."""
        for collection in sorted(self._unindexed):
            try:
                with self._failing(collection, f"indexing collection {collection!r}", missing_ok=True):
                    self._index_if_missing(collection, wait=False)
            except StoreError:
                continue

    @property
    def client(self) -> MilvusClient:
        if self._client is None:
            raise StoreError(f"{self._conn.where}: the store is closed")
        return self._client

    def _dim(self, collection: str) -> int:
        if collection not in self._dims:
            with self._failing(collection, f"reading collection {collection!r}"):
                self._dims[collection] = _vector_dim(self.client.describe_collection(collection))
        return self._dims[collection]

    def _ensure_loaded(self, collection: str) -> None:
        """A collection reopened from disk (Lite) or released (server) must be loaded before queries."""
        if collection in self._loaded:
            return
        with self._load_lock:
            if collection in self._loaded:
                return
            state = self.client.get_load_state(collection).get("state")
            if getattr(state, "name", str(state)) != "Loaded":
                try:
                    self.client.load_collection(collection)
                except MilvusException as exc:  # a server loads no collection without an index
                    if exc.code == _COLLECTION_NOT_FOUND or not self._index_if_missing(collection, wait=False):
                        raise
                    self.client.load_collection(collection)
            self._loaded.add(collection)

    def _index_if_missing(self, collection: str, *, wait: bool) -> bool:
        """Make the vector index of ``collection`` if it has none (with the metric it was created
        for); ``wait`` for the build.  Whether an index was made."""
        self._unindexed.discard(collection)
        if self.client.list_indexes(collection, field_name="vector"):
            return False
        index = self.client.prepare_index_params()
        metric = self._metrics.get(collection, self._metric)
        index.add_index(field_name="vector", index_type=self._index, metric_type=metric, params=dict(self._index_params))
        self.client.create_index(collection, index, sync=wait)
        self.client.load_collection(collection)  # searched through the index from here on
        self._loaded.add(collection)
        return True

    def _metric_of(self, collection: str) -> str:
        """The metric fixed when ``collection`` was created (the ``metric`` option may differ now)."""
        if collection not in self._metrics:
            with self._failing(collection, f"reading the index of collection {collection!r}"):
                info = self.client.describe_index(collection, index_name="vector") or {}
            self._metrics[collection] = str(info.get("metric_type") or self._metric).upper()
        return self._metrics[collection]

    @contextmanager
    def _failing(
        self, collection: str, what: str, *, missing_ok: bool = False, expression: str | None = None
    ) -> Iterator[None]:
        """Turn MilvusException into a one-line StoreError; with ``missing_ok`` a missing collection
        is not an error (the block is skipped and the caller returns its empty result)."""
        try:
            yield
        except MilvusException as exc:
            if missing_ok and exc.code == _COLLECTION_NOT_FOUND:
                return
            raise self._error(exc, collection, what, expression) from exc

    def _error(self, exc: MilvusException, collection: str, what: str, expression: str | None = None) -> StoreError:
        if self._conn.engine_gone():
            return StoreError(
                f"{what} failed: the Milvus Lite engine of {self._conn.where} stopped (was it killed?); "
                "every row it acknowledged is kept: open the database again to go on"
            )
        match = _DIM_ERROR.search(exc.message or "")
        if match:
            return _dim_mismatch(collection, int(match.group(1)), int(match.group(2)))
        if exc.code == _COLLECTION_NOT_FOUND:
            return CollectionNotFoundError(collection, self._conn.where)
        reason = _one_line(exc.message, expression) or f"error code {exc.code}"
        return StoreError(f"{what} failed: {reason}")


# -- pure helpers ------------------------------------------------------------------------------------


def _hit(hit: Mapping[str, Any], sign: float = 1.0) -> Hit:
    entity = hit.get("entity") or {}
    return Hit(
        id=str(hit["id"]),
        score=sign * float(hit["distance"]),
        uri=entity.get("uri") or "",
        modality=entity.get("modality") or "",
        chunk=int(entity.get("chunk") or 0),
        text=entity.get("text") or "",
        metadata=entity.get("metadata") or {},
    )


def _vector_dim(info: Mapping[str, Any]) -> int:
    for field in info.get("fields", []):
        if field.get("name") == "vector":
            return int(field.get("params", {}).get("dim"))
    raise StoreError(f"collection {info.get('collection_name')!r} has no 'vector' field: not an embedline collection")


def _dim_mismatch(collection: str, stored: int, got: int) -> StoreError:
    return StoreError(
        f"dimension mismatch in collection {collection!r}: it stores vectors of dim {stored}, got {got}; "
        "use the model that filled it or another collection"
    )


def _clip_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes without splitting a character.  (Milvus
    servers count VARCHAR length in bytes; Lite counts characters, so bytes are safe for both.)"""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")  # drops only the cut character's bytes


def _one_line(message: str, expression: str | None = None) -> str:
    """Milvus' multi-line messages (expression echo, ``^^^`` marker, hints) as one line."""
    lines = [line.strip() for line in (message or "").splitlines()]
    echo = (expression or "").strip()
    kept = [line for line in lines if line and line != echo and set(line) != {"^"}]
    return "; ".join(kept)


def _canonical(fingerprint: Mapping[str, Any]) -> str:
    return json.dumps(dict(fingerprint), sort_keys=True, default=str)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
