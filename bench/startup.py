"""`maillage dev` (what `make run` runs) from a warm venv to every service ready, and its clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from services.common.embedded import free_port
from services.launch.devstack import READY_LINE

NAMES = ("gateway", "directory", "events", "matching", "postgres", "kafka")


def run_once(home: Path) -> tuple[float, float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env["MAILLAGE_HOME"] = str(home)
    for name in NAMES:
        env[f"MAILLAGE_{name.upper()}_PORT"] = str(free_port())
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.launch.cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    ready = None
    demo = ""
    try:
        for line in process.stdout:
            if line.startswith("demo actors"):
                demo = line.strip()
            if line.startswith(READY_LINE):
                ready = time.perf_counter() - started
                break
        if ready is None:
            raise RuntimeError("maillage dev exited before it was ready")
        stopping = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        return ready, time.perf_counter() - stopping, demo
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="maillage-startup-")) / ".maillage"
    rows = []
    try:
        for run in range(3):
            state = "new data dir (initdb)" if run == 0 else "reused data dir"
            ready, stop, demo = run_once(home)
            rows.append((run + 1, state, ready, stop, demo))
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)
    print(f"\n`maillage dev` on {os.cpu_count()} cores, warm venv (target: ready in < 15 s)")
    print(f"{'run':>3}  {'data':<22} {'ready s':>8} {'stop s':>7}  demo data")
    for run, state, ready, stop, demo in rows:
        print(f"{run:>3}  {state:<22} {ready:>8.1f} {stop:>7.1f}  {demo}")


if __name__ == "__main__":
    main()
