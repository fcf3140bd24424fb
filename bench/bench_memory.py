"""Peak memory of `embedline run` at 10k vs 100k items (Model2Vec, fresh database each time). Goal: < 15% growth.

Milvus Lite's engine runs in a process of its own (the milvus plugin's ``lite_engine = "process"``):
the goal is on the pipeline's process, and the engine's peak (``VmHWM``) is reported beside it.

Peak RSS is the kernel's high-water mark of the process (``ru_maxrss`` from ``wait4``); with psutil
installed, the peak sum over the process tree polled every 20 ms is reported too. The hand-written
loop (bench/_raw.py: encode everything, then upsert) is measured the same way for reference:
what Milvus Lite itself adds as the collection grows. So is `embedline run` with a store plugin
that keeps nothing (``null``, installed for the run through PYTHONPATH): the pipeline's own memory.

    python bench/bench_memory.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common

GOAL = 15.0  # percent


def engine_hwm(db: Path) -> float:
    """The high-water mark of RSS (``VmHWM``) of the Milvus Lite engine process serving ``db``, in MiB
    (0 when none runs).  The engine is started by the run but is nobody's child (it forks away), so
    ``ru_maxrss`` never includes it: it is read from /proc while it lives."""
    from embedline_milvus.testing import lite_engines

    peak = 0.0
    for pid in lite_engines(db):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


def peak_rss(argv: list[str], env: dict | None = None, engine_db: Path | None = None) -> dict:
    """Run ``argv``; its peak RSS in MiB (``ru_maxrss``), with psutil the polled process-tree peak,
    and with ``engine_db`` the peak of the Milvus Lite engine process serving that database."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    tree_peak = [0]
    engine_peak = [0.0]
    done = threading.Event()

    def watch_engine() -> None:
        while not done.is_set():
            engine_peak[0] = max(engine_peak[0], engine_hwm(engine_db))
            time.sleep(0.1)
        engine_peak[0] = max(engine_peak[0], engine_hwm(engine_db))  # it lingers after the run: read again

    watcher = threading.Thread(target=watch_engine, daemon=True) if engine_db is not None else None
    if watcher:
        watcher.start()

    def poll() -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            root = psutil.Process(proc.pid)
            while not done.is_set():
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                tree_peak[0] = max(tree_peak[0], total)
                time.sleep(0.02)
        except psutil.Error:
            pass

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    poller.join()
    if watcher:
        watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr.read().decode()}")
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {"maxrss_mib": usage.ru_maxrss / scale, "tree_mib": tree_peak[0] / 2**20 or None,
            "engine_mib": engine_peak[0] or None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10000, 100000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--reps", type=int, default=2, help="runs of each size and side (default 2)")
    parser.add_argument("--no-raw", action="store_true", help="skip the hand-written loop")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    small, large = args.sizes
    info = _common.header(f"peak memory, model2vec, {small} vs {large} items, {args.reps} reps")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedline-bench-"))
    rows = {n: _common.write_jsonl(work / f"rows-{n}.jsonl", _common.texts(n)) for n in (small, large)}
    runs = iter(range(1_000_000))

    def embedline(n: int) -> dict:
        db = work / f"e{next(runs)}.db"
        config = _common.write_pipeline(work / f"mem-{n}.toml", "model2vec", rows[n], db)
        return peak_rss([*_common.embedline_command(), "run", str(config), "--no-progress"], engine_db=db)

    from embedline.testing import NULL_STORE_PLUGIN, write_plugin_distribution

    site = write_plugin_distribution(work / "site", "null", NULL_STORE_PLUGIN)
    null_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}

    def null_store(n: int) -> dict:
        config = _common.write_pipeline(work / f"null-{n}.toml", "model2vec", rows[n], work / "unused.db")
        config.write_text(config.read_text().replace('plugin = "milvus"', 'plugin = "null"').replace("uri = ", "# uri = "))
        return peak_rss([*_common.embedline_command(), "run", str(config), "--no-progress"], env=null_env)

    def raw(n: int) -> dict:
        return peak_rss([sys.executable, str(_common.BENCH / "_raw.py"), "model2vec", str(rows[n]), str(work / f"r{next(runs)}.db")])

    sides = {"embedline": embedline, "embedline, null store": null_store}
    if not args.no_raw:
        sides["raw"] = raw
    embedline(small)  # untimed warm-up: distils the model into its cache on a first use
    peaks: dict[str, dict[int, list[dict]]] = {side: {small: [], large: []} for side in sides}
    for rep in range(args.reps):
        for side, measure in sides.items():
            for n in (small, large):
                m = measure(n)
                peaks[side][n].append(m)
                tree = f"{m['tree_mib']:.0f}" if m["tree_mib"] else "-"
                engine = f", Lite engine process {m['engine_mib']:.0f} MiB" if m.get("engine_mib") else ""
                print(f"rep {rep + 1} {side:<21} {n:>7} items: peak RSS {m['maxrss_mib']:7.0f} MiB (tree {tree} MiB)"
                      f"{engine}", flush=True)

    summary = {}
    for side in sides:
        med = {n: _common.median([m["maxrss_mib"] for m in peaks[side][n]]) for n in (small, large)}
        growth = 100 * (med[large] - med[small]) / med[small]
        summary[side] = {"median_mib": med, "growth_pct": growth}
        goal = f"  (goal < {GOAL:g}%: {'met' if growth < GOAL else 'missed'})" if side == "embedline" else ""
        print(f"median {side:<21} {med[small]:7.0f} MiB at {small}, {med[large]:7.0f} MiB at {large}: growth {growth:+.1f}%{goal}")
        engines = {n: [m["engine_mib"] for m in peaks[side][n] if m.get("engine_mib")] for n in (small, large)}
        if all(engines.values()):
            eng = {n: _common.median(v) for n, v in engines.items()}
            summary[side]["engine_median_mib"] = eng
            print(f"median {'  its Lite engine':<21} {eng[small]:7.0f} MiB at {small}, {eng[large]:7.0f} MiB at {large}: "
                  f"growth {100 * (eng[large] - eng[small]) / eng[small]:+.1f}% (a process of its own)")
    _common.save("memory", info, sizes=[small, large], reps=args.reps, peaks=peaks, summary=summary, goal=GOAL)


if __name__ == "__main__":
    main()
