"""Quality of each model: `embedline eval` on the STS-B dev pairs (STS and retrieval built from them).

Runs `embedline eval CONFIG --sts sts-dev.tsv --from-sts sts-dev.tsv --json` for MiniLM and the
Model2Vec model distilled from it, and keeps the JSON for the report and the plot.

    python bench/bench_eval.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(_common.MODELS), default=sorted(_common.MODELS))
    parser.add_argument("--data", type=Path, default=_common.STSB_DEV, help="STS-benchmark TSV (default: STS-B dev)")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no STS data at {args.data}")
    info = _common.header(f"quality on {args.data.name}")

    with tempfile.TemporaryDirectory(prefix="embedline-bench-") as tmp:
        for model in args.models:
            config = _common.write_pipeline(Path(tmp) / f"{model}.toml", model, None, Path(tmp) / "unused.db")
            argv = [*_common.embedline_command(), "eval", str(config), "--sts", str(args.data), "--from-sts",
                    str(args.data), "--json"]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"embedline eval failed ({done.returncode}):\n{done.stderr}")
            out = json.loads(done.stdout)
            sts, retrieval = out["results"]
            print(f"{model:<10} STS Spearman {100 * sts['spearman']:.2f}  Pearson {100 * sts['pearson']:.2f}  "
                  f"({sts['sentences_per_s']:.0f} sentences/s)  retrieval recall@10 {100 * retrieval['recall@10']:.2f}  "
                  f"MRR@10 {100 * retrieval['mrr@10']:.2f}  nDCG@10 {100 * retrieval['ndcg@10']:.2f}", flush=True)
            data = os.path.relpath(args.data, _common.ROOT)
            _common.save(f"eval-{model}", info, model=model, eval_command=f"embedline eval {model}.toml --sts {data} "
                         f"--from-sts {data} --json", fingerprint=out["model"], results=out["results"])


if __name__ == "__main__":
    main()
