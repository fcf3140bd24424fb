"""The baseline: the same ingest written by hand with the libraries, in sequence.

Read the JSONL rows, encode every text with sentence-transformers (or Model2Vec) at the same batch
size and weights as embedline, then upsert the rows with pymilvus in batches of 1000 (embedline's
``write_batch_size``) into a fresh Milvus Lite collection with the same schema and index.

    python bench/_raw.py {minilm,model2vec} ROWS.jsonl DB.db [--batch-size N]   # prints the row count
"""

from __future__ import annotations

import argparse
import hashlib
import json
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


def create_collection(client, name: str, dim: int, index_type: str = "AUTOINDEX") -> None:
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
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type=index_type, metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")


def ingest(model: str, path: str, rows: Path, db: Path, batch_size: int, index: str = "AUTOINDEX") -> int:
    """Load the model from ``path``, read, encode all, upsert in batches; returns rows written."""
    from pymilvus import MilvusClient

    impl = load(model, path)
    with open(rows, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    vectors = encode(model, impl, texts, batch_size)
    client = MilvusClient(str(db))
    create_collection(client, "bench", vectors.shape[1], index)
    for start in range(0, len(texts), WRITE_BATCH):
        client.upsert("bench", [
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
    client.close()
    # Milvus Lite flushes and stops its in-process server when the process exits (atexit); a script
    # pays that at exit, so pay it here too (embedline's store does it on close).
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(db))
    return len(texts)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(_common.MODELS))
    parser.add_argument("rows", type=Path)
    parser.add_argument("db", type=Path)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    batch_size = args.batch_size or _common.MODELS[args.model]["batch_size"]
    print(ingest(args.model, model_path(args.model), args.rows, args.db, batch_size))
