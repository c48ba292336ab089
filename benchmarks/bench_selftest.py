"""`healthfm self-test` against importing the stack it checks, in the same run:
``python -c "import rdkit, spacy, onnxruntime, PySide6"`` (issue 19: goal <= 2x that time).

Each is run as a fresh process, alternating (ABAB), ``--repeat`` times; medians compared, the
load average printed. Usage: python benchmarks/bench_selftest.py [--repeat 3]"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPORTS = [sys.executable, "-c", "import rdkit, spacy, onnxruntime, PySide6"]
SELF_TEST = [sys.executable, "-m", "healthfm_desktop", "self-test"]


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _timed(command: list[str]) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"{' '.join(command[1:])} failed with exit {done.returncode}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"start: {_load()} on {os.cpu_count()} cores")
    _timed(IMPORTS)  # page cache warm for both
    ours, base = [], []
    for _ in range(args.repeat):
        ours.append(_timed(SELF_TEST))
        base.append(_timed(IMPORTS))
    o, b = statistics.median(ours), statistics.median(base)
    print(f"self-test: {o / b:.2f}x the import of rdkit, spacy, onnxruntime, PySide6 ({o:.1f} s vs {b:.1f} s, "
          f"median of {args.repeat}, alternating; goal <= 2x); {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
