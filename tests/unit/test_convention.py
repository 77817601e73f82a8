"""Pose-convention check: a submission written camera→world or with transposed rotations is recognised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_metric import make_gt, submit

from imc_core.convention import READINGS, convention_check, reread
from imc_core.metric import score
from imc_core.submission import camera_centers, cam_to_world, rotations, translations


@pytest.fixture()
def case() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    gt, th, _ = make_gt(np.random.default_rng(3), {"s1": 12, "s2": 9}, outliers=2)
    clusters = {i: (s if s != "outliers" else "outliers") for i, s in zip(gt["image"], gt["scene"])}
    return gt, th, submit(gt, clusters)  # GT poses moved by one similarity: scores 100 as written


def test_reread_gives_the_centre_each_reading_means(case) -> None:
    _, _, sub = case
    R, t = rotations(sub), translations(sub)
    np.testing.assert_allclose(camera_centers(reread(sub, "camera→world")), t, atol=1e-12)
    np.testing.assert_allclose(camera_centers(reread(sub, "transposed rotation")),
                               -np.einsum("nij,nj->ni", R, t), atol=1e-12, equal_nan=True)
    pd.testing.assert_frame_equal(reread(sub, "as written"), sub)
    assert reread(sub, "camera→world")["tx"].isna().sum() == sub["tx"].isna().sum()  # outliers stay nan
    with pytest.raises(ValueError, match="unknown reading"):
        reread(sub, "sideways")


def test_a_correct_submission_raises_no_warning(case) -> None:
    gt, th, sub = case
    check = convention_check(gt, th, sub)
    assert list(check.table["reading"]) == list(READINGS)
    assert check.best == "as written" and check.warning() is None
    row = check.table.set_index("reading").loc["as written"]
    assert row["mAA"] == pytest.approx(score(gt, th, sub).mAA) == pytest.approx(100.0)


def test_camera_to_world_poses_are_named(case) -> None:
    gt, th, sub = case
    R_c2w, c = cam_to_world(rotations(sub), translations(sub))  # the slip: camera→world written as they are
    wrong = sub.copy()
    wrong[[f"r{i}{j}" for i in range(3) for j in range(3)]] = R_c2w.reshape(-1, 9)
    wrong[["tx", "ty", "tz"]] = c
    check = convention_check(gt, th, wrong)
    mAA = check.table.set_index("reading")["mAA"]
    assert mAA["camera→world"] == pytest.approx(100.0) and mAA["as written"] < 50
    assert check.best == "camera→world"
    text = check.warning()
    assert text is not None and text.startswith("these poses look camera→world (t holding the camera centre)")
    assert f"{mAA['as written']:.2f}" in text and "100.00" in text


def test_transposed_rotations_are_named(case) -> None:
    gt, th, sub = case
    wrong = sub.copy()
    wrong[[f"r{i}{j}" for i in range(3) for j in range(3)]] = np.swapaxes(rotations(sub), 1, 2).reshape(-1, 9)
    check = convention_check(gt, th, wrong)
    assert check.best == "transposed rotation"
    assert "written with each R transposed" in (check.warning() or "")
    assert check.warning(margin=1000.0) is None  # the margin is what decides


def test_only_low_datasets_are_re_read(case, tmp_path) -> None:
    """Re-reading costs up to three scorings: a dataset that reaches LOW_MAA as written is written right."""
    from imc_core.convention import LOW_MAA, low_datasets
    from imc_core.metric import score_files
    from imc_core.submission import cam_to_world, write_pose_csv

    gt, th, sub = case
    assert low_datasets(score(gt, th, sub)) == [] and LOW_MAA == 50.0
    labels = write_pose_csv(gt, tmp_path / "labels.csv")
    (tmp_path / "thr.csv").write_text("dataset,scene,thresholds\n" + "".join(
        f"{d},{s},{';'.join(map(str, v))}\n" for (d, s), v in th.items()))
    good = score_files(labels, tmp_path / "thr.csv", write_pose_csv(sub, tmp_path / "good.csv"), convention=True)
    assert good.convention is None and not good.warnings
    wrong = sub.copy()
    R_c2w, c = cam_to_world(rotations(sub), translations(sub))
    wrong[[f"r{i}{j}" for i in range(3) for j in range(3)]] = R_c2w.reshape(-1, 9)
    wrong[["tx", "ty", "tz"]] = c
    bad = score_files(labels, tmp_path / "thr.csv", write_pose_csv(wrong, tmp_path / "bad.csv"), convention=True)
    assert low_datasets(bad) == ["ds"] and list(bad.convention["reading"]) == list(READINGS)
    assert any(w.startswith("these poses look camera→world (t holding the camera centre) in ds:") for w in bad.warnings)
