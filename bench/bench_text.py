"""Ingest N sentences into a fresh Milvus Lite database: embedline ``Pipeline.run()`` vs the libraries by hand.

Both sides run in this process, alternating (ABBA), after an untimed warm-up of both that imports
the libraries. Each timed run includes loading the model, reading the JSONL file, embedding and
writing every row, and closing the database. Ratio = raw median / embedline median (> 1: embedline
is faster). Goals: MiniLM >= 1.0x, Model2Vec >= 1.2x.

    python bench/bench_text.py --model minilm --n 20000
    python bench/bench_text.py --model model2vec --n 100000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import _common
import _raw

GOALS = {"minilm": 1.0, "model2vec": 1.2}
DEFAULT_N = {"minilm": 20000, "model2vec": 100000}


def run_embedline(config: Path, n: int) -> None:
    from embedline import Pipeline

    with Pipeline.from_toml(config) as pipeline:
        summary = pipeline.run()
    if summary.embedded != n or summary.failed:
        raise SystemExit(f"embedline embedded {summary.embedded} of {n} rows: {summary.format()}")


def run_raw(model: str, path: str, rows: Path, db: Path, batch_size: int, n: int, index: str) -> None:
    written = _raw.ingest(model, path, rows, db, batch_size, index)
    if written != n:
        raise SystemExit(f"raw loop wrote {written} of {n} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(_common.MODELS), default="minilm")
    parser.add_argument("--n", type=int, default=None, help="sentences (default: 20000 minilm, 100000 model2vec)")
    parser.add_argument("--reps", type=int, default=3, help="timed runs of each side (default 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="encode batch size, both sides (default: 64 / 1024)")
    parser.add_argument("--index", default="AUTOINDEX", help="vector index, both sides (default: AUTOINDEX, the "
                        "store's default; HNSW on Milvus Lite, built when the database closes)")
    parser.add_argument("--workdir", type=Path, default=None, help="where data and databases go (default: a temp folder)")
    args = parser.parse_args()
    n = args.n or DEFAULT_N[args.model]
    batch = args.batch_size or _common.MODELS[args.model]["batch_size"]
    info = _common.header(f"text ingest, {args.model}, {n} sentences, batch {batch}, {args.index}, {args.reps} reps")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedline-bench-"))
    rows = _common.write_jsonl(work / f"rows-{n}.jsonl", _common.texts(n))
    warm_rows = _common.write_jsonl(work / "warm.jsonl", _common.texts(200))

    runs = iter(range(1_000_000))  # a fresh database folder for every run (Lite keeps a server per folder)

    def embedline_once(data: Path, count: int) -> None:
        db = work / f"embedline-{next(runs)}.db"
        run_embedline(_common.write_pipeline(work / "embedline.toml", args.model, data, db, batch, index=args.index), count)

    def raw_once(data: Path, count: int) -> None:
        db = work / f"raw-{next(runs)}.db"
        run_raw(args.model, weights, data, db, batch, count, args.index)

    weights = _raw.model_path(args.model)
    embedline_once(warm_rows, 200)  # imports, model files in the page cache, the distilled model cached
    raw_once(warm_rows, 200)
    times: dict[str, list[float]] = {"embedline": [], "raw": []}
    for rep in range(args.reps):
        order = ("embedline", "raw") if rep % 2 == 0 else ("raw", "embedline")
        for side in order:
            with _common.Timer() as t:
                (embedline_once if side == "embedline" else raw_once)(rows, n)
            times[side].append(t.seconds)
            print(f"rep {rep + 1} {side:<9} {t.seconds:8.2f} s  {n / t.seconds:9.0f} sentences/s", flush=True)

    med = {side: _common.median(v) for side, v in times.items()}
    ratio = med["raw"] / med["embedline"]
    goal = GOALS[args.model]
    print(f"median    embedline {med['embedline']:8.2f} s  {n / med['embedline']:9.0f} sentences/s")
    print(f"median    raw       {med['raw']:8.2f} s  {n / med['raw']:9.0f} sentences/s")
    print(f"ratio raw/embedline: {ratio:.2f}x (goal >= {goal}x: {'met' if ratio >= goal else 'missed'})")
    _common.save(
        f"text-{args.model}" + ("" if args.index == "AUTOINDEX" else f"-{args.index}"), info, model=args.model, n=n,
        batch_size=batch, index=args.index, reps=args.reps, times=times,
        median=med, throughput={k: n / v for k, v in med.items()}, ratio=ratio, goal=goal,
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
