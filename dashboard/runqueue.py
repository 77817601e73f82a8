"""Run prepared run directories one after the other: ``python -m dashboard.runqueue RUN_DIR [RUN_DIR ...]``.

:func:`dashboard.jobs.launch_queue` prepares each directory (``run.json`` status ``queued``, ``job.json`` with the
pipeline command) and starts this module in its own session, so the queue outlives Streamlit reruns and restarts.
It records its pid in every ``job.json`` first (the job list tells a live queue from a dead one by it), then, for
each directory in turn: waits while another job runs in the same runs folder (a run launched on its own, another
queue's; the check and the start hold the folder's lock, :func:`turn_lock`), skips it when it is no longer
``queued`` (cancelled meanwhile) or has a ``CANCEL`` request, else starts the command in a session of its own (so
cancelling one run signals that run only), with its output in the directory's ``job.log``, records the run's pid
and waits for it. A run that fails does not stop the queue.

This module never imports streamlit.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imc_core.fsutil import atomic_write_json
from imc_core.runs import LAUNCH_TOKEN_ENV, record_failure

from dashboard.jobs import JOB_FILE, JOB_LOG, job_info, read_json, started_jobs

LOCK_FILE = ".queue.lock"


@contextmanager
def turn_lock(runs_dir: Path) -> Iterator[None]:
    """Hold the runs folder's queue lock (``.queue.lock``, an exclusive ``flock``): a queue holds it from its check
    that no job runs until its run has recorded that it started, so two queues that check at the same instant do
    not both start theirs."""
    with open(Path(runs_dir) / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start_one(run_dir: Path) -> subprocess.Popen[bytes] | None:
    """Start one prepared run (its pid and start time go into ``job.json``); None when it was skipped (cancelled,
    or no command)."""
    meta = read_json(run_dir / "run.json")
    if not isinstance(meta, dict) or meta.get("status") != "queued":
        return None  # cancelled from the dashboard (or taken over by someone else) while it waited
    if (run_dir / "CANCEL").exists():
        record_failure(run_dir, "cancelled by the user while queued", status="cancelled")
        return None
    job = job_info(run_dir)
    cmd = job.get("command")
    if not (isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd)):
        record_failure(run_dir, f"{run_dir / JOB_FILE}: no command to run")
        return None
    env = {k: v for k, v in os.environ.items() if k != LAUNCH_TOKEN_ENV}
    if isinstance(token := meta.get("launch_token"), str):
        env[LAUNCH_TOKEN_ENV] = token  # (its run alone may take the folder the dashboard prepared)
    with open(run_dir / JOB_LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    atomic_write_json(run_dir / JOB_FILE, {**job, "pid": proc.pid, "started": time.time()})
    return proc


def wait_for_turn(run_dir: Path, poll_s: float = 1.0) -> None:
    """Wait while a job of another queue, or one launched on its own, runs in ``run_dir``'s runs folder (it would
    share the cores); stop waiting as soon as ``run_dir`` is cancelled."""
    while True:
        meta = read_json(run_dir / "run.json")
        if not isinstance(meta, dict) or meta.get("status") != "queued" or (run_dir / "CANCEL").exists():
            return
        if not [j for j in started_jobs(run_dir.parent) if j.run_dir != run_dir]:
            return
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    dirs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    for run_dir in dirs:
        atomic_write_json(run_dir / JOB_FILE, {**job_info(run_dir), "queue_pid": os.getpid()})
    for run_dir in dirs:
        with turn_lock(run_dir.parent):
            wait_for_turn(run_dir)
            proc = start_one(run_dir)
        if proc is not None:
            proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
