"""Docs search: the default pipeline's text (this project's docs) chunked several ways, each
ingested into its own Milvus Lite file and scored with `embedline eval --sections` on the 53
questions of bench/data (recall@1, recall@5, MRR@10, nDCG@10), plus chunks, truncated inputs
and ingest seconds.

    python bench/bench_docs.py                       # every chunking below
    python bench/bench_docs.py --only paragraph-120 structure-96

`paragraph-120` is the chunking embed.toml used before documents were chunked along their
structure (120 words, 20 overlapping); `structure-model` packs to MiniLM's limit (254 tokens);
`structure-N` to N of its tokens (embed.toml: 96).  The same code, model and text for every row.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import _common

CHUNKINGS = {
    "paragraph-120": '{ by = "paragraph", max_tokens = 120, overlap = 20 }',
    "structure-model": '{ by = "structure" }',
    "structure-128": '{ by = "structure", max_tokens = 128 }',
    "structure-96": '{ by = "structure", max_tokens = 96 }',
    "structure-64": '{ by = "structure", max_tokens = 64 }',
    "structure-32": '{ by = "structure", max_tokens = 32 }',
    "structure-96-noheading": '{ by = "structure", max_tokens = 96, heading = false }',
}
QUESTIONS = _common.BENCH / "data" / "docs-questions.jsonl"
QRELS = _common.BENCH / "data" / "docs-qrels.tsv"


def pipeline_file(folder: Path, chunk: str) -> Path:
    """embed.toml with another chunking, reading the repository, writing a file in ``folder``."""
    text = (_common.ROOT / "embed.toml").read_text()
    text = re.sub(r"(?m)^chunk = .*$", f"chunk = {chunk}", text)
    text = re.sub(r'(?m)^path = "\."', f'path = "{_common.ROOT}"', text)
    text = re.sub(r'(?m)^uri = "[^"]*"', f'uri = "{folder / "docs.db"}"', text)
    path = folder / "embed.toml"
    path.write_text(text)
    return path


def run(argv: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 3):  # 3: some items failed, reported in the summary
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CHUNKINGS), default=list(CHUNKINGS))
    args = parser.parse_args()
    info = _common.header("docs search: chunkings of this project's docs, embedline eval --sections")
    rows = []
    print(f"{'chunking':<24} {'chunks':>6} {'trunc':>5} {'ingest s':>8} {'recall@1':>8} {'recall@5':>8} {'mrr@10':>7} {'ndcg@10':>7}")
    for name in args.only:
        with tempfile.TemporaryDirectory(prefix="embedline-bench-docs-") as tmp:
            config = pipeline_file(Path(tmp), CHUNKINGS[name])
            started = time.perf_counter()
            ingest = run([*_common.embedline_command(), "run", str(config), "--json"])
            seconds = time.perf_counter() - started
            summary = json.loads(ingest.stdout)
            done = run([*_common.embedline_command(), "eval", str(config), "--queries", str(QUESTIONS),
                        "--qrels", str(QRELS), "--sections", "--json"])
            (result,) = json.loads(done.stdout)["results"]
        row = {
            "chunking": name,
            "chunk": CHUNKINGS[name],
            "chunks": summary["items"],
            "truncated": summary.get("counters", {}).get("truncated", 0),
            "failed": len(summary["failed"]),
            "ingest_s": round(seconds, 1),
            **{k: result[k] for k in ("queries", "recall@1", "recall@5", "mrr@10", "ndcg@10")},
        }
        rows.append(row)
        print(
            f"{name:<24} {row['chunks']:>6} {row['truncated']:>5} {seconds:>8.1f} {100 * row['recall@1']:>8.2f} "
            f"{100 * row['recall@5']:>8.2f} {100 * row['mrr@10']:>7.2f} {100 * row['ndcg@10']:>7.2f}",
            flush=True,
        )
    print(f"saved {_common.save('docs', info, rows=rows)}")


if __name__ == "__main__":
    main()
