"""Runs that say running or queued are checked against their process (imc_core.liveness), in the CLI too."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imc_core.cli import main
from imc_core.errors import InputError
from imc_core.liveness import JOB_FILE, JOB_LOG, LAUNCH_START_S, process_start, run_state
from imc_core.runs import RunWriter, list_runs, new_run_dir, remove_runs


def _wait_for_cmdline(proc: subprocess.Popen[bytes], text: str) -> None:
    """Right after the fork /proc shows the parent's command line; wait for the child's own."""
    end = time.monotonic() + 20
    while text not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"):
        assert time.monotonic() < end, "the child never showed its command line"
        time.sleep(0.01)


@pytest.fixture
def job(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A run folder that says running, with a live process whose command line names it (as a launched job's
    ``--out RUN_DIR`` does) recorded as its pid."""
    run = new_run_dir("v", tmp_path / "runs")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", str(run)],
                            stdin=subprocess.PIPE)
    try:
        _wait_for_cmdline(proc, run.name)
        RunWriter(run).write_meta(id=run.name, created="2026-01-01T00:00:00", status="running", pid=proc.pid)
        yield run, proc
    finally:
        proc.kill()
        proc.wait()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()  # SIGKILL: the pipeline never gets to record its end
    proc.wait()


def test_a_killed_run_lists_as_stopped_and_can_be_removed(job: tuple[Path, subprocess.Popen[bytes]],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run, proc = job
    root = run.parent
    assert list_runs(root)["status"].tolist() == ["running"]
    assert run_state(run).alive
    with pytest.raises(InputError, match="run is running"):
        remove_runs([run.name], root=root)
    _kill(proc)
    (run / JOB_LOG).write_text("features 3/9\nKilled\n")
    state = run_state(run)
    assert (state.status, state.alive) == ("stopped", False)
    assert state.error == "the pipeline process ended without recording a result (last output: Killed)"
    assert list_runs(root)["status"].tolist() == ["stopped"]
    assert main(["runs", "--root", str(root)]) == 0
    assert "stopped" in capsys.readouterr().out
    assert main(["runs", "rm", "--status", "stopped", "--root", str(root), "--dry-run"]) == 0
    assert f"would remove {run}" in capsys.readouterr().out and run.exists()
    assert remove_runs([run.name], root=root) == [run] and not run.exists()  # no --force needed


def test_a_cancel_request_shows_as_cancelling_then_cancelled(job: tuple[Path, subprocess.Popen[bytes]]) -> None:
    run, proc = job
    (run / "CANCEL").write_text("now")
    assert list_runs(run.parent)["status"].tolist() == ["cancelling"]
    with pytest.raises(InputError, match="run is cancelling"):
        remove_runs([run.name], root=run.parent)
    _kill(proc)
    assert list_runs(run.parent)["status"].tolist() == ["cancelled"]


def test_a_recycled_pid_is_not_the_job(job: tuple[Path, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    run, proc = job
    other = new_run_dir("v", tmp_path / "runs")
    RunWriter(other).write_meta(id=other.name, status="running", pid=proc.pid)  # alive, but runs another folder
    assert run_state(other).status == "stopped" and run_state(run).status == "running"


def test_a_run_of_another_host_keeps_its_word(tmp_path: Path) -> None:
    run = new_run_dir("v", tmp_path)
    RunWriter(run).write_meta(id=run.name, status="running", pid=2**22 + 12345, host="another-machine")
    assert run_state(run).status == "running"  # its process cannot be checked from here
    with pytest.raises(InputError, match="run is running"):
        remove_runs([run.name], root=tmp_path)
    assert remove_runs([run.name], root=tmp_path, force=True) == [run]


def test_queued_runs_follow_their_queue(tmp_path: Path) -> None:
    run = new_run_dir("v", tmp_path)
    RunWriter(run).write_meta(id=run.name, status="queued")
    (run / JOB_FILE).write_text(json.dumps({"command": ["x"], "queued": 1000.0}))
    assert run_state(run, now=1010.0).status == "queued"  # its queue has not recorded itself yet
    state = run_state(run, now=1000.0 + 3600)
    assert state.status == "stopped" and "queue process ended" in (state.error or "")
    (run / JOB_FILE).write_text(json.dumps({"command": ["x"], "queued": 1000.0, "queue_pid": 2**22 + 12345}))
    assert run_state(run, now=1010.0).status == "stopped"  # the queue recorded itself and is gone


def test_the_pipeline_is_known_by_its_pid_and_start_time(tmp_path: Path) -> None:
    run = new_run_dir("v", tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        _wait_for_cmdline(proc, "stdin.read")
        start = process_start(proc.pid)
        assert isinstance(start, int) and start > 0
        # its command line names neither the run folder nor the package (a notebook, the imc-lab script)
        writer = RunWriter(run)
        writer.write_meta(id=run.name, status="running", pid=proc.pid, pid_start=start)
        assert run_state(run).status == "running"
        writer.write_meta(pid_start=start + 1)  # the same pid, another process: a recycled pid
        assert run_state(run).status == "stopped"
    finally:
        _kill(proc)


def test_a_run_being_launched_is_running(tmp_path: Path) -> None:
    """A dashboard launch writes run.json (running, no pid), then starts the process and records it in job.json,
    whose command line shows the launcher's until the exec; the pipeline records its own pid later. In between the
    run read "stopped": the History cached that for the whole run and offered it in Remove runs."""
    run = new_run_dir("v", tmp_path)
    RunWriter(run).write_meta(id=run.name, status="running", pid=None, launcher="dashboard")
    now = (run / "run.json").stat().st_mtime
    assert run_state(run, now=now + 1).status == "running"  # no process recorded yet
    with pytest.raises(InputError, match="run is running"):
        remove_runs([run.name], root=tmp_path)
    assert run_state(run, now=now + LAUNCH_START_S + 1).status == "stopped"  # never started
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:  # a live process whose command line does not (yet) name the folder
        (run / JOB_FILE).write_text(json.dumps({"pid": proc.pid, "command": ["x"], "started": now}))
        assert run_state(run, now=now + 5).status == "running"
        assert run_state(run, now=now + LAUNCH_START_S + 1).status == "stopped"  # (by then it shows its own)
    finally:
        _kill(proc)
    assert run_state(run, now=now + 5).status == "stopped"  # the process ended: no grace
