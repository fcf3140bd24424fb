"""Ingest N sentences into a fresh Milvus Lite database: the `ray` executor vs `local`, same machine.

Both sides run `Pipeline.run()` in this process on the same pipeline file (MiniLM, batch 64,
Milvus Lite), the Ray side with an `[executor] plugin = "ray"` section, in rotating order, after an
untimed warm-up of each.  Ray is started once, before the timed runs (as a cluster would be up
already; the start is timed and reported on its own); each timed Ray run starts its actors, which
load the model, so model loading is inside the timed region on both sides.  Ratio = local median
/ ray median (throughput of ray relative to local; goal >= 0.8x at 20k MiniLM sentences).

Then the parts of the scaling model in docs/scaling.md, each measured alone on this machine:
the reader (the driver reading the JSONL file, ids, windows), the store (upserting N rows of
384-d vectors into Milvus Lite and closing it, index included), the transfer of a window's
results from an actor to the driver (bytes per row, seconds per window), and the fixed cost of a
Ray run (actors start and load the model: a run of a few rows).

    python bench/bench_ray.py --n 20000
    python bench/bench_ray.py --n 2000 --reps 1 --configs local ray-2     # a quick look
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import _common

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

GOAL = 0.8
#: name -> [executor] keys (None: the built-in local executor).  On a 2-core machine: one actor
#: with both cores' threads, or two actors of one thread each.
CONFIGS = {
    "local": None,
    "ray-1": {"plugin": "ray", "actors": 1, "cpus_per_actor": 2.0},
    "ray-2": {"plugin": "ray", "actors": 2, "cpus_per_actor": 1.0},
}


def pipeline_file(work: Path, name: str, rows: Path, db: Path, batch: int) -> Path:
    path = _common.write_pipeline(work / f"{name}.toml", "minilm", rows, db, batch)
    executor = CONFIGS[name]
    if executor:
        lines = ["[executor]", *(f"{k} = {_common._toml_value(v)}" for k, v in executor.items()), ""]
        path.write_text(path.read_text() + "\n".join(lines))
    return path


def run(config: Path, n: int) -> dict:
    from embedline import Pipeline

    with Pipeline.from_toml(config) as pipeline:
        summary = pipeline.run()
    if summary.embedded != n or summary.failed:
        raise SystemExit(f"{config.name}: embedded {summary.embedded} of {n}: {summary.format()}")
    return {"embedded": summary.embedded, "run_seconds": summary.seconds}


# -- the parts of the model -------------------------------------------------------------------------


def reader_seconds(config: Path) -> tuple[float, int]:
    """The driver's reader alone: read the JSONL file, give items their ids, cut windows."""
    from embedline.config import load_config
    from embedline.ledger import RunLedger
    from embedline.sources import Source
    from embedline.stages import Target, read_windows

    source = load_config(config).source
    targets = [Target(index=0, collection="bench", identity="x", batch_size=64)]
    with _common.Timer() as t:
        items = sum(len(w.items) for full, _ in read_windows(iter(Source(source)), targets, {"text": 0}, RunLedger(1))
                    for w in full)  # fmt: skip
    return t.seconds, items


def fake_rows(n: int, dim: int = 384):
    """N rows as the executor hands them to the store: unit vectors, the bench's texts."""
    import numpy as np
    from embedline.contracts import Record

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = _common.texts(n)
    return [Record(id=f"{i:08d}:0", vector=vectors[i], uri=f"rows.jsonl:{i + 1}", modality="text", chunk=0,
                   text=texts[i], metadata={}, model="bench") for i in range(n)]  # fmt: skip


def store_seconds(config: Path, records: list, window: int = 2048) -> float:
    """The writer alone: upsert the rows a window at a time into a fresh collection, then close
    (Milvus Lite builds the index on close, as at the end of a run)."""
    from embedline import Pipeline

    with _common.Timer() as t:
        with Pipeline.from_toml(config) as pipeline:
            store = pipeline.store
            store.create_collection("bench", {"dim": len(records[0].vector), "plugin": "bench", "normalized": True})
            for start in range(0, len(records), window):
                store.upsert("bench", records[start : start + window])
    return t.seconds


def transfer(records: list, window: int = 2048, reps: int = 5) -> dict:
    """One window of results from an actor to the driver: its pickled size, and the seconds an
    actor takes to hand it over (the call returns the rows it was given back: measured as the
    round trip of a call with and without the rows, halved)."""
    import ray
    from embedline.stages import Rows

    rows = Rows("bench", records[:window])
    size = len(pickle.dumps(rows, protocol=5))

    @ray.remote(num_cpus=0.1)
    class Echo:
        def take(self, rows):
            return len(rows.records)

        def give(self, n):
            return self.rows if n else 0

        def keep(self, rows):
            self.rows = rows

    echo = Echo.remote()
    ray.get(echo.keep.remote(rows))
    ray.get(echo.give.remote(0))
    out, empty = [], []
    for _ in range(reps):
        with _common.Timer() as t:
            ray.get(echo.give.remote(1))
        out.append(t.seconds)
        with _common.Timer() as t:
            ray.get(echo.give.remote(0))
        empty.append(t.seconds)
    ray.kill(echo)
    seconds = max(1e-6, _common.median(out) - _common.median(empty))
    return {"window_rows": len(rows.records), "bytes_per_row": size / len(rows.records), "window_bytes": size,
            "window_seconds": seconds, "call_seconds": _common.median(empty),
            "rows_per_second": len(rows.records) / seconds}  # fmt: skip


def embed_rates(n: int, batch: int) -> dict:
    """MiniLM alone (tokenize + encode, embedline's batching), in this process, with 1 and 2 torch
    threads: the rate of one actor of one or two CPUs when nothing else runs."""
    import torch
    from embedline import load_model

    model = load_model(dict(_common.MODELS["minilm"], batch_size=batch, device="cpu"))
    texts = _common.texts(n)
    model.embed(texts[:256])  # warm
    before = torch.get_num_threads()
    rates = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with _common.Timer() as t:
                model.embed(texts)
            rates[threads] = n / t.seconds
    finally:
        torch.set_num_threads(before)
    return rates


FREE_MODEL = """
import numpy as np
from embedline import hookimpl
from embedline.contracts import Model

plugin_info = __import__("embedline").PluginInfo(kind="model", modalities=("text",), description="no-cost 384-d model")

@hookimpl
def load_model(spec):
    return Model(dim=384, modalities=("text",), source="free", revision="free-1", normalized=True, settings={})

@hookimpl
def preprocess(model, items, mode):
    return [it.text for it in items]

@hookimpl
def embed(model, inputs, mode):
    out = np.zeros((len(inputs), 384), dtype=np.float32)
    out[np.arange(len(inputs)), [hash(t) % 384 for t in inputs]] = 1.0
    return out
"""


def ceiling(work: Path, rows: Path, n: int, executor: dict | None, store: str) -> float:
    """Rows/s of a whole run whose model costs nothing (the `free` plugin): what the driver, the
    transfer and the store allow, whatever the number of actors."""
    db = work / f"free-{store}.db"
    lines = ["[source]", f"path = {json.dumps(str(rows))}", 'chunk = { by = "none" }', "",
             "[model]", 'plugin = "free"', "batch_size = 64", "", "[store]"]  # fmt: skip
    lines += (['plugin = "milvus"', f"uri = {json.dumps(str(db))}"] if store == "lite" else ['plugin = "memory"'])
    lines += ['collection = "bench"', ""]
    if executor:
        lines += ["[executor]", *(f"{k} = {_common._toml_value(v)}" for k, v in executor.items()), ""]
    config = work / f"free-{store}.toml"
    config.write_text("\n".join(lines))
    with _common.Timer() as t:
        run(config, n)
    shutil.rmtree(db, ignore_errors=True)
    return n / t.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="sentences (default 20000)")
    parser.add_argument("--reps", type=int, default=3, help="timed runs of each configuration (default 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="encode batch size (default 64)")
    parser.add_argument("--configs", nargs="*", choices=sorted(CONFIGS), default=list(CONFIGS),
                        help="what to time (default: all); none: only the parts of the model")
    parser.add_argument("--no-parts", action="store_true", help="skip the measurements of the model's parts")
    parser.add_argument("--workdir", type=Path, default=None, help="where data and databases go (default: a temp folder)")
    args = parser.parse_args()
    n = args.n
    info = _common.header(f"ray executor vs local, minilm, {n} sentences, batch {args.batch_size}, {args.reps} reps, "
                          f"configs {' '.join(args.configs)}")  # fmt: skip
    info["ray"] = _common._version("ray")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedline-bench-"))
    rows = _common.write_jsonl(work / f"rows-{n}.jsonl", _common.texts(n))
    warm = _common.write_jsonl(work / "warm.jsonl", _common.texts(200))
    few = _common.write_jsonl(work / "few.jsonl", _common.texts(64))
    runs = itertools.count()

    def once(name: str, data: Path, count: int) -> dict:
        db = work / f"{name}-{next(runs)}.db"
        try:
            return run(pipeline_file(work, name, data, db, args.batch_size), count)
        finally:
            shutil.rmtree(db, ignore_errors=True)

    from embedline.testing import write_plugin_distribution
    from embedline_ray._executor import Settings, local_cpus, start_local_ray

    site = write_plugin_distribution(work / "site", "free", FREE_MODEL)  # the no-cost model, for the ceilings
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    import sys

    sys.path.insert(0, str(site))

    with _common.Timer() as t:
        start_local_ray(local_cpus(Settings(actors=2, cpus_per_actor=2.0), models=1))
    ray_start = t.seconds
    print(f"ray start (ray.init, local, {local_cpus(Settings(actors=2, cpus_per_actor=2.0), 1)} logical CPUs): "
          f"{ray_start:.2f} s", flush=True)  # fmt: skip
    try:
        for name in args.configs:  # imports, page cache, Ray's worker processes
            once(name, warm, 200)

        fixed: dict[str, float] = {}
        for name in args.configs:  # the fixed cost of a run: model load (and actors start), a few rows
            with _common.Timer() as t:
                once(name, few, 64)
            fixed[name] = t.seconds
            print(f"fixed     {name:<6} {t.seconds:8.2f} s  (a run of 64 sentences)", flush=True)

        times: dict[str, list[float]] = {name: [] for name in args.configs}
        for rep in range(args.reps if args.configs else 0):
            order = args.configs[rep % len(args.configs):] + args.configs[: rep % len(args.configs)]
            for name in order:
                with _common.Timer() as t:
                    once(name, rows, n)
                times[name].append(t.seconds)
                print(f"rep {rep + 1} {name:<6} {t.seconds:8.2f} s  {n / t.seconds:9.0f} sentences/s", flush=True)

        parts: dict = {}
        if not args.no_parts:
            config = pipeline_file(work, "local", rows, work / "parts.db", args.batch_size)
            seconds, items = reader_seconds(config)
            parts["reader"] = {"seconds": seconds, "items": items, "items_per_second": items / seconds}
            print(f"reader    {seconds:8.2f} s  {items / seconds:9.0f} items/s (driver: read, ids, windows)", flush=True)
            records = fake_rows(n)
            seconds = store_seconds(config, records)
            shutil.rmtree(work / "parts.db", ignore_errors=True)
            parts["store"] = {"seconds": seconds, "rows": n, "rows_per_second": n / seconds}
            print(f"store     {seconds:8.2f} s  {n / seconds:9.0f} rows/s (Milvus Lite upsert + close)", flush=True)
            rates = embed_rates(min(n, 4000), args.batch_size)
            parts["embed"] = {"sentences": min(n, 4000), "per_second_by_threads": rates}
            print(f"embed     {rates[1]:9.0f} sentences/s with 1 thread, {rates[2]:.0f} with 2 (MiniLM alone, in process)",
                  flush=True)  # fmt: skip
            parts["ceiling"] = {}
            for label, executor, store in (("local-lite", None, "lite"), ("ray-2-lite", CONFIGS["ray-2"], "lite"),
                                           ("ray-2-memory", CONFIGS["ray-2"], "memory")):  # fmt: skip
                ceiling(work, warm, 200, executor, store)  # warm
                rate = ceiling(work, rows, n, executor, store)
                parts["ceiling"][label] = rate
                print(f"ceiling   {label:<13} {rate:9.0f} rows/s (a model that costs nothing)", flush=True)
            parts["transfer"] = transfer(records)
            tr = parts["transfer"]
            print(f"transfer  {tr['window_seconds'] * 1000:8.1f} ms per window of {tr['window_rows']} rows "
                  f"({tr['bytes_per_row']:.0f} B/row, {tr['rows_per_second']:.0f} rows/s; a call: "
                  f"{tr['call_seconds'] * 1000:.1f} ms)", flush=True)  # fmt: skip
    finally:
        import ray

        ray.shutdown()

    if not args.configs:
        _common.save("ray-parts", info, n=n, batch_size=args.batch_size, ray_start_seconds=ray_start, parts=parts)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        return
    med = {name: _common.median(v) for name, v in times.items()}
    for name in args.configs:
        print(f"median    {name:<6} {med[name]:8.2f} s  {n / med[name]:9.0f} sentences/s")
    ratios = {name: med["local"] / med[name] for name in args.configs if name != "local" and "local" in med}
    for name, ratio in ratios.items():
        print(f"ratio {name}/local (throughput): {ratio:.2f}x (goal >= {GOAL}x: {'met' if ratio >= GOAL else 'missed'})")
    # The steady rate of each configuration: rows over the time beyond a run's fixed cost.
    steady = {name: n / max(1e-9, med[name] - fixed[name]) for name in args.configs}
    for name, rate in steady.items():
        print(f"steady    {name:<6} {rate:9.0f} sentences/s (median minus the fixed cost {fixed[name]:.2f} s)")
    _common.save(
        "ray", info, n=n, batch_size=args.batch_size, reps=args.reps, configs={k: CONFIGS[k] for k in args.configs},
        ray_start_seconds=ray_start, fixed_seconds=fixed, times=times, median=med,
        throughput={k: n / v for k, v in med.items()}, steady=steady, ratio=ratios, goal=GOAL, parts=parts,
    )  # fmt: skip
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
