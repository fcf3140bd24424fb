"""Wall time of `embedline --help` and `embedline plugins` (fresh processes, alternating). Goal: < 0.3 s.

`python -c pass` and `python -c "import embedline"` are timed in the same rounds for reference.

    python bench/bench_startup.py --reps 15
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import _common

GOAL = 0.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="runs of each command (default 15)")
    args = parser.parse_args()
    info = _common.header(f"startup, {args.reps} reps")

    cli = _common.embedline_command()
    commands = {
        "embedline --help": [*cli, "--help"],
        "embedline plugins": [*cli, "plugins"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import embedline'": [sys.executable, "-c", "import embedline"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, argv in commands.items():  # untimed warm-up: page cache, .pyc files
        subprocess.run(argv, capture_output=True, check=True)
    for rep in range(args.reps):
        for name, argv in commands.items():
            with _common.Timer() as t:
                subprocess.run(argv, capture_output=True, check=True)
            times[name].append(t.seconds)
        print(f"rep {rep + 1:>2} " + "  ".join(f"{name}: {times[name][-1]:.3f} s" for name in commands), flush=True)

    med = {name: _common.median(v) for name, v in times.items()}
    for name, value in med.items():
        goal = f"  (goal < {GOAL} s: {'met' if value < GOAL else 'missed'})" if name.startswith("embedline") else ""
        print(f"median {name:<30} {value:.3f} s{goal}")
    _common.save("startup", info, reps=args.reps, times=times, median=med, goal=GOAL)


if __name__ == "__main__":
    main()
