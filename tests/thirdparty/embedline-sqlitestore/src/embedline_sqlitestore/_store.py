"""SqliteStore: collections and rows in one SQLite file; SQL filters, NumPy scores."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from embedline.contracts import Hit, Record, StoreSpec, VectorStore, fingerprint_id
from embedline.errors import StoreError
from embedline.filters import Clause, Native, as_filter
from embedline.toolkit import nearest

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, dim INTEGER NOT NULL, metric TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
    collection TEXT NOT NULL, id TEXT NOT NULL, vector BLOB NOT NULL, uri TEXT NOT NULL,
    modality TEXT NOT NULL, chunk INTEGER NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL,
    model TEXT NOT NULL, PRIMARY KEY (collection, id)
);
"""
UPSERT = """
INSERT INTO rows (collection, id, vector, uri, modality, chunk, text, metadata, model)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (collection, id) DO UPDATE SET vector = excluded.vector, uri = excluded.uri,
    modality = excluded.modality, chunk = excluded.chunk, text = excluded.text,
    metadata = excluded.metadata, model = excluded.model
"""
IDS_PER_QUERY = 500  # under SQLite's limit on bound parameters
SCAN_PAGE = 1000


class SqliteStore(VectorStore):
    def __init__(self, path: Path, metric: str):
        self.where = f"sqlite store {path}"
        self._metric = metric
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db: sqlite3.Connection | None = sqlite3.connect(path, check_same_thread=False)
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.where}: {exc}") from None

    @classmethod
    def open(cls, spec: StoreSpec) -> SqliteStore:
        path = Path(spec.option("path", "embed.sqlite")).expanduser()
        if not path.is_absolute():
            path = Path(spec.base_dir) / path
        return cls(Path(os.path.abspath(path)), spec.option("metric", "COSINE"))

    def __repr__(self) -> str:
        return f"SqliteStore({self.where})"

    # -- collections ---------------------------------------------------------------------

    def get_fingerprint(self, collection: str) -> dict[str, Any] | None:
        found = self._collection(collection, missing_ok=True)
        return found[0] if found else None

    def create_collection(self, collection: str, fingerprint: Mapping[str, Any]) -> None:
        existing = self.get_fingerprint(collection)
        if existing is not None:
            if fingerprint_id(existing) == fingerprint_id(fingerprint):
                return
            raise StoreError(f"collection {collection!r} already exists in {self.where} for another model")
        blob = json.dumps(dict(fingerprint), sort_keys=True, default=str)
        self._write(
            f"creating collection {collection!r}",
            "INSERT INTO collections (name, fingerprint, dim, metric) VALUES (?, ?, ?, ?)",
            [(collection, blob, int(fingerprint["dim"]), self._metric)],
        )

    # -- rows ------------------------------------------------------------------------------

    def existing_ids(self, collection: str, ids: Sequence[str], model: str) -> set[str]:
        found: set[str] = set()
        ids = list(ids)
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start : start + IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            rows = self._read(
                f"looking up ids in collection {collection!r}",
                f"SELECT id FROM rows WHERE collection = ? AND model = ? AND id IN ({marks})",
                [collection, model, *chunk],
            )
            found.update(row[0] for row in rows)
        return found

    def upsert(self, collection: str, records: Sequence[Record]) -> None:
        if not records:
            return
        _, dim, _ = self._collection(collection)
        rows = []
        for record in records:
            vector = np.asarray(record.vector, dtype=np.float32).ravel()
            if vector.shape[0] != dim:
                raise _dim_mismatch(collection, dim, vector.shape[0])
            metadata = json.dumps(dict(record.metadata), default=str)
            rows.append((collection, record.id, vector.tobytes(), record.uri, record.modality, int(record.chunk),
                         record.text or "", metadata, record.model))  # fmt: skip
        self._write(f"writing to collection {collection!r}", UPSERT, rows)

    def search(self, collection: str, vectors: np.ndarray, k: int, filter: Any = None) -> list[list[Hit]]:
        _, dim, metric = self._collection(collection)
        queries = np.asarray(vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if queries.shape[1] != dim:
            raise _dim_mismatch(collection, dim, queries.shape[1])
        condition, params = sql_condition(filter)
        rows = self._read(
            f"searching collection {collection!r}" + (f" with filter {condition}" if condition else ""),
            "SELECT id, vector, uri, modality, chunk, text, metadata FROM rows WHERE collection = ?"
            + (f" AND {condition}" if condition else ""),
            [collection, *params],
        )
        if not rows:
            return [[] for _ in queries]
        stored = np.stack([np.frombuffer(row[1], dtype=np.float32) for row in rows])
        return [
            [Hit(id=rows[i][0], score=score, uri=rows[i][2], modality=rows[i][3], chunk=rows[i][4], text=rows[i][5],
                 metadata=json.loads(rows[i][6])) for i, score in hits]  # fmt: skip
            for hits in nearest(stored, queries, k, metric)
        ]

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        self._write(
            f"deleting from collection {collection!r}",
            "DELETE FROM rows WHERE collection = ? AND id = ?",
            [(collection, row_id) for row_id in ids],
        )

    def scan(self, collection: str) -> Iterator[tuple[str, str]]:
        after = 0
        while True:  # in pages, so that writes may go on while the caller reads
            page = self._read(
                f"listing collection {collection!r}",
                "SELECT rowid, id, uri FROM rows WHERE collection = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                [collection, after, SCAN_PAGE],
            )
            for _, row_id, uri in page:
                yield row_id, uri
            if len(page) < SCAN_PAGE:
                return
            after = page[-1][0]

    def count(self, collection: str) -> int:
        return self._read(f"counting collection {collection!r}", "SELECT count(*) FROM rows WHERE collection = ?",
                          [collection])[0][0]  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            db, self._db = self._db, None
            try:
                db.commit()
            finally:
                db.close()

    # -- helpers -------------------------------------------------------------------------

    def _collection(self, collection: str, missing_ok: bool = False) -> tuple[dict[str, Any], int, str] | None:
        rows = self._read(
            f"reading collection {collection!r}",
            "SELECT fingerprint, dim, metric FROM collections WHERE name = ?",
            [collection],
        )
        if not rows:
            if missing_ok:
                return None
            raise StoreError(f"collection {collection!r} does not exist in {self.where}")
        fingerprint, dim, metric = rows[0]
        return json.loads(fingerprint), dim, metric

    def _read(self, what: str, sql: str, params: Sequence[Any]) -> list[tuple]:
        with self._lock:
            try:
                return self._open().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{what} failed in {self.where}: {exc}") from None

    def _write(self, what: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            db = self._open()
            try:
                db.executemany(sql, rows)
                db.commit()
            except sqlite3.Error as exc:
                db.rollback()
                raise StoreError(f"{what} failed in {self.where}: {exc}") from None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.where}: the store is closed")
        return self._db


# -- filters ---------------------------------------------------------------------------------------

_COMPARE = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_JSON_TYPES = {str: "('text')", int: "('integer', 'real')", float: "('integer', 'real')"}


def sql_condition(filter: Any) -> tuple[str, list[Any]]:
    """A SQL condition and its parameters for a search filter ("" for none)."""
    parsed = as_filter(filter)
    if parsed is None:
        return "", []
    if isinstance(parsed, Native):
        return f"({parsed.expression})", []
    parts, params = [], []
    for clause in parsed.clauses:
        if clause.op == "in":
            options = [_condition(Clause(clause.field, "eq", value)) for value in clause.value]
            parts.append("(" + " OR ".join(sql for sql, _ in options) + ")")
            params.extend(p for _, values in options for p in values)
        else:
            sql, values = _condition(clause)
            parts.append(sql)
            params.extend(values)
    return " AND ".join(parts), params


def _condition(clause: Clause) -> tuple[str, list[Any]]:
    value = clause.value
    if not clause.on_metadata:
        if clause.op == "prefix":
            return f"substr({clause.field}, 1, length(?)) = ?", [value, value]
        return f"{clause.field} {_COMPARE[clause.op]} ?", [value]
    if '"' in clause.field:
        raise StoreError(f"sqlite store: cannot filter on metadata key {clause.field!r} (it holds a double quote)")
    path = f'$."{clause.field}"'
    if isinstance(value, bool):  # JSON true/false are their own types, not 1 and 0
        return f"json_type(metadata, ?) = '{'true' if value else 'false'}'", [path]
    kind = f"json_type(metadata, ?) IN {_JSON_TYPES[type(value)]}"
    if clause.op == "prefix":
        return f"({kind} AND substr(json_extract(metadata, ?), 1, length(?)) = ?)", [path, path, value, value]
    return f"({kind} AND json_extract(metadata, ?) {_COMPARE[clause.op]} ?)", [path, path, value]


def _dim_mismatch(collection: str, stored: int, got: int) -> StoreError:
    return StoreError(f"dimension mismatch in collection {collection!r}: it stores vectors of dim {stored}, got {got}")
