"""Throughput vs quality per model, from bench/results (text-*.json and eval-*.json), as a PNG.

x: sentences per second ingested into Milvus Lite (embedline, and the hand-written loop), log scale;
y: Spearman on STS-B dev from `embedline eval`.

    python bench/plot.py            # writes docs/throughput-quality.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _common

LABELS = {"minilm": "all-MiniLM-L6-v2", "model2vec": "Model2Vec (distilled from MiniLM, 256-d)"}
COLORS = {"minilm": "tab:blue", "model2vec": "tab:orange"}


def points() -> list[dict]:
    out = []
    for model in _common.MODELS:
        quality = _common.RESULTS / f"eval-{model}.json"
        if not quality.is_file():
            continue
        sts = next(r for r in json.loads(quality.read_text())["results"] if r["task"] == "sts")
        point = {"model": model, "spearman": 100 * sts["spearman"], "encode": sts["sentences_per_s"]}
        ingest = _common.RESULTS / f"text-{model}.json"
        if ingest.is_file():
            text = json.loads(ingest.read_text())
            point.update(embedline=text["throughput"]["embedline"], raw=text["throughput"]["raw"], n=text["n"])
        out.append(point)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=_common.ROOT / "docs" / "throughput-quality.png")
    args = parser.parse_args()
    data = points()
    if not data:
        raise SystemExit(f"no eval-*.json in {_common.RESULTS}: run bench/bench_eval.py (and bench_text.py) first")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for p in data:
        color, name = COLORS[p["model"]], LABELS[p["model"]]
        if "embedline" in p:
            ax.scatter(p["embedline"], p["spearman"], s=90, color=color, marker="o",
                       label=f"{name}: embedline run ({p['n']:,} into Milvus Lite)")
            ax.scatter(p["raw"], p["spearman"], s=90, facecolors="none", edgecolors=color, marker="s",
                       label=f"{name}: hand-written encode + upsert")
        ax.scatter(p["encode"], p["spearman"], s=60, color=color, marker="x", label=f"{name}: embedding only (eval)")
        ax.annotate(f"{p['spearman']:.1f}", (p.get("embedline", p["encode"]), p["spearman"]),
                    textcoords="offset points", xytext=(0, 9), ha="center", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("sentences per second (2-core CPU, log scale)")
    ax.set_ylabel("STS-B dev Spearman (x100)")
    lows = [p["spearman"] for p in data]
    ax.set_ylim(min(lows) - 4, max(lows) + 3)
    ax.set_title("Throughput vs quality")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
