"""Where an in-process search's time goes: ``Pipeline.search`` against its parts.

Ingests N STS-B sentences with all-MiniLM-L6-v2 (torch) into a fresh Milvus Lite database, then, in
the same process, times (median of --reps calls each, after one untimed call): ``Pipeline.search``,
the query's encoding (``encode_queries``), the store's search with that vector, and a bare
``MilvusClient.search`` asking for text and uri only, then for every stored field.

    python bench/bench_query.py --n 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common

QUERY = "A man is playing a guitar on stage."
FIELDS = ["uri", "modality", "chunk", "text", "metadata"]


def median_ms(call, reps: int) -> float:
    call()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return _common.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="sentences stored (default 5000)")
    parser.add_argument("--reps", type=int, default=30, help="timed calls of each (default 30)")
    args = parser.parse_args()
    info = _common.header(f"in-process search, minilm (torch), {args.n} rows in Milvus Lite, {args.reps} calls each")
    from embedline import Pipeline

    work = Path(tempfile.mkdtemp(prefix="embedline-bench-"))
    rows = _common.write_jsonl(work / "rows.jsonl", _common.texts(args.n))
    config = {
        "source": {"path": str(rows)},
        "model": {"plugin": "minilm", "name": str(_common.minilm_folder()), "batch_size": 64},
        "store": {"plugin": "milvus", "uri": str(work / "bench.db"), "collection": "bench"},
    }
    with Pipeline.from_dict(config, base_dir=work) as pipeline:
        pipeline.run()
        model = pipeline.model()
        vector = model.encode_queries([QUERY])[0]
        client = pipeline.store.client
        parts = {
            "Pipeline.search (k=10)": lambda: pipeline.search(QUERY, k=10),
            "encode_queries": lambda: model.encode_queries([QUERY]),
            "store.search (k=10)": lambda: pipeline.store.search("bench", vector, 10),
            "MilvusClient.search, text and uri": lambda: client.search(
                "bench", data=[vector.tolist()], limit=10, output_fields=["text", "uri"]),
            "MilvusClient.search, every field": lambda: client.search(
                "bench", data=[vector.tolist()], limit=10, output_fields=FIELDS),
        }
        results = {name: median_ms(call, args.reps) for name, call in parts.items()}
    for name, ms in results.items():
        print(f"{name:<36} {ms:7.2f} ms")
    _common.save(f"query-{args.n}", info, n=args.n, reps=args.reps, median_ms=results)


if __name__ == "__main__":
    main()
