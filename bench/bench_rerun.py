"""First run vs an unchanged re-run of the same pipeline: `embedline run` in a fresh process both times.

Each repetition starts from an empty database: a first run embeds every row, then a second run of
the same pipeline file on the same, unchanged data must embed nothing. Wall time of each process.
Ratio = first / re-run. Goal: >= 20x.

    python bench/bench_rerun.py --model minilm --n 20000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import _common

GOAL = 20.0


def embedline_run(config: Path) -> tuple[float, dict]:
    with _common.Timer() as t:
        done = subprocess.run([*_common.embedline_command(), "run", str(config), "--json", "--no-progress"],
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"embedline run failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return t.seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(_common.MODELS), default="minilm")
    parser.add_argument("--n", type=int, default=20000, help="sentences (default 20000)")
    parser.add_argument("--reps", type=int, default=3, help="first-run/re-run pairs (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where data and databases go (default: a temp folder)")
    args = parser.parse_args()
    info = _common.header(f"unchanged re-run, {args.model}, {args.n} sentences, {args.reps} reps")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedline-bench-"))
    rows = _common.write_jsonl(work / f"rows-{args.n}.jsonl", _common.texts(args.n))
    config = _common.write_pipeline(work / "rerun.toml", args.model, rows, work / "rerun.db")
    warm = _common.write_pipeline(work / "warm.toml", args.model, _common.write_jsonl(work / "warm.jsonl", _common.texts(100)),
                                  work / "warm.db")
    embedline_run(warm)  # untimed: page cache, and the distilled model (model2vec) in its cache

    times: dict[str, list[float]] = {"first": [], "rerun": []}
    for rep in range(args.reps):
        shutil.rmtree(work / "rerun.db", ignore_errors=True)
        first, summary = embedline_run(config)
        if summary["embedded"] != args.n:
            raise SystemExit(f"first run embedded {summary['embedded']} of {args.n}")
        again, summary = embedline_run(config)
        if summary["embedded"] != 0 or summary["skipped"] != args.n:
            raise SystemExit(f"re-run embedded {summary['embedded']}, skipped {summary['skipped']} of {args.n}")
        times["first"].append(first)
        times["rerun"].append(again)
        print(f"rep {rep + 1} first run {first:8.2f} s   re-run {again:6.2f} s   ratio {first / again:6.1f}x", flush=True)

    med = {k: _common.median(v) for k, v in times.items()}
    ratio = med["first"] / med["rerun"]
    print(f"median    first run {med['first']:8.2f} s   re-run {med['rerun']:6.2f} s")
    print(f"ratio first/re-run: {ratio:.1f}x (goal >= {GOAL:g}x: {'met' if ratio >= GOAL else 'missed'})")
    _common.save(f"rerun-{args.model}-{args.n}", info, model=args.model, n=args.n, reps=args.reps, times=times, median=med,
                 ratio=ratio, goal=GOAL)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
