"""CLI contracts: score --json schema and errors, variants, runs, export/import."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imc_core.cli import main
from imc_core.errors import ConfigError

LABELS = """dataset,scene,image,rotation_matrix,translation_vector
ds,s1,a.png,1;0;0;0;1;0;0;0;1,0;0;0
ds,s1,b.png,1;0;0;0;1;0;0;0;1,1;0;0
ds,s1,c.png,1;0;0;0;1;0;0;0;1,0;1;0
ds,s1,d.png,1;0;0;0;1;0;0;0;1,0;0;1
ds,s1,e.png,1;0;0;0;1;0;0;0;1,1;1;0
ds,outliers,f.png,nan;nan;nan;nan;nan;nan;nan;nan;nan,nan;nan;nan
"""
THRESHOLDS = "dataset,scene,thresholds\nds,s1,0.01;0.02;0.05;0.1;0.2;0.5\n"


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    gt = tmp_path / "labels.csv"
    gt.write_text(LABELS)
    thr = tmp_path / "thr.csv"
    thr.write_text(THRESHOLDS)
    return {"gt": gt, "thr": thr}


def test_score_json_gt_is_100(files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    rc = main(["score", "--gt", str(files["gt"]), "--thresholds", str(files["thr"]), "--submission",
               str(files["gt"]), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"score", "mAA", "clusterness", "datasets"}
    assert out["score"] == 100.0 and set(out["datasets"]["ds"]) == {"score", "mAA", "clusterness"}


def test_score_bad_submission_is_one_line_naming_file(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "sub.csv"
    bad.write_text(LABELS.replace(",1;0;0\n", ",1;zero;0\n", 1))
    proc = subprocess.run([sys.executable, "-m", "imc_core", "score", "--gt", str(files["gt"]), "--thresholds",
                           str(files["thr"]), "--submission", str(bad), "--json"], capture_output=True, text=True)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "sub.csv" in err[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_score_missing_file(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["score", "--gt", str(files["gt"]), "--thresholds", str(files["thr"]), "--submission",
               str(tmp_path / "nope.csv"), "--json"])
    assert rc == 2 and "nope.csv" in capsys.readouterr().err


def test_score_some_datasets_of_the_labels(files: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    """A run of one dataset scored against a labels file of two: refused without --dataset, scored with it (the
    same numbers as that dataset's share of a full submission); an unknown name is one line naming the labels."""
    two = LABELS + LABELS.replace("\nds,", "\nds2,").split("\n", 1)[1]
    (gt := tmp_path / "labels2.csv").write_text(two)
    (thr := tmp_path / "thr2.csv").write_text(THRESHOLDS + THRESHOLDS.split("\n", 1)[1].replace("ds,", "ds2,"))
    base = ["score", "--gt", str(gt), "--thresholds", str(thr), "--json"]
    assert main([*base, "--submission", str(files["gt"])]) == 2  # ds2 missing from the one-dataset submission
    assert "dataset 'ds2' of the ground truth is not in the submission; to score the datasets it has, name them " \
           "with --dataset" in capsys.readouterr().err  # (it did not say how)
    assert main([*base, "--submission", str(files["gt"]), "--dataset", "ds"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert set(one["datasets"]) == {"ds"} and one["score"] == 100.0
    assert main([*base, "--submission", str(gt), "--dataset", "ds"]) == 0  # rows of other datasets ignored
    out = capsys.readouterr()
    assert json.loads(out.out) == one and "not in the ground truth" not in out.err  # (ds2 is; it was not asked for)
    # errors in the rows scored still name their own line of the file
    (sub := tmp_path / "sub.csv").write_text(two + "ds,s1,c.png,1;0;0;0;1;0;0;0;1,0;1;0\n")  # line 14: c.png again
    assert main([*base, "--submission", str(sub), "--dataset", "ds"]) == 2
    assert f"{sub}:14:" in capsys.readouterr().err
    assert main([*base, "--submission", str(gt), "--dataset", "ds", "--dataset", "nope"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {gt}: no dataset 'nope' in the labels (they hold ds, ds2)"


def test_variants_lists_each_with_status(capsys: pytest.CaptureFixture) -> None:
    assert main(["variants"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [ln.split()[0] for ln in lines]
    assert "default" in names and "colmap_sift" in names
    assert all("[" in ln for ln in lines)


def test_variants_say_when_imc_device_refuses_every_run(capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """$IMC_DEVICE=bogus refused every run (exit 2) while `variants` said every one was ok."""
    monkeypatch.setenv("IMC_DEVICE", "bogus")
    assert main(["variants"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(ln.endswith("[cannot run here: $IMC_DEVICE must be one of auto, cuda, cpu (or cuda:N), "
                                     "got 'bogus']") for ln in lines), lines


@pytest.mark.parametrize("argv", [["run", "--json"], ["run", "--json", "--data-root", "x", "--split", "bogus"],
                                  ["run", "--data-root", "x", "--json", "--nope"]])
def test_run_json_prints_its_object_when_argparse_refuses(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    """`run --json` without --data-root, or with a bad --split, printed argparse's usage and no object."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    said = capsys.readouterr()
    assert json.loads(said.out) == {"run_dir": None, "status": "refused", "scores": None, "timings": None,
                                    "error": "the command line was refused (see stderr)"}
    assert "error:" in said.err


def test_run_unknown_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["run", "--data-root", str(tmp_path), "--set", "features.nope=1", "--out", str(tmp_path / "r")])
    assert rc == 2 and "features.nope" in capsys.readouterr().err


def test_run_prints_warnings_and_no_scores_unless_done(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import imc_core.pipeline
    from imc_core.runs import RunWriter

    run_dir = tmp_path / "r"
    w = RunWriter(run_dir)
    w.write_meta(id="r", status="failed", error="boom", warnings=["pairs.k not read by pairs.method = exhaustive"])
    w.write_json("scores.json", {"score": 70.0, "mAA": 50.0, "clusterness": 100.0, "datasets": {}})
    seen = {}

    def fake(data_root: str, **kw: object) -> Path:
        seen.update(kw)
        return run_dir

    monkeypatch.setattr(imc_core.pipeline, "run_pipeline", fake)
    assert main(["run", "--data-root", str(tmp_path), "--split", "test", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert seen["split"] == "test"
    assert "score" not in out and "warning: pairs.k not read" in err and "run failed: boom" in err
    assert main(["run", "--data-root", str(tmp_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["scores"] is None

    # refused before it starts (a data root that is not there): still one JSON object on stdout, and exit 2
    monkeypatch.undo()
    assert main(["run", "--data-root", str(tmp_path / "nope"), "--json"]) == 2
    out, err = capsys.readouterr()
    refused = json.loads(out)
    assert refused["run_dir"] is None and refused["status"] == "refused" and "data root not found" in refused["error"]
    assert "error: " in err and "data root not found" in err


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_run_bad_jobs_exits_2_before_any_run_directory(jobs: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--data-root", str(tmp_path), "--jobs", jobs, "--out", str(tmp_path / "r")]) == 2
    assert f"error: run --jobs: must be a positive integer, got '{jobs}'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    # with --json, stdout still holds the one "refused" object (argparse's usage error printed nothing there)
    assert main(["run", "--data-root", str(tmp_path), "--jobs", jobs, "--json"]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert refused["status"] == "refused" and refused["error"].startswith("run --jobs: must be a positive integer")


def test_progress_line_shows_concurrent_stages_and_finishes_each_on_its_own_line() -> None:
    import io

    from imc_core.cli import ProgressLine

    out = io.StringIO()
    show = ProgressLine(out, width=100, live=True)
    show("a/reconstruction", 2, 10, "mapping")
    show("b/features", 3, 20, "img.png")
    show("a/reconstruction", 10, 10, "2 model(s)")
    show("b/features", 20, 20, "done")
    frames = [f.rstrip() for f in out.getvalue().split("\r") if f.strip()]
    assert frames[1] == "a/reconstruction 2/10 mapping | b/features 3/20 img.png"
    assert frames[2].startswith("a/reconstruction") and "10/10" in frames[2] and frames[2].endswith("2 model(s)")
    assert frames[3] == "b/features 3/20 img.png"  # the live line goes on with what is still running
    assert out.getvalue().endswith("done" + " " * (100 - len(frames[4])) + "\n")
    assert all(len(f.rstrip("\n")) <= 100 for f in out.getvalue().split("\r"))


def test_progress_into_a_file_has_plain_lines_for_finished_stages() -> None:
    import io

    from imc_core.cli import ProgressLine

    out = io.StringIO()  # not a terminal
    show = ProgressLine(out, width=100)
    show("a/features", 3, 20, "img.png")
    show("a/features", 20, 20, "done")
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == ["a/features" + " " * 30 + "    20/20    done"]


def test_piping_into_head_gives_no_traceback() -> None:
    import subprocess
    import sys

    # `true` exits without reading: the pipe is closed long before Python has imported and writes
    proc = subprocess.run(f"{sys.executable} -m imc_core variants | true", shell=True, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_runs_rm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from imc_core.runs import RunWriter

    for name, status in (("a", "done"), ("b", "failed"), ("c", "cancelled")):
        RunWriter(tmp_path / name).write_meta(id=name, status=status, created=f"2026-01-01T00:00:0{len(name)}")
    assert main(["runs", "rm", "--root", str(tmp_path), "--status", "failed", "--status", "cancelled"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert "2 run(s)" in capsys.readouterr().out
    assert main(["runs", "rm", "--root", str(tmp_path)]) == 2  # nothing named: a clear error, nothing removed
    assert main(["runs", "rm", "--root", str(tmp_path), "--status", "faild", "--dry-run"]) == 2
    assert "unknown --status faild (statuses: done, failed," in capsys.readouterr().err
    assert main(["runs", "list", "a", "--root", str(tmp_path)]) == 2 and "runs rm" in capsys.readouterr().err
    assert main(["runs", "a", "--root", str(tmp_path)]) == 2  # (argparse's "invalid choice: 'a'" hid the hint)
    assert capsys.readouterr().err.strip() == "error: runs: unexpected a (did you mean `runs rm`?)"
    assert main(["runs", "rm", "a", "--root", str(tmp_path), "--dry-run"]) == 0 and (tmp_path / "a").exists()
    # a path to the run folder, as `export` takes one (it said "no such run folder"); not one elsewhere
    assert main(["runs", "rm", f"{tmp_path / 'a'}/", "--root", str(tmp_path), "--dry-run"]) == 0
    assert f"would remove {tmp_path / 'a'}" in capsys.readouterr().out
    elsewhere = tmp_path.parent / f"{tmp_path.name}-other" / "a"
    assert main(["runs", "rm", str(elsewhere), "--root", str(tmp_path), "--dry-run"]) == 2
    assert "no such run folder" in capsys.readouterr().err
    # ids after options too (argparse left them unparsed: "unrecognized arguments: a"); unknown options still fail
    capsys.readouterr()
    assert main(["runs", "rm", "--dry-run", "--root", str(tmp_path), "a"]) == 0 and (tmp_path / "a").exists()
    assert "1 run(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["runs", "rm", "--root", str(tmp_path), "a", "--nope"])
    assert "unrecognized arguments: --nope" in capsys.readouterr().err and (tmp_path / "a").exists()
    assert main(["runs", "rm", "a/", "--root", str(tmp_path)]) == 0 and not (tmp_path / "a").exists()  # completed


def test_export_takes_a_run_id_and_import_says_when_the_run_is_here(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`export ID` (as `runs` lists it) said "ID/run.json: not a run directory"; importing a bundle whose run is
    already here printed its path as if imported."""
    from test_runs import make_run

    monkeypatch.setenv("IMC_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    run = make_run(tmp_path / "runs")
    assert main(["export", run.name, "--out", str(tmp_path / "b.zip")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "b.zip")
    assert main(["import", str(tmp_path / "b.zip"), "--root", str(tmp_path / "theirs")]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith(run.name) and not err
    assert main(["import", str(tmp_path / "b.zip"), "--root", str(tmp_path / "theirs")]) == 0
    out, err = capsys.readouterr()
    assert f"already here as {run.name}" in err
    assert main(["export", "nope"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: nope: no such run folder here, and no run of that id in "
                                               f"{tmp_path / 'runs'}")
    # a bundle that is not there; a failed import leaves no empty --root folder behind
    assert main(["import", str(tmp_path / "gone.zip"), "--root", str(tmp_path / "new_root")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'gone.zip'}: file not found"
    import zipfile

    from imc_core.runs import BUNDLE_REQUIRED

    with zipfile.ZipFile(tmp_path / "odd.zip", "w") as zf:  # every file there, run.json not JSON: found unpacked
        for name in BUNDLE_REQUIRED:
            zf.writestr(f"x/{name}", "{ not json")
    assert main(["import", str(tmp_path / "odd.zip"), "--root", str(tmp_path / "new_root")]) == 2
    assert "odd.zip" in capsys.readouterr().err and not (tmp_path / "new_root").exists()
    assert main(["export", run.name, "--out", str(tmp_path / "b.zip")]) == 2  # the file is there: not replaced
    assert "b.zip: already exists" in capsys.readouterr().err
    assert main(["export", run.name, "--out", str(tmp_path / "b.zip"), "--force"]) == 0



def test_library_warnings_print_as_one_line_without_source(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A data warning (images not in the labels) reads ``warning: …`` like the run's own, not Python's
    ``file:line: UserWarning`` with a line of our code under it."""
    import warnings

    import imc_core.pipeline

    def fake(data_root: str, **kw: object) -> Path:
        warnings.warn("/data/train/ds: 1 image(s) not in train_labels.csv, ignored: x.png", UserWarning, stacklevel=1)
        raise ConfigError("stop here")

    before = warnings.showwarning
    monkeypatch.setattr(imc_core.pipeline, "run_pipeline", fake)
    assert main(["run", "--data-root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "warning: /data/train/ds: 1 image(s) not in train_labels.csv, ignored: x.png\n" in err
    assert "UserWarning" not in err and "warnings.warn" not in err
    assert warnings.showwarning is before  # main leaves the process's warning display as it found it


def test_runs_with_a_runs_folder_that_is_missing_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`runs --root` mistyped, or a file: one line and exit 2, not "no runs" or a NotADirectoryError traceback."""
    assert main(["runs", "--root", str(tmp_path / "typo")]) == 2
    assert "runs folder not found" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert main(["runs", "--root", str(tmp_path / "f")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["runs", "--root", str(tmp_path / "empty")]) == 0
    assert "no runs" in capsys.readouterr().out
    (tmp_path / "empty" / "broken").mkdir()
    (tmp_path / "empty" / "broken" / "run.json").write_text("{not json")
    assert main(["runs", "--root", str(tmp_path / "empty")]) == 0
    err = capsys.readouterr().err
    assert "1 run folder(s) could not be read" in err and f"  broken: {tmp_path / 'empty' / 'broken' / 'run.json'}" in err
    # one run's folder (`run --out`'s), and `export` of a file: said as such (they read "no runs" and "cannot read
    # JSON: Not a directory")
    assert main(["runs", "--root", str(tmp_path / "empty" / "broken")]) == 2
    assert (f"{tmp_path / 'empty' / 'broken'}: a run folder, not a folder of runs: list its folder with `runs --root "
            f"{tmp_path / 'empty'}`") in capsys.readouterr().err
    assert main(["export", str(tmp_path / "f")]) == 2
    assert f"{tmp_path / 'f'}: not a run directory (a file, not a folder)" in capsys.readouterr().err


def test_runs_prints_scores_as_run_does(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`runs` showed 73.170732 where `run` prints 73.1707."""
    from imc_core.runs import RunWriter

    w = RunWriter(tmp_path / "r1")
    w.write_meta(id="r1", status="done", created="2026-01-01T00:00:00", variant="default", seed=0,
                 seconds=12.345)
    w.write_json("scores.json", {"score": 73.17073170731707, "mAA": 53.84615384615385, "clusterness": 100.0,
                                 "datasets": {}})
    assert main(["runs", "--root", str(tmp_path)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:2] == ["r1", "done"] and ["73.1707", "53.8462", "100.0000"] == [v for v in row if "." in v][:3]


def test_runs_shows_control_characters_without_acting_on_them(tmp_path: Path, capsys: pytest.CaptureFixture
                                                                ) -> None:
    from imc_core.runs import RunWriter

    RunWriter(tmp_path / "r1").write_meta(id="r1", status="done", created="2026", variant="default\x1b[1A\x1b[2K",
                                          label="x\x1b]0;PWNED\x07\nnext")
    assert main(["runs", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "default?[1A?[2K" in out and "x?]0;PWNED??next" in out


def test_cache_listing_refuses_prune_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`cache --unused` listed every artifact, as if filtered."""
    (tmp_path / "c").mkdir()
    assert main(["cache", "--cache-dir", str(tmp_path / "c"), "--unused", "--stage", "features"]) == 2
    assert capsys.readouterr().err.strip() == "error: cache: --unused, --stage only with `cache prune`"
    assert main(["cache", "--cache-dir", str(tmp_path / "c")]) == 0


def test_the_cli_runs_from_any_folder(tmp_path: Path) -> None:
    """`make` installs the checkout in editable mode: the module and the `imc-lab` command work outside it."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    for cmd in ([sys.executable, "-m", "imc_core", "variants"], [str(Path(sys.executable).with_name("imc-lab")),
                                                                  "variants"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert proc.returncode == 0 and proc.stdout.startswith("aliked_lightglue"), proc.stderr


def test_score_names_camera_to_world_poses(files: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    """A submission written camera→world scores low without any error: `score` says which convention it looks
    like on stderr (the --json object keeps its schema), and --details prints the three readings."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    from imc_core.submission import pose_frame, world_to_cam, write_pose_csv

    R_c2w = Rotation.random(8, random_state=1).as_matrix()
    centre = np.random.default_rng(0).normal(size=(8, 3)) * 3
    names = [f"i{k}.png" for k in range(8)]
    gt = write_pose_csv(pose_frame("ds", "s1", names, *world_to_cam(R_c2w, centre)), tmp_path / "labels.csv")
    sub = pose_frame("ds", "s1", names, R_c2w, centre)  # the slip: camera→world poses written as they are
    wrong = write_pose_csv(sub, tmp_path / "c2w.csv")
    base = ["score", "--gt", str(gt), "--thresholds", str(files["thr"]), "--submission", str(wrong)]
    assert main([*base, "--json"]) == 0
    out, err = capsys.readouterr()
    assert set(json.loads(out)) == {"score", "mAA", "clusterness", "datasets"}
    assert "warning: these poses look camera→world" in err and "100.00" in err
    assert main([*base, "--details"]) == 0
    out = capsys.readouterr().out
    assert "pose convention" in out and "camera→world" in out and "transposed rotation" in out
    # --json with --details: said (the tables were silently dropped), before any scoring
    assert main([*base, "--json", "--details"]) == 2
    out, err = capsys.readouterr()
    assert not out and "--details prints tables, --json one object of fixed schema: use one of them" in err
    assert main([*base, "--no-convention-check"]) == 0
    assert "camera→world" not in capsys.readouterr().err
    assert main(["score", "--gt", str(gt), "--thresholds", str(files["thr"]), "--submission", str(gt),
                 "--details"]) == 0
    out, err = capsys.readouterr()
    assert "look" not in err and "pose convention (each dataset that is small" in out  # re-read, nothing to say


def test_runs_lists_only_the_status_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`runs --status failed` listed every run, exit 0, without a word (the option was read by `rm` only)."""
    from imc_core.runs import RunWriter

    for name, status in (("a", "done"), ("b", "failed"), ("c", "cancelled")):
        RunWriter(tmp_path / name).write_meta(id=name, status=status, created=f"2026-01-01T00:00:0{len(name)}")
    assert main(["runs", "--root", str(tmp_path), "--status", "failed", "--status", "cancelled"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(listed) == ["b", "c"]
    assert main(["runs", "--root", str(tmp_path), "--status", "stopped"]) == 0
    assert capsys.readouterr().out.strip() == "no runs with status stopped"
    assert main(["runs", "--root", str(tmp_path), "--status", "faild"]) == 2
    assert "runs: unknown --status faild" in capsys.readouterr().err


def test_runs_by_data_root_and_as_json(tmp_path: Path, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`runs` did not say which data each run was made on (ETs and a copy of it read alike), nor list runs for a
    script: the data root is a column when the runs span several, a filter, and part of `--json`."""
    from imc_core.runs import RunWriter

    runs_dir, ets, other = tmp_path / "runs", tmp_path / "ets", tmp_path / "copy"
    for root in (ets, other):
        root.mkdir()
    for i, (name, root, seed) in enumerate((("a", ets, 0), ("b", other, None), ("c", ets, 1))):
        RunWriter(runs_dir / name).write_meta(id=name, status="done", data_root=str(root), seed=seed,
                                              datasets=["ETs", "x"], created=f"2026-01-01T00:00:0{i}")
    assert main(["runs", "--root", str(runs_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "data_root" and lines[2].split()[-1] == str(other)
    monkeypatch.chdir(tmp_path)  # (a relative DIR names the same folder)
    assert main(["runs", "--root", str(runs_dir), "--data-root", "ets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["c", "a"] and "data_root" not in lines[0]
    assert main(["runs", "--root", str(runs_dir), "--data-root", "nowhere"]) == 0
    assert capsys.readouterr().out.strip() == "no runs on data root nowhere"
    assert main(["runs", "--root", str(runs_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["seed"], r["data_root"]) for r in listed["runs"]] == [
        ("c", 1, str(ets)), ("b", None, str(other)), ("a", 0, str(ets))]
    assert listed["runs"][0]["datasets"] == ["ETs", "x"] and listed["runs"][0]["score"] is None
    assert listed["runs"][0]["path"] == str(runs_dir / "c") and listed["unreadable"] == {}
    assert main(["runs", "rm", "a", "--root", str(runs_dir), "--data-root", str(ets)]) == 2  # rm: by id, status, group
    assert (runs_dir / "a").is_dir()
    assert main(["runs", "--root", str(runs_dir), "--force", "--dry-run"]) == 2  # (the list took them silently)
    assert "--force and --dry-run only serve `runs rm`" in capsys.readouterr().err


def test_runs_narrowed_by_group_variant_and_last(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """300 runs were listed whole: a group, a variant and the newest few are asked for by name; `rm --group`
    removes an experiment's runs (with --status, only those of that status)."""
    from imc_core.runs import RunWriter

    runs = {"a": ("done", "exp1", "default"), "b": ("failed", "exp1", "default"), "c": ("done", "exp2", "sift_nn"),
            "d": ("done", None, "default")}
    for i, (name, (status, group, variant)) in enumerate(runs.items()):
        RunWriter(tmp_path / name).write_meta(id=name, status=status, group=group, variant=variant,
                                              created=f"2026-01-01T00:00:0{i}")

    def listed(*args: str) -> list[str]:
        assert main(["runs", "--root", str(tmp_path), *args]) == 0
        out = capsys.readouterr().out
        return [line.split()[0] for line in out.splitlines()[1:]] if not out.startswith("no runs") else [out.strip()]

    assert listed("--group", "exp1") == ["b", "a"]  # newest first
    assert listed("--group", "exp1", "--group", "exp2") == ["c", "b", "a"]
    assert listed("--variant", "default") == ["d", "b", "a"]
    assert listed("--last", "2") == ["d", "c"]
    assert listed("--variant", "default", "--last", "1") == ["d"]
    assert listed("--group", "exp2", "--status", "failed") == ["no runs with status failed, of group exp2"]
    assert main(["runs", "--root", str(tmp_path), "--last", "0"]) == 2
    assert "--last 0: a number of runs, 1 or more" in capsys.readouterr().err
    assert main(["runs", "rm", "--root", str(tmp_path), "--variant", "default"]) == 2  # rm: never by variant
    assert "--variant, --last, --data-root and --json only serve the list" in capsys.readouterr().err
    assert main(["runs", "rm", "--root", str(tmp_path), "--group", "exp1", "--status", "failed"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "d"]
    assert main(["runs", "rm", "--root", str(tmp_path), "--group", "exp1", "--group", "exp2", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 run(s) (dry run)"
    assert main(["runs", "rm", "--root", str(tmp_path), "--group", "exp1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]
    capsys.readouterr()
    # a misspelt group removed nothing and said "0 run(s)"; an empty one must not mean "no group"
    assert main(["runs", "rm", "--root", str(tmp_path), "--group", "exp3"]) == 2
    assert f"{tmp_path}: no run of group 'exp3' (groups here: exp2)" in capsys.readouterr().err
    # a run that `runs` cannot list (its scores.json is damaged) is still removed by its group
    RunWriter(tmp_path / "damaged").write_meta(id="damaged", status="done", group="lonely", created="2026-01-03")
    (tmp_path / "damaged" / "scores.json").write_text("{")
    assert main(["runs", "rm", "--root", str(tmp_path), "--group", "lonely"]) == 0
    assert not (tmp_path / "damaged").exists()
    assert main(["runs", "rm", "--root", str(tmp_path), "--group", ""]) == 2
    assert "--group needs a group's name" in capsys.readouterr().err
    # a group written by hand as a number is listed and removed by the same digits
    RunWriter(tmp_path / "e").write_meta(id="e", status="done", group=7, variant="default", created="2026-01-02")
    assert listed("--group", "7") == ["e"]
    assert main(["runs", "rm", "--root", str(tmp_path), "--group", "7"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]


def test_a_ctrl_c_whose_run_ended_cancelled_without_a_reason_records_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C dropped while the main thread waited on --jobs workers stopped them at their next poll as a plain
    cancel: exit status 130, but run.json said no why. The run is recorded as interrupted (Ctrl-C)."""
    import json

    from imc_core import cli, pipeline
    from imc_core.runs import RunWriter

    def cancelled_by_the_workers(*args: object, **kwargs: object) -> Path:
        stop["interrupted"] = True  # (what on_int remembers)
        writer = RunWriter(tmp_path / "run")
        writer.write_meta(id="run", variant="default", created="2026-01-01T00:00:00")
        writer.set_status("cancelled")
        return tmp_path / "run"

    monkeypatch.setattr(pipeline, "run_pipeline", cancelled_by_the_workers)
    stop = {"requested": False, "interrupted": False, "finished": False}
    args = cli.build_parser().parse_args(["run", "--data-root", str(tmp_path), "--quiet", "--verbose"])
    with pytest.raises(KeyboardInterrupt):
        cli._run_and_report(args, None, lambda: False, stop)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (meta["status"], meta["error"], meta["variant"]) == ("cancelled", "interrupted (Ctrl-C)", "default")
    assert "interrupted (Ctrl-C)" in (tmp_path / "run" / "log.txt").read_text()


def test_synth_help_states_the_bundled_defaults() -> None:
    """`synth --help` gave no defaults; the ones it now gives are the bundled benchmark's."""
    from imc_core.cli import build_parser
    from imc_core.synth import BUNDLED, PHOTOS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub.choices["synth"]._actions}

    def span(value: object) -> str:
        return f"{value[0]} to {value[1]}" if isinstance(value, tuple) else str(value)

    assert f"(default {BUNDLED.datasets})" in helps["datasets"]
    assert f"(default {span(BUNDLED.scenes_per_dataset)};" in helps["scenes"] and f"{len(PHOTOS)} bundled" in \
        helps["scenes"]
    assert f"(default {span(BUNDLED.images_per_scene)})" in helps["images"]
    assert f"(default {span(BUNDLED.outliers_per_dataset)})" in helps["outliers_per_dataset"]
    assert f"(default {BUNDLED.width})" in helps["width"] and f"(default {BUNDLED.height})" in helps["height"]
    assert f"(default {BUNDLED.roll_fraction})" in helps["roll"]


@pytest.mark.parametrize("args, message", [
    (["--images", "0"], "synth --images 0: must be at least 2"),
    (["--scenes", "0"], "synth --scenes 0: must be at least 1"),
    (["--roll", "2"], "synth --roll 2.0: must be in [0, 1]"),
    (["--outliers", "-1"], "synth --outliers -1: must be at least 0"),
    (["--seed", "-1"], "synth --seed -1: must be in 0..4294967295"),  # (these two: tracebacks, exit 1)
    (["--width", "60000", "--height", "600"], "synth image size must be at most 4096 px a side, got 60000×600"),
])
def test_synth_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                                    message: str) -> None:
    """They named the config's fields ("synth.images_per_scene must satisfy 2 <= min <= max, got 0")."""
    assert main(["synth", "--out", str(tmp_path / "s"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "s").exists()


def test_runs_rm_force_stops_a_live_run_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`runs rm --force` of a run still at work removed its folder while its process went on: the process made
    the folder again and finished, and the run came back as "done" without its config.toml."""
    import platform
    import subprocess
    import sys
    import time

    from imc_core.runs import RunWriter

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "imc_core"])
    try:
        deadline = time.monotonic() + 20
        while "imc_core" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        RunWriter(tmp_path / "live").write_meta(id="live", status="running", created="2026-01-01T00:00:00",
                                                pid=proc.pid, host=platform.node())
        assert main(["runs", "rm", "live", "--root", str(tmp_path)]) == 2  # not without --force
        assert proc.poll() is None and (tmp_path / "live").exists()
        capsys.readouterr()
        assert main(["runs", "rm", "live", "--root", str(tmp_path), "--force"]) == 0
        assert proc.wait(timeout=15) is not None and not (tmp_path / "live").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_runs_rm_force_waits_for_the_process_not_its_status(tmp_path: Path) -> None:
    """A run says "cancelled" in run.json as soon as SIGTERM reaches it, then still writes its last files: `runs rm
    --force` removed the folder under it, and the run exited 2 with "not a run directory". It waits for the
    process itself now."""
    import platform
    import subprocess
    import sys
    import time

    from imc_core.runs import RunWriter

    run = tmp_path / "live"
    RunWriter(run).write_meta(id="live", status="running", created="2026-01-01T00:00:00", host=platform.node())
    child = (f"import json, signal, sys, time\n"
             f"def on_term(*_):\n"
             f"    meta = json.load(open({str(run / 'run.json')!r}))\n"
             f"    json.dump({{**meta, 'status': 'cancelled'}}, open({str(run / 'run.json')!r}, 'w'))\n"
             f"    time.sleep(1.5)\n"
             f"    open({str(run / 'timings.json')!r}, 'w').write('{{}}')\n"
             f"    sys.exit(1)\n"
             f"signal.signal(signal.SIGTERM, on_term)\n"
             f"open({str(tmp_path / 'ready')!r}, 'w').close()\n"
             f"time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, "imc_core"])
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        RunWriter(run).write_meta(id="live", status="running", created="2026-01-01T00:00:00", pid=proc.pid,
                                  host=platform.node())
        assert main(["runs", "rm", "live", "--root", str(tmp_path), "--force"]) == 0
        assert proc.poll() is not None  # it had ended before its folder went
        assert not run.exists()  # (and what it wrote last went with it)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_runs_listing_cuts_a_long_dataset_list() -> None:
    """A run of the 13 IMC-2025 training datasets made every line of `runs` 330 characters wide."""
    from imc_core.cli import _few

    assert _few("ETs") == "ETs" and _few("ETs,kermits") == "ETs,kermits"
    many = ",".join(f"dataset_{k:02d}" for k in range(13))
    assert _few(many) == "dataset_00,dataset_01 +11 more" and len(_few(many)) <= 40
    assert _few("a_very_long_dataset_name_that_alone_is_wider,b") == "a_very_long_dataset_name_that_alone_is_wider +1 more"


def test_runs_listing_cuts_a_long_label_or_group(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One 160-character label made every line of `runs` 367 characters wide (a tester); --json keeps it whole."""
    from imc_core.runs import RunWriter

    long_label, long_group = "l" * 160, "g" * 41
    RunWriter(tmp_path / "r1").write_meta(id="r1", status="done", created="2026", variant="default",
                                          label=long_label, group=long_group)
    RunWriter(tmp_path / "r2").write_meta(id="r2", status="done", created="2027", variant="default",
                                          label="x" * 40, group="short")
    assert main(["runs", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "l" * 39 + "…" in out and "l" * 40 not in out and "g" * 39 + "…" in out and "x" * 40 in out
    assert max(len(line) for line in out.splitlines()) < 160
    assert main(["runs", "--root", str(tmp_path), "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert (listed["r1"]["label"], listed["r1"]["group"]) == (long_label, long_group)


def test_a_label_or_group_with_control_characters_is_refused_before_the_run(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`runs` printed them to the terminal, and the run's bundle was refused by a teammate's import."""
    monkeypatch.setenv("IMC_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["run", "--data-root", str(tmp_path), "--label", "red\x1b[31m"]) == 2
    assert "--label 'red\\x1b[31m' holds control characters" in capsys.readouterr().err
    assert main(["run", "--data-root", str(tmp_path), "--group", "g\x07"]) == 2
    assert main(["add-submission", str(tmp_path / "s.csv"), "--data-root", str(tmp_path), "--group", "g\x07"]) == 2
    assert "--group 'g\\x07' holds control characters" in capsys.readouterr().err
    # one line each: a newline passed (and cut at it the error listing the groups), a tab passed
    assert main(["run", "--data-root", str(tmp_path), "--group", "x\ny"]) == 2
    assert "--group 'x\\ny' holds control characters" in capsys.readouterr().err
    assert main(["run", "--data-root", str(tmp_path), "--label", "a\tb"]) == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, option", [
    (["run", "--data-root", "{root}", "--out", ""], "--out"),
    (["run", "--data-root", " "], "--data-root"),
    (["export", "some-run", "--out", ""], "--out"),
    (["cache", "prune", "--unused", "--runs-dir", "{root}", "--runs-dir", ""], "--runs-dir"),
    (["score", "--gt", "", "--thresholds", "t.csv", "--submission", "s.csv"], "--gt"),
    (["export", ""], "RUN_DIR"),  # (from inside a run folder it exported that folder)
    (["import", ""], "BUNDLE"),
    (["add-submission", "", "--data-root", "{root}"], "SUBMISSION"),  # (it said --submission)
    (["runs", "rm", ""], "RUN_ID"),
])
def test_an_empty_path_option_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch, argv: list[str], option: str) -> None:
    """`run --out "$OUT"` with OUT unset wrote a new run under the runs folder without a word."""
    monkeypatch.setenv("IMC_RUNS_DIR", str(tmp_path / "runs"))
    assert main([a.replace("{root}", str(tmp_path)) for a in argv]) == 2
    assert f"error: {option} is empty (an unset shell variable?)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
