"""The exact IMC-2025 numbers of the official metric (imc25-utils), on data under /work/shared (skipped without it).

* ``imc25/metric_checks/caseNN.csv``: perturbed submissions with the official scores (``caseNN.json``), scored
  against the rows of ``imc25/train_labels.csv`` / ``train_thresholds.csv`` of the listed datasets;
* ``datasets/toy_fb82``: the organiser's toy data: ``submissions/submission.csv`` → 74.8216031414013, and three
  files the official code rejects (unknown image, missing images, duplicate image).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imc_core.errors import InputError
from imc_core.metric import score, score_files

SHARED = Path("/work/shared")
CHECKS = SHARED / "imc25" / "metric_checks"
TOY = SHARED / "datasets" / "toy_fb82"

needs_checks = pytest.mark.skipif(not CHECKS.exists(), reason="no /work/shared/imc25/metric_checks")
needs_toy = pytest.mark.skipif(not TOY.exists(), reason="no /work/shared/datasets/toy_fb82")


@pytest.fixture(scope="module")
def official_labels():
    from imc_core.data import read_labels, read_thresholds

    return read_labels(SHARED / "imc25" / "train_labels.csv"), read_thresholds(SHARED / "imc25" / "train_thresholds.csv")


@needs_checks
@pytest.mark.parametrize("case", [f"case{i:02d}" for i in range(6)])
def test_metric_checks(case: str, official_labels) -> None:
    from imc_core.submission import read_pose_csv

    meta = json.loads((CHECKS / f"{case}.json").read_text())
    labels, thresholds = official_labels
    gt = labels[labels["dataset"].isin(meta["datasets"])].reset_index(drop=True)
    th = {k: v for k, v in thresholds.items() if k[0] in meta["datasets"]}
    sub = read_pose_csv(CHECKS / f"{case}.csv")
    res = score(gt, th, sub, details=False)
    assert res.score == pytest.approx(meta["expected"]["score"], abs=1e-9)
    assert set(res.datasets) == set(meta["expected"]["datasets"])
    for ds, val in meta["expected"]["datasets"].items():
        assert res.datasets[ds].score == pytest.approx(val, abs=1e-9)


@needs_toy
def test_toy_fb82_submission() -> None:
    res = score_files(TOY / "train_labels.csv", TOY / "train_thresholds.csv", TOY / "submissions" / "submission.csv")
    assert res.score == pytest.approx(74.8216031414013, abs=1e-9)
    assert res.datasets["ETs"].score == pytest.approx(54.42, abs=5e-3)
    assert res.datasets["ETs"].mAA == pytest.approx(51.25, abs=5e-3)
    assert res.datasets["ETs"].clusterness == pytest.approx(58.00, abs=5e-3)
    assert res.datasets["kermits"].score == pytest.approx(95.23, abs=5e-3)


@needs_toy
def test_toy_fb82_gt_is_100() -> None:
    res = score_files(TOY / "train_labels.csv", TOY / "train_thresholds.csv", TOY / "train_labels.csv")
    assert res.score == pytest.approx(100.0, abs=1e-9)


@needs_toy
@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("submission_bad_0.csv", "800A.jpg' does not belong"),
        ("submission_bad_1.csv", "'kermits' misses"),
        ("gt_bad.csv", "duplicate image"),
    ],
)
def test_toy_fb82_rejected(name: str, match: str) -> None:
    path = TOY / "submissions" / name
    with pytest.raises(InputError, match=match) as ei:
        score_files(TOY / "train_labels.csv", TOY / "train_thresholds.csv", path)
    assert ei.value.path == str(path)
