"""Shared pieces of the browser tests: paths, the Chromium switches, the live-server record and its process helpers.

Its own module (not ``conftest``) so test files can import it without clashing with other folders' conftest modules.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
DATA_ROOT = REPO / "data" / "synthetic"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
VIEWPORT = {"width": 1400, "height": 900}


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can, or when ``CI`` forbids skipping)."""
    if os.environ.get("CI"):
        return None
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (run `make browser`); set CI=1 to make this a failure"
    return None


@dataclass
class Server:
    """A running dashboard.

    Attributes:
        url: base URL without a trailing slash (``http://127.0.0.1:PORT``).
        runs: the server's ``IMC_RUNS_DIR``.
        cache: the server's ``IMC_CACHE_DIR``.
        log: the server's stdout/stderr file.
    """

    url: str
    runs: Path
    cache: Path
    log: Path


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_health(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling, not a fixed wait
    raise RuntimeError(f"streamlit did not answer /_stcore/health in {timeout:.0f} s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def _job_pids(runs: Path) -> list[tuple[int, str]]:
    """(pid, run id) of the pipeline jobs the dashboard launched under ``runs`` (from their ``job.json``)."""
    import json

    out = []
    for job in runs.glob("*/job.json"):
        try:
            pid = json.loads(job.read_text()).get("pid")
        except (OSError, ValueError):
            continue
        if isinstance(pid, int) and pid > 0:
            out.append((pid, job.parent.name))
    return out


def kill_jobs(runs: Path) -> None:
    """SIGTERM the process group of every job still running (checked by its command line naming the run dir)."""
    for pid, run_id in _job_pids(runs):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if run_id in cmdline:
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
