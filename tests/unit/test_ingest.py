"""An outside submission becomes a scored run: files, convention warning, refusals that write nothing."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_metric import TH, make_gt, submit

from imc_core.cli import main
from imc_core.errors import InputError
from imc_core.ingest import SUBMISSION_VARIANT, submission_run
from imc_core.metric import score_files
from imc_core.runs import list_runs, load_run
from imc_core.submission import R_COLS, T_COLS, cam_to_world, rotations, translations, write_pose_csv


@pytest.fixture()
def root(tmp_path: Path) -> tuple[Path, object]:
    """A data root with labels and thresholds (no images: scoring needs none) and a correct submission."""
    gt, th, _ = make_gt(np.random.default_rng(5), {"s1": 10, "s2": 8}, outliers=2)
    data = tmp_path / "data"
    (data / "train" / "ds").mkdir(parents=True)
    write_pose_csv(gt, data / "train_labels.csv")
    thr = ";".join(map(str, TH))
    (data / "train_thresholds.csv").write_text(f"dataset,scene,thresholds\nds,s1,{thr}\nds,s2,{thr}\n")
    sub = submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)))
    return data, sub


def test_a_submission_becomes_a_scored_run(root, tmp_path: Path) -> None:
    data, sub = root
    runs = tmp_path / "runs"
    path = write_pose_csv(sub, tmp_path / "mine.csv")
    made, new = submission_run(path, data, runs_dir=runs)
    run = load_run(made)
    assert new
    assert run.status == "done" and run.meta["variant"] == SUBMISSION_VARIANT and run.meta["label"] == "mine.csv"
    assert run.scores["score"] == pytest.approx(100.0) and run.meta["datasets"] == ["ds"]
    assert not run.meta["warnings"] and run.meta["data_root"] == str(data.resolve())
    assert len(run.per_image) == len(sub) and set(run.alignments) == {"ds"}
    assert tomllib.loads((run.path / "config.toml").read_text())["meta"]["source"] == "mine.csv"
    # small: re-read; written right, so the geometry rules the other readings out without scoring them
    assert "pose convention: ds, as written: mAA 100.0000" in run.log
    assert "pose convention: ds, camera→world: not scored (the geometry rules it out)" in run.log
    assert list_runs(runs)["variant"].tolist() == [SUBMISSION_VARIANT]
    # the same bytes again: the run already made, not a second "seed" of one submission
    assert submission_run(path, data, label="again", group="g", runs_dir=runs) == (made, False)
    assert len(list_runs(runs)) == 1 and load_run(made).meta["label"] == "mine.csv"
    other = write_pose_csv(sub.iloc[::-1], tmp_path / "reordered.csv")  # other bytes: a run of its own
    assert submission_run(other, data, runs_dir=runs)[1] and len(list_runs(runs)) == 2


def test_a_submission_into_a_group_of_pipeline_runs_is_warned(root, tmp_path: Path) -> None:
    """`add-submission --group g` into a group of pipeline runs said nothing, and Compare counted the submission as
    one of their seeds; a group of submissions alone is not warned, and a pipeline run into it is."""
    from imc_core.config import dump_config, resolve_config
    from imc_core.pipeline import _group_clash
    from imc_core.runs import RunWriter, new_run_dir

    data, sub = root
    runs = tmp_path / "runs"
    pipeline_run = new_run_dir("default", runs)
    RunWriter(pipeline_run).write_meta(id=pipeline_run.name, status="done", group="g", variant="default",
                                       created="2026-01-01T00:00:00")
    (pipeline_run / "config.toml").write_text(dump_config(resolve_config("default"), {"variant": "default"}))
    made, _ = submission_run(write_pose_csv(sub, tmp_path / "a.csv"), data, group="g", runs_dir=runs)
    (note,) = [w for w in load_run(made).meta["warnings"] if w.startswith("group g")]
    assert note.startswith(f"group g already holds runs of another config ({pipeline_run.name} differs in "
                           "meta.variant)")
    first, _ = submission_run(write_pose_csv(sub, tmp_path / "b.csv"), data, group="subs", runs_dir=runs)
    second, _ = submission_run(write_pose_csv(sub.iloc[::-1], tmp_path / "c.csv"), data, group="subs",
                               runs_dir=runs)
    assert not [w for w in load_run(second).meta["warnings"] if w.startswith("group")]  # two submissions
    clash = _group_clash("subs", resolve_config("default"), new_run_dir("default", runs), data)
    assert clash is not None and "differs in meta.variant" in clash


def test_camera_to_world_is_named_and_unlabelled_datasets_are_left_out(root, tmp_path: Path) -> None:
    data, sub = root
    wrong = sub.copy()
    R_c2w, c = cam_to_world(rotations(sub), translations(sub))
    wrong[R_COLS], wrong[T_COLS] = R_c2w.reshape(-1, 9), c
    extra = wrong.iloc[:3].copy()
    extra["dataset"] = "elsewhere"
    path = write_pose_csv(pd.concat([wrong, extra], ignore_index=True), tmp_path / "c2w.csv")
    run = load_run(submission_run(path, data, label="theirs", runs_dir=tmp_path / "runs", name="upload.csv")[0])
    warnings = run.meta["warnings"]
    assert any(w.startswith("these poses look camera→world") for w in warnings)
    assert any(w.startswith("left out of the score: ") and "no rows for 1 dataset(s) of the submission (elsewhere)"
               in w for w in warnings)
    assert run.meta["label"] == "theirs" and run.meta["source"] == "upload.csv"
    assert run.scores["mAA"] < 50 and set(run.submission["dataset"]) == {"ds"}
    assert "pose convention: ds, camera→world: mAA 100.0000" in run.log


def test_refusals_write_no_run(root, tmp_path: Path) -> None:
    data, sub = root
    runs = tmp_path / "runs"
    short = write_pose_csv(sub.iloc[:-4], tmp_path / "short.csv")  # GT images missing from it
    with pytest.raises(InputError, match="short.csv"):
        submission_run(short, data, runs_dir=runs)
    other = sub.copy()
    other["dataset"] = "nope"
    with pytest.raises(InputError, match=r"none of its datasets \(nope\) is in .*train_labels.csv \(ds\)"):
        submission_run(write_pose_csv(other, tmp_path / "other.csv"), data, runs_dir=runs)
    # a header and nothing else: said so (it read "none of its datasets (none) is in …")
    header = write_pose_csv(sub.iloc[:0], tmp_path / "header.csv")
    with pytest.raises(InputError, match=r"header.csv: no data rows: the file holds its header line and nothing"):
        submission_run(header, data, runs_dir=runs)
    with pytest.raises(InputError, match=r"header.csv: no data rows"):
        score_files(data / "train_labels.csv", data / "train_thresholds.csv", header)
    (data / "train_labels.csv").unlink()
    with pytest.raises(InputError, match="train_labels.csv: not found"):
        submission_run(short, data, runs_dir=runs)
    with pytest.raises(InputError, match=r"train_labels.csv: not found: .*; train/ is a split folder of a data "
                                         r"root: use its parent"):
        submission_run(short, data / "train", runs_dir=runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_cli_add_submission(root, tmp_path: Path, capsys: pytest.CaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    data, sub = root
    monkeypatch.setenv("IMC_RUNS_DIR", str(tmp_path / "runs"))
    path = write_pose_csv(sub, tmp_path / "mine.csv")
    assert main(["add-submission", str(path), "--data-root", str(data), "--label", "kaggle v3"]) == 0
    out = capsys.readouterr().out.splitlines()
    first = out[0]
    assert load_run(first).meta["label"] == "kaggle v3" and out[1].startswith("score 100.0000")
    assert main(["add-submission", str(tmp_path / "gone.csv"), "--data-root", str(data)]) == 2
    assert "gone.csv: file not found" in capsys.readouterr().err
    assert main(["add-submission", str(path), "--data-root", str(data)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == first and f"not added: this file was already added on this data root as " \
        f"{Path(first).name} (label 'kaggle v3')" in err and "not applied" not in err
    # a group given again is not applied (the run keeps its own), and that is said
    assert main(["add-submission", str(path), "--data-root", str(data), "--group", "sweep"]) == 0
    assert "not applied: --group 'sweep' (it has no group)" in capsys.readouterr().err
    # named as `score` names it (it was "unrecognized arguments: --submission")
    assert main(["add-submission", "--submission", str(path), "--data-root", str(data)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == first
    assert main(["add-submission", str(path), "--submission", str(tmp_path / "other.csv"), "--data-root",
                 str(data)]) == 2
    assert "add-submission: two files named" in capsys.readouterr().err
    assert main(["add-submission", "--data-root", str(data)]) == 2
    assert "add-submission: name the submission file" in capsys.readouterr().err
    assert main(["add-submission", "--submission", "", "--data-root", str(data)]) == 2
    assert "--submission is empty" in capsys.readouterr().err


def test_a_labelled_dataset_the_submission_lacks_is_named(root, tmp_path: Path) -> None:
    """`score` refuses a submission without a labelled dataset; `add-submission` scored it on the rest without a
    word, so its overall score read as one of the whole data root."""
    data, sub = root
    labels = pd.read_csv(data / "train_labels.csv", dtype=str)
    other = labels.assign(dataset="other")
    pd.concat([labels, other]).to_csv(data / "train_labels.csv", index=False)
    (data / "train_thresholds.csv").write_text((data / "train_thresholds.csv").read_text()
                                               + "".join(f"other,{s},{';'.join(map(str, TH))}\n" for s in ("s1", "s2")))
    run = load_run(submission_run(write_pose_csv(sub, tmp_path / "ds_only.csv"), data, runs_dir=tmp_path / "r")[0])
    assert run.meta["warnings"] == ["scored on 1 of the data root's 2 labelled datasets: the submission has no rows "
                                    "for other"]
    assert run.meta["datasets"] == ["ds"] and run.scores["score"] == pytest.approx(100.0)


def test_the_files_own_faults_go_with_the_run(root, tmp_path: Path) -> None:
    """An inf pose, an empty cluster name and a reflected rotation: `score` printed them, `add-submission` kept
    them in its log only (the dashboard shows run.json's warnings)."""
    data, sub = root
    odd = sub.copy()
    odd.loc[odd.index[0], "tx"] = np.inf
    odd.loc[odd.index[1], "scene"] = ""
    odd.loc[odd.index[2], R_COLS] *= -1.0
    path = write_pose_csv(odd, tmp_path / "odd.csv")
    run = load_run(submission_run(path, data, runs_dir=tmp_path / "runs", name="upload.csv")[0])
    warned = run.meta["warnings"]
    assert [w.split(" row(s) ")[1][:30] for w in warned if w.startswith("upload.csv: ")] == [
        "with a pose neither all finite", "whose R is not a rotation (1 w", "with an empty scene (cluster) "]
    assert not any(w.startswith("ds/") for w in warned)  # scene-by-scene notes stay in the per-scene table
