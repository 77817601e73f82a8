"""Whether a run that says ``running`` or ``queued`` still has a process behind it.

``run.json`` says ``running`` from the moment a pipeline (or a launcher, for the folder it prepares) starts until the
pipeline records its end. A process killed with SIGKILL, or a machine that rebooted, never records it, so the word
alone would say ``running`` for ever. The pipeline records its pid in ``run.json``; a launcher records the pid of
the process it started (and, for a queue, the queue's own pid) in ``job.json``. This module checks those processes:
the CLI's ``runs`` and ``runs rm`` use it as the dashboard does.

A pid is trusted only when ``/proc/<pid>`` exists, is not a zombie and is the same process: the pipeline records
its start time beside its pid (``pid_start``); a launcher's pid must have the run folder's name in its command line.
So a recycled pid is never taken for the job. A run recorded on another host
(``run.json``'s ``host``, e.g. a runs folder on a shared disk) cannot be checked and keeps its word.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"
JOB_LOG = "job.log"
#: Seconds a queued run may wait for its queue process to record itself before it counts as stopped.
QUEUE_START_S: float = 60.0
#: Seconds a launched run may take before its pipeline records its own pid: until then its launcher's process may not
#: be recorded yet, or not show its own command line yet (right after the fork it shows the launcher's).
LAUNCH_START_S: float = 60.0

#: ``alive(pid, run_dir, markers, started) -> bool``; the dashboard passes one that first polls the processes it
#: started.
AliveCheck = Callable[[int | None, Path, tuple[str, ...], int | None], bool]


def read_json(path: Path) -> Any:
    """JSON content of ``path`` or None when missing or torn/unreadable (never raises)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def job_info(run_dir: Path) -> dict[str, Any]:
    """``job.json`` of a launched run (command, pid, queue_pid, ...); ``{}`` when missing or unreadable."""
    job = read_json(Path(run_dir) / JOB_FILE)
    return job if isinstance(job, dict) else {}


def job_pid(run_dir: Path, meta: dict[str, Any] | None = None) -> int | None:
    """The job's pid: ``run.json``'s ``pid`` when the pipeline records it, else ``job.json``'s."""
    for source in (meta or {}, job_info(run_dir)):
        pid = source.get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
            return pid
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (field 3, the state, first); None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22); with the pid it names
    one process for good, whatever its command line (the CLI, the ``imc-lab`` script, a notebook calling
    :func:`imc_core.run_pipeline`). None without ``/proc``."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def process_alive(pid: int | None, run_dir: Path, markers: tuple[str, ...] = (), started: int | None = None) -> bool:
    """Whether process ``pid`` runs and is the job of ``run_dir``: it started at ``started`` (:func:`process_start`)
    when that is known, else its command line names the folder or one of ``markers``.

    Without ``/proc`` (macOS) only the pid's existence is checked.
    """
    if pid is None or not process_exists(pid):
        return False
    if not Path("/proc/self").exists():
        return True
    if started is not None:
        return process_start(pid) == started
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return any(m in cmdline for m in (Path(run_dir).name, *markers))


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists and is no zombie (without ``/proc``: whether the pid exists)."""
    if Path("/proc/self").exists():
        fields = _stat_fields(pid)
        return bool(fields) and not fields[0].startswith("Z")
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@dataclass(frozen=True)
class RunState:
    """What a run folder's process is doing.

    Attributes:
        status: ``run.json``'s status, except that a ``running`` run without a live process is ``stopped`` (or
            ``cancelled`` when a cancel was requested), a ``running`` one with a pending cancel ``cancelling``, and a
            ``queued`` one whose queue process is gone ``stopped``.
        alive: whether its process (or its queue) is alive.
        pid: the job's pid, when recorded.
        error: ``run.json``'s error, or why a ``stopped`` run stopped (with the last line of ``job.log``).
        cancel_requested_at: modification time of the ``CANCEL`` file, when there is one.
    """

    status: str
    alive: bool
    pid: int | None
    error: str | None
    cancel_requested_at: float | None


def run_state(run_dir: Path, meta: dict[str, Any] | None = None, now: float | None = None,
              alive: AliveCheck = process_alive) -> RunState:
    """The :class:`RunState` of ``run_dir`` (never raises on torn or missing files).

    Args:
        run_dir: the run folder.
        meta: its ``run.json`` when already read.
        now: current time (``time.time()``), for tests.
        alive: the process check (default :func:`process_alive`).
    """
    run_dir = Path(run_dir)
    if meta is None:
        meta = read_json(run_dir / "run.json")
    meta = meta if isinstance(meta, dict) else {}
    pid = job_pid(run_dir, meta)
    raw = str(meta.get("status", "unknown"))
    cancel = run_dir / "CANCEL"
    try:
        cancel_at: float | None = cancel.stat().st_mtime
    except OSError:
        cancel_at = None
    error = meta.get("error")
    error = str(error) if error else None
    host = meta.get("host")
    if raw in ("running", "queued") and isinstance(host, str) and host and host != platform.node():
        return RunState(raw, True, pid, error, cancel_at)  # another machine's process: cannot tell
    is_alive = False
    if raw == "running":
        # the pipeline records its pid with its start time (run.json's pid_start); a launcher's pid (job.json, until
        # the pipeline writes run.json) is checked by its command line, which names the run folder; runs recorded
        # before pid_start existed, by the package's name in it
        started = meta.get("pid_start") if meta.get("pid") == pid else None
        started = started if isinstance(started, int) and not isinstance(started, bool) else None
        markers = ("imc_core", "imc-lab") if meta.get("pid") == pid and started is None else ()
        is_alive = alive(pid, run_dir, markers, started) or (meta.get("pid") is None
                                                             and _launch_pending(run_dir, pid, now))
        if is_alive:
            status = "cancelling" if cancel_at is not None else "running"
        else:
            status = "cancelled" if cancel_at is not None else "stopped"
    elif raw == "queued":
        is_alive = _queue_alive(run_dir, now, alive)
        status = "queued" if is_alive else "stopped"
        if not is_alive and not error:
            error = "the queue process ended before this run started" + _log_tail_hint(run_dir)
    else:
        status = raw
    if status == "stopped" and not error:
        error = "the pipeline process ended without recording a result" + _log_tail_hint(run_dir)
    return RunState(status, is_alive, pid, error, cancel_at)


def _launch_pending(run_dir: Path, pid: int | None, now: float | None) -> bool:
    """Whether a run whose launcher has prepared its folder, and whose pipeline has not recorded its pid yet, is
    still being started: for :data:`LAUNCH_START_S` seconds after its launch (``job.json``'s ``started``, else the
    folder's ``run.json`` time), with no process recorded yet or one that exists and is no zombie. A dashboard run
    read ``stopped`` in the History for those moments, was cached so for the whole run, and was offered in Remove
    runs."""
    started = job_info(run_dir).get("started")
    if not isinstance(started, (int, float)) or isinstance(started, bool):
        try:
            started = (run_dir / "run.json").stat().st_mtime
        except OSError:
            return False
    now = time.time() if now is None else now
    if not now - started < LAUNCH_START_S:
        return False
    return pid is None or process_exists(pid)


def _queue_alive(run_dir: Path, now: float | None, alive: AliveCheck) -> bool:
    """Whether the queue process that owns a queued run still lives (it records its pid in ``job.json`` when it
    starts; until then the run counts as waiting for :data:`QUEUE_START_S` seconds)."""
    job = job_info(run_dir)
    qpid = job.get("queue_pid")
    if isinstance(qpid, int) and qpid > 0:
        return alive(qpid, run_dir, (), None)  # its command line names every run directory of the queue
    queued = job.get("queued")
    now = time.time() if now is None else now
    return isinstance(queued, (int, float)) and now - queued < QUEUE_START_S


def _log_tail_hint(run_dir: Path) -> str:
    try:
        text = (run_dir / JOB_LOG).read_text(errors="replace")
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return f" (last output: {lines[-1][:200]})" if lines else ""
