"""Background pipeline jobs for the dashboard: launch, discover, follow and cancel.

A job is ``python -m imc_core run ... --out RUN_DIR`` started with :class:`subprocess.Popen` in its own session, so it
survives Streamlit reruns, page refreshes and even a restart of the dashboard. The run directory is created *before*
the process starts (with a provisional ``run.json`` of status ``running`` and a ``job.json`` holding the pid and the
command line), so the job is visible at once and can be found again by scanning run directories: a job is *active*
when ``run.json`` says ``running`` and its process is alive.

Cancellation is cooperative first (:func:`imc_core.runs.request_cancel` writes ``CANCEL``, the pipeline polls it
between steps) and forceful after a grace period (SIGTERM to the job's process group), decided statelessly from the
``CANCEL`` file's modification time, so any rerun of any page can enforce it.

This module never imports streamlit.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imc_core.fsutil import atomic_write_json
from imc_core.liveness import JOB_FILE, JOB_LOG, job_info, process_alive, read_json, run_state
from imc_core.runs import (LAUNCH_TOKEN_ENV, LIVE_STATUSES, RunWriter, meta_seed, new_run_dir, now_iso,
                           record_failure, request_cancel, runs_root)

#: Command prefix of a job; tests replace it with a fake pipeline.
BASE_COMMAND: list[str] = [sys.executable, "-m", "imc_core", "run"]
#: The process that runs a queue of prepared run directories one after the other (:func:`launch_queue`).
QUEUE_COMMAND: list[str] = [sys.executable, "-m", "dashboard.runqueue"]
#: Seconds between the CANCEL request and the SIGTERM fallback.
CANCEL_GRACE_S: float = 10.0
FINAL_STATUSES = ("done", "failed", "cancelled")

#: Processes started by this Python process (polled so they never linger as zombies).
_PROCS: dict[str, subprocess.Popen[bytes]] = {}


@dataclass
class LaunchSpec:
    """What to run.

    Attributes:
        data_root: data root in the IMC-2025 layout.
        datasets: dataset names (empty = all of the split).
        variant: variant name.
        overrides: ``section.key=value`` strings (``--set``).
        group: ties repeated runs (seeds) of one experiment together.
        label: free text stored in ``run.json``.
        use_cache: False adds ``--no-cache``.
        split: ``train``, ``test`` or ``auto`` (``--split``; ``auto`` leaves the choice to the CLI: train when the
            root has training datasets).
    """

    data_root: Path
    datasets: list[str] = field(default_factory=list)
    variant: str = "default"
    overrides: list[str] = field(default_factory=list)
    group: str | None = None
    label: str | None = None
    use_cache: bool = True
    split: str = "auto"


@dataclass
class StageProgress:
    """Progress of one stage key (``"<dataset>/<stage>"`` or ``"scoring"``) from ``progress.json``."""

    name: str
    done: int
    total: int
    cached: bool
    seconds: float | None
    eta_s: float | None
    #: seconds since the stage started (``now`` minus its start), when it recorded one
    elapsed_s: float | None = None

    @property
    def fraction(self) -> float:
        """Completion in [0, 1]."""
        return 0.0 if self.total <= 0 else max(0.0, min(1.0, self.done / self.total))

    def text(self) -> str:
        """One line for a progress bar: ``features 12/40 · ETA 31 s`` (or ``cache hit``)."""
        if self.cached:
            return f"{self.name}: cache hit"
        s = f"{self.name}: {self.done}/{self.total}"
        if self.done >= self.total > 0:
            return s + (f" · {self.seconds:.1f} s" if self.seconds else " · done")
        if self.eta_s is not None:
            s += f" · ETA {format_seconds(self.eta_s)}"
        return s


@dataclass
class Job:
    """State of one pipeline job as read from its run directory."""

    run_dir: Path
    status: str  # queued | running | cancelling | done | failed | cancelled | stopped | unknown
    pid: int | None
    alive: bool
    stages: list[StageProgress]
    stage: str
    message: str
    created: str
    cancel_requested_at: float | None
    error: str | None
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.run_dir.name

    @property
    def active(self) -> bool:
        """True while the process runs (also while a cancel request is pending)."""
        return self.status in ("queued", "running", "cancelling")


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``."""
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


# ----------------------------------------------------------------------------------------------------------- launch


def build_command(spec: LaunchSpec, run_dir: Path) -> list[str]:
    """The argv of a job (``BASE_COMMAND`` + CLI arguments of ``python -m imc_core run``)."""
    cmd = [*BASE_COMMAND, "--data-root", str(spec.data_root), "--variant", spec.variant, "--out", str(run_dir),
           "--quiet"]
    # free text as --opt=value: a value that starts with "-" (a label "--fast", a dataset folder "-neg") would
    # otherwise read as an option and the job would die on argparse's error
    cmd += [f"--dataset={name}" for name in spec.datasets]
    for item in spec.overrides:
        cmd += ["--set", item]
    if spec.group:
        cmd.append(f"--group={spec.group}")
    if spec.label:
        cmd.append(f"--label={spec.label}")
    if not spec.use_cache:
        cmd.append("--no-cache")
    if spec.split and spec.split != "auto":
        cmd += ["--split", spec.split]
    return cmd


def launch(spec: LaunchSpec, runs_dir: Path | None = None) -> Path:
    """Create a run directory and start the pipeline in a background process writing into it.

    Args:
        spec: what to run.
        runs_dir: parent folder of run directories (default ``$IMC_RUNS_DIR``).

    Returns:
        The run directory (``run.json`` says ``running``; ``job.json`` has the pid and command).
    """
    run_dir = _prepare(spec, runs_dir, "running")
    cmd = build_command(spec, run_dir)
    with open(run_dir / JOB_LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(_repo_root()),
                                env=_job_env((read_json(run_dir / "run.json") or {}).get("launch_token")))
    _PROCS[str(run_dir)] = proc
    atomic_write_json(run_dir / JOB_FILE, {"pid": proc.pid, "command": cmd, "started": time.time()})
    return run_dir


def _prepare(spec: LaunchSpec, runs_dir: Path | None, status: str) -> Path:
    """A new run directory with the launcher's ``run.json`` (``status`` running or queued) and progress."""
    run_dir = new_run_dir(spec.variant, runs_dir or runs_root())
    writer = RunWriter(run_dir)
    writer.write_meta(id=run_dir.name, created=now_iso(), status=status, variant=spec.variant,
                      data_root=str(spec.data_root), datasets=list(spec.datasets), overrides=list(spec.overrides),
                      **({"split": spec.split} if spec.split != "auto" else {}),
                      group=spec.group, label=spec.label, launcher="dashboard", pid=None, error=None,
                      # (this machine's from the start: a run cancelled while queued never reached the pipeline,
                      # which writes it, and the job list of a reloaded page took it for another machine's)
                      host=platform.node(),
                      launch_token=secrets.token_hex(8))  # (its process alone may take the folder: check_run_dir)
    writer.progress("starting" if status == "running" else "queued", 0, 1,
                    "starting the pipeline process" if status == "running" else "waiting for the runs before it",
                    force=True)
    return run_dir


def _job_env(token: str | None = None) -> dict[str, str]:
    """The environment of a job: this one's, unbuffered, with the launch token of the folder it is to take."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop(LAUNCH_TOKEN_ENV, None)
    if token:
        env[LAUNCH_TOKEN_ENV] = token
    return env


def launch_queue(specs: list[LaunchSpec], runs_dir: Path | None = None) -> list[Path]:
    """Run ``specs`` one after the other in one background queue process (:mod:`dashboard.runqueue`).

    Every run directory exists at once (``run.json`` says ``queued``, ``job.json`` holds its command), so the whole
    queue shows in the job list and History; the queue starts each run when the one before it, and any other job
    started meanwhile, has ended. Runs side by side would share the cores (each run's timings would mean nothing)
    and, with a cold cache, all compute the same features.

    Returns:
        The run directories, in order.
    """
    dirs = []
    for spec in specs:
        run_dir = _prepare(spec, runs_dir, "queued")
        atomic_write_json(run_dir / JOB_FILE, {"command": build_command(spec, run_dir), "queued": time.time()})
        dirs.append(run_dir)
    # the queue's own errors (it writes each run's output into that run's job.log) land in the first run's log
    with open(dirs[0] / JOB_LOG, "ab") as log:
        proc = subprocess.Popen([*QUEUE_COMMAND, *map(str, dirs)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=str(_repo_root()),
                                env=_job_env())
    _PROCS[f"queue:{dirs[0]}"] = proc
    return dirs


def launch_repeats(spec: LaunchSpec, repeats: int = 1, seed: int | None = None,
                   runs_dir: Path | None = None, wait: bool = False) -> list[Path]:
    """Launch ``repeats`` runs with seeds ``seed .. seed + repeats - 1`` sharing one group (noise awareness).

    Args:
        spec: what to run; with ``repeats > 1`` and no group, a group name is made from the variant and the time.
        repeats: how many runs.
        seed: first ``reconstruction.seed`` (None keeps the spec's overrides as they are, even when repeating).
        runs_dir: parent folder of run directories.
        wait: queue even a single run, so that it starts when the jobs running now have ended (a queue always
            waits for them).

    Returns:
        The run directories, in seed order.
    """
    specs = repeat_specs(spec, repeats, seed)
    if len(specs) == 1 and not wait:
        return [launch(specs[0], runs_dir)]
    return launch_queue(specs, runs_dir)


def started_jobs(runs_dir: Path | None = None) -> list[Job]:
    """Active jobs whose pipeline process has started (it says running, or ``job.json`` records when it started; a
    CLI run has no ``job.json``), queued ones that wait aside."""
    return [j for j in active_jobs(runs_dir) if j.status != "queued" or "started" in job_info(j.run_dir)]


def repeat_specs(spec: LaunchSpec, repeats: int = 1, seed: int | None = None) -> list[LaunchSpec]:
    """The specs of :func:`launch_repeats`: seeds ``seed .. seed + repeats - 1`` (None: overrides kept as they
    are), one group (made from the variant and the time when ``spec`` has none and ``repeats > 1``)."""
    repeats = max(1, int(repeats))
    group = spec.group or (f"{spec.variant}-{time.strftime('%Y%m%d-%H%M%S')}" if repeats > 1 else None)
    out = []
    for i in range(repeats):
        overrides = [o for o in spec.overrides if not (seed is not None and o.startswith("reconstruction.seed="))]
        if seed is not None:
            overrides.append(f"reconstruction.seed={int(seed) + i}")
        out.append(dataclasses.replace(spec, datasets=list(spec.datasets), overrides=overrides, group=group))
    return out


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- liveness


def is_alive(pid: int | None, run_dir: Path, markers: tuple[str, ...] = (), started: int | None = None) -> bool:
    """Whether the job process of ``run_dir`` is still running: a process started here is polled (which also reaps
    it); any other is checked by :func:`imc_core.liveness.process_alive`."""
    proc = _PROCS.get(str(run_dir))
    if proc is not None:
        return proc.poll() is None
    return process_alive(pid, run_dir, markers, started)


def wait(run_dir: Path, timeout: float | None = None) -> int | None:
    """Wait for a job started by this process to exit; returns its exit code (None if unknown or timed out)."""
    proc = _PROCS.get(str(run_dir))
    if proc is None:
        return None
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# ---------------------------------------------------------------------------------------------------- progress


def stage_progress(progress: dict[str, Any] | None, now: float | None = None) -> list[StageProgress]:
    """Per-stage progress rows (file order) with an ETA extrapolated from the stage's pace since its first items
    were done (their time holds the stage's set-up, e.g. loading a model: 57 s were predicted for a 9 s features
    stage), else from its whole elapsed time.

    The pace is the one measured when the count last moved (``done_at``), and the ETA counts down from then: a
    stage that reports in chunks (COLMAP's SIFT extracts 8 images at a time) had its pace taken up to *now*, so the
    ETA climbed between two reports and fell at each. Once the countdown has run out with the stage still going, the
    pace up to now is all there is to go on.

    Args:
        progress: ``progress.json`` content (``{"stage", "done", "total", "stages": {name: {...}}}``) or None.
        now: current time (``time.time()``), for tests.
    """
    now = time.time() if now is None else now
    rows = []
    for name, st in ((progress or {}).get("stages") or {}).items():
        if not isinstance(st, dict):
            continue
        done, total = int(st.get("done") or 0), int(st.get("total") or 0)
        started = st.get("started")
        elapsed = max(0.0, now - started) if isinstance(started, (int, float)) else None
        eta = _eta(st, done, total, now) if elapsed is not None and 0 < done < total else None
        seconds = st.get("seconds")
        rows.append(StageProgress(str(name), done, total, bool(st.get("cached")),
                                  float(seconds) if isinstance(seconds, (int, float)) else None, eta, elapsed))
    return rows


def _eta(st: dict[str, Any], done: int, total: int, now: float) -> float:
    """Seconds left in a stage that has ``done`` of ``total`` items done (``0 < done < total``)."""
    start, start_done = st["started"], 0
    first_at, first_done = st.get("first_at"), st.get("first_done")
    if isinstance(first_at, (int, float)) and isinstance(first_done, int) and first_done < done:
        start, start_done = first_at, first_done  # (the first items' time holds the set-up)

    def left(until: float) -> float:
        return max(0.0, until - start) / (done - start_done) * (total - done)

    done_at = st.get("done_at")
    if isinstance(done_at, (int, float)) and done_at <= now:
        countdown = left(done_at) - (now - done_at)
        if countdown > 0:
            return countdown
    return left(now)


def job_status(run_dir: Path, now: float | None = None) -> Job:
    """Read a run directory's job state (never raises on torn or missing files)."""
    run_dir = Path(run_dir)
    meta = read_json(run_dir / "run.json")
    meta = meta if isinstance(meta, dict) else {}
    progress = read_json(run_dir / "progress.json")
    progress = progress if isinstance(progress, dict) else {}
    state = run_state(run_dir, meta, now, alive=is_alive)
    return Job(run_dir, state.status, state.pid, state.alive, stage_progress(progress, now),
               str(progress.get("stage", "")), str(progress.get("message", "")), str(meta.get("created", "")),
               state.cancel_requested_at, state.error, meta)


def active_jobs(runs_dir: Path | None = None) -> list[Job]:
    """Jobs whose ``run.json`` says ``running`` or ``queued`` and whose process (or queue) is alive: running (and
    cancelling) ones first, then queued ones, each by launch time (the run id's first part), then seed (the queue's
    order). Not by ``created``: a queued run's changes when it starts, and the list reordered under the pointer (a
    Cancel meant for a queued job hit the running one)."""
    for key, proc in list(_PROCS.items()):  # reap finished queue processes started here
        if key.startswith("queue:") and proc.poll() is not None:
            del _PROCS[key]
    root = runs_dir or runs_root()
    jobs = []
    if root.is_dir():
        for p in root.iterdir():
            if not p.is_dir() or p.name.startswith("."):
                continue
            meta = read_json(p / "run.json")
            if isinstance(meta, dict) and meta.get("status") in LIVE_STATUSES:
                job = job_status(p)
                if job.active:
                    jobs.append(job)
    return sorted(jobs, key=lambda j: (j.status == "queued", j.id[:15], _seed(j.meta), j.id))


#: how long a finished job launched from a dashboard stays in the Jobs panel of a page opened afresh
RECENT_S = 15 * 60


def recent_jobs(runs_dir: Path | None = None, within_s: float = RECENT_S, now: float | None = None) -> list[Job]:
    """Jobs launched from a dashboard (``job.json``) on this host that ended in the last ``within_s`` seconds
    (``run.json``'s ``finished``; for a run whose process died without recording an end, e.g. killed, the last
    write of its ``run.json`` or ``progress.json``), newest first: the Jobs panel shows them after a reload, which
    forgot the jobs the session had launched (History keeps every run, without the job's stages). An imported run
    is no job."""
    import datetime as dt
    import platform

    root = runs_dir or runs_root()
    now = time.time() if now is None else now
    out = []
    if root.is_dir():
        for p in root.iterdir():
            try:  # (a cheap first look: run.json is rewritten when a run ends, progress.json while it runs)
                if now - last_write(p) > within_s or not (p / JOB_FILE).is_file():
                    continue
            except OSError:
                continue
            meta = read_json(p / "run.json")
            if not isinstance(meta, dict) or meta.get("imported_from") or meta.get("host") != platform.node():
                continue
            try:
                ended = dt.datetime.fromisoformat(str(meta.get("finished"))).timestamp()
            except ValueError:
                ended = None
            if ended is not None and now - ended > within_s:
                continue
            job = job_status(p, now)
            if job.active:
                continue
            if ended is None:
                if meta.get("status") not in LIVE_STATUSES:  # an end recorded without its time: not ours to date
                    continue
                ended = last_write(p)  # (a killed run never writes its end: "stopped" from its last write)
            out.append((ended, job))
    return [job for _, job in sorted(out, key=lambda e: -e[0])]


def last_write(run_dir: Path) -> float:
    """The last write of a run's ``run.json`` or ``progress.json`` (raises OSError when it has neither)."""
    times = []
    for name in ("run.json", "progress.json"):
        try:
            times.append((run_dir / name).stat().st_mtime)
        except OSError:
            pass
    if not times:
        raise OSError(f"{run_dir}: no run.json")
    return max(times)


def _seed(meta: dict[str, Any]) -> int:
    """A run's seed for ordering (-1 when unknown): a repeated launch's runs share the launch second in their ids,
    whose random suffix put seed 2 before seed 1."""
    seed = meta_seed(meta)
    return -1 if seed is None else seed


# ------------------------------------------------------------------------------------------------------ cancel


def cancel(run_dir: Path) -> None:
    """Ask the job to stop (writes ``CANCEL``; :func:`enforce_cancel` escalates after the grace period). A queued
    run is marked cancelled at once: its queue skips it (and the pipeline would refuse its folder now)."""
    run_dir = Path(run_dir)
    request_cancel(run_dir)
    meta = read_json(run_dir / "run.json")
    if isinstance(meta, dict) and meta.get("status") == "queued":
        record_failure(run_dir, "cancelled by the user while queued", status="cancelled")


def enforce_cancel(job: Job, grace_s: float | None = None, now: float | None = None) -> bool:
    """SIGTERM the job's process group when a cancel request is older than ``grace_s`` and it still runs.

    Returns:
        True when a signal was sent.
    """
    grace_s = CANCEL_GRACE_S if grace_s is None else grace_s
    now = time.time() if now is None else now
    if job.cancel_requested_at is None or not job.alive or job.pid is None:
        return False
    if now - job.cancel_requested_at < grace_s:
        return False
    try:
        os.killpg(job.pid, signal.SIGTERM)  # start_new_session=True: the job leads its own group
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(job.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return False
    return True
