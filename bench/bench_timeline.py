"""Where a cold `Pipeline.run` spends its seconds, step by step, and the minilm plugin's encoding
against `SentenceTransformer.encode` on the same sentences.

Timeline: a fresh process per repetition (the `--child` mode of this script) ingests N sentences
with all-MiniLM-L6-v2 (torch, batch 64), or with `--model model2vec` the distilled Model2Vec model
(batch 1024), into a new Milvus Lite file and prints when each step
started and ended, in seconds from the process's first line: imports, the store's connection
(Milvus Lite's engine starting), the model's load, the collection's creation, the first `embed`
call, the first write, the final flush (the engine indexing the rows), close.  The step times
are medians over the repetitions.

Encoding (`--encode N`): in one warm process, the plugin's `preprocess` + `embed` of N STS-B dev
sentences in one call against `SentenceTransformer(folder).encode(same, batch_size=64,
normalize_embeddings=True)`, alternated, medians, and the largest difference between the vectors.

    python bench/bench_timeline.py --n 5000 --reps 3
    python bench/bench_timeline.py --n 0 --encode 2000 --reps 3
    python bench/bench_timeline.py --model model2vec --n 100000 --reps 3
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import _common  # noqa: E402

STEPS = ["imports", "store connect", "model load", "create collection", "first embed", "first write", "flush",
         "close"]  # fmt: skip


def child(config: Path) -> None:
    """One cold run with marks; prints {step: [start, end]} as JSON."""
    from embedline import Pipeline
    from embedline import pipeline as pipeline_module
    from embedline.models import EmbeddingModel

    marks: dict[str, list[float]] = {"imports": [0.0, time.perf_counter() - T0]}
    lock = threading.Lock()

    def mark(step: str, edge: int) -> None:
        with lock:
            marks.setdefault(step, [None, None])[edge] = time.perf_counter() - T0

    def timed(owner, attr: str, step: str) -> None:
        """Mark the first call of ``owner.attr``."""
        original = getattr(owner, attr)

        def wrapper(*args, **kwargs):
            first = step not in marks
            if first:
                mark(step, 0)
            try:
                return original(*args, **kwargs)
            finally:
                if first:
                    mark(step, 1)

        setattr(owner, attr, wrapper)

    store_property = pipeline_module.Pipeline.store

    def store(self):
        if self._store is None:
            mark("store connect", 0)
            value = store_property.fget(self)
            mark("store connect", 1)
            return value
        return store_property.fget(self)

    pipeline_module.Pipeline.store = property(store)
    timed(EmbeddingModel, "load", "model load")
    original_call = EmbeddingModel._call

    def call(self, hook, **kwargs):
        if hook == "embed" and "first embed" not in marks:
            mark("first embed", 0)
            try:
                return original_call(self, hook, **kwargs)
            finally:
                mark("first embed", 1)
        return original_call(self, hook, **kwargs)

    EmbeddingModel._call = call
    pipeline = Pipeline.from_toml(config)
    store_class = type(pipeline.store)
    timed(store_class, "create_collection", "create collection")
    timed(store_class, "upsert", "first write")
    timed(store_class, "flush", "flush")
    summary = pipeline.run()
    mark("close", 0)
    pipeline.close()
    mark("close", 1)
    print(json.dumps({"marks": marks, "stored": summary.embedded, "end": time.perf_counter() - T0}))


def timeline(model: str, n: int, reps: int, work: Path) -> dict:
    rows = _common.write_jsonl(work / f"rows-{n}.jsonl", _common.texts(n))
    runs = []
    for rep in range(reps + 1):  # the first is an untimed warm-up (page cache, bytecode)
        db = work / f"run-{rep}.db"
        config = _common.write_pipeline(work / f"run-{rep}.toml", model, rows, db)  # the model's batch size
        done = subprocess.run([sys.executable, __file__, "--child", str(config)], capture_output=True, text=True,
                              check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"run {rep} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result = json.loads(lines[-1])
        if rep:
            runs.append(result)
            print(f"rep {rep}: " + "  ".join(f"{step} {result['marks'][step][1]:.2f}" for step in STEPS
                                             if step in result["marks"]) + f"  end {result['end']:.2f}", flush=True)
    print(f"\nmedian of {reps} cold runs, {n} sentences (s from the process's first line; duration):")
    summary = {}
    for step in STEPS:
        starts = [r["marks"][step][0] for r in runs if step in r["marks"]]
        ends = [r["marks"][step][1] for r in runs if step in r["marks"]]
        if not ends:
            continue
        start, end = _common.median(starts), _common.median(ends)
        summary[step] = {"start": start, "end": end, "seconds": _common.median([e - s for s, e in zip(starts, ends)])}
        print(f"  {step:<18} {start:7.2f} -> {end:7.2f}   ({summary[step]['seconds']:.2f} s)")
    summary["end"] = _common.median([r["end"] for r in runs])
    print(f"  {'process end':<18} {summary['end']:7.2f}")
    return {"runs": runs, "median": summary}


def encoding(n: int, reps: int, base: Path) -> dict:
    import numpy as np
    from embedline.contracts import Item
    from embedline.testing import fresh_plugin_manager, load_plugin_model, read_sts_pairs
    from sentence_transformers import SentenceTransformer

    first, second, _ = read_sts_pairs(_common.STSB_DEV)
    texts = (first + second)[:n]
    folder = _common.minilm_folder()
    pm = fresh_plugin_manager()
    model = load_plugin_model("minilm", folder, pm=pm, base_dir=base, device="cpu", batch_size=64)
    reference = SentenceTransformer(folder, device="cpu")
    items = [Item(id=str(i), uri=f"mem://{i}", modality="text", text=t) for i, t in enumerate(texts)]

    def plugin():
        inputs = pm.call("preprocess", "minilm", model=model, items=items, mode="document")
        return pm.call("embed", "minilm", model=model, inputs=inputs, mode="document")

    def encode():
        return reference.encode(texts, batch_size=64, normalize_embeddings=True)

    sides = {"plugin": plugin, "sentence-transformers": encode}
    times: dict[str, list[float]] = {name: [] for name in sides}
    vectors = {name: call() for name, call in sides.items()}  # warm-up
    for rep in range(reps):
        for name in list(sides) if rep % 2 == 0 else list(sides)[::-1]:
            start = time.perf_counter()
            vectors[name] = sides[name]()
            times[name].append(time.perf_counter() - start)
    diff = float(np.abs(vectors["plugin"] - vectors["sentence-transformers"]).max())
    med = {name: _common.median(v) for name, v in times.items()}
    print(f"\nencoding {n} STS-B sentences in one call, median of {reps}: plugin {med['plugin']:.2f} s "
          f"({type(model.impl).__name__}), SentenceTransformer.encode {med['sentence-transformers']:.2f} s: "
          f"{med['sentence-transformers'] / med['plugin']:.2f}x; largest |difference| {diff:.1e}")
    return {"times": times, "median": med, "max_diff": diff}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(_common.MODELS), default="minilm", help="the timeline's model")
    parser.add_argument("--n", type=int, default=5000, help="sentences per timeline run (0: no timeline)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--encode", type=int, default=0, metavar="N", help="also compare encoding N sentences")
    args = parser.parse_args()
    info = _common.header(f"timeline of a cold run ({args.model}, {args.n} sentences), encoding ({args.encode})")
    with tempfile.TemporaryDirectory(prefix="embedline-timeline-") as tmp:
        result = {"timeline": timeline(args.model, args.n, args.reps, Path(tmp)) if args.n else None,
                  "encoding": encoding(args.encode, args.reps, Path(tmp)) if args.encode else None}  # fmt: skip
    name = f"timeline-{args.n}" if args.model == "minilm" else f"timeline-{args.model}-{args.n}"
    _common.save(name, info, model=args.model, n=args.n, reps=args.reps, encode=args.encode, **result)


if __name__ == "__main__":
    main()
