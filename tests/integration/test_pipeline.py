"""The whole pipeline on a tiny synthetic benchmark: score, cache reuse, determinism, failures, test mode."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imc_core.errors import Cancelled
from imc_core.pipeline import run_pipeline
from imc_core.runs import load_run
from imc_core.submission import read_pose_csv

FAST = ["features.max_keypoints=2048", "features.resize=0"]


def own_warnings(run: object) -> list[str]:
    """A run's warnings but the notes on FAST's keypoint cap (COLMAP's SIFT keeps more than 2,048 on some synthetic
    images, and the run says so: test_a_keypoint_cap_that_does_nothing_is_named)."""
    return [w for w in run.meta["warnings"] if "features.max_keypoints = " not in w]


@pytest.fixture(scope="module")
def first_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("IMC_CACHE_DIR", str(cache))
    try:
        run_dir = run_pipeline(tiny_root, variant="default", overrides=FAST,
                               out=tmp_path_factory.mktemp("runs") / "first", raise_errors=True)
    finally:
        mp.undo()
    return run_dir, cache


def test_a_prepared_run_keeps_its_launch_time(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A run the dashboard queued read as created when its pipeline started (a queued seed run was listed a minute
    after a run launched later, and a run's time changed in Results as it started): ``created`` is the launch,
    ``started`` the pipeline's start."""
    from imc_core.runs import LAUNCH_TOKEN_ENV, RunWriter

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))  # (every stage cached: no work)
    monkeypatch.setenv(LAUNCH_TOKEN_ENV, "t0k")
    prepared = tmp_path / "queued"
    RunWriter(prepared).write_meta(id="queued", created="2026-01-02T03:04:05+00:00", status="queued",
                                   launcher="dashboard", launch_token="t0k")
    meta = load_run(run_pipeline(tiny_root, variant="default", overrides=FAST, out=prepared)).meta
    assert meta["status"] == "done" and meta["created"] == "2026-01-02T03:04:05+00:00"
    assert meta["started"] > meta["created"] and meta["finished"] >= meta["started"]
    own = load_run(run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "cli")).meta
    assert own["created"] == own["started"]  # (a run of its own starts when it is made)


def test_default_variant_scores_well_on_synthetic(first_run: tuple[Path, Path]) -> None:
    run = load_run(first_run[0])
    assert run.status == "done", run.log
    assert run.scores["score"] >= 80.0, run.log
    # one ground-truth hash per scored dataset (Compare tells a copy of the same data by it)
    assert set(run.meta["gt_hashes"]) == set(run.scores["datasets"]) and all(
        len(h) == 64 for h in run.meta["gt_hashes"].values())
    # the code that made it (after an upgrade, runs of one variant differed without a word)
    from imc_core import __version__

    assert run.meta["code"]["version"] == __version__
    for name in ("config.toml", "submission.csv", "scores.json", "per_image.csv", "scenes.csv", "timings.json",
                 "log.txt", "alignments.json"):
        assert (run.path / name).is_file(), name
    sub = read_pose_csv(run.path / "submission.csv")
    assert not sub.duplicated(["dataset", "image"]).any()
    models = list((run.path / "models").rglob("images.bin"))
    assert models, "COLMAP models must be written"
    import pycolmap

    assert pycolmap.Reconstruction(models[0].parent).num_reg_images() >= 3


def test_mapping_change_reuses_features_and_matches(first_run: tuple[Path, Path], tiny_root: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, cache = first_run
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    again = run_pipeline(tiny_root, variant="default", overrides=FAST + ["reconstruction.min_model_size=4"],
                         out=tmp_path / "again", raise_errors=True)
    timings = load_run(again).timings
    for ds, stages in timings["cache"].items():
        assert stages["features"] == "hit" and stages["matching"] == "hit", stages
        assert stages["reconstruction"] == "miss"
    third = run_pipeline(tiny_root, variant="default", overrides=FAST + ["matching.min_matches=20"],
                         out=tmp_path / "third", raise_errors=True)
    for stages in load_run(third).timings["cache"].values():
        assert stages["features"] == "hit" and stages["matching"] == "miss"


def test_mapping_change_reuses_the_verified_database(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, cache = first_run
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    change = FAST + ["reconstruction.abs_pose_min_num_inliers=20"]
    reused = run_pipeline(tiny_root, variant="default", overrides=change, out=tmp_path / "reused", raise_errors=True)
    assert "database import and geometric verification: reused" in load_run(reused).log
    steps = load_run(reused).timings["reconstruction_steps"]
    assert set(steps) == set(load_run(reused).timings["datasets"])
    for per in steps.values():
        assert "verified database reused" in per and "geometric verification" not in per and per["mapping"] > 0
    # a cache hit of the whole reconstruction shows the steps of the run that computed it
    again = run_pipeline(tiny_root, variant="default", overrides=change, out=tmp_path / "again", raise_errors=True)
    assert {s["reconstruction"] for s in load_run(again).timings["cache"].values()} == {"hit"}
    assert load_run(again).timings["reconstruction_steps"] == steps
    # the same config verified afresh (features and matches copied, no database) gives the same poses
    fresh_cache = tmp_path / "fresh-cache"
    for stage in ("features", "matching"):
        shutil.copytree(cache / stage, fresh_cache / stage)
    monkeypatch.setenv("IMC_CACHE_DIR", str(fresh_cache))
    fresh = run_pipeline(tiny_root, variant="default", overrides=change, out=tmp_path / "fresh", raise_errors=True)
    assert "reused" not in load_run(fresh).log and "geometric verification:" in load_run(fresh).log
    assert all("geometric verification" in per for per in load_run(fresh).timings["reconstruction_steps"].values())
    assert_same_poses(reused, fresh)
    # a verification key is part of the database's key
    verify = run_pipeline(tiny_root, variant="default", overrides=change + ["reconstruction.verify_max_error=3"],
                          out=tmp_path / "verify", raise_errors=True)
    assert "reused" not in load_run(verify).log


def _reused_mapping(run: object) -> list[str]:
    """The mapped-model folders a run's reconstructions read (their log's "mapping: reused (<folder>)" lines)."""
    return re.findall(r"mapping: reused \(([^)]+)\)", run.log)


def test_a_final_adjustment_change_reuses_the_mapped_models(first_run: tuple[Path, Path], tiny_root: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, cache = first_run
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    change = FAST + ["reconstruction.refine_loss_scale=0.8"]  # (a value no other test sets: the cache is shared)
    reused = load_run(run_pipeline(tiny_root, variant="default", overrides=change, out=tmp_path / "reused",
                                   raise_errors=True))
    assert reused.status == "done" and len(_reused_mapping(reused)) == len(reused.timings["datasets"])
    assert all(c["reconstruction"] == "miss" for c in reused.timings["cache"].values())
    for per in reused.timings["reconstruction_steps"].values():
        assert list(per) == ["inputs read", "verified database reused", "mapped models reused",
                             "final bundle adjustment", "models written"]
    assert "refined (cauchy loss, 0.8 px)" in reused.log
    # the same config mapped afresh (features and matches copied, nothing else) gives the same poses bit for bit
    fresh_cache = tmp_path / "fresh-cache"
    for stage in ("features", "matching"):
        shutil.copytree(cache / stage, fresh_cache / stage)
    monkeypatch.setenv("IMC_CACHE_DIR", str(fresh_cache))
    fresh = load_run(run_pipeline(tiny_root, variant="default", overrides=change, out=tmp_path / "fresh",
                                  raise_errors=True))
    assert _reused_mapping(fresh) == []
    assert all("mapping" in per for per in fresh.timings["reconstruction_steps"].values())
    assert_same_poses(reused.path, fresh.path)
    # and no cache at all, too
    nocache = run_pipeline(tiny_root, variant="default", overrides=change, out=tmp_path / "nocache", use_cache=False,
                           raise_errors=True)
    assert_same_poses(reused.path, nocache)
    # a mapper key maps again
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    remap = load_run(run_pipeline(tiny_root, variant="default",
                                  overrides=change + ["reconstruction.init_num_trials=150"], out=tmp_path / "remap",
                                  raise_errors=True))
    assert _reused_mapping(remap) == [] and "database import and geometric verification: reused" in remap.log


def test_damaged_mapped_models_are_dropped_and_mapped_again(first_run: tuple[Path, Path], tiny_root: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, _ = _cache_copy(first_run, tmp_path, monkeypatch)
    one = load_run(run_pipeline(tiny_root, variant="default",
                                overrides=[*FAST, "reconstruction.refine_loss_scale=0.6"], out=tmp_path / "one",
                                raise_errors=True))
    (folder,) = _reused_mapping(one)
    points = cache / "mapping" / folder / "models" / "0" / "points3D.bin"
    points.write_bytes(points.read_bytes()[:100])
    two = load_run(run_pipeline(tiny_root, variant="default",
                                overrides=[*FAST, "reconstruction.refine_loss_scale=0.65"], out=tmp_path / "two",
                                raise_errors=True))
    assert two.status == "done" and _reused_mapping(two) == []
    (warned,) = [w for w in own_warnings(two) if "mapped models" in w]
    assert f"the cached mapped models ({folder}) are dropped, and mapped again when a reconstruction needs them: " \
           "models/0/points3D.bin changed after it was built" in warned
    assert (cache / "mapping" / folder / "DONE").is_file()  # mapped again and kept
    three = load_run(run_pipeline(tiny_root, variant="default",
                                  overrides=[*FAST, "reconstruction.refine_loss_scale=0.7"], out=tmp_path / "three",
                                  raise_errors=True))
    assert _reused_mapping(three) == [folder] and own_warnings(three) == []
    assert_same_poses(one.path, load_run(run_pipeline(
        tiny_root, variant="default", overrides=[*FAST, "reconstruction.refine_loss_scale=0.6"],
        out=tmp_path / "four", use_cache=False, raise_errors=True)).path)


def test_matcher_threads_follow_the_determinism_switch(first_run: tuple[Path, Path], tiny_root: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``matching.colmap_threads = 0`` (auto): one thread in a deterministic run, all cores otherwise, and the two
    never share a matching artifact."""
    run_dir, cache = first_run
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))

    def matching_conf(run: Path) -> dict:
        (stages,) = json.loads((run / "artifacts.json").read_text()).values()
        return json.loads((Path(stages["matching"]) / "DONE").read_text())["conf"]

    assert matching_conf(run_dir)["colmap_threads"] == 1
    fast = run_pipeline(tiny_root, variant="default", overrides=FAST + ["reconstruction.deterministic=false"],
                        out=tmp_path / "fast", raise_errors=True)
    for stages in load_run(fast).timings["cache"].values():
        assert stages["features"] == "hit" and stages["matching"] == "miss", stages
    assert matching_conf(fast)["colmap_threads"] == -1
    # each run's sample of the mapper's randomness stays its own: a second run replaced the folder the first one's
    # artifacts.json named (its pair viewer and models then showed the other run's)
    again = run_pipeline(tiny_root, variant="default", overrides=FAST + ["reconstruction.deterministic=false"],
                         out=tmp_path / "again", raise_errors=True)

    def reconstruction(run: Path) -> Path:
        (stages,) = json.loads((run / "artifacts.json").read_text()).values()
        return Path(stages["reconstruction"])

    assert reconstruction(fast) != reconstruction(again) and reconstruction(fast).is_dir()
    kept = read_pose_csv(reconstruction(fast) / "poses.csv")
    assert list(kept["image"]) == list(read_pose_csv(fast / "submission.csv")["image"])
    assert_same_poses_frame(kept, read_pose_csv(fast / "submission.csv"))


def assert_same_poses(run_a: Path, run_b: Path) -> None:
    assert_same_poses_frame(read_pose_csv(run_a / "submission.csv"), read_pose_csv(run_b / "submission.csv"))


def assert_same_poses_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a["image"]) == list(b["image"]) and list(a["scene"]) == list(b["scene"])
    cols = [c for c in a.columns if c.startswith("r") and c[1:].isdigit()] + ["tx", "ty", "tz"]
    np.testing.assert_array_equal(a[cols].to_numpy(), b[cols].to_numpy())


def test_deterministic_runs_give_identical_poses(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, cache = first_run
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    # no cache for the reconstruction: the mapper really runs again
    again = run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "det", use_cache=False,
                         raise_errors=True)
    assert "reused" not in load_run(again).log
    assert_same_poses(run_dir, again)


def test_no_matches_gives_all_outliers_not_a_crash(tiny_root: Path, isolated_dirs: dict, tmp_path: Path) -> None:
    run_dir = run_pipeline(tiny_root, variant="default", overrides=FAST + ["matching.min_matches=100000"],
                           out=tmp_path / "fail")
    run = load_run(run_dir)
    assert run.status == "done"
    sub = read_pose_csv(run_dir / "submission.csv")
    assert (sub["scene"] == "outliers").all()
    assert run.scores["score"] == 0.0
    assert "fail" in run.log.lower() or "no " in run.log.lower()


def test_cancel_keeps_status_and_cache(tiny_root: Path, isolated_dirs: dict, tmp_path: Path) -> None:
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    run_dir = run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "c", should_cancel=cancel)
    run = load_run(run_dir)
    assert run.status == "cancelled"
    assert not list(isolated_dirs["cache"].rglob(".tmp-*"))
    with pytest.raises(Cancelled):
        run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "c2", should_cancel=lambda: True,
                     raise_errors=True)


def test_settings_no_stage_reads_keep_every_cached_stage(first_run: tuple[Path, Path], tiny_root: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`features.root_sift=false` with COLMAP's SIFT changed nothing but recomputed every stage (33 s instead of
    under 1 s on the synthetic set), without a word."""
    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    run = load_run(run_pipeline(tiny_root, overrides=[*FAST, "features.root_sift=false", "matching.fp16=true"],
                                out=tmp_path / "unread", raise_errors=True))
    cache = run.timings["cache"][next(iter(run.timings["cache"]))]
    assert (cache["features"], cache["matching"], cache["reconstruction"]) == ("hit", "hit", "hit")
    assert [w.split()[0] for w in own_warnings(run)] == ["features.root_sift", "matching.fp16"]
    assert (run.path / "submission.csv").read_bytes() == (first_run[0] / "submission.csv").read_bytes()


def test_devices_and_jobs_are_checked_before_any_run_folder(tiny_root: Path, isolated_dirs: dict,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`matching.device=cuda` without CUDA failed after the features were built (or passed while the matches were
    cached); a bad $IMC_JOBS left a failed run folder. Both are now config errors naming the setting."""
    import torch

    from imc_core.cli import main
    from imc_core.errors import ConfigError, InputError

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^matching\.device='cuda' but CUDA is not available here"):
            run_pipeline(tiny_root, overrides=[*FAST, "matching.method=nn", "matching.device=cuda"])
        # COLMAP's matcher reads its device too (it failed after the features, or passed while they were cached)
        with pytest.raises(ConfigError, match=r"^matching\.device='cuda' but CUDA is not available here"):
            run_pipeline(tiny_root, overrides=[*FAST, "features.method=colmap_sift", "matching.method=colmap",
                                               "matching.device=cuda"])
        # a weight file cut short is refused before any folder (it failed once the features were extracted)
        from imc_core.errors import WeightsError
        from imc_core.weights import local_feature_weights

        wdir = isolated_dirs["runs"].parent / "weights_cut"
        wdir.mkdir()
        (wdir / "aliked-n16.pth").write_bytes(local_feature_weights("aliked-n16").read_bytes()[:50_000])
        monkeypatch.setenv("IMC_WEIGHTS_DIR", str(wdir))
        with pytest.raises(WeightsError, match="aliked-n16.pth is damaged"):
            run_pipeline(tiny_root, variant="aliked_lightglue", overrides=FAST)
        assert not isolated_dirs["runs"].exists()
        # DISK's, in torch's older pickle format: loaded before the run (it failed after its folder was made)
        (wdir / "disk-depth-save.pth").write_bytes(local_feature_weights("disk").read_bytes()[:1000])
        with pytest.raises(WeightsError, match="disk-depth-save.pth is damaged"):
            run_pipeline(tiny_root, variant="disk_lightglue", overrides=FAST)
        assert not isolated_dirs["runs"].exists()
        monkeypatch.delenv("IMC_WEIGHTS_DIR")
        # a device of a stage this config does not run is not needed (it is reported as not read instead)
        assert run_pipeline(tiny_root, overrides=[*FAST, "features.device=cuda"]).is_dir()
        shutil.rmtree(isolated_dirs["runs"])
        # $IMC_DEVICE is read by every stage's "auto", COLMAP's too: it left a failed run folder
        monkeypatch.setenv("IMC_DEVICE", "cuda")
        with pytest.raises(ConfigError, match=r"^\$IMC_DEVICE='cuda' but CUDA is not available here"):
            run_pipeline(tiny_root, overrides=FAST)
        monkeypatch.setenv("IMC_DEVICE", "gpu")
        assert main(["run", "--data-root", str(tiny_root), "--quiet"]) == 2
        assert not isolated_dirs["runs"].exists()
        monkeypatch.delenv("IMC_DEVICE")
    monkeypatch.setenv("IMC_JOBS", "abc")
    with pytest.raises(ConfigError, match="IMC_JOBS must be a positive integer, got 'abc'"):
        run_pipeline(tiny_root, overrides=FAST)
    monkeypatch.setenv("IMC_JOBS", "0")
    assert main(["run", "--data-root", str(tiny_root), "--quiet"]) == 2
    assert not isolated_dirs["runs"].exists()
    monkeypatch.delenv("IMC_JOBS")
    # the threads of COLMAP's extraction and the matcher's processes: a failed run folder ("invalid literal for
    # int()"), or a failure once matching began
    for name, value, said in (("IMC_COLMAP_THREADS", "x", "must be -1 (every core) or a positive integer, got 'x'"),
                              ("IMC_COLMAP_THREADS", "0", "must be -1 (every core) or a positive integer, got '0'"),
                              ("IMC_MATCH_PROCESSES", "-3", "must be a positive integer, got '-3'")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=re.escape(f"{name} {said}")):
            run_pipeline(tiny_root, overrides=FAST)
        assert not isolated_dirs["runs"].exists()
        monkeypatch.delenv(name)
    # a cache "folder" that is a file: NotADirectoryError after the run folder was made
    not_a_folder = isolated_dirs["runs"].parent / "cache-file"
    not_a_folder.write_text("not a folder")
    monkeypatch.setenv("IMC_CACHE_DIR", str(not_a_folder))
    with pytest.raises(InputError, match=r"the cache folder \(\$IMC_CACHE_DIR\) is not a folder"):
        run_pipeline(tiny_root, overrides=FAST)
    assert not isolated_dirs["runs"].exists()
    # and one under a file (it made the run folder, then failed with "features: Not a directory"; a tester)
    monkeypatch.setenv("IMC_CACHE_DIR", str(not_a_folder / "sub" / "cache"))
    with pytest.raises(InputError, match=re.escape(f"cannot be made: {not_a_folder} is a file")):
        run_pipeline(tiny_root, overrides=FAST)
    assert not isolated_dirs["runs"].exists()


def test_a_run_lists_as_running_while_it_runs(tiny_root: Path, isolated_dirs: dict) -> None:
    """The pipeline records its pid with the process's start time, so `runs` knows it live whatever the command line
    (here pytest's, as for a notebook or the `imc-lab` script: it names neither the run folder nor the package)."""
    from imc_core.runs import list_runs

    seen: list[str] = []

    def look() -> bool:
        seen.extend(list_runs(isolated_dirs["runs"])["status"])
        return False

    run_dir = run_pipeline(tiny_root, variant="default", overrides=FAST, should_cancel=look)
    assert seen and set(seen) == {"running"}
    assert list_runs(isolated_dirs["runs"])["status"].tolist() == ["done"]
    assert json.loads((run_dir / "run.json").read_text())["pid_start"] > 0


def test_bad_config_fails_cleanly(tiny_root: Path, isolated_dirs: dict, tmp_path: Path) -> None:
    from imc_core.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such"):
        run_pipeline(tiny_root, overrides=["features.no_such=1"], out=tmp_path / "x")


def test_test_layout_writes_kaggle_submission(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    root = tmp_path / "kaggle"
    shutil.copytree(tiny_root / "train", root / "test")
    run_dir = run_pipeline(root, overrides=FAST, out=tmp_path / "t", raise_errors=True)
    sub = (run_dir / "submission.csv").read_text().splitlines()
    assert sub[0].startswith("image_id,dataset,scene,image,rotation_matrix,translation_vector")
    first = sub[1].split(",")
    assert first[0] == f"{first[1]}_{first[3]}_public"
    assert not (run_dir / "scores.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["split"] == "test"

    # a data warning (an image the sample submission does not list) is said once, not once more at the end
    ds = sub[1].split(",")[1]
    (root / "sample_submission.csv").write_text("\n".join(ln for ln in sub if ln.split(",")[3] != first[3]) + "\n")
    with pytest.warns(UserWarning) as said:
        run_pipeline(root, overrides=FAST, out=tmp_path / "t2", raise_errors=True)
    assert [str(w.message) for w in said].count(f"{root / 'test' / ds}: 1 image(s) not in sample_submission.csv, "
                                                 f"ignored: {first[3]}") == 1

    # a folder under test/ that the sample has no rows for is not run (its images went into the submission under
    # made-up image_ids), and the run says so
    shutil.copytree(root / "test" / ds, root / "test" / "extra")
    with pytest.warns(UserWarning):  # (the image left out above, again)
        run_dir = run_pipeline(root, overrides=FAST, out=tmp_path / "t3", raise_errors=True)
    assert {ln.split(",")[1] for ln in (run_dir / "submission.csv").read_text().splitlines()[1:]} == {ds}
    warnings = json.loads((run_dir / "run.json").read_text())["warnings"]
    assert [w for w in warnings if "folder(s) under test/" in w] == [
        f"{root / 'sample_submission.csv'} has no rows for 1 folder(s) under test/, not run (a Kaggle submission "
        "holds the sample's rows and no others): extra"]


def test_kaggle_layout_runs_either_split(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kaggle download has train/ (with labels) and test/: auto takes train, ``split="test"`` the test split."""
    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    root = tmp_path / "kaggle"
    shutil.copytree(tiny_root, root)
    shutil.copytree(tiny_root / "train", root / "test")
    train = run_pipeline(root, overrides=FAST, out=tmp_path / "train", raise_errors=True)
    assert load_run(train).meta["split"] == "train" and (train / "scores.json").is_file()
    test = run_pipeline(root, overrides=FAST, out=tmp_path / "test", split="test", raise_errors=True)
    assert load_run(test).meta["split"] == "test" and not (test / "scores.json").exists()
    assert (test / "submission.csv").read_text().startswith("image_id,")


def test_bad_input_makes_no_run_folder_and_never_reuses_one(first_run: tuple[Path, Path], tiny_root: Path,
                                                             isolated_dirs: dict, tmp_path: Path) -> None:
    from imc_core.errors import ConfigError, InputError
    from imc_core.runs import RunWriter

    with pytest.raises(InputError, match="no train dataset 'nope'"):
        run_pipeline(tiny_root, datasets=["nope"], overrides=FAST)
    with pytest.raises(InputError, match="data root not found"):
        run_pipeline(tmp_path / "missing", overrides=FAST)
    assert not isolated_dirs["runs"].exists()  # no failed run folders littering the history
    done = first_run[0]
    before = {p.name: p.stat().st_mtime_ns for p in done.iterdir()}
    with pytest.raises(InputError, match="already holds a run"):
        run_pipeline(tiny_root, overrides=FAST, out=done)
    assert {p.name: p.stat().st_mtime_ns for p in done.iterdir()} == before
    # a folder the dashboard prepared learns why its run never started
    prepared = tmp_path / "prepared"
    RunWriter(prepared).write_meta(id="prepared", status="running", launcher="dashboard")
    with pytest.raises(ConfigError, match="clustering.method"):
        run_pipeline(tiny_root, overrides=["clustering.method=kmeans"], out=prepared)
    meta = load_run(prepared).meta
    assert meta["status"] == "failed" and "clustering.method" in meta["error"]


def test_data_that_cannot_be_scored_fails_before_any_work(tiny_root: Path, isolated_dirs: dict,
                                                          tmp_path: Path) -> None:
    """Missing thresholds, a scene without thresholds or a labelled image missing on disk used to surface after
    the whole pipeline (an AttributeError, an error naming ``<input>``): now exit-2 errors naming the file, before
    any run folder; a root without labels runs and says it was not scored."""
    from imc_core.errors import InputError

    def copy(name: str) -> Path:
        root = tmp_path / name
        shutil.copytree(tiny_root, root)
        return root

    no_thresholds = copy("no_thresholds")
    (no_thresholds / "train_thresholds.csv").unlink()
    with pytest.raises(InputError, match=r"train_thresholds\.csv: not found: the labels"):
        run_pipeline(no_thresholds, overrides=FAST)
    one_scene_short = copy("one_scene_short")
    thr = one_scene_short / "train_thresholds.csv"
    lines = thr.read_text().splitlines()
    thr.write_text("\n".join(lines[:-1]) + "\n")
    ds, scene = lines[-1].split(",")[:2]
    with pytest.raises(InputError, match=f"train_thresholds\\.csv: no thresholds for scene '{scene}' of dataset "
                                         f"'{ds}'"), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_pipeline(one_scene_short, overrides=FAST)
    assert not [w for w in seen if "no thresholds" in str(w.message)]  # the error alone, not a warning before it
    image_gone = copy("image_gone")
    victim = next((image_gone / "train").rglob("*.png"))
    victim.unlink()
    with pytest.raises(InputError, match=f"train_labels\\.csv:[0-9]+: image not found: .*{victim.name}"):
        run_pipeline(image_gone, overrides=FAST)
    assert not isolated_dirs["runs"].exists()  # no failed run folders littering the history
    cache = isolated_dirs["cache"]
    assert not cache.exists() or not any(cache.rglob("DONE"))  # and no work done

    unlabelled = copy("unlabelled")
    (unlabelled / "train_labels.csv").unlink()
    first = sorted(p.name for p in (unlabelled / "train").iterdir())[0]
    run = load_run(run_pipeline(unlabelled, datasets=[first], overrides=FAST,
                                out=tmp_path / "unlabelled_run", raise_errors=True))
    assert run.status == "done" and not run.scores
    assert own_warnings(run) == [f"not scored: {unlabelled / 'train_labels.csv'} not found (poses and clusters "
                                    "only)"]


def test_a_dataset_the_labels_do_not_name_is_not_scored(tiny_root: Path, isolated_dirs: dict,
                                                        tmp_path: Path) -> None:
    """It was scored 0.00 (score, mAA and clusterness) beside the labelled ones, as if the pipeline had failed."""
    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    labelled = sorted(p.name for p in (root / "train").iterdir())[0]
    shutil.copytree(root / "train" / labelled, root / "train" / "extra")
    with pytest.warns(UserWarning, match="no rows for dataset 'extra'"):
        run = load_run(run_pipeline(root, datasets=["extra"], overrides=FAST, raise_errors=True))
    assert run.status == "done" and run.scores is None and run.submission is not None
    assert any(w.startswith("not scored: ") and "(extra)" in w for w in run.meta["warnings"])
    with pytest.warns(UserWarning, match="no rows for dataset 'extra'"):
        both = load_run(run_pipeline(root, datasets=[labelled, "extra"], overrides=FAST, raise_errors=True))
    assert list(both.scores["datasets"]) == [labelled] and both.scores["score"] > 0
    assert set(both.submission["dataset"]) == {labelled, "extra"}


def test_labels_of_a_dataset_without_a_folder_are_a_warning(first_run: tuple[Path, Path], tiny_root: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    labels = root / "train_labels.csv"
    header, first_row = labels.read_text().splitlines()[:2]
    labels.write_text(labels.read_text() + "left_behind," + first_row.split(",", 1)[1] + "\n")
    run = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "r", raise_errors=True))
    assert run.status == "done" and own_warnings(run) == [
        f"{labels} labels 1 dataset(s) that train/ has no folder for, not run: left_behind"]
    (folder,) = [p.name for p in (root / "train").iterdir() if p.is_dir()]  # a name differing in case only
    labels.write_text(labels.read_text() + folder.upper() + "," + first_row.split(",", 1)[1] + "\n")
    run = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "r2", raise_errors=True))
    assert own_warnings(run) == [
        f"{labels} labels 2 dataset(s) that train/ has no folder for, not run: {folder.upper()} (train/ has "
        f"{folder}: names are case-sensitive), left_behind"]


def test_settings_no_stage_reads_are_flagged(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``pairs.k`` or ``global_descriptors.models`` set on an exhaustive run change nothing: the run says so."""
    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    extra = ["pairs.k=5", 'global_descriptors.models=["facebook/dinov2-base"]']
    run = load_run(run_pipeline(tiny_root, overrides=FAST + extra, out=tmp_path / "w", raise_errors=True))
    warnings = own_warnings(run)
    assert [w.split()[0] for w in warnings] == ["global_descriptors.models", "pairs.k"]
    assert all(f"WARNING: {w}" in run.log for w in warnings)
    assert own_warnings(load_run(first_run[0])) == []


def _cli_run_at_work(tiny_root: Path, out: Path, stderr: int) -> subprocess.Popen[bytes]:
    """A `run --no-cache` of ``tiny_root`` into ``out`` in a child process, once it has begun (its progress.json)."""
    import os
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "imc_core", "run", "--data-root", str(tiny_root), "--out", str(out),
                             "--no-cache", "--quiet", "--set", "features.max_keypoints=2048"],
                            stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ))
    deadline = time.monotonic() + 120
    while not (out / "progress.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_cli_run_sigterm_ends_cancelled(tiny_root: Path, isolated_dirs: dict, tmp_path: Path) -> None:
    import signal

    out = tmp_path / "term"
    proc = _cli_run_at_work(tiny_root, out, subprocess.DEVNULL)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
    meta = json.loads((out / "run.json").read_text())
    # (a SIGTERM read as the dashboard's Cancel did, with no why)
    assert (meta["status"], meta["error"], rc) == ("cancelled", "terminated (SIGTERM)", 1)


def test_cli_run_whose_folder_is_removed_stops(tiny_root: Path, isolated_dirs: dict, tmp_path: Path) -> None:
    """A run whose folder was removed while it ran made the folder again (every write makes its parent) and
    finished "done" there without its config.toml, exit 0: it stops, says so, and exits 1."""
    import time

    out = tmp_path / "removed"
    proc = _cli_run_at_work(tiny_root, out, subprocess.PIPE)
    deadline = time.monotonic() + 120
    while out.exists() and time.monotonic() < deadline:  # (files may land while it is deleted)
        shutil.rmtree(out, ignore_errors=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert f"{out}: the run folder was removed while the run went on" in err.decode()
    meta = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    assert meta.get("status") != "done"


def test_cli_run_ctrl_c_ends_cancelled(tiny_root: Path, isolated_dirs: dict, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) left the run saying "running" for ever (``runs rm`` then refused it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "int"
    # (SIGINT restored in the child: a suite started in the background from a script inherits it ignored, and the
    # run then never saw the Ctrl-C and ended "done")
    proc = subprocess.Popen([sys.executable, "-m", "imc_core", "run", "--data-root", str(tiny_root), "--out", str(out),
                             "--no-cache", "--quiet", "--set", "features.max_keypoints=2048"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "progress.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    meta = json.loads((out / "run.json").read_text())
    # 130, or killed by SIGINT (a shell reads 130 either way): CPython 3.11 ends the process with SIGINT when the
    # KeyboardInterrupt was raised inside eval'd code (a namedtuple built by an import), even though it was handled
    assert meta["status"] == "cancelled" and meta["error"] == "interrupted (Ctrl-C)"
    assert proc.returncode in (130, -signal.SIGINT)
    assert "interrupted (Ctrl-C); cached stage artifacts are kept" in err
    assert "Traceback" not in err.split("Exception ignored in")[0]  # (one the interpreter dropped: see below)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (the dropped KeyboardInterrupt)
def test_cli_run_a_ctrl_c_the_interpreter_drops_still_ends_the_run(tiny_root: Path, isolated_dirs: dict,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C whose KeyboardInterrupt lands in a callback whose errors Python ignores (an import's weak-reference
    callback) was dropped, and the run went on to "done": the CLI remembers it and ends the run as any Ctrl-C."""
    import gc
    import os
    import signal
    import weakref

    from imc_core import cli
    from imc_core.stages import pairs

    make_pairs = pairs.make_pairs

    def interrupted_in_a_callback(*args: object, **kwargs: object) -> object:
        class Thing:
            pass

        thing = Thing()
        ref = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGINT))
        del thing  # the callback runs here; Python prints "Exception ignored in ..." and goes on
        gc.collect()
        assert ref() is None
        return make_pairs(*args, **kwargs)

    monkeypatch.setattr(pairs, "make_pairs", interrupted_in_a_callback)
    out = tmp_path / "dropped"
    # Python's own Ctrl-C handler, as in a terminal: a suite started in the background inherits SIGINT ignored,
    # and the CLI leaves an ignored SIGINT ignored (the run then went on to "done", as it should there)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc = cli.main(["run", "--data-root", str(tiny_root), "--out", str(out), "--no-cache", "--quiet", "--json",
                       "--set", "features.max_keypoints=2048"])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    meta = json.loads((out / "run.json").read_text())
    assert (rc, meta["status"], meta["error"]) == (130, "cancelled", "interrupted (Ctrl-C)")
    said = capsys.readouterr()
    assert "interrupted (Ctrl-C); cached stage artifacts are kept" in said.err
    # --json: the one object on stdout, as for every other end of a run (a Ctrl-C printed nothing)
    (line,) = said.out.splitlines()
    assert {k: v for k, v in json.loads(line).items() if k in ("run_dir", "status", "error")} == {
        "run_dir": str(out), "status": "cancelled", "error": "interrupted (Ctrl-C)"}


def test_the_dashboard_finds_a_runs_cached_matches_without_artifacts_json(first_run: tuple[Path, Path],
                                                                          tiny_root: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """For an imported run (its artifacts.json names the exporter's paths) or one from before artifacts.json, the
    dashboard recomputes the cache keys: its copy of the key rules had drifted from the pipeline's (stage versions
    per method, the matcher's threads resolved), so the default variant's matches were never found."""
    import tomllib

    from dashboard.state import find_match_artifacts

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    run_dir = first_run[0]
    config = tomllib.loads((run_dir / "config.toml").read_text())
    for name, stages in json.loads((run_dir / "artifacts.json").read_text()).items():
        feats, matches = find_match_artifacts(config, tiny_root, name, run_dir=None)  # (the keys recomputed)
        assert (feats, matches) == (Path(stages["features"]) / "features.h5", Path(stages["matching"]) / "matches.h5")


def test_run_records_artifacts_and_verified_inliers(first_run: tuple[Path, Path]) -> None:
    from imc_core.stages.matching import read_matches
    from imc_core.stages.reconstruction import pair_inlier_matches

    run_dir, _ = first_run
    arts = json.loads((run_dir / "artifacts.json").read_text())
    (ds, stages), = arts.items()
    assert set(stages) == {"features", "matching", "reconstruction"}
    assert all((Path(p) / "DONE").is_file() for p in stages.values())
    stats = load_run(run_dir).pairs_stats
    best = stats.sort_values("n_inliers").iloc[-1]
    assert best["n_inliers"] > 0 and best["n_inliers"] <= best["n_matches"]
    m, _ = read_matches(Path(stages["matching"]) / "matches.h5", best["name0"], best["name1"])
    assert best["n_matches"] == len(m)
    inl = pair_inlier_matches(Path(stages["reconstruction"]) / "database.db", best["name0"], best["name1"])
    assert len(inl) == best["n_inliers"]
    assert {tuple(r) for r in inl.tolist()} <= {tuple(r) for r in m.tolist()}
    swapped = pair_inlier_matches(Path(stages["reconstruction"]) / "database.db", best["name1"], best["name0"])
    np.testing.assert_array_equal(swapped, inl[:, ::-1])
    assert pair_inlier_matches(Path(stages["reconstruction"]) / "database.db", best["name0"], "nope.png") is None
    # read without writing: pycolmap's Database.open wrote into the cached file, and the next run, finding its
    # checksum changed, rebuilt the reconstruction the Pairs tab had only looked at
    from imc_core.cache import files_problem

    assert files_problem(Path(stages["reconstruction"])) is None


def test_prune_unused_keeps_what_a_run_needs(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from imc_core.cache import list_artifacts, prune
    from imc_core.runs import referenced_artifacts

    run_dir, cache = first_run
    copy, runs = tmp_path / "cache", tmp_path / "runs"
    shutil.copytree(cache, copy)  # other tests' runs left artifacts of their own in it
    shutil.copytree(run_dir, runs / run_dir.name)
    before = list_artifacts(copy)
    gone = prune(copy, referenced=referenced_artifacts(runs), grace_s=0)
    kept = list_artifacts(copy)
    assert len(kept) + len(gone) == len(before)
    assert {e.stage for e in kept} == {"features", "matching", "reconstruction", "database", "mapping"}
    monkeypatch.setenv("IMC_CACHE_DIR", str(copy))
    again = run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "again", raise_errors=True)
    assert all(s[stage] == "hit" for s in load_run(again).timings["cache"].values()
               for stage in ("features", "matching", "reconstruction")), load_run(again).timings["cache"]
    remap = run_pipeline(tiny_root, variant="default", overrides=FAST + ["reconstruction.ba_global_max_refinements=3"],
                         out=tmp_path / "remap", raise_errors=True)
    assert "database import and geometric verification: reused" in load_run(remap).log


def test_images_that_cannot_be_decoded_count_as_unregistered(tiny_root: Path, isolated_dirs: dict,
                                                             tmp_path: Path) -> None:
    """One broken image failed the whole run: no submission.csv, the datasets already done lost with it (on a
    Kaggle test split, no submission at all). It is left out, named, and counts as unregistered; a dataset of
    nothing but such images still fails at once, naming them."""
    root = tmp_path / "damaged"
    shutil.copytree(tiny_root, root)
    (ds,) = [p for p in (root / "train").iterdir() if p.is_dir()]
    victims = sorted(ds.glob("*.png"))[:2]
    for v in victims:
        v.write_bytes(v.read_bytes()[:200])  # truncated
    run = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "run", raise_errors=True))
    assert run.status == "done"
    (said,) = [w for w in run.meta["warnings"] if "cannot be used" in w]
    n = len(list(ds.glob("*.png")))
    assert said.startswith(f"{ds.name}: 2 of {n} images cannot be used, so they count as unregistered (")
    assert all(f"{v.name}: unreadable" in said for v in victims) and said.endswith("; fix or remove them")
    sub = run.submission
    assert len(sub) == n and list(sub["image"]) == list(pd.read_csv(root / "train_labels.csv")["image"])
    left = sub[sub["image"].isin([v.name for v in victims])]
    assert (left["scene"] == "outliers").all() and left["r00"].isna().all()
    assert run.scores["score"] > 0  # the others were reconstructed
    # the features cached without them say it again to every run that reads them
    again = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "again", raise_errors=True))
    assert again.timings["cache"][ds.name]["features"] == "hit" and said in again.meta["warnings"]
    for v in sorted(ds.glob("*.png")):
        v.write_bytes(b"")
    every = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "none"))
    assert every.status == "failed" and f"{n} of {n} images cannot be used" in every.meta["error"]


def test_a_failed_run_keeps_the_times_of_the_datasets_it_finished(first_run: tuple[Path, Path], tiny_root: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose second dataset holds a broken image wrote ``{"datasets": {}}`` though the first one was done (and
    cached), and its log ended on a traceback for what is a plain input error."""
    import pandas as pd

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    root = tmp_path / "two"
    shutil.copytree(tiny_root, root)
    (good,) = [p.name for p in (root / "train").iterdir() if p.is_dir()]
    shutil.copytree(root / "train" / good, root / "train" / "zbad")
    for name in ("train_labels.csv", "train_thresholds.csv"):
        table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
        table = pd.concat([table, table[table["dataset"] == good].assign(dataset="zbad")])
        table.to_csv(root / name, index=False)
    victims = sorted((root / "train" / "zbad").glob("*.png"))  # (one alone is left out: every one fails it)
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:200])
    run = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "run"))
    assert run.status == "failed" and f"{len(victims)} of {len(victims)} images cannot be used" in run.meta["error"]
    assert list(run.timings["datasets"]) == [good] and run.timings["cache"][good]["features"] == "hit"
    assert f"FAILED: {run.meta['error']}" in run.log and "Traceback" not in run.log


@pytest.mark.parametrize("damage", ["log removed", "poses cut", "database emptied", "images.bin cut",
                                    "models removed"])
def test_a_damaged_cached_reconstruction_is_rebuilt(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    """A file of the cached reconstruction removed or cut short failed every later run (a missing log; poses
    short of images blamed on the run's own submission) or passed unseen (inliers read 0 from a damaged database,
    a truncated images.bin copied into the run). It is now rebuilt, and the run says why."""
    cache = tmp_path / "cache"
    shutil.copytree(first_run[1], cache)
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    # the artifact the first run used (other tests add their own to that cache)
    (used,) = json.loads((first_run[0] / "artifacts.json").read_text()).values()
    art = cache / "reconstruction" / Path(used["reconstruction"]).name
    if damage == "log removed":
        (art / "reconstruction.log").unlink()
    elif damage == "poses cut":
        lines = (art / "poses.csv").read_text().splitlines()
        (art / "poses.csv").write_text("\n".join(lines[:5]) + "\n")
    elif damage == "database emptied":
        (art / "database.db").write_bytes(b"")
    elif damage == "images.bin cut":
        images_bin = sorted((art / "models").glob("*/images.bin"))[0]
        images_bin.write_bytes(images_bin.read_bytes()[:100])
    else:
        shutil.rmtree(art / "models")
    run = load_run(run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "run", raise_errors=True))
    first = load_run(first_run[0])
    assert run.status == "done" and run.scores["score"] == pytest.approx(first.scores["score"])
    [warning] = [w for w in run.meta["warnings"] if "was rebuilt" in w]
    assert "the cached reconstruction artifact" in warning
    assert (run.path / "models").is_dir() and pd.read_csv(run.path / "pairs_stats.csv")["n_inliers"].sum() > 0


def test_two_runs_into_one_folder_at_once_are_refused(first_run: tuple[Path, Path], tiny_root: Path,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs started together with one --out both passed the empty-folder check and wrote into it together:
    one printed its score over the other's results. The folder is now claimed by the first."""
    from imc_core.errors import InputError
    from imc_core.runs import CLAIM_FILE, claim_run_dir

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    out = tmp_path / "out"
    claim_run_dir(out)  # the other run, between its check and its first file
    with pytest.raises(InputError, match="another run is being written to this folder"):
        run_pipeline(tiny_root, overrides=FAST, out=out)
    assert [p.name for p in out.iterdir()] == [CLAIM_FILE]  # its files untouched
    done = run_pipeline(tiny_root, overrides=FAST, out=tmp_path / "mine", raise_errors=True)
    assert not (done / CLAIM_FILE).exists()  # released at the end


def test_a_cached_failed_reconstruction_is_mapped_again(first_run: tuple[Path, Path], tiny_root: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside pycolmap may be transient: the next run tries again instead of reusing the failure."""
    from imc_core.stages import reconstruction as rc

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    overrides = FAST + ["reconstruction.min_model_size=5"]  # a mapping key of its own: a fresh cache entry

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("transient pycolmap trouble")

    with monkeypatch.context() as mp:
        mp.setattr(rc, "_run_mapper", broken)
        failed = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "failed",
                                       raise_errors=True))
    assert failed.status == "done" and failed.scores["score"] == 0.0  # every image an outlier, the reason logged
    assert "FAILED: incremental mapping: RuntimeError: transient pycolmap trouble" in failed.log
    # never a silent 0: each dataset's failure is a warning of the run (the CLI and the dashboard show them)
    assert sorted(own_warnings(failed)) == sorted(
        f"{ds}: reconstruction failed, so every image counts as an outlier: incremental mapping: RuntimeError: "
        "transient pycolmap trouble" for ds in failed.scores["datasets"])
    again = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "again",
                                  raise_errors=True))
    assert "had failed; mapping again" in again.log
    assert own_warnings(again) == []
    assert all(stages["reconstruction"] == "miss" for stages in again.timings["cache"].values())
    assert again.scores["score"] >= 80.0, again.log
    third = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "third",
                                  raise_errors=True))
    assert all(stages["reconstruction"] == "hit" for stages in third.timings["cache"].values())  # success is kept
    assert "had failed" not in third.log


def test_a_copied_data_root_reuses_every_cached_stage(first_run: tuple[Path, Path], tiny_root: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A teammate's copy of the data (other paths, other modification times, same bytes) hits the cache; an image
    rewritten with other bytes does not."""
    cache, _ = _cache_copy(first_run, tmp_path, monkeypatch)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_root, copy, copy_function=shutil.copyfile)  # copyfile: new modification times
    again = load_run(run_pipeline(copy, variant="default", overrides=FAST, out=tmp_path / "again",
                                  raise_errors=True))
    assert again.scores["score"] == load_run(first_run[0]).scores["score"]
    for stages in again.timings["cache"].values():
        assert stages["features"] == stages["matching"] == stages["reconstruction"] == "hit", stages
    image = next((copy / "train").glob("*/*.png"))
    from PIL import Image

    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    changed = load_run(run_pipeline(copy, variant="default", overrides=FAST, out=tmp_path / "changed",
                                    raise_errors=True))
    assert changed.timings["cache"][image.parent.name]["features"] == "miss"


def _cache_copy(first_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[Path, dict[str, str]]:
    """A copy of the shared cache as $IMC_CACHE_DIR, and the folder names of the features, matching and verified
    database artifacts the first run read (the shared cache holds others, from other tests' settings)."""
    cache = tmp_path / "cache"
    shutil.copytree(first_run[1], cache)
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    ds, used = next(iter(json.loads((first_run[0] / "artifacts.json").read_text()).items()))
    folders = {stage: Path(used[stage]).name for stage in ("features", "matching")}
    keys = [folders[stage].removeprefix(f"{ds}-") for stage in ("matching", "features")]
    folders["database"] = next(p.parent.name for p in (cache / "database").glob(f"{ds}-*/DONE")
                               if json.loads(p.read_text()).get("inputs") == keys)
    return cache, folders


def test_a_damaged_cached_artifact_is_rebuilt_with_a_warning(first_run: tuple[Path, Path], tiny_root: Path,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached file cut short after it was written (disk full, a copy) used to fail every run that read it, the
    same way, until ``--no-cache``: now it is rebuilt in place, and the run says so."""
    cache, folders = _cache_copy(first_run, tmp_path, monkeypatch)
    damaged = []
    for stage, file in (("features", "features.h5"), ("matching", "matches.h5"), ("database", "database.db")):
        path = cache / stage / folders[stage] / file
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 3)
        damaged.append((stage, path.parent.name))
    overrides = FAST + ["reconstruction.abs_pose_min_num_inliers=25"]  # a mapping change: reads all three
    run = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "r",
                                raise_errors=True))
    assert run.status == "done" and run.scores["score"] >= 80.0, run.log
    warned = " | ".join(run.meta["warnings"])
    for stage, folder in damaged:
        assert folder in warned, (stage, warned)
    assert "features.h5 changed after it was built" in warned and "matches.h5 changed after it was built" in warned
    assert "is dropped, and verified again when a reconstruction needs it: database.db changed after it was built" \
        in warned
    again = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "again",
                                  raise_errors=True))
    assert own_warnings(again) == []  # repaired for good
    assert all(c["features"] == "hit" and c["matching"] == "hit" for c in again.timings["cache"].values())


def test_a_cached_file_written_over_in_place_is_rebuilt(first_run: tuple[Path, Path], tiny_root: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Damage that keeps a file's size and lets it open: pair groups deleted from matches.h5 (read as "no
    matches": a tester's run put a whole scene in outliers and scored 103, status done, no warning), bytes of
    features.h5 and of the verified database overwritten (every later run failed, or scored 0 with "database disk
    image is malformed", naming no file). Each is found by its checksum, named and rebuilt."""
    import h5py

    cache, folders = _cache_copy(first_run, tmp_path, monkeypatch)
    with h5py.File(cache / "matching" / folders["matching"] / "matches.h5", "r+") as f:
        first = sorted(f.keys())[0]
        for pair in list(f[first].keys()):
            del f[first][pair]
    for stage, file in (("features", "features.h5"), ("database", "database.db")):
        path = cache / stage / folders[stage] / file
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(bytes(range(256)) * 8)
        assert path.stat().st_size == size
    overrides = FAST + ["reconstruction.abs_pose_min_num_inliers=26"]  # a mapping change: reads all three
    run = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "r",
                                raise_errors=True))
    assert run.status == "done" and run.scores["score"] >= 80.0, run.log
    warned = " | ".join(run.meta["warnings"])
    for stage, file in (("features", "features.h5"), ("matching", "matches.h5")):
        assert f"the cached {stage} artifact ({folders[stage]}) was rebuilt: {file} changed after it was built " \
               "(its content differs from the checksum taken then)" in warned, warned
    assert f"({folders['database']}) is dropped, and verified again when a reconstruction needs it: database.db " \
           "changed after it was built" in warned


def test_a_damaged_verified_database_is_dropped_once(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """While the reconstruction itself was a cache hit, nothing replaced the damaged verified database, and every
    run warned that it "is verified again". It is dropped at the first warning; the next mapping verifies again."""
    cache, folders = _cache_copy(first_run, tmp_path, monkeypatch)
    db = cache / "database" / folders["database"] / "database.db"
    with open(db, "r+b") as fh:
        fh.seek(db.stat().st_size // 2)
        fh.write(b"X" * 64)
    hit = load_run(run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "hit", raise_errors=True))
    assert all(c["reconstruction"] == "hit" for c in hit.timings["cache"].values())
    assert [w for w in own_warnings(hit) if "verified database" in w] == [
        f"{next(iter(hit.timings['cache']))}: the cached verified database ({folders['database']}) is dropped, and "
        "verified again when a reconstruction needs it: database.db changed after it was built (its content differs "
        "from the checksum taken then)"]
    assert not db.parent.exists()
    again = load_run(run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "again",
                                  raise_errors=True))
    assert own_warnings(again) == []
    # (a mapping value of its own: another test caches min_model_size=4 in the shared cache this one copies)
    remap = load_run(run_pipeline(tiny_root, variant="default", overrides=[*FAST, "reconstruction.min_model_size=6"],
                                  out=tmp_path / "remap", raise_errors=True))
    assert remap.status == "done" and own_warnings(remap) == [] and db.is_file()  # verified and cached again


def test_a_database_or_model_whose_marker_was_emptied_says_its_inputs_again(
        first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An emptied ``DONE`` kept its artifact usable but lost its inputs, and `cache prune --unused` took a verified
    database or mapped models it could no longer tie to a run's reconstruction. The next run that reads them writes
    their inputs back."""
    cache, folders = _cache_copy(first_run, tmp_path, monkeypatch)
    keys = json.loads((cache / "database" / folders["database"] / "DONE").read_text())["inputs"]
    markers = [cache / "database" / folders["database"] / "DONE"]
    markers += [p for p in (cache / "mapping").glob("*/DONE") if json.loads(p.read_text()).get("inputs") == keys]
    assert len(markers) >= 2
    for marker in markers:
        marker.write_text("")
    # (a final-adjustment value of its own: the reconstruction is built again from the cached database and models)
    run = load_run(run_pipeline(tiny_root, variant="default", overrides=[*FAST, "reconstruction.refine_loss_scale=0.9"],
                                out=tmp_path / "r", raise_errors=True))
    assert run.status == "done" and own_warnings(run) == [], run.log
    assert all(c["reconstruction"] == "miss" for c in run.timings["cache"].values())
    # the database and the one mapped model this run read (the shared cache holds other tests' models of the same
    # matches, under other mapping keys, which stay as they were)
    read = [m for m in markers if m.read_text()]
    assert read[0] == markers[0] and [m.parent.parent.name for m in read[1:]] == ["mapping"], read
    for marker in read:
        said = json.loads(marker.read_text())
        assert said["inputs"] == keys and said["key"] == marker.parent.name.rsplit("-", 1)[1] and said["files"]


def test_a_score_above_100_is_a_warning_of_the_run(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene lost whole to 'outliers' (listed first) lifts the official mAA above 100: the run said done with no
    warning, only the log and the per-scene table knew."""
    from imc_core import metric

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    real = metric.score

    def lose_a_scene(gt: pd.DataFrame, thr: dict, sub: pd.DataFrame, **kw: object) -> object:
        ds = sorted(gt["dataset"].unique())[0]
        scene = sorted(gt[(gt["dataset"] == ds) & (gt["scene"] != "outliers")]["scene"].unique())[0]
        lost = set(gt[(gt["dataset"] == ds) & (gt["scene"] == scene)]["image"])
        sub = sub.copy()
        sub.loc[(sub["dataset"] == ds) & sub["image"].isin(lost), "scene"] = "outliers"
        sub = pd.concat([sub[sub["scene"] == "outliers"], sub[sub["scene"] != "outliers"]], ignore_index=True)
        return real(gt, thr, sub, **kw)

    monkeypatch.setattr(metric, "score", lose_a_scene)
    run = load_run(run_pipeline(tiny_root, variant="default", overrides=FAST, out=tmp_path / "r", raise_errors=True))
    high = [ds for ds, d in run.scores["datasets"].items() if d["mAA"] > 100]
    assert high, run.scores
    assert [w for w in run.meta["warnings"] if "exceeds 100" in w] == [
        f"{high[0]}: mAA {run.scores['datasets'][high[0]]['mAA']:.2f} exceeds 100, the official metric's quirk when "
        "a whole scene went to 'outliers' listed first: a scene was lost (see its warning in the per-scene table)"]


def test_what_the_reconstruction_warns_of_is_a_warning_of_the_run(first_run: tuple[Path, Path], tiny_root: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene the mapper lost (its images outliers), the mapping's time cap, a final adjustment that failed: the
    stage logged a WARNING line, and run.json and the CLI said nothing. Said again by a run that reuses the result."""
    from imc_core.stages import reconstruction as rc

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    real = rc._map

    def lossy(*args: object, **kwargs: object) -> object:
        recs = real(*args, **kwargs)
        args[8].append("WARNING: a made-up warning of the mapping")  # (log)
        return recs

    monkeypatch.setattr(rc, "_map", lossy)
    # (a mapping key no other test sets: mapped here, not found in the shared cache; its own entry stays its own)
    overrides = [*FAST, "reconstruction.max_num_models=24"]
    run = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "r",
                                raise_errors=True))
    name = next(iter(run.scores["datasets"]))
    assert own_warnings(run) == [f"{name}: a made-up warning of the mapping"]
    assert run.log.count("a made-up warning of the mapping") == 1  # (once in log.txt, not twice)
    monkeypatch.setattr(rc, "_map", real)
    again = load_run(run_pipeline(tiny_root, variant="default", overrides=overrides, out=tmp_path / "again",
                                  raise_errors=True))
    assert again.timings["cache"][name]["reconstruction"] == "hit"
    assert own_warnings(again) == [f"{name}: a made-up warning of the mapping"]


def test_a_min_model_size_above_the_dataset_is_named(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """min_model_size 50 on ETs' 22 images kept its models of 10 and 9 images, the override shown above results that
    ignored it, and nothing said so."""
    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    run = load_run(run_pipeline(tiny_root, variant="default", overrides=[*FAST, "reconstruction.min_model_size=1000"],
                                out=tmp_path / "r", raise_errors=True))
    name = next(iter(run.scores["datasets"]))
    n = len(pd.read_csv(tiny_root / "train_labels.csv").query("dataset == @name"))
    assert own_warnings(run) == [f"{name}: reconstruction.min_model_size = 1000 is more than its {n} images; COLMAP "
                                 "lowers a value that large to a share of the images it maps, so models of fewer "
                                 "than 1000 images are kept"]
    assert run.scores["score"] > 0  # (its models were kept)


def test_what_the_metric_says_of_the_labels_is_a_warning_of_the_run(first_run: tuple[Path, Path], tiny_root: Path,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene of 2 images in the labels (it still takes 3 off the pooled mAA's denominator) was a warning of
    `score`, and only a log line of `run`."""
    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    labels = pd.read_csv(root / "train_labels.csv")
    two = labels.index[labels["scene"] == "atrium"][:2]
    labels.loc[two, "scene"] = "pair"
    labels.to_csv(root / "train_labels.csv", index=False)
    with (root / "train_thresholds.csv").open("a") as f:
        f.write("synth_rooms,pair,0.02255;0.0451;0.0902;0.2255;0.451;0.902\n")
    run = load_run(run_pipeline(root, variant="default", overrides=FAST, out=tmp_path / "r", raise_errors=True))
    said = [w for w in run.meta["warnings"] if w.startswith("scoring: ")]
    assert said == ["scoring: synth_rooms/pair: scene has 2 < 3 images: it still subtracts 3 from the pooled mAA "
                    "denominator"], run.meta["warnings"]  # (how the clusters met the scenes: the per-scene table)


def test_a_keypoint_cap_that_does_nothing_is_named(first_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A researcher's features.max_keypoints=2048 with COLMAP's SIFT: three seeds scored exactly as at 8,192 (COLMAP
    had kept the same 3,230 keypoints on an image under both caps), and nothing said so. A cap above every image's
    count, or one COLMAP exceeds, is now named; the variant's own cap is not."""
    import h5py

    monkeypatch.setenv("IMC_CACHE_DIR", str(first_run[1]))
    first = load_run(first_run[0])
    counts = {}
    for ds, arts in json.loads((first_run[0] / "artifacts.json").read_text()).items():
        with h5py.File(Path(arts["features"]) / "features.h5") as f:
            counts[ds] = max(int(f[n]["keypoints"].shape[0]) for n in f)
    notes = [w for w in first.meta["warnings"] if "features.max_keypoints = 2048" in w]
    assert sorted(notes) == sorted(
        f"{ds}: features.max_keypoints = 2048, yet COLMAP's SIFT kept up to {n} keypoints per image: it caps its "
        "detections in whole scale levels, before adding extra orientations, so images keep more than the cap, and "
        "another cap may change nothing (compare the keypoint counts of runs)" for ds, n in counts.items() if n > 2048)
    high = 9000  # (above every synthetic image's count; the variant's own 8192 would draw no note at all)
    run = load_run(run_pipeline(tiny_root, overrides=[f"features.max_keypoints={high}", "features.resize=0"],
                                out=tmp_path / "high", raise_errors=True))
    counts = {}
    for ds, arts in json.loads((run.path / "artifacts.json").read_text()).items():
        with h5py.File(Path(arts["features"]) / "features.h5") as f:
            counts[ds] = max(int(f[n]["keypoints"].shape[0]) for n in f)
    assert sorted(w for w in run.meta["warnings"] if "max_keypoints" in w) == sorted(
        f"{ds}: features.max_keypoints = {high} bound no image (at most {n} keypoints per image): these features are "
        "those of any higher cap" for ds, n in counts.items())


def test_a_sift_run_never_imports_torch(tiny_root: Path, tmp_path: Path) -> None:
    """The default (COLMAP's SIFT and matcher) needs no torch, whose import took 1.4 s of every run's start: a cold
    run in a fresh interpreter, every stage computed."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    out = tmp_path / "sift"
    code = ("import sys\nfrom imc_core.pipeline import run_pipeline\n"
            f"run_pipeline({str(tiny_root)!r}, overrides={FAST!r}, out={str(out)!r}, raise_errors=True)\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2], env={**os.environ, "IMC_CACHE_DIR": str(cache)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "no torch"
    run = load_run(out)
    assert run.status == "done" and run.meta["device"] == "cpu"
    assert set(run.timings["cache"][ds]["matching"] for ds in run.timings["cache"]) == {"miss"}


def _tiny_features(first_run: tuple[Path, Path]) -> tuple[Path, Path, list[tuple[str, str]]]:
    """The first run's features and matches artifacts, and every pair of its images."""
    from itertools import combinations

    import h5py

    arts = json.loads((first_run[0] / "artifacts.json").read_text())
    (stages,) = arts.values()
    feats = Path(stages["features"]) / "features.h5"
    with h5py.File(feats, "r") as f:
        names = sorted(f.keys())
    return feats, Path(stages["matching"]) / "matches.h5", list(combinations(names, 2))


def _all_matches(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import h5py

    with h5py.File(path, "r") as f:
        return {f"{a}/{b}": (f[a][b]["matches"][()], f[a][b]["scores"][()]) for a in f for b in f[a]}


@pytest.mark.parametrize("processes", [2, 3])
def test_colmap_matcher_in_processes_gives_the_matches_of_one_call(first_run: tuple[Path, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   processes: int) -> None:
    from imc_core.stages import matching

    feats, _, pairs = _tiny_features(first_run)
    conf = matching.MatchingConfig(method="colmap", colmap_threads=1)
    monkeypatch.setenv(matching.PROCESSES_ENV, "1")
    one = _all_matches(matching.match_features(pairs, feats, conf, tmp_path / "one.h5", feature_method="colmap_sift"))
    monkeypatch.setattr(matching, "MIN_PAIRS_PER_PROCESS", 1)
    monkeypatch.setenv(matching.PROCESSES_ENV, str(processes))
    seen: list[str] = []
    split = _all_matches(matching.match_features(pairs, feats, conf, tmp_path / "split.h5",
                                                 feature_method="colmap_sift",
                                                 progress=lambda done, total, msg: seen.append(msg)))
    assert seen[0] == f"COLMAP matcher in {processes} processes, counted as each ends"
    assert seen[-1].endswith("blocks matched")
    assert len(one) > 10 and one.keys() == split.keys()
    for key, (m, s) in one.items():
        np.testing.assert_array_equal(split[key][0], m)
        np.testing.assert_array_equal(split[key][1], s)


def test_colmap_matcher_processes_cancel_and_fail_cleanly(first_run: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from imc_core.errors import ImcError
    from imc_core.stages import matching

    feats, _, pairs = _tiny_features(first_run)
    conf = matching.MatchingConfig(method="colmap", colmap_threads=1)
    monkeypatch.setattr(matching, "MIN_PAIRS_PER_PROCESS", 1)
    monkeypatch.setenv(matching.PROCESSES_ENV, "2")
    out = tmp_path / "m.h5"
    with pytest.raises(Cancelled):
        matching.match_features(pairs, feats, conf, out, feature_method="colmap_sift", should_cancel=lambda: True)
    assert not out.exists() and not out.with_name(f".{out.name}.part").exists()
    # a worker that fails (here: a config it cannot read) fails the matching with the worker's last words
    real = dataclasses.asdict
    monkeypatch.setattr(matching.dataclasses, "asdict", lambda c: {**real(c), "bogus": 1})
    with pytest.raises(ImcError, match="worker process .* of 2 .*bogus"):
        matching.match_features(pairs, feats, conf, out, feature_method="colmap_sift")
    assert not out.exists()


def test_artifacts_of_an_older_imc_lab_keyed_by_times_are_reused(tiny_root: Path, isolated_dirs: dict,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """Before the keys held the images' contents they held their names, sizes and times: after an upgrade every
    stage of every dataset was computed again (hours of learned features) and the cache doubled. While the
    times are unchanged, those artifacts are reused; once an image is touched, they are not."""
    import os

    import imc_core.pipeline as pipeline
    from imc_core.data import fingerprint_files

    data = tmp_path / "data"
    shutil.copytree(tiny_root, data)
    with monkeypatch.context() as old:  # the older imc-lab: the stat fingerprint is the key's
        old.setattr(pipeline, "content_fingerprint", lambda image_dir, names: fingerprint_files(image_dir, names))
        first = load_run(run_pipeline(data, variant="default", overrides=FAST, out=tmp_path / "old",
                                      raise_errors=True))
    again = load_run(run_pipeline(data, variant="default", overrides=FAST, out=tmp_path / "new", raise_errors=True))
    assert again.scores["score"] == first.scores["score"]
    for stages in again.timings["cache"].values():
        assert stages["features"] == stages["matching"] == stages["reconstruction"] == "hit", stages
    assert json.loads((tmp_path / "new" / "artifacts.json").read_text()) == json.loads(
        (tmp_path / "old" / "artifacts.json").read_text())
    assert "an older imc-lab's keys" in (tmp_path / "new" / "log.txt").read_text()
    features = Path(next(iter(json.loads((tmp_path / "old" / "artifacts.json").read_text()).values()))["features"])
    (features / "features.h5").write_bytes(b"damaged")  # rebuilt, so not "reused"
    rebuilt = load_run(run_pipeline(data, variant="default", overrides=FAST, out=tmp_path / "rebuilt",
                                    raise_errors=True))
    assert [w for w in rebuilt.meta["warnings"] if "was rebuilt" in w]
    assert "an older imc-lab's keys" not in (tmp_path / "rebuilt" / "log.txt").read_text()
    image = next((data / "train").glob("*/*.png"))
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # same bytes, another time
    touched = load_run(run_pipeline(data, variant="default", overrides=FAST, out=tmp_path / "touched",
                                    raise_errors=True))
    assert touched.timings["cache"][image.parent.name]["features"] == "miss"  # the old key no longer holds
    assert touched.scores["score"] == first.scores["score"]


def test_images_with_bad_exif_are_named_by_every_run(tiny_root: Path, isolated_dirs: dict, tmp_path: Path) -> None:
    """PIL's "Corrupt EXIF data" and COLMAP's "Unknown EXIF orientation: 0" named no file; a run names both images
    in one warning, and a run that reads the cached features says it again (the CLI keeps COLMAP's line off:
    test_glogfilter)."""
    from PIL import Image

    root = tmp_path / "exif"
    shutil.copytree(tiny_root, root)
    (ds,) = [p for p in (root / "train").iterdir() if p.is_dir()]
    damaged, zero = sorted(ds.glob("*.png"))[:2]
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif[0x0110] = "Camera model"
    raw = exif.tobytes()
    Image.open(damaged).save(damaged, exif=raw[: len(raw) // 2] + b"\xff" * 10)
    exif = Image.Exif()
    exif[0x0112] = 0
    Image.open(zero).save(zero, exif=exif.tobytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "first", raise_errors=True))
        again = load_run(run_pipeline(root, overrides=FAST, out=tmp_path / "again", raise_errors=True))
    assert again.timings["cache"][ds.name]["features"] == "hit"
    for run in (first, again):
        (note,) = [w for w in run.meta["warnings"] if "EXIF" in w]
        assert note.startswith(f"{ds.name}: 2 of ")
        assert f"{damaged.name}: damaged EXIF (" in note and f"{zero.name}: EXIF orientation 0 is none of 1–8" in note
    assert not [w for w in caught if "EXIF" in str(w.message) or "Truncated" in str(w.message)], caught
