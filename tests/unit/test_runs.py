"""Run directories: writer, loader, listing, bundles (export/import validation)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from imc_core.errors import InputError
from imc_core.runs import (
    LAUNCHER_FILES,
    RunWriter,
    check_run_dir,
    export_bundle,
    import_bundle,
    import_run,
    list_runs,
    load_run,
    new_run_dir,
    record_failure,
    request_cancel,
)

SUB = "dataset,scene,image,rotation_matrix,translation_vector\nds,cluster0,a.png,1;0;0;0;1;0;0;0;1,0;0;0\n"


def make_run(root: Path, variant: str = "v", score: float = 50.0) -> Path:
    d = new_run_dir(variant, root)
    w = RunWriter(d)
    w.write_meta(id=d.name, created="2026-01-01T00:00:00", status="running", variant=variant, datasets=["ds"])
    w.write_text("config.toml", "[features]\nmax_keypoints = 10\n")
    w.write_text("submission.csv", SUB)
    m = score * 100.0 / (200.0 - score)  # (the harmonic mean of it and clusterness 100 is the score)
    w.write_json("scores.json", {"score": score, "mAA": m, "clusterness": 100.0,
                                 "datasets": {"ds": {"score": score, "mAA": m, "clusterness": 100.0}}})
    w.write_json("timings.json", {"total": 1.5})
    w.progress("ds/features", 1, 2, "half")
    w.log("hello")
    w.set_status("done")
    (d / "models" / "ds" / "0").mkdir(parents=True)
    (d / "models" / "ds" / "0" / "cameras.bin").write_bytes(b"\0")
    return d


def test_writer_and_loader(tmp_path: Path) -> None:
    d = make_run(tmp_path)
    run = load_run(d)
    assert run.status == "done" and run.scores["score"] == 50.0
    assert run.config["features"]["max_keypoints"] == 10
    assert "hello" in run.log
    assert run.progress["stages"]["ds/features"]["done"] == 1
    assert len(run.submission) == 1 and run.models("ds")[0].name == "0"
    assert run.mtime() > 0


def test_check_run_dir_never_lets_a_run_write_over_another(tmp_path: Path) -> None:
    """A reused --out folder would show the old run's scores as the new run's (a user review saw a failed run
    listed with score 70): only a new or empty folder, or one the dashboard prepared, may take a run."""
    assert check_run_dir(tmp_path / "new") is False and not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert check_run_dir(tmp_path / "empty") is False
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_run_dir(tmp_path / "file")
    done = make_run(tmp_path / "runs")
    with pytest.raises(InputError, match=r"already holds a run \(status done\)"):
        check_run_dir(done)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"is not empty \(notes.txt\)"):
        check_run_dir(tmp_path / "other")
    # what the dashboard's launcher writes before the pipeline starts
    from dashboard.jobs import JOB_FILE, JOB_LOG

    assert {JOB_FILE, JOB_LOG} <= LAUNCHER_FILES
    prepared = tmp_path / "prepared"
    RunWriter(prepared).write_meta(id="prepared", status="running", launcher="dashboard", label="mine")
    RunWriter(prepared).progress("starting", 0, 1, "starting", force=True)
    (prepared / JOB_FILE).write_text("{}")
    (prepared / JOB_LOG).write_text("")
    assert check_run_dir(prepared) is True
    record_failure(prepared, "--set: bad value\nmore")
    meta = json.loads((prepared / "run.json").read_text())
    assert meta["status"] == "failed" and meta["error"] == "--set: bad value" and meta["label"] == "mine"
    assert meta["finished"] and "bad value" in (prepared / "log.txt").read_text()
    with pytest.raises(InputError, match=r"already holds a run \(status failed\)"):
        check_run_dir(prepared)
    queued = tmp_path / "queued"  # a run the dashboard's queue starts later
    RunWriter(queued).write_meta(id="queued", status="queued", launcher="dashboard")
    assert check_run_dir(queued) is True
    record_failure(queued, "cancelled by the user while queued", status="cancelled")
    assert (queued / "log.txt").read_text().strip().endswith(
        "CANCELLED before the run started: cancelled by the user while queued")  # (it said "before it started" twice)
    with pytest.raises(InputError, match=r"already holds a run \(status cancelled\)"):
        check_run_dir(queued)


def test_a_prepared_run_is_taken_only_by_its_own_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --out` at a run the dashboard had queued took it over (the queue's group and run were lost), and
    `run --out` inside another run's folder put a whole run among its files (`runs`, prune and export missed it)."""
    from imc_core.runs import CLAIM_FILE, LAUNCH_TOKEN_ENV

    import time

    from dashboard.jobs import JOB_FILE

    queued = tmp_path / "queued"
    RunWriter(queued).write_meta(id="queued", status="queued", launcher="dashboard", launch_token="abc123")
    monkeypatch.delenv(LAUNCH_TOKEN_ENV, raising=False)
    with pytest.raises(InputError, match=r"is a run the dashboard prepared, stopped before it started; remove it "
                                         r"\(runs rm\) or choose a new folder"):
        check_run_dir(queued)  # (no queue holds it: nothing will take it)
    (queued / JOB_FILE).write_text(json.dumps({"command": ["x"], "queued": time.time()}))  # a queue's, just made
    with pytest.raises(InputError, match=r"is a run the dashboard prepared \(queued\), which its own process will "
                                         r"write; choose a new folder"):
        check_run_dir(queued)
    monkeypatch.setenv(LAUNCH_TOKEN_ENV, "other")
    with pytest.raises(InputError, match="the dashboard prepared"):
        check_run_dir(queued)
    monkeypatch.setenv(LAUNCH_TOKEN_ENV, "abc123")
    assert check_run_dir(queued) is True
    done = tmp_path / "done"
    RunWriter(done).write_meta(id="done", status="done")
    for inside, holder in ((done / "models", done), (done / "models" / "x", done), (queued / "sub", queued)):
        with pytest.raises(InputError) as err:
            check_run_dir(inside)
        assert str(err.value) == f"{inside}: is inside the run folder {holder}; a run needs a folder of its own"
    live = tmp_path / "live"
    live.mkdir()
    (live / CLAIM_FILE).write_text("1")  # (a run being written, before its run.json)
    with pytest.raises(InputError, match="is inside the run folder"):
        check_run_dir(live / "models")
    assert check_run_dir(done / ".." / "beside") is False  # (`..` leaves the run's folder: not inside it)
    # a runs root kept inside a folder that holds a run.json: the runs in it are not "inside a run"
    monkeypatch.setenv("IMC_RUNS_DIR", str(done / "runs"))
    prepared = done / "runs" / "prepared"
    RunWriter(prepared).write_meta(id="prepared", status="running", launcher="dashboard")
    assert check_run_dir(prepared) is True and check_run_dir(done / "runs" / "new") is False
    record_failure(queued, "the queue was stopped", status="cancelled")
    assert "launch_token" not in json.loads((queued / "run.json").read_text())  # (a bundle need not carry it)


def test_a_launched_job_gets_the_token_of_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's launcher and its queue hand each run process the token of the folder it prepared."""
    import sys

    from dashboard import jobs, runqueue
    from imc_core.runs import LAUNCH_TOKEN_ENV

    monkeypatch.setenv(LAUNCH_TOKEN_ENV, "inherited")
    assert LAUNCH_TOKEN_ENV not in jobs._job_env() and jobs._job_env("t1")[LAUNCH_TOKEN_ENV] == "t1"
    run = tmp_path / "queued"
    RunWriter(run).write_meta(id="queued", status="queued", launcher="dashboard", launch_token="t2")
    seen = tmp_path / "token.txt"
    cmd = [sys.executable, "-c", f"import os; open({str(seen)!r}, 'w').write(os.environ.get({LAUNCH_TOKEN_ENV!r}, ''))"]
    (run / jobs.JOB_FILE).write_text(json.dumps({"command": cmd, "queued": 0}))
    proc = runqueue.start_one(run)
    assert proc is not None and proc.wait(timeout=60) == 0
    assert seen.read_text() == "t2"


def test_list_runs_and_cancel_flag(tmp_path: Path) -> None:
    make_run(tmp_path, "a", 10.0)
    d = make_run(tmp_path, "b", 20.0)
    (tmp_path / "not_a_run").mkdir()
    df = list_runs(tmp_path)
    assert sorted(df["variant"]) == ["a", "b"] and set(df["score"]) == {10.0, 20.0}
    assert not RunWriter(d).cancel_requested()
    request_cancel(d)
    assert RunWriter(d).cancel_requested()


def test_load_run_rejects_non_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run.json"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("null")
    with pytest.raises(InputError, match=r"run\.json: not a JSON object"):
        load_run(tmp_path)


def test_bundle_round_trip(tmp_path: Path) -> None:
    d = make_run(tmp_path / "mine")
    z = export_bundle(d, tmp_path / "b.zip")
    dest = import_bundle(z, tmp_path / "theirs")
    run = load_run(dest)
    assert run.scores["score"] == 50.0 and run.meta["imported_from"] == "b.zip"
    assert (dest / "models" / "ds" / "0" / "cameras.bin").exists()
    # the same bundle again: the run it already made, no silent duplicate
    assert import_bundle(z, tmp_path / "theirs") == dest and len(list((tmp_path / "theirs").iterdir())) == 1
    # another run under the same id: never overwrites, gets a suffix
    (d / "scores.json").write_text(json.dumps({"score": 51.0, "mAA": 51.0, "clusterness": 100.0, "datasets": {}}))
    dest2 = import_bundle(export_bundle(d, tmp_path / "b2.zip"), tmp_path / "theirs")
    assert dest2 != dest and dest.exists() and load_run(dest2).scores["score"] == 51.0
    assert import_bundle(tmp_path / "b2.zip", tmp_path / "theirs") == dest2


def test_export_to_a_place_it_cannot_write_names_that_place(tmp_path: Path) -> None:
    """It named the temporary file beside the bundle (``.b.zip.tmp: file not found``)."""
    d = make_run(tmp_path / "mine")
    with pytest.raises(InputError, match="cannot write the bundle: its folder does not exist") as err:
        export_bundle(d, tmp_path / "nowhere" / "b.zip")
    assert err.value.path == str(tmp_path / "nowhere" / "b.zip")
    with pytest.raises(InputError, match="is a folder"):
        export_bundle(d, tmp_path)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_export_refuses_a_run_a_teammates_import_would_refuse(tmp_path: Path) -> None:
    """A label with an escape sequence, or a damaged scores.json, was exported, and the import at the other end
    refused the bundle."""
    from imc_core.errors import ConfigError
    from imc_core.runs import check_run_text

    d = make_run(tmp_path / "mine")
    meta = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**meta, "label": "red\x1b[31m"}))
    with pytest.raises(InputError, match="'label' holds control characters.*import would refuse") as err:
        export_bundle(d, tmp_path / "b.zip")
    assert err.value.path == str(d / "run.json") and not (tmp_path / "b.zip").exists()
    (d / "run.json").write_text(json.dumps({**meta, "label": "two\nlines"}))  # (a newline is fine)
    (d / "scores.json").write_text('{"score": 7')
    with pytest.raises(InputError, match="cannot read JSON.*import would refuse") as err:
        export_bundle(d, tmp_path / "b.zip")
    assert err.value.path == str(d / "scores.json")
    (d / "scores.json").write_text(json.dumps({"score": 51.0, "mAA": 51.0, "clusterness": 100.0, "datasets": {}}))
    assert import_bundle(export_bundle(d, tmp_path / "b.zip"), tmp_path / "theirs").is_dir()
    # a killed run: its run.json still says running, which the refusal repeated where `runs` says stopped
    import platform

    (d / "submission.csv").unlink()
    (d / "run.json").write_text(json.dumps({**meta, "status": "running", "pid": 2**22 + 12345,
                                            "host": platform.node()}))
    with pytest.raises(InputError, match=r"missing submission.csv \(status 'stopped'\)"):
        export_bundle(d, tmp_path / "k.zip")
    (d / "config.toml").unlink()
    with pytest.raises(InputError, match="has no config.toml"):
        export_bundle(d, tmp_path / "c.zip")
    # and such a label is refused where it is given
    with pytest.raises(ConfigError, match="--label 'red.*control characters"):
        check_run_text("red\x1b[31m", None)
    with pytest.raises(ConfigError, match="--group"):
        check_run_text("fine", "g\x07")
    with pytest.raises(ConfigError, match="one line"):  # (given anew: one line; an older run's still exports)
        check_run_text("two\nlines", "g")
    check_run_text("fine", "g")


def test_export_refuses_a_bundle_inside_the_run_folder(tmp_path: Path) -> None:
    """Written there, the next export zipped the bundle too."""
    d = make_run(tmp_path / "mine")
    with pytest.raises(InputError, match="is inside the run folder"):
        export_bundle(d, d / "inside.zip")
    assert not (d / "inside.zip").exists()


def test_export_never_replaces_a_file_unasked(tmp_path: Path) -> None:
    """`export B --out b1.zip` replaced run A's bundle there without a word."""
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    z = export_bundle(a, tmp_path / "b1.zip")
    before = z.read_bytes()
    with pytest.raises(InputError, match="already exists: name another file, or replace it with --force") as err:
        export_bundle(b, z)
    assert err.value.path == str(z) and z.read_bytes() == before
    assert export_bundle(b, z, overwrite=True) == z and z.read_bytes() != before


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "members, fragment",
    [
        ({"r/../../evil.txt": b"x", "r/run.json": b"{}"}, "unsafe path"),
        ({"/abs/run.json": b"{}"}, "unsafe path"),
        ({"r/" + "d/" * 2000 + "x.txt": b"x", "r/run.json": b"{}"}, "2002 folders deep"),
        ({"a/run.json": b"{}", "b/run.json": b"{}"}, "exactly one run folder"),
        ({"r/run.json": b'{"status": "done"}', "r/config.toml": b""}, "missing submission.csv"),
        ({"r/run.json": b"{}", "r/config.toml": b"", "r/submission.csv": SUB.encode()},
         "'status' must be one of done, failed"),
        ({"r/run.json": b'{"status": "weird"}', "r/config.toml": b"", "r/submission.csv": SUB.encode()},
         "not 'weird'"),
        ({"train_labels.csv": b"x", "r/run.json": b"{}"}, "not a run bundle: 'train_labels.csv' sits outside a run "
                                                          "folder"),
        ({"r/run.json": b"{not json", "r/config.toml": b"", "r/submission.csv": SUB.encode()}, "cannot read JSON"),
        ({"r/run.json": json.dumps({"status": "done"}).encode(), "r/config.toml": b"",
          "r/submission.csv": b"dataset,scene\nx,y\n"}, "submission.csv"),
    ],
)
def test_bad_bundles_are_rejected_without_writing(tmp_path: Path, members: dict, fragment: str) -> None:
    z = _zip(tmp_path / "bad.zip", members)
    root = tmp_path / "runs"
    with pytest.raises(InputError, match=fragment):
        import_bundle(z, root)
    assert not any(p for p in root.glob("*") if not p.name.startswith(".")) if root.exists() else True
    assert not (tmp_path / "evil.txt").exists()


def test_a_bundle_whose_folder_was_renamed_is_the_run_its_run_json_names(tmp_path: Path) -> None:
    """A renamed top folder made a second copy of a run already here (the duplicate check looked at the folder
    name only); the imported run is named by its run.json id."""
    d = make_run(tmp_path / "mine")
    z = export_bundle(d, tmp_path / "b.zip")
    renamed = _zip(tmp_path / "renamed.zip", {
        f"mismatch/{m.filename.split('/', 1)[1]}": zipfile.ZipFile(z).read(m) for m in zipfile.ZipFile(z).infolist()
        if not m.is_dir()})
    theirs = tmp_path / "theirs"
    dest = import_bundle(z, theirs)
    assert import_run(renamed, theirs) == (dest, False)
    assert [p.name for p in theirs.iterdir()] == [d.name]
    other = import_bundle(renamed, tmp_path / "fresh")
    assert other.name == d.name and load_run(other).meta["id"] == d.name


def test_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "x.zip"
    p.write_text("nope")
    with pytest.raises(InputError, match="not a valid zip"):
        import_bundle(p, tmp_path / "runs")


def test_remove_runs_by_group_needs_a_group_some_run_has(tmp_path: Path) -> None:
    """From Python too: an empty group must not mean every run without one, and a misspelt one is named."""
    from imc_core.runs import remove_runs

    root = tmp_path / "runs"
    grouped, ungrouped = make_run(root, score=70.0), make_run(root, score=10.0)
    RunWriter(grouped).write_meta(**json.loads((grouped / "run.json").read_text()), group="exp")
    with pytest.raises(InputError, match="a group to remove needs a name"):
        remove_runs([], root, groups=[""])
    with pytest.raises(InputError, match=r"no run of group 'ex' \(groups here: exp\)"):
        remove_runs([], root, groups=["ex"])
    assert remove_runs([], root, groups=["exp"]) == [grouped] and ungrouped.exists()


def test_remove_runs_by_id_and_status_never_a_live_one(tmp_path: Path) -> None:
    from imc_core.runs import remove_runs

    root = tmp_path / "runs"
    keep, bad = make_run(root, score=70.0), make_run(root, score=10.0)
    RunWriter(bad).set_status("failed", error="x")
    live = new_run_dir("v", root)
    # a run of another host cannot be checked, so it counts as live (tests/unit/test_liveness.py: real processes)
    RunWriter(live).write_meta(id=live.name, status="running", host="another-machine")
    assert remove_runs(statuses=["failed"], root=root, dry_run=True) == [bad] and bad.exists()
    assert remove_runs(statuses=["failed"], root=root) == [bad] and not bad.exists()
    with pytest.raises(InputError, match=r"run is running \(its process still runs\), so none of the 2 runs chosen "
                                         r"is removed; .*or force the removal \(runs rm --force\)"):
        remove_runs([live.name, keep.name], root=root)
    assert live.exists() and keep.exists()  # nothing goes when one is refused
    for bad_id in ("..", "../x", "nope", ""):
        with pytest.raises(InputError, match="no such run folder"):
            remove_runs([bad_id], root=root)
    assert remove_runs([live.name], root=root, force=True) == [live]
    assert [p.name for p in root.iterdir()] == [keep.name]


def _bundle_of(tmp_path: Path, change: object = None, name: str = "b.zip", drop: tuple[str, ...] = ()) -> Path:
    """A bundle of a normal run, with ``change(meta)`` applied to its run.json and ``drop`` files left out."""
    d = make_run(tmp_path / f"src-{name}")
    meta = json.loads((d / "run.json").read_text())
    if callable(change):
        change(meta)
    (d / "run.json").write_text(json.dumps(meta))
    for f in drop:
        (d / f).unlink()
    # zipped as export does, without its checks (they refuse what import refuses: a bundle made elsewhere)
    with zipfile.ZipFile(tmp_path / name, "w") as zf:
        for f in sorted(d.rglob("*")):
            if f.is_file():
                zf.write(f, f"{d.name}/{f.relative_to(d).as_posix()}")
    return tmp_path / name


@pytest.mark.parametrize("field, value", [("created", 12345), ("seed", "abc"), ("seed", 1.5), ("seed", True),
                                          ("datasets", "synth_boxes"), ("datasets", [1, 2]), ("status", None)])
def test_a_bundle_with_a_wrongly_typed_field_is_refused(tmp_path: Path, field: str, value: object) -> None:
    """One such run broke History, Results and Compare (created: int) or `runs` (seed: 'abc')."""
    z = _bundle_of(tmp_path, lambda m: m.__setitem__(field, value))
    with pytest.raises(InputError, match=f"run.json: '{field}' must be") as err:
        import_bundle(z, tmp_path / "runs")
    assert err.value.path == str(z) and ".import-" not in str(err.value)


def test_list_runs_tolerates_wrongly_typed_fields_and_orders_by_time(tmp_path: Path) -> None:
    """A run.json edited by hand must not break the listing; a teammate's time zone must not reorder it."""
    root = tmp_path / "runs"
    a, b, c = make_run(root, "a"), make_run(root, "b"), make_run(root, "c")
    for d, created in ((a, "2026-11-27T13:00:00+00:00"), (b, "2026-11-27T21:00:00+09:00"), (c, 12345)):
        meta = json.loads((d / "run.json").read_text())
        meta.update(created=created, seed="abc" if d is c else 3, datasets="ds" if d is c else ["ds"])
        (d / "run.json").write_text(json.dumps(meta))
    df = list_runs(root)
    assert df["variant"].tolist() == ["a", "b", "c"]  # 13:00 UTC, then 12:00 UTC, then no time
    assert df["seed"].tolist()[:2] == [3, 3] and pd.isna(df["seed"].iloc[2]) and df["datasets"].tolist() == ["ds"] * 3


def test_a_damaged_bundle_is_one_error_naming_it(tmp_path: Path) -> None:
    z = _bundle_of(tmp_path)
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(next(n for n in zf.namelist() if n.endswith("config.toml")))
    start = info.header_offset + 30 + len(info.filename)  # the member's data, after its local header
    data[start:start + 8] = b"\xff" * 8
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged bundle: cannot unpack .*config.toml") as err:
        import_bundle(bad, tmp_path / "runs")
    assert err.value.path == str(bad)
    assert not (tmp_path / "runs").exists()  # no staging folder left, nor the runs folder the import made


@pytest.mark.parametrize("members, fragment", [
    ({"r/run.json": b"[1, 2]"}, "r/run.json: not a JSON object"),
    ({"r/run.json": b"null"}, "r/run.json: not a JSON object"),
    ({"r/scores.json": b"[1, 2]"}, "r/scores.json: has no numeric 'score'"),
    # not the `score --json` schema (imported, then listed with a blank clusterness)
    ({"r/scores.json": b'{"score": 50, "mAA": 40}'}, "r/scores.json: has no numeric 'clusterness'"),
    ({"r/scores.json": b'{"score": 50, "mAA": 40, "clusterness": 60, "datasets": {"ETs": {"score": 50}}}'},
     "r/scores.json: dataset 'ETs' has no numeric 'mAA', 'clusterness'"),
    ({"r/config.toml": b"[features\n"}, "r/config.toml: cannot read TOML"),
    ({"r/submission.csv": b"garbage\n1\n"}, "r/submission.csv"),
    # the other files the pages read (a bundle with timings.json "nope" was imported)
    ({"r/timings.json": b"nope"}, "r/timings.json: cannot read JSON"),
    ({"r/alignments.json": b"[1]"}, "r/alignments.json: not a JSON object"),
    ({"r/per_image.csv": b'a,b\n"1,2\n'}, "r/per_image.csv: cannot read CSV"),
    # names the pages join to the data root's folders (an absolute one showed any file of the machine)
    ({"r/per_image.csv": b"dataset,scene,image\nds,s,/usr/share/x.png\n"},
     "r/per_image.csv:2: image name '/usr/share/x.png' leads out"),
    ({"r/pairs_stats.csv": b"dataset,name0,name1,n_matches\nds,a.png,../b.png,3\n"},
     "r/pairs_stats.csv:2: image name '../b.png' leads out"),
    ({"r/scenes.csv": b"dataset,scene\n../..,s\n"}, "r/scenes.csv: dataset name '../..' is not a folder name"),
    ({"r/run.json": json.dumps({"status": "done", "datasets": ["a/b"]}).encode()}, "is not a folder name"),
    ({"r/run.json": json.dumps({"status": "done", "split": "../x"}).encode()}, "'split' must be train or test"),
    # escape sequences that `runs` printed to the teammate's terminal
    ({"r/run.json": json.dumps({"status": "done", "label": "x\x1b]0;PWNED\x07"}).encode()},
     "r/run.json: 'label' holds control characters"),
    ({"r/run.json": json.dumps({"status": "done", "warnings": ["ok", "\x1b[2J"]}).encode()},
     "r/run.json: 'warnings'[1] holds control characters"),
])
def test_bad_files_in_a_bundle_are_named_by_member(tmp_path: Path, members: dict, fragment: str) -> None:
    """Errors named the deleted staging folder (``.import-32e3cb0a/submission.csv``) or were tracebacks."""
    base = {"r/run.json": json.dumps({"status": "done"}).encode(), "r/config.toml": b"",
            "r/submission.csv": SUB.encode(),
            "r/scores.json": json.dumps({"score": 1.0, "mAA": 1.0, "clusterness": 1.0}).encode()}
    z = _zip(tmp_path / "bad.zip", {**base, **members})
    with pytest.raises(InputError) as err:
        import_bundle(z, tmp_path / "runs")
    assert fragment in str(err.value) and ".import-" not in str(err.value) and err.value.path == str(z)


def test_a_label_pasted_from_a_windows_note_travels(tmp_path: Path) -> None:
    """A label with CR LF (accepted by add-submission) made the run's own export impossible to import."""
    z = _bundle_of(tmp_path, lambda m: m.__setitem__("label", "pasted label\r\nfrom a note\tand a tab ✓"))
    assert load_run(import_bundle(z, tmp_path / "runs")).meta["label"].startswith("pasted label\r\n")


def test_a_failed_or_cancelled_run_travels_without_a_submission(tmp_path: Path) -> None:
    z = _bundle_of(tmp_path, lambda m: m.__setitem__("status", "cancelled"), drop=("submission.csv",))
    assert load_run(import_bundle(z, tmp_path / "runs")).status == "cancelled"
    z = _bundle_of(tmp_path, name="done.zip", drop=("submission.csv",))
    with pytest.raises(InputError, match="missing submission.csv"):
        import_bundle(z, tmp_path / "runs")


@pytest.mark.parametrize("status", ["running", "queued"])
def test_a_live_status_is_imported_as_incomplete(tmp_path: Path, status: str) -> None:
    """A queued one showed as a job here, with a Cancel that overwrote the teammate's results."""
    z = _bundle_of(tmp_path, lambda m: m.update(status=status, host="teammate-laptop"))
    assert load_run(import_bundle(z, tmp_path / "runs")).status == "imported-incomplete"


def test_a_runs_folder_that_is_a_file_is_said_not_a_traceback(tmp_path: Path) -> None:
    """`import` and `add-submission` ended in FileExistsError / NotADirectoryError tracebacks where `run` said why."""
    from imc_core.runs import new_run_dir

    z = _bundle_of(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=rf"{tmp_path / 'file'}: the runs folder is not a folder"):
        import_bundle(z, tmp_path / "file")
    with pytest.raises(InputError, match=rf"{tmp_path / 'file' / 'sub'}: cannot create the runs folder: Not a dir"):
        import_bundle(z, tmp_path / "file" / "sub")
    with pytest.raises(InputError, match=rf"{tmp_path / 'file'}: the runs folder is not a folder"):
        new_run_dir("submission", tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x" and new_run_dir("v", tmp_path / "a" / "b").parent.is_dir()


def test_a_bundle_with_a_non_ascii_top_folder_gets_a_plain_id(tmp_path: Path) -> None:
    """The dashboard opens runs by plain ids; the imported folder's name must survive a URL."""
    z = _zip(tmp_path / "u.zip", {"résultat 日本/run.json": json.dumps({"status": "done"}).encode(),
                                  "résultat 日本/config.toml": b"", "résultat 日本/submission.csv": SUB.encode()})
    dest = import_bundle(z, tmp_path / "runs")
    assert dest.name.isascii() and " " not in dest.name


def test_progress_records_when_the_first_items_were_done(tmp_path: Path) -> None:
    w = RunWriter(tmp_path / "run")
    w.progress("ds/features", 0, 10, force=True)
    assert "first_at" not in json.loads((tmp_path / "run" / "progress.json").read_text())["stages"]["ds/features"]
    w.progress("ds/features", 2, 10, force=True)
    w.progress("ds/features", 3, 10, force=True)
    st = json.loads((tmp_path / "run" / "progress.json").read_text())["stages"]["ds/features"]
    assert st["first_done"] == 2 and st["started"] <= st["first_at"] <= st["done_at"]
    moved = st["done_at"]
    time.sleep(0.01)
    w.progress("ds/features", 3, 10, "same count, a new message", force=True)  # the count did not move
    st = json.loads((tmp_path / "run" / "progress.json").read_text())["stages"]["ds/features"]
    assert st["done_at"] == moved


def test_a_throttled_progress_update_is_written_when_due(tmp_path: Path) -> None:
    """A stage's start right after another stage's end was dropped by the throttle, and nothing else was written
    until the stage's first chunk was done: two minutes of "pairs done" while the features were extracted."""
    import shutil
    import time

    from imc_core.runs import PROGRESS_INTERVAL_S

    w = RunWriter(tmp_path / "run")
    path = tmp_path / "run" / "progress.json"
    w.progress("ds/pairs", 1, 1, "10 pairs", force=True)
    w.progress("ds/features", 0, 22, "reading the images")  # (within the interval: not written now)
    w.progress("ds/features", 1, 22, "a.png")
    assert json.loads(path.read_text())["stage"] == "ds/pairs"
    time.sleep(PROGRESS_INTERVAL_S + 0.5)
    state = json.loads(path.read_text())
    assert (state["stage"], state["done"], state["message"]) == ("ds/features", 1, "a.png")
    w.progress("ds/features", 2, 22, "b.png")  # (its interval has passed: written at once)
    assert json.loads(path.read_text())["done"] == 2
    w.progress("ds/features", 3, 22, "c.png")
    shutil.rmtree(tmp_path / "run")  # removed before the write was due: not made again
    time.sleep(PROGRESS_INTERVAL_S + 0.5)
    assert not (tmp_path / "run").exists()



def test_cluster_names_pandas_would_read_as_missing_stay_names(tmp_path: Path) -> None:
    """A cluster named "NA" (or "None", "null", "nan") read back as missing, so its images turned from misclustered into
    unregistered in the Loss and Images tabs; the numbers' own missing values still read as missing."""
    from imc_core.analysis import image_statuses

    d = make_run(tmp_path)
    rows = []
    for k, (cluster, assoc) in enumerate((("NA", "c0"), ("None", "c0"), ("nan", "c0"), ("c0", "c0"), ("", "c0"))):
        rows.append({"dataset": "ds", "scene": "s1", "image": f"{k}.png", "cluster": cluster,
                     "associated_cluster": assoc, "in_cluster": cluster == "c0", "pose_valid": cluster != "",
                     "error": "NA" if cluster != "c0" else 0.0, **{f"pass_{t}": cluster == "c0" for t in range(6)}})
    pd.DataFrame(rows).to_csv(d / "per_image.csv", index=False)
    pi = load_run(d).per_image
    assert pi["cluster"].tolist()[:4] == ["NA", "None", "nan", "c0"] and pd.isna(pi["cluster"].iloc[4])
    assert pi["error"].isna().tolist() == [True, True, True, False, True]
    # (the one image in its cluster is alone there: too few to align)
    assert image_statuses(pi).tolist() == ["misclustered"] * 3 + ["unaligned", "unregistered"]


def test_a_run_says_which_code_made_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Runs of one variant before and after an upgrade differed (a default changed) and nothing told them apart."""
    import subprocess

    from imc_core import __version__
    from imc_core.runs import code_version, describe_code

    code = code_version()
    assert code["version"] == __version__ and len(code["source"]) == 12
    package = Path(__file__).resolve().parents[2] / "imc_core"
    tracked = subprocess.run(["git", "-C", str(package), "ls-files", "--error-unmatch", "__init__.py"],
                             capture_output=True).returncode == 0 if shutil.which("git") else False
    if tracked:  # a checkout git will read (CI clones one): the commit and its state
        assert len(code["commit"]) == 12 and isinstance(code["dirty"], bool)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git: the version and the source digest
    assert code_version() == {"version": __version__, "source": code["source"]}
    assert describe_code({"code": {"version": "0.1.0", "commit": "ad7d13d1e2f3", "dirty": True, "source": "5e"}}) == (
        "0.1.0 at ad7d13d1e2f3 with uncommitted changes (source 5e)")
    assert describe_code({"code": {"version": "0.1.0", "commit": "ad7d13d1e2f3", "dirty": False, "source": "5e"}}) == (
        "0.1.0 at ad7d13d1e2f3")
    assert describe_code({"code": {"version": "0.1.0", "source": "5e"}}) == "0.1.0 (source 5e)"
    assert describe_code({}) is None and describe_code({"code": "odd"}) is None


def test_the_code_of_an_install_inside_another_repository_has_no_commit(tmp_path: Path) -> None:
    """imc_core copied into a project that is a git repository of its own recorded that project's commit."""
    import subprocess

    if not shutil.which("git"):
        pytest.skip("git is not installed")
    project = tmp_path / "project"
    shutil.copytree(Path(__file__).resolve().parents[2] / "imc_core", project / "site" / "imc_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    (project / "a").write_text("x")
    for args in (["init", "-q"], ["add", "a"], ["commit", "-qm", "init"]):
        subprocess.run(["git", "-C", str(project), *args], check=True, env={**os.environ, **env})
    out = subprocess.run([sys.executable, "-c", "from imc_core.runs import code_version; print(code_version())"],
                         cwd=project / "site", capture_output=True, text=True, check=True).stdout
    assert "commit" not in out and "source" in out, out



def test_a_run_folder_without_its_run_json_is_named_and_removable(tmp_path: Path) -> None:
    """A run whose run.json was lost was left out of `runs` and the History without a word, and `runs rm` called
    it "no such run folder"."""
    from imc_core.runs import remove_runs

    root = tmp_path / "runs"
    keep = make_run(root)
    lost = make_run(root)
    (lost / "run.json").unlink()
    (root / "notes").mkdir()  # a folder of something else stays out of it
    df = list_runs(root)
    assert list(df["id"]) == [keep.name]
    assert df.attrs["unreadable"] == {lost.name: f"{lost / 'run.json'}: missing (the folder holds a run's "
                                                 "config.toml, submission.csv, scores.json)"}
    with pytest.raises(InputError, match="no such run folder"):
        remove_runs(["notes"], root=root)
    assert remove_runs([lost.name], root=root) == [lost] and not lost.exists()


def test_removing_a_run_folder_outside_the_runs_folder_says_so(tmp_path: Path) -> None:
    """`runs rm /elsewhere/run` said "no such run folder" of a run that is there."""
    from imc_core.runs import remove_runs

    root, elsewhere = tmp_path / "runs", make_run(tmp_path / "out")
    make_run(root)
    with pytest.raises(InputError, match=f"a run folder outside the runs folder {root}, which `runs rm` removes "
                                         r"from \(set --root to its folder") as err:
        remove_runs([str(elsewhere)], root=root, dry_run=True)
    assert err.value.path == str(elsewhere) and elsewhere.exists()
    assert remove_runs([str(elsewhere)], root=elsewhere.parent) == [elsewhere]


def test_a_bundle_whose_scores_do_not_add_up_is_refused(tmp_path: Path) -> None:
    """A bundle whose score was edited to 99 beside mAA 53.85 and clusterness 100 (which give 70) imported, and
    Compare took it and its source run for one measurement (a tester)."""
    from imc_core.runs import scores_mismatch

    good = {"score": 70.0, "mAA": 53.84615384615385, "clusterness": 100.0,
            "datasets": {"ETs": {"score": 70.0, "mAA": 53.84615384615385, "clusterness": 100.0}}}
    assert scores_mismatch(good) is None
    assert scores_mismatch({**good, "datasets": {}, "score": 1.0}) is None  # (no datasets: nothing to add up)
    zero = {"score": 0.0, "mAA": 0.0, "clusterness": 0.0, "datasets": {"d": {"score": 0, "mAA": 0, "clusterness": 0}}}
    assert scores_mismatch(zero) is None
    two = {"score": 35.0, "mAA": 26.923076923076927, "clusterness": 50.0,
           "datasets": {"a": good["datasets"]["ETs"], "b": {"score": 0.0, "mAA": 0.0, "clusterness": 0.0}}}
    assert scores_mismatch(two) is None
    assert scores_mismatch({**two, "mAA": 53.0}) == ("mAA 53.0000 is not the mean of its datasets' (26.9231), as "
                                                     "the metric writes it")
    edited = {**good, "score": 99.0, "datasets": {"ETs": {**good["datasets"]["ETs"], "score": 99.0}}}
    assert scores_mismatch(edited) == ("dataset 'ETs': score 99.0000 is not the harmonic mean of its mAA 53.8462 and "
                                       "clusterness 100.0000 (70.0000), as the metric writes it")
    d = make_run(tmp_path / "mine")
    bundle = export_bundle(d, tmp_path / "b.zip")
    (d / "scores.json").write_text(json.dumps(edited))
    with pytest.raises(InputError, match="score 99.0000 is not the harmonic mean"):
        export_bundle(d, tmp_path / "c.zip")
    with zipfile.ZipFile(bundle) as z:
        files = {n: z.read(n) for n in z.namelist()}
    scores = [n for n in files if n.endswith("scores.json")][0]
    files[scores] = json.dumps(edited).encode()
    with zipfile.ZipFile(tmp_path / "edited.zip", "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    with pytest.raises(InputError, match="not the harmonic mean"):
        import_bundle(tmp_path / "edited.zip", tmp_path / "theirs")
    assert not (tmp_path / "theirs").exists() or not any((tmp_path / "theirs").iterdir())


def test_a_run_table_cut_mid_row_is_refused(tmp_path: Path) -> None:
    """A per_image.csv cut inside its last row read as valid (its last number cut); every run table ends with a
    line break."""
    run = make_run(tmp_path / "runs")
    pd.DataFrame({"dataset": ["d", "d"], "scene": ["s", "s"], "image": ["a", "b"], "error": [1.25, 3.5]}).to_csv(
        run / "per_image.csv", index=False)
    assert len(load_run(run).per_image) == 2
    (run / "per_image.csv").write_text((run / "per_image.csv").read_text()[:-2])
    with pytest.raises(InputError, match="cut short: its last line ends without a line break") as err:
        load_run(run).per_image
    assert err.value.path == str(run / "per_image.csv")
    (run / "scenes.csv").write_text("dataset,scene\r\n")  # (a header alone, and Windows line breaks, are whole)
    assert load_run(run).scenes.empty


def test_a_run_whose_scores_hold_no_number_is_named_not_listed_blank(tmp_path: Path) -> None:
    """`runs` listed it "done" with blank scores (as if never scored), and import refuses its bundle."""
    root = tmp_path / "runs"
    keep, bad, text = make_run(root), make_run(root), make_run(root)
    (bad / "scores.json").write_text(json.dumps({"score": "x", "mAA": 1.0}))
    (text / "scores.json").write_text(json.dumps(["not", "an", "object"]))
    df = list_runs(root)
    assert list(df["id"]) == [keep.name]
    assert df.attrs["unreadable"] == {bad.name: f"{bad / 'scores.json'}: has no numeric 'score'",
                                      text.name: f"{text / 'scores.json'}: has no numeric 'score'"}


def test_a_run_into_a_group_on_another_data_root_is_warned(tmp_path: Path) -> None:
    """A run of another data root joined a group of ETs seeds without a word; Compare then counted it in the group,
    and as a failed run it became the group's first pick (a tester)."""
    from imc_core.config import dump_config, resolve_config
    from imc_core.pipeline import _group_clash

    root, ets, copy = tmp_path / "runs", tmp_path / "ets", tmp_path / "elsewhere"
    ets.mkdir()
    seed0 = make_run(root)
    RunWriter(seed0).write_meta(group="g", data_root=str(ets.resolve()))
    (seed0 / "config.toml").write_text(dump_config(resolve_config("default"), {"variant": "default"}))
    new = new_run_dir("default", root)
    seed1 = resolve_config("default", ["reconstruction.seed=1"])
    assert _group_clash("g", seed1, new, ets) is None
    assert _group_clash("g", seed1, new, tmp_path / "." / "ets") is None  # (the same folder written another way)
    assert _group_clash("g", seed1, new, copy) == (
        f"group g already holds runs on another data root ({seed0.name}): Compare averages a group as the seeds of "
        "one experiment, on the datasets its runs share; name a new group unless that is what you mean")


def test_a_group_member_on_a_copy_of_the_data_neither_warns_nor_hides_a_config_change(tmp_path: Path) -> None:
    """A group of ETs seeds held an imported run whose data root was a teammate's copy of the same data: a run with a
    changed parameter was warned only of "another data root" (which Compare takes as the same one), never of the
    change (a tester)."""
    import shutil

    from imc_core.config import dump_config, resolve_config
    from imc_core.data import DataRoot, ground_truth_hashes
    from imc_core.pipeline import _group_clash

    root, ets, copy, other = tmp_path / "runs", tmp_path / "ets", tmp_path / "copy", tmp_path / "other"
    (ets / "train" / "ETs").mkdir(parents=True)
    (ets / "train_labels.csv").write_text("dataset,scene,image,rotation_matrix,translation_vector\n"
                                          "ETs,s,a.png,1;0;0;0;1;0;0;0;1,0;0;0\nETs,s,b.png,1;0;0;0;1;0;0;0;1,1;0;0\n")
    (ets / "train_thresholds.csv").write_text("dataset,scene,thresholds\nETs,s,0.1;0.2;0.3;0.4;0.5;0.6\n")
    shutil.copytree(ets, copy)
    shutil.copytree(ets, other)
    (other / "train_thresholds.csv").write_text("dataset,scene,thresholds\nETs,s,0.1;0.2;0.3;0.4;0.5;0.9\n")  # other GT
    labels = DataRoot(ets)
    config = dump_config(resolve_config("default"), {"variant": "default"})
    seeds = [make_run(root) for _ in range(2)]
    RunWriter(seeds[0]).write_meta(group="g", data_root=str(ets.resolve()))
    RunWriter(seeds[1]).write_meta(group="g", data_root=str(copy.resolve()),  # the imported one
                                   gt_hashes=ground_truth_hashes(labels.labels, labels.thresholds, ["ETs"]))
    for run in seeds:
        (run / "config.toml").write_text(config)
    new = new_run_dir("default", root)
    assert _group_clash("g", resolve_config("default", ["reconstruction.seed=3"]), new, ets) is None
    changed = resolve_config("default", ["reconstruction.seed=3", "reconstruction.abs_pose_min_num_inliers=30"])
    # (either seed is named: two runs made in one second list in the order of their random suffixes)
    assert _group_clash("g", changed, new, ets) in [(
        f"group g already holds runs of another config ({seed.name} differs in "
        "reconstruction.abs_pose_min_num_inliers): Compare averages a group as the seeds of one experiment; name a "
        "new group unless that is what you mean") for seed in seeds]
    # another ground truth is still another data root, and said with the change
    assert _group_clash("g", changed, new, other) in [(
        f"group g already holds runs of another config ({seed.name} differs in "
        "reconstruction.abs_pose_min_num_inliers), and runs on another data root: Compare averages a group as the "
        "seeds of one experiment; name a new group unless that is what you mean") for seed in seeds]
    assert "already holds runs on another data root" in _group_clash("g", resolve_config("default"), new, other)


def test_a_run_into_a_group_of_another_config_is_warned(tmp_path: Path) -> None:
    """`run --group g` after a parameter change put two experiments in one mean ± std without a word (the Run page
    said it before a launch; the CLI and the library did not)."""
    from imc_core.config import dump_config, resolve_config
    from imc_core.pipeline import _group_clash

    root = tmp_path / "runs"
    seed0 = make_run(root)
    RunWriter(seed0).write_meta(group="g")
    (seed0 / "config.toml").write_text(dump_config(resolve_config("default"), {"variant": "default"}))
    new, data = new_run_dir("default", root), tmp_path / "data"
    assert _group_clash("g", resolve_config("default", ["reconstruction.seed=3"]), new, data) is None  # another seed
    assert _group_clash("other", resolve_config("default", ["features.max_keypoints=99"]), new, data) is None
    assert _group_clash(None, resolve_config("default", ["features.max_keypoints=99"]), new, data) is None
    clash = _group_clash(" g ", resolve_config("default", ["features.max_keypoints=99"]), new, data)
    assert clash == (f"group g already holds runs of another config ({seed0.name} differs in features.max_keypoints):"
                     " Compare averages a group as the seeds of one experiment; name a new group unless that is what "
                     "you mean")
