"""Time and peak memory of the worker pool's per-record time budget (issue 18, case 4).

1. `molecules describe` of an SD file: a 1,000-carbon macrocycle with its 2,000 hydrogens (at
   the size limits) among 250 ethanols, with the default budget (10 s: the ring is described)
   and with `--time-budget 0.1` (the ring is stopped, its worker replaced).
2. The pool alone (core/processes.map_ordered, 2 workers) over 5 tasks of which 2 hold a record
   that blocks in a C call for --stuck seconds (as a library call on a pathological input does),
   without a budget and with a 1 s budget.
Alternating runs (ABAB), medians; peak memory is the largest resident set of the command or any
of its worker processes (getrusage of the waited-for children).

    python benchmarks/bench_record_budget.py --repeat 3 --stuck 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)
"""
_POOL = """
import ctypes, ctypes.util, sys, time
from healthfm_desktop.core import processes

def stuck_or_upper(records):
    out = []
    for record in records:
        if record == "stuck":
            ctypes.CDLL(ctypes.util.find_library("c")).sleep(int(sys.argv[1]))
        out.append(record.upper())
    return out

def stopped(record, seconds):
    return "stopped"

if __name__ == "__main__":
    budget = processes.RecordBudget(float(sys.argv[2]), stopped) if float(sys.argv[2]) > 0 else None
    tasks = [["a", "b"], ["c", "stuck", "d"], ["e"], ["f", "stuck"], ["g"]]
    out = list(processes.map_ordered([(stuck_or_upper, t) for t in tasks], workers=2, budget=budget))
    sys.exit(0 if out[1][0] == "C" else 3)
"""


def _measure(command: list[str]) -> tuple[float, float, int]:
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout's code, for the pool script too
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], cwd=REPO, capture_output=True, text=True,
                          check=True, env=env)
    wall, peak, code = done.stdout.split()
    return float(wall), float(peak), int(code)


def _sdf(folder: Path) -> Path:
    from rdkit import Chem

    ring = Chem.AddHs(Chem.MolFromSmiles("C1" + "C" * 998 + "C1"))
    ring.SetProp("_Name", "ring1000")
    blocks = [Chem.MolToV3KMolBlock(ring, includeStereo=False)]
    ethanol = Chem.MolFromSmiles("CCO")
    for k in range(250):
        ethanol.SetProp("_Name", f"e{k}")
        blocks.append(Chem.MolToMolBlock(ethanol))
    path = folder / "ring_among_ethanols.sdf"
    path.write_text("$$$$\n".join(blocks) + "$$$$\n")
    return path


def _report(label: str, runs: list[tuple[float, float, int]]) -> None:
    print(f"{label}: {statistics.median(r[0] for r in runs):.2f} s, peak {max(r[1] for r in runs):.0f} MiB, "
          f"exit {sorted({r[2] for r in runs})}  ({', '.join(f'{r[0]:.2f}' for r in runs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stuck", type=int, default=20, help="seconds a stuck record blocks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        sdf = _sdf(work)
        pool_script = work / "pool_case.py"
        pool_script.write_text(_POOL)
        describe = [sys.executable, "-m", "healthfm_desktop", "molecules", "describe", str(sdf), "--json"]
        cases = {
            "describe, default budget (ring described)": describe,
            "describe, --time-budget 0.1 (ring stopped)": describe + ["--time-budget", "0.1"],
            f"pool, 2 records stuck {args.stuck} s, no budget": [sys.executable, str(pool_script), str(args.stuck), "0"],
            f"pool, 2 records stuck {args.stuck} s, 1 s budget": [sys.executable, str(pool_script), str(args.stuck), "1"],
        }
        runs: dict[str, list] = {label: [] for label in cases}
        for _ in range(args.repeat):
            for label, command in cases.items():
                runs[label].append(_measure(command))
        for label, measured in runs.items():
            _report(label, measured)


if __name__ == "__main__":
    main()
