"""One tool's job for bench_peers.py, in a fresh process: ingest a JSONL file of sentences, then search.

    python bench/_peers_jobs.py TOOL --rows ROWS.jsonl --work DIR --model FOLDER [--config embed.toml]

Steps, each timed from the first line of this script: ingest (imports, model load, read, embed,
store, index; the rows stored are counted), one warm-up query (the first row's text: its top hit
must be that row), QUERIES timed one by one, close (flush, save, release the database). The last
line on stdout is a JSON object with the numbers; everything else goes to stderr. Run by
bench_peers.py with the environment variables it needs (HF_HUB_OFFLINE, TMPDIR, LLM_USER_PATH).
"""

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

K = 10
BATCH = 64
COLLECTION = "bench"
#: Searched after the warm-up, each timed on its own.
QUERIES = [
    "A man is playing a guitar on stage.",
    "Two dogs are running through a field of grass.",
    "The stock market fell sharply on Monday.",
    "A woman is slicing vegetables in the kitchen.",
    "Children are swimming in a lake.",
    "The president spoke about the economy.",
    "A cat is sleeping on a sofa.",
    "Police arrested a man after the robbery.",
    "Someone is riding a bicycle down the street.",
    "Heavy rain caused flooding in the city.",
    "A boy is kicking a football.",
    "The company reported higher profits this year.",
    "A plane is taking off from the airport.",
    "Protesters gathered outside the parliament.",
    "A chef is cooking pasta.",
    "The team won the championship game.",
    "A girl is reading a book under a tree.",
    "Scientists discovered a new species of fish.",
    "An earthquake struck the coast.",
    "A man is driving a red car.",
]


def read_texts(rows: Path) -> list[str]:
    with open(rows, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds user+sys, peak RSS ``VmHWM`` in MiB) of another process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return cpu, hwm


# -- the tools: ingest() -> (count, index description); search(q) -> top hit text; close() ----------


class Embedline:
    """``Pipeline.from_toml(...).run()``, then ``pipeline.search``; the pipeline file names the index."""

    def __init__(self, args):
        self.config = args.config
        self.index = "FLAT" if args.tool == "embedline-flat" else "AUTOINDEX"
        self.engine: int | None = None

    def helper_usage(self) -> tuple[float, float] | None:
        """The Milvus Lite engine's (CPU s, peak MiB): a process of its own (``lite_engine = "process"``),
        started by this one but nobody's child, so ``wait4`` in bench_peers.py does not see it."""
        if self.engine is None:
            try:
                from embedline_milvus.testing import lite_engines
            except ImportError:  # embedline-before from a commit without the engine: Lite is inside
                return None
            pids = lite_engines(self.pipeline.config.store.options["uri"])
            if not pids:
                return None
            self.engine = pids[0]
        try:
            return process_usage(self.engine)
        except OSError:
            return None

    def ingest(self):
        from embedline import Pipeline

        self.pipeline = Pipeline.from_toml(self.config)
        summary = self.pipeline.run()
        if summary.failed:
            raise SystemExit(f"embedline: {summary.format()}")
        return self.pipeline.store.count(COLLECTION), f"Milvus Lite {self.index}, COSINE"

    def search(self, query):
        hits = self.pipeline.search(query, k=K)
        return hits[0].text if hits else None

    def close(self):
        self.pipeline.close()


class Txtai:
    """txtai ``Embeddings`` with content storage; ``backend`` = faiss or milvus (Milvus Lite)."""

    def __init__(self, args, backend):
        self.args, self.backend = args, backend

    def ingest(self):
        from txtai import Embeddings

        texts = read_texts(self.args.rows)
        # method: sentence-transformers, as the other tools (txtai's default for a folder is its own
        # transformers mean pooling); encodebatch 64 as the others (txtai's default: 32).
        self.embeddings = Embeddings(path=self.args.model, method="sentence-transformers", content=True,
                                     backend=self.backend, encodebatch=BATCH)
        self.embeddings.index((i, text) for i, text in enumerate(texts))
        counts = {self.embeddings.count(), self.embeddings.ann.count()}
        settings = (self.embeddings.config.get("build") or {}).get("settings") or {}
        if self.backend == "faiss":
            index = f"faiss {settings.get('components', '?')}, inner product"
        else:
            index = f"Milvus Lite (its native API, no pymilvus) HNSW M={settings.get('m', '?')}, inner product"
        return min(counts), index

    def search(self, query):
        hits = self.embeddings.search(query, K)
        return hits[0]["text"] if hits else None

    def close(self):
        self.embeddings.save(str(self.args.work / f"txtai-{self.backend}"))
        self.embeddings.close()


class Llm:
    """llm: a Collection in a SQLite file, ``embed_multi`` (batch 64, text stored), ``similar``."""

    def __init__(self, args):
        self.args = args

    def ingest(self):
        import llm
        import sqlite_utils

        texts = read_texts(self.args.rows)
        self.db = sqlite_utils.Database(str(self.args.work / "llm.db"))
        model = llm.get_embedding_model(f"sentence-transformers/{self.args.model}")
        self.collection = llm.Collection(COLLECTION, self.db, model=model)
        self.collection.embed_multi(((str(i), text) for i, text in enumerate(texts)), store=True, batch_size=BATCH)
        return self.collection.count(), "none: SQLite blobs, similar() scans every row (cosine in Python)"

    def search(self, query):
        hits = self.collection.similar(query, number=K)
        return hits[0].content if hits else None

    def close(self):
        self.db.close()


class PymilvusLoop:
    """bench/_raw.py: encode all (batch 64), insert 1000 rows per call, flush, AUTOINDEX, load."""

    def __init__(self, args):
        self.args = args
        self.db = args.work / "raw.db"

    def ingest(self):
        import _raw

        self.raw = _raw
        self.client, self.impl, _ = _raw.build("minilm", self.args.model, self.args.rows, self.db, BATCH, "AUTOINDEX")
        return _raw.count(self.client), "Milvus Lite AUTOINDEX, COSINE"

    def search(self, query):
        hits = self.raw.search(self.client, "minilm", self.impl, query, K)
        return hits[0]["entity"]["text"] if hits else None

    def close(self):
        self.raw.close(self.client, self.db)


JOBS = {
    "embedline": Embedline,
    "embedline-flat": Embedline,
    "embedline-before": Embedline,  # older code, put first on PYTHONPATH by bench_peers.py
    "txtai-faiss": lambda args: Txtai(args, "faiss"),
    "txtai-milvus": lambda args: Txtai(args, "milvus"),
    "llm": Llm,
    "pymilvus-loop": PymilvusLoop,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=sorted(JOBS))
    parser.add_argument("--rows", type=Path, required=True, help="JSONL file, one {\"text\": ...} per line")
    parser.add_argument("--work", type=Path, required=True, help="this run's folder (databases, saved indexes)")
    parser.add_argument("--model", required=True, help="the all-MiniLM-L6-v2 folder")
    parser.add_argument("--config", type=Path, help="embedline: the pipeline file")
    args = parser.parse_args()
    job = JOBS[args.tool](args)
    with open(args.rows, encoding="utf-8") as fh:
        first = json.loads(fh.readline())["text"]

    stored, index = job.ingest()
    t_ingest = time.perf_counter()
    top = job.search(first)
    t_first = time.perf_counter()
    helper = getattr(job, "helper_usage", lambda: None)
    helper_before = helper()
    latencies = []
    cpu = cpu_seconds()
    for query in QUERIES:
        start = time.perf_counter()
        job.search(query)
        latencies.append((time.perf_counter() - start) * 1000)
    cpu = cpu_seconds() - cpu
    helper_queries = helper()
    t_queries = time.perf_counter()
    job.close()
    t_close = time.perf_counter()
    helper_end = helper()  # the engine lingers a moment after its last user closes: read it now
    latencies_sorted = sorted(latencies)
    print(json.dumps({
        "tool": args.tool,
        "count": stored,
        "index": index,
        "top_hit_ok": top == first,
        "ingest_s": t_ingest - T0,
        "first_query_ms": (t_first - t_ingest) * 1000,
        "query_ms": latencies,
        "query_median_ms": (latencies_sorted[(len(latencies) - 1) // 2] + latencies_sorted[len(latencies) // 2]) / 2,
        "queries_s": t_queries - t_first,
        "queries_cpu_s": cpu,
        "close_s": t_close - t_queries,
        "in_process_s": t_close - T0,
        "pid": os.getpid(),
        # a helper process doing this job's work (embedline's Milvus Lite engine); none for the peers
        "helper_cpu_s": helper_end[0] if helper_end else 0.0,
        "helper_queries_cpu_s": helper_queries[0] - helper_before[0] if helper_before and helper_queries else 0.0,
        "helper_maxrss_mib": helper_end[1] if helper_end else 0.0,
    }), flush=True)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
