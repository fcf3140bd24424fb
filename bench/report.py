"""Markdown tables from bench/results/*.json, for docs/benchmarks.md.

    python bench/report.py                            # print the tables
    python bench/report.py --write docs/benchmarks.md # replace what lies between the report markers
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import _common

START, END = "<!-- report:start -->", "<!-- report:end -->"


def load() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(_common.RESULTS.glob("*.json"))}


def verdict(met: bool, by: str) -> str:
    return f"**met** ({by})" if met else f"**missed** ({by})"


def secs(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def machine_section(results: dict[str, dict]) -> list[str]:
    infos = [r["machine"] for r in results.values() if "date" in r.get("machine", {})]
    first = infos[-1]
    dates = sorted(i["date"] for i in infos)
    commits = sorted({i["git"] for i in infos})
    loads = [str(i["loadavg"][0]) for i in sorted(infos, key=lambda i: i["date"]) if i.get("loadavg")]
    return [
        f"Runs from {dates[0]} to {dates[-1]}, commit(s) {', '.join(commits)} (`+dirty`: with uncommitted changes).",
        "",
        (
            f"Machine: {first['cores']} cores ({first['cpu']}), {first['os']}, Python {first['python']}, "
            f"torch {first['torch']}, sentence-transformers {first['sentence-transformers']}, "
            f"model2vec {first['model2vec']}, pymilvus {first['pymilvus']}, milvus-lite {first['milvus-lite']}. "
            f"1-minute load average when each run started: {', '.join(loads)} (the machine is shared)."
        ),
    ]


def text_section(results: dict[str, dict]) -> list[str]:
    rows = [r for k, r in results.items() if k.startswith("text-")]
    if not rows:
        return []
    out = [
        "### Ingest into Milvus Lite: embedline vs the libraries by hand",
        "",
        "| model | sentences | batch | index | embedline | raw loop | ratio raw/embedline | goal |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        med, tput = r["median"], r["throughput"]
        ratio, goal = r["ratio"], r["goal"]
        by = f"{100 * (ratio / goal - 1):+.0f}% vs {goal}x"
        out.append(
            f"| {r['model']} | {r['n']} | {r['batch_size']} | {r.get('index', 'AUTOINDEX')} | {med['embedline']:.1f} s ({tput['embedline']:.0f}/s) "
            f"| {med['raw']:.1f} s ({tput['raw']:.0f}/s) | **{ratio:.2f}x** | >= {goal}x: {verdict(ratio >= goal, by)} |"
        )
    out += ["", "Every repetition (seconds), and the command:", ""]
    for r in rows:
        out.append(f"- {r['model']} ({r.get('index', 'AUTOINDEX')}): embedline {secs(r['times']['embedline'])}; raw {secs(r['times']['raw'])} "
                   f"({r['machine']['date']}) `{r['command']}`")
    return out


def rerun_section(results: dict[str, dict]) -> list[str]:
    rows = [r for k, r in results.items() if k.startswith("rerun-")]
    if not rows:
        return []
    out = [
        "### Unchanged re-run vs first run (`embedline run`, fresh processes)",
        "",
        "| model | sentences | first run | re-run | ratio | goal |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        med, ratio, goal = r["median"], r["ratio"], r["goal"]
        out.append(f"| {r['model']} | {r['n']} | {med['first']:.1f} s | {med['rerun']:.2f} s | **{ratio:.1f}x** "
                   f"| >= {goal:g}x: {verdict(ratio >= goal, f'{ratio / goal:.2f} of the goal')} |")
    out += ["", "Every repetition (seconds), and the command:", ""]
    for r in rows:
        out.append(f"- {r['model']}: first {secs(r['times']['first'])}; re-run {secs(r['times']['rerun'])} "
                   f"({r['machine']['date']}) `{r['command']}`")
    return out


def startup_section(results: dict[str, dict]) -> list[str]:
    r = results.get("startup")
    if not r:
        return []
    out = ["### Start-up", "", "| command | median | min | max | goal |", "|---|---:|---:|---:|---|"]
    for name, values in r["times"].items():
        goal = r["goal"]
        mark = verdict(r["median"][name] < goal, f"{r['median'][name] / goal:.0%} of {goal} s") if name.startswith("embedline") else ""
        out.append(f"| `{name}` | {r['median'][name]:.3f} s | {min(values):.3f} s | {max(values):.3f} s | {mark} |")
    out += ["", f"{r['reps']} runs of each, alternating ({r['machine']['date']}): `{r['command']}`"]
    return out


def memory_section(results: dict[str, dict]) -> list[str]:
    r = results.get("memory")
    if not r:
        return []
    small, large = r["sizes"]
    out = [
        f"### Peak memory, {small} vs {large} items (Model2Vec)",
        "",
        f"| process | peak RSS at {small} | peak RSS at {large} | growth | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for side, s in r["summary"].items():
        med = {int(k): v for k, v in s["median_mib"].items()}
        growth = s["growth_pct"]
        name = {"embedline": "`embedline run`", "raw": "raw loop (bench/_raw.py)"}.get(side, f"`embedline run`, {side[11:]}")
        goal = verdict(growth < r["goal"], f"{growth - r['goal']:+.0f} points") if side == "embedline" else ""
        out.append(f"| {name} | {med[small]:.0f} MiB | {med[large]:.0f} MiB | **{growth:+.0f}%** | {goal} |")
    out += ["", "Every repetition (MiB, `ru_maxrss`), and the command:", ""]
    for side, by_size in r["peaks"].items():
        parts = [f"{n}: " + ", ".join(f"{m['maxrss_mib']:.0f}" for m in runs) for n, runs in by_size.items()]
        out.append(f"- {side}: {'; '.join(parts)}")
    out.append(f"- ({r['machine']['date']}) `{r['command']}`")
    return out


def quality_section(results: dict[str, dict]) -> list[str]:
    rows = [r for k, r in results.items() if k.startswith("eval-")]
    if not rows:
        return []
    out = [
        "### Quality (`embedline eval`, STS-B dev, 1,000 pairs)",
        "",
        "| model | STS Spearman | STS Pearson | retrieval recall@10 | MRR@10 | nDCG@10 | queries / corpus |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sts = next(x for x in r["results"] if x["task"] == "sts")
        ret = next(x for x in r["results"] if x["task"] == "retrieval")
        out.append(f"| {r['model']} | {100 * sts['spearman']:.2f} | {100 * sts['pearson']:.2f} | {100 * ret['recall@10']:.2f} "
                   f"| {100 * ret['mrr@10']:.2f} | {100 * ret['ndcg@10']:.2f} | {ret['queries']} / {ret['corpus']} |")
    out += ["", f"Command (per model): `{rows[0]['eval_command']}` (via `{rows[0]['command']}`)"]
    return out


def batching_section(results: dict[str, dict]) -> list[str]:
    r = results.get("batching-minilm")
    if not r:
        return []
    base = r["median"]["one call"]
    out = [
        f"### Batch formation (MiniLM, {r['n']} sentences, batches of {r['batch_size']})",
        "",
        "| batches formed by | encode time (median) | vs one `encode` call | padded / real tokens |",
        "|---|---:|---:|---:|",
    ]
    for name, m in r["median"].items():
        out.append(f"| {name} | {m:.2f} s | {m / base:.2f} | {r['padding'][name]:.2f} |")
    reps = "; ".join(f"{name} {secs(v)}" for name, v in r["times"].items())
    out += ["", f"Every repetition (seconds): {reps} ({r['machine']['date']}) `{r['command']}`"]
    return out


KNOWN = ("text-", "rerun-", "startup", "memory", "eval-", "batching-")


def other_section(results: dict[str, dict]) -> list[str]:
    """Any other bench that saved ``times`` per side (e.g. bench_images.py, bench_audio.py): medians and ratio."""
    rows = [r for k, r in results.items() if not k.startswith(KNOWN) and isinstance(r.get("times"), dict)]
    if not rows:
        return []
    out = ["### Other benchmarks", "", "| bench | medians | ratio | goal | command |", "|---|---|---:|---|---|"]
    for r in rows:
        meds = ", ".join(f"{side} {_common.median(v):.2f} s" for side, v in r["times"].items())
        ratio = f"{r['ratio']:.2f}x" if isinstance(r.get("ratio"), (int, float)) else "-"
        goal = r.get("goal", "-")
        out.append(f"| {r['bench']} | {meds} | {ratio} | {goal} | `{r['command']}` |")
    return out


def report(results: dict[str, dict]) -> str:
    sections = [machine_section(results), text_section(results), rerun_section(results), startup_section(results),
                memory_section(results), quality_section(results), batching_section(results), other_section(results)]
    return "\n\n".join("\n".join(s) for s in sections if s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help=f"replace the text between {START} and {END} in this file")
    args = parser.parse_args()
    results = load()
    if not results:
        raise SystemExit(f"no results in {_common.RESULTS}: run the bench scripts first")
    text = report(results)
    if not args.write:
        print(text)
        return
    doc = args.write.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{args.write}: no {START} ... {END} markers")
    args.write.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{text}\n{END}", doc, flags=re.DOTALL))
    print(f"updated {args.write}")


if __name__ == "__main__":
    main()
