"""Start-up time of the `ssvar` subcommands (issue 18): wall time of `python -m ssvar.cli ARGS`
for the commands that should not import Lightning, and `fit --help` for reference.

    python benchmarks/cli_startup.py                       # this checkout
    python benchmarks/cli_startup.py --src OLD_CHECKOUT    # another checkout (e.g. a `git archive`)
    python benchmarks/cli_startup.py --repeats 5 --json out.json

Each command runs ``--repeats`` times in a fresh interpreter; the median is reported (the first
run also warms the file cache). Times are wall-clock seconds on whatever else the machine runs:
compare checkouts in the same session.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def commands(tmp: Path) -> dict[str, list[str]]:
    empty = tmp / "videos"
    empty.mkdir(exist_ok=True)
    (tmp / "lab.txt").write_text("a/0.mp4 0\nb/0.mp4 1\n")
    (tmp / "test.txt").write_text("a/1.mp4 0\nb/1.mp4 1\n")
    return {
        "import ssvar": ["-c", "import ssvar"],
        "ssvar --help": ["-m", "ssvar.cli", "--help"],
        "ssvar splits --help": ["-m", "ssvar.cli", "splits", "--help"],
        "ssvar splits verify (2-line lists)": [
            "-m",
            "ssvar.cli",
            "splits",
            "verify",
            "--labeled",
            str(tmp / "lab.txt"),
            "--test",
            str(tmp / "test.txt"),
        ],
        "ssvar check-videos --help": ["-m", "ssvar.cli", "check-videos", "--help"],
        "ssvar check-videos (empty folder)": ["-m", "ssvar.cli", "check-videos", str(empty), "--workers", "1"],
        "ssvar fit --help (Lightning; reference)": ["-m", "ssvar.cli", "fit", "--help"],
    }


def measure(src: Path, args: list[str], repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=REPO, help="checkout whose `ssvar` package is timed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: measure(args.src, cmd, args.repeats) for name, cmd in commands(Path(tmp)).items()}
    for name, sec in rows.items():
        print(f"{name:<42} {sec:6.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
