"""Run every benchmarks/bench_*.py in turn; each prints `<what>: <ratio>x <baseline> (...)` lines.

Usage: python benchmarks/run.py [name-filter]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        if wanted not in script.stem:
            continue
        print(f"== {script.stem}", flush=True)
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
