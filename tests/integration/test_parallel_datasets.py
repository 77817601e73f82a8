"""Datasets reconstructed in parallel (pipeline ``jobs``): same poses as one at a time, and an error elsewhere does
not throw away a reconstruction that was already under way."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from imc_core.data import DataRoot
from imc_core.pipeline import run_pipeline
from imc_core.runs import load_run
from imc_core.submission import read_pose_csv

FAST = ["features.max_keypoints=2048", "features.resize=0"]


@pytest.fixture(scope="module")
def two_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imc_core.synth import BUNDLED, generate

    conf = replace(BUNDLED, seed=5, datasets=2, scenes_per_dataset=1, images_per_scene=7, outliers_per_dataset=1,
                   width=384, height=288, roll_fraction=0.0)
    return generate(tmp_path_factory.mktemp("synth2") / "root", conf)


def _poses(run_dir: Path) -> tuple[list[str], np.ndarray]:
    sub = read_pose_csv(run_dir / "submission.csv")
    cols = [c for c in sub.columns if c.startswith("r") and c[1:].isdigit()] + ["tx", "ty", "tz"]
    return [f"{d}/{s}/{i}" for d, s, i in zip(sub["dataset"], sub["scene"], sub["image"], strict=True)], \
        sub[cols].to_numpy()


def test_parallel_reconstructions_give_the_same_poses(two_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runs = {}
    for jobs in (1, 2):
        monkeypatch.setenv("IMC_CACHE_DIR", str(tmp_path / f"cache{jobs}"))  # each run maps for real
        runs[jobs] = run_pipeline(two_root, variant="default", overrides=FAST, out=tmp_path / f"jobs{jobs}",
                                  jobs=jobs, raise_errors=True)
    one, two = load_run(runs[1]), load_run(runs[2])
    assert one.meta["jobs"] == 1 and two.meta["jobs"] == 2
    assert "up to 2 reconstructions at once" in two.log
    assert two.scores["score"] >= 80.0, two.log
    names1, poses1 = _poses(runs[1])
    names2, poses2 = _poses(runs[2])
    assert names1 == names2
    np.testing.assert_array_equal(poses1, poses2)
    # every dataset's reconstruction log is one block, not interleaved with the other dataset's lines
    log = [line.split("] ", 1)[1] for line in two.log.splitlines()]
    for ds in two.meta["datasets"]:
        start = next(k for k, line in enumerate(log) if line.startswith(f"[{ds}]") and "candidate pairs" in line)
        end = next(k for k, line in enumerate(log) if line.startswith(f"[{ds}]") and "cluster(s)" in line)
        assert start < end and all(line.startswith(f"[{ds}] ") for line in log[start:end + 1])


def test_an_error_in_a_later_dataset_keeps_the_earlier_reconstruction(two_root: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    shutil.copytree(two_root, root)
    first, second = DataRoot(root).train_datasets()
    for broken in sorted((root / "train" / second).iterdir()):  # (one alone is left out: every one fails it)
        broken.write_bytes(b"not an image")
    monkeypatch.setenv("IMC_CACHE_DIR", str(tmp_path / "cache"))
    failed = load_run(run_pipeline(root, variant="default", overrides=FAST, out=tmp_path / "failed", jobs=2))
    assert failed.status == "failed" and "images cannot be used" in failed.meta["error"]
    # the first dataset's reconstruction, submitted before the second dataset failed, was finished and cached
    again = load_run(run_pipeline(root, datasets=[first], variant="default", overrides=FAST,
                                  out=tmp_path / "again", jobs=2, raise_errors=True))
    cache = again.timings["cache"][first]
    assert (cache["features"], cache["matching"], cache["reconstruction"]) == ("hit", "hit", "hit")


def test_scenes_of_one_dataset_map_side_by_side_with_the_same_poses(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from imc_core.synth import BUNDLED, generate

    conf = replace(BUNDLED, seed=6, datasets=1, scenes_per_dataset=2, images_per_scene=6, outliers_per_dataset=1,
                   width=384, height=288, roll_fraction=0.0)
    root = generate(tmp_path / "root", conf)
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # one dataset, two cores: its components get both
    runs = {}
    for split in ("true", "false"):
        monkeypatch.setenv("IMC_CACHE_DIR", str(tmp_path / f"cache-{split}"))
        runs[split] = run_pipeline(root, variant="default", out=tmp_path / f"components-{split}", jobs=1,
                                   overrides=[*FAST, f"reconstruction.map_components={split}"], raise_errors=True)
    side, whole = load_run(runs["true"]), load_run(runs["false"])
    assert "2 components of ≥ 3 images in the match graph (6, 6 images), mapped side by side, 2 at a time" in side.log
    assert "mapped side by side" not in whole.log
    assert side.scores["score"] >= 80.0, side.log
    names1, poses1 = _poses(runs["true"])
    names2, poses2 = _poses(runs["false"])
    assert names1 == names2
    np.testing.assert_array_equal(poses1, poses2)
