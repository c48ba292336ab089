"""scripts/system-deps.sh on a fresh machine whose first automatic update holds apt's lock:
it waits, says so, and installs once the lock is free; past its timeout it says why it stops."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-deps.sh"


def fake_tools(folder: Path, locked_calls: int) -> Path:
    """dpkg that knows no package, sudo that runs its command, and an apt-get that answers as
    apt does while another process holds the lock, ``locked_calls`` times."""
    folder.mkdir()
    calls = folder / "calls"
    (folder / "dpkg").write_text("#!/bin/sh\nexit 1\n")
    (folder / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (folder / "apt-get").write_text(f"""#!/bin/sh
echo "$*" >> {calls}
n=$(wc -l < {calls})
if [ "$n" -le {locked_calls} ]; then
  echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)" >&2
  echo "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?" >&2
  exit 100
fi
exit 0
""")
    for tool in ("dpkg", "sudo", "apt-get"):
        (folder / tool).chmod(0o755)
    return calls


def run(tmp_path: Path, locked_calls: int, timeout: int):
    calls = fake_tools(tmp_path / "bin", locked_calls)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HEALTHFM_APT_LOCK_POLL": "1",
           "HEALTHFM_APT_LOCK_TIMEOUT": str(timeout)}
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    return out, calls.read_text().splitlines()


def test_it_waits_for_apts_lock_then_installs(tmp_path):
    out, calls = run(tmp_path, locked_calls=2, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "waiting for it" in out.stderr and out.stderr.count("waiting") == 1
    assert [("update" in c, "install" in c) for c in calls] == [(True, False)] * 3 + [(False, True)]


def test_past_the_timeout_it_says_why_and_stops(tmp_path):
    out, calls = run(tmp_path, locked_calls=100, timeout=2)
    assert out.returncode == 100
    assert "still locked by another process" in out.stderr and "again when it has finished" in out.stderr
    assert not any("install" in c for c in calls)
