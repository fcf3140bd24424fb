"""The baseline: the same ingest written by hand with the libraries, as a competent user writes it.

Read the JSONL rows, encode every text with sentence-transformers (or Model2Vec) in one call at the
same batch size and weights as embedline, then insert the rows with pymilvus, 1000 per call, into
a fresh Milvus Lite collection with embedline's schema (no index yet), flush once, build the
vector index (same type and metric) and load the collection. Closing stops Milvus Lite's
in-process server, as embedline's store does.

    python bench/_raw.py {minilm,model2vec} ROWS.jsonl DB.db [--batch-size N]   # prints the row count
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import _common

WRITE_BATCH = 1000


def model_path(model: str) -> str:
    """Where the weights are (found before timing: embedline finds them from the pipeline file)."""
    return _common.minilm_folder() if model == "minilm" else str(_common.distilled_folder())


def load(model: str, path: str):
    """The library model object (loading is part of the timed work on both sides)."""
    if model == "minilm":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(path, device="cpu")
    from model2vec import StaticModel

    return StaticModel.from_pretrained(path)


def encode(model: str, impl, texts: list[str], batch_size: int):
    import numpy as np

    if model == "minilm":
        return impl.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    vectors = impl.encode(texts, batch_size=batch_size, show_progress_bar=False).astype(np.float32)  # float16 out
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return vectors


def create_collection(client, name: str, dim: int) -> None:
    """embedline's schema; the index comes after the data (one build instead of one per segment)."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, max_length=128, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("uri", DataType.VARCHAR, max_length=4096)
    schema.add_field("modality", DataType.VARCHAR, max_length=16)
    schema.add_field("chunk", DataType.INT64)
    schema.add_field("text", DataType.VARCHAR, max_length=8192)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("model", DataType.VARCHAR, max_length=64)
    client.create_collection(name, schema=schema, consistency_level="Strong")


def read_texts(rows: Path) -> list[str]:
    with open(rows, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def build(model: str, path: str, rows: Path, db: Path, batch_size: int, index: str = "AUTOINDEX",
          collection: str = "bench"):
    """Load, read, encode, insert, flush, index, load; returns ``(client, model object, rows inserted)``
    with the collection open for search."""
    from pymilvus import MilvusClient

    impl = load(model, path)
    texts = read_texts(rows)
    vectors = encode(model, impl, texts, batch_size)
    client = MilvusClient(str(db))
    create_collection(client, collection, vectors.shape[1])
    for start in range(0, len(texts), WRITE_BATCH):
        client.insert(collection, [
            {
                "id": hashlib.blake2b(text.encode(), digest_size=16).hexdigest() + ":0",
                "vector": vector,
                "uri": f"{rows.name}:{start + i + 1}",
                "modality": "text",
                "chunk": 0,
                "text": text,
                "metadata": {},
                "model": "raw",
            }
            for i, (text, vector) in enumerate(zip(texts[start : start + WRITE_BATCH], vectors[start : start + WRITE_BATCH]))
        ])
    client.flush(collection)
    params = client.prepare_index_params()
    params.add_index(field_name="vector", index_type=index, metric_type="COSINE")
    client.create_index(collection, params)
    client.load_collection(collection)
    return client, impl, len(texts)


def count(client, collection: str = "bench") -> int:
    return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def search(client, model: str, impl, query: str, k: int = 10, collection: str = "bench") -> list[dict]:
    vector = encode(model, impl, [query], 1)[0]
    return client.search(collection, data=[vector.tolist()], limit=k, output_fields=["text", "uri"])[0]


def close(client, db: Path) -> None:
    client.close()
    # Milvus Lite flushes and stops its in-process server when the process exits (atexit); a script
    # pays that at exit, so pay it here too (embedline's store does it on close).
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(os.path.abspath(db))


def ingest(model: str, path: str, rows: Path, db: Path, batch_size: int, index: str = "AUTOINDEX") -> int:
    """Load the model from ``path``, read, encode all, insert, index, close; returns rows written."""
    client, _impl, written = build(model, path, rows, db, batch_size, index)
    close(client, db)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(_common.MODELS))
    parser.add_argument("rows", type=Path)
    parser.add_argument("db", type=Path)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    batch_size = args.batch_size or _common.MODELS[args.model]["batch_size"]
    print(ingest(args.model, model_path(args.model), args.rows, args.db, batch_size))
