"""minilm with backend = "onnx" vs "torch": cold `embedline search`, and ingest of N sentences.

search: one Milvus Lite collection of this repository's docs (embed.toml's source), filled once
with the torch backend; fp32 onnx makes the same vectors, so both backends search it. Then
`embedline search CONFIG QUERY -k 5` in fresh processes, alternating torch/onnx after an untimed
warm-up of each (page cache; the ONNX export made and cached if missing). Wall time: median, min
and max. Then, in fresh processes too, where the time goes: imports (core, the backend's libraries,
pymilvus), store open, model load, first encode of the query, search call (collection check, encode,
Milvus search), close; and whether torch was imported. One `python -X importtime` run of the onnx
search says which modules the CLI imported. Goals: onnx >= 5x faster than torch, about 1 s.

ingest: as bench_text.py's embedline side: a JSONL file into a fresh Milvus Lite database per run,
`Pipeline.from_toml(...).run()` in this process, torch and onnx alternating (ABBA) after an
untimed warm-up of both. Goal: onnx fp32 >= 1.8x torch.

    python bench/bench_onnx.py --part search --reps 7
    python bench/bench_onnx.py --part ingest --n 20000 --reps 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _common

QUERY = "how do I write a plugin?"
SEARCH_GOAL, SEARCH_SECONDS, INGEST_GOAL = 5.0, 1.0, 1.8
BACKENDS = ("torch", "onnx")
_common.MODELS.setdefault("minilm-onnx", {**_common.MODELS["minilm"], "backend": "onnx"})

# A cold search cut into its parts, in a fresh interpreter: argv = CONFIG BACKEND QUERY.
BREAKDOWN = r"""
import json, sys, time
t0 = time.perf_counter()
config, backend, query = sys.argv[1:4]
import embedline.cli, embedline.pipeline
t_core = time.perf_counter()
if backend == "onnx":
    import onnxruntime, tokenizers
else:  # a plain BERT folder (MiniLM) needs torch alone since 5b4929a (it was sentence-transformers before)
    import torch, tokenizers
t_backend = time.perf_counter()
import pymilvus
t_store_lib = time.perf_counter()
pipeline = embedline.pipeline.Pipeline.from_toml(config)
pipeline.store
t_store = time.perf_counter()
model = pipeline.model_at(0)
t_model = time.perf_counter()
model.encode_queries([query])
t_encode = time.perf_counter()
hits = pipeline.search(query, k=5)
t_search = time.perf_counter()
pipeline.close()
t_close = time.perf_counter()
assert hits, "no hits"
print(json.dumps({
    "import core": t_core - t0, "import backend": t_backend - t_core, "import pymilvus": t_store_lib - t_backend,
    "store open": t_store - t_store_lib, "model load": t_model - t_store, "encode (first)": t_encode - t_model,
    "search call": t_search - t_encode, "close": t_close - t_search, "in process": t_close - t0,
    "torch imported": "torch" in sys.modules,
    "transformers imported": "transformers" in sys.modules,
}))
"""


def pipeline_file(path: Path, db: Path, backend: str) -> Path:
    """embed.toml's source and model, this backend, a Milvus Lite database of its own."""
    lines = [
        "[source]",
        f"path = {json.dumps(str(_common.ROOT))}",
        'include = ["README.md", "docs/**/*.md", "plugins/*/README.md"]',
        'exclude = [".venv/**", ".git/**"]',
        'chunk = { by = "paragraph", max_tokens = 120, overlap = 20 }',
        "",
        "[model]",
        'plugin = "minilm"',
        f"name = {json.dumps(_common.MINILM)}",
        "batch_size = 64",
        "normalize = true",
        f'backend = "{backend}"',
        "",
        "[store]",
        'plugin = "milvus"',
        f"uri = {json.dumps(str(db))}",
        'collection = "docs"',
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def cli(*args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = _common.embedline_command()
    if python_flags:
        command = [sys.executable, *python_flags, *(command[1:] if command[0] == sys.executable else command)]
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"embedline {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done


def spread(values: list[float]) -> dict:
    return {"median": _common.median(values), "min": min(values), "max": max(values)}


def bench_search(work: Path, reps: int, info: dict) -> None:
    db = work / "docs.db"
    configs = {b: pipeline_file(work / f"search-{b}.toml", db, b) for b in BACKENDS}
    cli("run", str(configs["torch"]), "--no-progress")  # untimed: the collection, filled by torch
    for backend in BACKENDS:  # untimed warm-up: page cache, .pyc files, the ONNX export in its cache
        cli("search", str(configs[backend]), QUERY, "-k", "5")

    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for rep in range(reps):
        for backend in BACKENDS if rep % 2 == 0 else BACKENDS[::-1]:
            with _common.Timer() as t:
                cli("search", str(configs[backend]), QUERY, "-k", "5")
            times[backend].append(t.seconds)
        print(f"rep {rep + 1:>2} " + "  ".join(f"{b}: {times[b][-1]:6.2f} s" for b in BACKENDS), flush=True)

    parts: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for rep in range(max(3, reps // 2)):
        for backend in BACKENDS if rep % 2 == 0 else BACKENDS[::-1]:
            done = subprocess.run([sys.executable, "-c", BREAKDOWN, str(configs[backend]), backend, QUERY],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"breakdown ({backend}) failed:\n{done.stderr}")
            parts[backend].append(json.loads(done.stdout.strip().splitlines()[-1]))

    importtime = cli("search", str(configs["onnx"]), QUERY, "-k", "5", python_flags=("-X", "importtime")).stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in importtime.splitlines() if "|" in line}
    heavy = sorted(imported & {"torch", "transformers", "sentence_transformers"})

    med = {b: spread(v) for b, v in times.items()}
    ratio = med["torch"]["median"] / med["onnx"]["median"]
    print()
    for backend in BACKENDS:
        m = med[backend]
        print(f"median {backend:<5} {m['median']:6.2f} s (min {m['min']:.2f}, max {m['max']:.2f})")
    print(f"ratio torch/onnx: {ratio:.2f}x (goal >= {SEARCH_GOAL}x: {'met' if ratio >= SEARCH_GOAL else 'missed'}); "
          f"onnx median {med['onnx']['median']:.2f} s (goal about {SEARCH_SECONDS} s)")
    keys = [k for k in parts["onnx"][0] if k not in ("torch imported", "transformers imported")]
    breakdown = {b: {k: _common.median([p[k] for p in parts[b]]) for k in keys} for b in BACKENDS}
    print(f"\nbreakdown (medians of {len(parts['onnx'])} fresh processes each), seconds:")
    print(f"{'':<18}" + "".join(f"{b:>9}" for b in BACKENDS))
    for key in keys:
        print(f"{key:<18}" + "".join(f"{breakdown[b][key]:9.3f}" for b in BACKENDS))
    torch_in = {b: any(p["torch imported"] for p in parts[b]) for b in BACKENDS}
    transformers_in = {b: any(p.get("transformers imported") for p in parts[b]) for b in BACKENDS}
    shown = heavy or "none of torch, transformers, sentence_transformers"
    print(f"transformers imported: {transformers_in}")
    print(f"torch imported: {torch_in}; `python -X importtime embedline search` (onnx) imported: {shown}")
    _common.save("onnx-search", info, reps=reps, query=QUERY, times=times, median=med, ratio=ratio,
                 goal=SEARCH_GOAL, breakdown=breakdown, parts=parts, torch_imported=torch_in, importtime_heavy=heavy)


def bench_ingest(work: Path, n: int, reps: int, info: dict) -> None:
    from embedline import Pipeline

    rows = _common.write_jsonl(work / f"rows-{n}.jsonl", _common.texts(n))
    warm = _common.write_jsonl(work / "warm.jsonl", _common.texts(200))
    models = {"torch": "minilm", "onnx": "minilm-onnx"}
    runs = iter(range(1_000_000))

    def once(backend: str, data: Path, count: int) -> None:
        db = work / f"{backend}-{next(runs)}.db"
        config = _common.write_pipeline(work / f"ingest-{backend}.toml", models[backend], data, db)
        with Pipeline.from_toml(config) as pipeline:
            summary = pipeline.run()
        if summary.embedded != count or summary.failed:
            raise SystemExit(f"{backend}: embedded {summary.embedded} of {count}: {summary.format()}")
        shutil.rmtree(db, ignore_errors=True)

    for backend in BACKENDS:
        once(backend, warm, 200)  # imports, page cache, the ONNX export
    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for rep in range(reps):
        for backend in BACKENDS if rep % 2 == 0 else BACKENDS[::-1]:
            with _common.Timer() as t:
                once(backend, rows, n)
            times[backend].append(t.seconds)
            print(f"rep {rep + 1} {backend:<5} {t.seconds:8.2f} s  {n / t.seconds:7.0f} sentences/s", flush=True)
    med = {b: spread(v) for b, v in times.items()}
    ratio = med["torch"]["median"] / med["onnx"]["median"]
    for backend in BACKENDS:
        m = med[backend]
        print(f"median {backend:<5} {m['median']:8.2f} s  {n / m['median']:7.0f} sentences/s "
              f"(min {m['min']:.2f}, max {m['max']:.2f})")
    print(f"ratio torch/onnx: {ratio:.2f}x (goal >= {INGEST_GOAL}x: {'met' if ratio >= INGEST_GOAL else 'missed'})")
    _common.save("onnx-ingest", info, n=n, reps=reps, times=times, median=med,
                 throughput={b: n / m["median"] for b, m in med.items()}, ratio=ratio, goal=INGEST_GOAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("search", "ingest", "both"), default="both")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed runs of each backend (default: 7 search, 3 ingest)")
    parser.add_argument("--n", type=int, default=20000, help="sentences to ingest (default 20000)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where data and databases go (default: a temp folder)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedline-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.part in ("search", "both"):
            info = _common.header(f"cold search, minilm torch vs onnx, {args.reps or 7} reps")
            bench_search(work, args.reps or 7, info)
        if args.part in ("ingest", "both"):
            info = _common.header(f"ingest, minilm torch vs onnx, {args.n} sentences, {args.reps or 3} reps")
            bench_ingest(work, args.n, args.reps or 3, info)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
