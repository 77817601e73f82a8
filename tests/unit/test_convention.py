"""Pose-convention check: a dataset written camera→world, with transposed rotations or with t's sign flipped is
named, per dataset; a correct one is not re-read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_metric import DS, make_gt, submit

from imc_core.convention import LOOKS, LOW_MAA, READINGS, convention_check, low_datasets, posed_scenes, reread
from imc_core.metric import score, score_files
from imc_core.submission import (R_COLS, T_COLS, cam_to_world, camera_centers, read_pose_csv, rotations, translations,
                                 write_pose_csv)


@pytest.fixture()
def case() -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    gt, th, _ = make_gt(np.random.default_rng(3), {"s1": 12, "s2": 9}, outliers=2)
    return gt, th, submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)))  # moved by a similarity: 100


def as_c2w(sub: pd.DataFrame, rows: np.ndarray | None = None) -> pd.DataFrame:
    """The slip: camera→world poses written as they are (only ``rows`` when given)."""
    out = sub.copy()
    R_c2w, c = cam_to_world(rotations(sub), translations(sub))
    rows = np.ones(len(sub), bool) if rows is None else rows
    out.loc[rows, R_COLS] = R_c2w.reshape(-1, 9)[rows]
    out.loc[rows, T_COLS] = c[rows]
    return out


def second_dataset(gt: pd.DataFrame, th: dict, sub: pd.DataFrame, name: str) -> tuple[pd.DataFrame, dict,
                                                                                        pd.DataFrame]:
    """The same scenes again as dataset ``name``."""
    g2, s2 = gt.copy(), sub.copy()
    g2["dataset"], s2["dataset"] = name, name
    return (pd.concat([gt, g2], ignore_index=True), {**th, **{(name, s): v for (_, s), v in th.items()}},
            pd.concat([sub, s2], ignore_index=True))


def test_reread_gives_the_centre_each_reading_means(case) -> None:
    _, _, sub = case
    R, t = rotations(sub), translations(sub)
    np.testing.assert_allclose(camera_centers(reread(sub, "camera→world")), t, atol=1e-12)
    np.testing.assert_allclose(camera_centers(reread(sub, "transposed rotation")),
                               -np.einsum("nij,nj->ni", R, t), atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(camera_centers(reread(sub, "negated translation")), -camera_centers(sub), atol=1e-12,
                               equal_nan=True)
    pd.testing.assert_frame_equal(reread(sub, "as written"), sub)
    assert reread(sub, "camera→world")["tx"].isna().sum() == sub["tx"].isna().sum()  # outliers stay nan
    with pytest.raises(ValueError, match="unknown reading"):
        reread(sub, "sideways")


def test_a_correct_submission_raises_no_warning(case) -> None:
    gt, th, sub = case
    check = convention_check(gt, th, sub)
    assert list(check.table["reading"]) == list(READINGS) and check.datasets == [DS]
    assert check.findings() == [] and check.warning() is None
    mAA = check.table.set_index("reading")["mAA"]
    assert mAA["as written"] == pytest.approx(score(gt, th, sub).mAA) == pytest.approx(100.0)


def transposed(sub: pd.DataFrame) -> pd.DataFrame:
    """The slip: each rotation written column-major."""
    return sub.assign(**dict(zip(R_COLS, np.swapaxes(rotations(sub), 1, 2).reshape(-1, 9).T, strict=True)))


def negated(sub: pd.DataFrame) -> pd.DataFrame:
    """The slip: t written as R·c."""
    return sub.assign(**dict(zip(T_COLS, (-translations(sub)).T, strict=True)))


@pytest.mark.parametrize("slip, reading, text", [
    (as_c2w, "camera→world", "these poses look camera→world (t holding the camera centre) in ds ("),
    (transposed, "transposed rotation", "these poses look written with each R transposed (column-major) in ds ("),
    (negated, "negated translation", "these poses look written with t = R·c (the sign of t flipped) in ds ("),
])
def test_each_slip_is_named(case, slip, reading: str, text: str) -> None:
    gt, th, sub = case
    check = convention_check(gt, th, slip(sub))
    ((dataset, best, written, better),) = check.findings()
    assert (dataset, best) == (DS, reading) and written < 50 and better == pytest.approx(100.0)
    assert (check.warning() or "").startswith(text) and f"(mAA {written:.2f} as written, 100.00 read so)" in \
        check.warning()
    assert check.warning(margin=1000.0) is None  # the margin is what decides


def test_only_the_datasets_read_better_another_way_are_named(case) -> None:
    """Two datasets below 50 mAA, one written camera→world and one merely poor: the warning named both."""
    gt, th, sub = case
    gt2, th2, sub2 = second_dataset(gt, th, as_c2w(sub), "poor")
    poor = sub2["dataset"] == "poor"
    sub2.loc[poor, R_COLS + T_COLS] = sub.loc[:, R_COLS + T_COLS].to_numpy()  # world→camera ...
    sub2.loc[poor, T_COLS] += np.random.default_rng(1).normal(size=(int(poor.sum()), 3)) * 5  # ... but noisy
    res = score(gt2, th2, sub2, details=False)
    assert low_datasets(res) == [DS, "poor"]
    check = convention_check(gt2, th2, sub2, low_datasets(res))
    assert [f[0] for f in check.findings()] == [DS] and "poor" not in (check.warning() or "")


def test_half_a_dataset_written_camera_to_world_gets_no_firm_claim(case) -> None:
    gt, th, sub = case
    half = np.zeros(len(sub), bool)
    half[::2] = True
    check = convention_check(gt, th, as_c2w(sub, half))
    for dataset, _, written, better in check.findings():
        assert better < LOW_MAA and "some poses may be camera→world (t holding the camera centre) in " \
            f"{dataset} (mAA {written:.2f} as written, {better:.2f} read so)" in check.warning()
    assert "these poses look" not in (check.warning() or "")


def test_one_scene_written_camera_to_world_is_named(case) -> None:
    """Read whole, such a dataset scores best as written (its other scenes drop under any other reading), so it drew
    no warning at all; each scene's mAA depends on its own poses only, and names it."""
    gt, th, sub = case
    check = convention_check(gt, th, as_c2w(sub, (sub["scene"] == "s2").to_numpy()))
    assert check.findings() == []
    [(dataset, scene, reading, written, better)] = check.scene_findings()
    assert (dataset, scene, reading) == (DS, "s2", "camera→world") and better == 100.0 and written < 50
    assert check.warning().startswith(f"the poses of scene s2 of {DS} look camera→world (t holding the camera "
                                      f"centre) (mAA {written:.2f} as written, 100.00 read so). IMC-2025 wants")
    assert set(check.scenes["reading"]) == set(READINGS) and set(check.scenes["scene"]) == {"s1", "s2"}
    # a whole dataset written so is named once, as a dataset, not again scene by scene
    whole = convention_check(gt, th, as_c2w(sub))
    assert whole.findings() and whole.scene_findings() == []
    assert convention_check(gt, th, sub).scene_findings() == []


def test_score_files_re_reads_only_low_or_small_datasets(case, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imc_core.convention

    gt, th, sub = case
    assert low_datasets(score(gt, th, sub)) == [DS]  # 21 images: small, re-read whatever its mAA
    monkeypatch.setattr(imc_core.convention, "SMALL_DATASET", 0)  # as if every dataset were large
    gt2, th2, sub2 = second_dataset(gt, th, sub, "good")
    sub2.loc[sub2["dataset"] == DS] = as_c2w(sub2[sub2["dataset"] == DS])
    labels = write_pose_csv(gt2, tmp_path / "labels.csv")
    (tmp_path / "thr.csv").write_text("dataset,scene,thresholds\n" + "".join(
        f"{d},{s},{';'.join(map(str, v))}\n" for (d, s), v in th2.items()))
    good = score_files(labels, tmp_path / "thr.csv", write_pose_csv(gt2, tmp_path / "good.csv"), convention=True)
    assert good.convention is None and not good.warnings
    bad = score_files(labels, tmp_path / "thr.csv", write_pose_csv(sub2, tmp_path / "bad.csv"), convention=True)
    assert set(bad.convention["dataset"]) == {DS}  # "good" reaches 100 as written: not re-read
    assert any(w.startswith("these poses look camera→world (t holding the camera centre) in ds (mAA ")
               for w in bad.warnings)
    # one scene of the large "good" written so: its dataset stays above 50 mAA, but that scene is clustered and
    # scores under 50, so the dataset is re-read and the scene named (it said nothing); the labels themselves are not
    one = sub2.copy()
    rows = ((one["dataset"] == "good") & (one["scene"] == "s2")).to_numpy()
    one.loc[rows] = as_c2w(gt2[rows])
    one.loc[one["dataset"] == DS] = gt2[gt2["dataset"] == DS].to_numpy()
    path = write_pose_csv(one, tmp_path / "one_scene.csv")
    as_written = score_files(labels, tmp_path / "thr.csv", path, details=False)
    posed = posed_scenes(gt2, read_pose_csv(path))
    assert ("good", "s2") in posed and ("good", "s1") in posed
    assert as_written.datasets["good"].mAA >= LOW_MAA and low_datasets(as_written, posed=posed) == ["good"]
    assert low_datasets(as_written) == []  # (without the poses: no scene is known to be posed)
    named = score_files(labels, tmp_path / "thr.csv", path, convention=True)
    assert any(w.startswith("the poses of scene s2 of good look camera→world") for w in named.warnings), named.warnings
    unregistered = one.copy()
    unregistered.loc[rows, R_COLS + T_COLS] = np.nan  # a scene the pipeline failed on: no reason to re-read
    path = write_pose_csv(unregistered, tmp_path / "failed_scene.csv")
    posed = posed_scenes(gt2, read_pose_csv(path))
    assert ("good", "s2") not in posed
    assert low_datasets(score_files(labels, tmp_path / "thr.csv", path, details=False), posed=posed) == []


def _look_at(c: np.ndarray, p: np.ndarray) -> np.ndarray:
    """World→camera rotation of a camera at ``c`` looking at ``p`` (rows: x, y, z axes of the camera)."""
    z = (p - c) / np.linalg.norm(p - c)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def _orbit(n: int, centre: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` cameras on an arc of radius 5 around ``centre`` (slightly wavy in height), each looking at it."""
    a = np.linspace(0.0, 2.0, n)
    c = np.stack([5 * np.cos(a), 5 * np.sin(a), 0.3 * np.sin(3 * a)], axis=1) + centre
    return [_look_at(ci, centre) for ci in c], c


def test_a_right_file_of_noisy_cameras_orbiting_a_point_is_not_called_camera_to_world() -> None:
    """Read camera→world, cameras orbiting a point far from the origin trace a similar, larger circle, so a right but
    noisy file scored better so (80.56 against 66.67 in 29 of 40 seeds) and was told it was camera→world (a tester's
    strecha_mix fountain). Its rotations, transposed, disagree with the ground truth: the claim is dropped."""
    from test_metric import TH, frame

    from imc_core.convention import ConventionCheck

    R, c = _orbit(12, np.array([60.0, 30.0, 0.0]))
    gt = frame([(DS, "arc", f"a{i:02d}.png", R[i], c[i]) for i in range(12)])
    th = {(DS, "arc"): TH * 2}
    for seed in (28, 29, 32, 35):  # seeds where the scores alone name camera→world
        rng = np.random.default_rng(seed)
        noisy = frame([(DS, "arc", f"a{i:02d}.png", R[i], c[i] + rng.normal(size=3) * 0.12) for i in range(12)])
        check = convention_check(gt, th, noisy)
        assert check.warning() is None, (seed, check.table)
        # the geometry rules camera→world out before any re-scoring ...
        assert np.isnan(check.table.set_index("reading").loc["camera→world", "mAA"])
        # ... though scored, it would win on the scores alone
        full = convention_check(gt, th, noisy, every_reading=True)
        assert full.warning() is None, (seed, full.table)
        scores_alone = ConventionCheck(full.table, full.scenes).warning()  # without the geometry
        assert (scores_alone or "").startswith("these poses look "), (seed, full.table)


def test_t_sign_flipped_on_a_flat_layout_is_re_read_and_named(case, monkeypatch: pytest.MonkeyPatch) -> None:
    """t's sign flipped mirrors every centre, and a flat layout survives a mirror: large IMC-2025 datasets written so
    kept 55–88 mAA, were not re-read (over 60 images and 50 mAA), and 7 of 13 went unnamed. The centres' fit under
    each reading (fit_table) now sends such a dataset to the re-scoring."""
    import imc_core.convention
    from test_metric import TH, frame

    from imc_core.convention import check_scored, fit_table, preferred_elsewhere

    monkeypatch.setattr(imc_core.convention, "SMALL_DATASET", 0)  # as if every dataset were large
    rng = np.random.default_rng(4)
    rows = []
    for scene in ("flat1", "flat2"):
        c = np.column_stack([rng.uniform(-3, 3, 20), rng.uniform(-3, 3, 20), rng.normal(size=20) * 0.04])
        rows += [(DS, scene, f"{scene}_{i:02d}.png", _look_at(c[i], np.array([0.0, 0.0, -8.0])), c[i])
                 for i in range(20)]
    gt = frame(rows)
    th = {(DS, s): TH.copy() for s in ("flat1", "flat2")}
    flipped = negated(gt)
    res = score(gt, th, flipped, details=False)
    assert res.mAA >= LOW_MAA and low_datasets(res, posed=posed_scenes(gt, flipped)) == []  # not re-read before
    fits = fit_table(gt, flipped)
    assert preferred_elsewhere(fits) == [DS] and preferred_elsewhere(fit_table(gt, gt)) == []
    assert low_datasets(res, fits=fits) == [DS]
    check = check_scored(gt, th, flipped, res)
    assert [(d, r) for d, r, *_ in check.findings()] == [(DS, "negated translation")]
    assert check_scored(gt, th, gt, score(gt, th, gt, details=False)) is None  # the labels: nothing re-read


def test_one_scene_written_another_way_is_named_as_a_scene_even_when_its_dataset_reads_better(case) -> None:
    """The larger scene written camera→world lifted the whole dataset read so, and the warning told the user to
    convert the whole dataset, which would break the scene written right: the scene is named instead."""
    gt, th, sub = case
    slipped = as_c2w(sub, (sub["scene"] == "s1").to_numpy())  # 12 of the 21 images
    check = convention_check(gt, th, slipped)
    mAA = check.table.set_index("reading")["mAA"]
    assert mAA["camera→world"] > mAA["as written"] + 5  # read whole, the dataset reads better so
    assert check.findings() == []
    [(dataset, scene, reading, _, better)] = check.scene_findings()
    assert (dataset, scene, reading, better) == (DS, "s1", "camera→world", 100.0)
    assert check.warning().startswith(f"the poses of scene s1 of {DS} look camera→world")


def _check(scores: dict[str, dict[str, float]], geometry: dict[str, dict[str, tuple[float, ...]]], n: int = 40
           ) -> object:
    """A ConventionCheck of one dataset "d" from per-scene mAA by reading (``scores[scene][reading]``) and per-scene
    geometry (``geometry[scene][reading] = (fit, rot, turn, quick)``); the dataset's mAA is the scenes' mean."""
    from imc_core.convention import ConventionCheck

    readings = list(READINGS)
    table = pd.DataFrame([{"dataset": "d", "reading": r, "meaning": READINGS[r],
                           "mAA": float(np.mean([scores[s][r] for s in scores]))} for r in readings])
    scenes = pd.DataFrame([{"dataset": "d", "scene": s, "reading": r, "mAA": scores[s][r]}
                           for s in scores for r in readings])
    fits = pd.DataFrame([{"dataset": "d", "scene": s, "reading": r, "n": n, "fit": g[0], "rot": g[1], "turn": g[2],
                          "quick": g[3]} for s, by in geometry.items() for r, g in by.items()])
    return ConventionCheck(table, scenes, fits)


def _same(value: tuple[float, ...]) -> dict[str, tuple[float, ...]]:
    return dict.fromkeys(READINGS, value)


def test_a_better_score_needs_the_geometry_behind_it() -> None:
    """Four cameras all facing down, a right file: 50 read transposed against 0 as written (one camera more past a
    threshold), the geometry neutral (fits within 36 %, one camera-threshold pair more under one fit): no claim,
    firm or soft. The same score with the rotations behind it is named."""
    scores = {"s": {**dict.fromkeys(READINGS, 0.0), "transposed rotation": 50.0}}
    neutral = {"s": {**_same((0.073, 10.6, 10.2, 50.0)), "transposed rotation": (0.047, 9.9, 11.1, 62.5)}}
    assert _check(scores, neutral, n=4).findings() == []
    backed = {"s": {**_same((0.073, 30.0, 150.0, 50.0)), "transposed rotation": (0.047, 2.0, 3.0, 62.5)}}
    assert [(d, r) for d, r, *_ in _check(scores, backed, n=4).findings()] == [("d", "transposed rotation")]


def test_the_rotations_choose_between_camera_to_world_and_centre_as_t() -> None:
    """Both put every camera at the same centre (same score): the rotations' spread or their agreement with the
    centres chooses; cameras all facing one way cannot tell, and both are named (the first in order was named
    before, wrongly for 8 of 30 slips of a drone grid)."""
    from imc_core.convention import EITHER, LOOKS

    scores = {"s": {**dict.fromkeys(READINGS, 30.0), "camera→world": 97.0, "centre as t": 97.0}}
    base = _same((0.2, 10.0, 150.0, 30.0))
    by_turn = {"s": {**base, "camera→world": (0.02, 10.0, 68.0, 97.0), "centre as t": (0.02, 10.0, 1.4, 97.0)}}
    assert [r for _, r, *_ in _check(scores, by_turn).findings()] == ["centre as t"]
    by_rot = {"s": {**base, "camera→world": (0.02, 2.0, 5.0, 97.0), "centre as t": (0.02, 10.0, 5.0, 97.0)}}
    assert [r for _, r, *_ in _check(scores, by_rot).findings()] == ["camera→world"]
    blind = {"s": {**base, "camera→world": (0.02, 10.0, 5.0, 97.0), "centre as t": (0.02, 10.5, 6.0, 97.0)}}
    check = _check(scores, blind)
    assert [r for _, r, *_ in check.findings()] == [EITHER]
    assert f"these poses look {LOOKS[EITHER]} in d (mAA 30.00 as written, 97.00 read so)" in check.warning()


def test_a_scene_under_50_read_another_way_is_named_when_its_geometry_is_clear() -> None:
    """A pipeline's noisy scene written camera→world: 18 → 41 read so, its centres fitting 2.4× better, rotations
    8× tighter and agreeing with the centres (turn 1° against 172°); it was left out for not reaching 50."""
    scores = {"a": {**dict.fromkeys(READINGS, 42.0), "camera→world": 15.0, "centre as t": 15.0},
              "b": {**dict.fromkeys(READINGS, 18.0), "camera→world": 41.0, "centre as t": 41.0}}
    geometry = {"a": {**_same((0.1, 3.0, 2.0, 60.0)), "camera→world": (0.3, 40.0, 170.0, 10.0),
                      "centre as t": (0.3, 3.0, 100.0, 10.0)},
                "b": {**_same((0.264, 16.9, 172.0, 20.0)), "camera→world": (0.108, 2.1, 1.0, 45.0),
                      "centre as t": (0.108, 16.9, 96.0, 45.0)}}
    assert [(s, r) for _, s, r, *_ in _check(scores, geometry).scene_findings()] == [("b", "camera→world")]
    unclear = {**geometry, "b": {**_same((0.264, 16.9, 172.0, 20.0)), "camera→world": (0.2, 16.0, 160.0, 24.0),
                                 "centre as t": (0.2, 16.9, 170.0, 24.0)}}
    assert _check(scores, unclear).scene_findings() == []  # under 50 and no clear geometry: left out


def test_a_scene_that_scores_better_as_written_by_luck_does_not_split_a_dataset() -> None:
    """A whole file written camera→world, one noisy scene scoring 44 as written against 38 read so: the dataset was
    taken for one of mixed conventions and nothing was said. That scene's geometry does not say it was written
    right (its rotations back camera→world), so the dataset is named."""
    scores = {"a": {**dict.fromkeys(READINGS, 2.0), "camera→world": 38.0, "centre as t": 38.0},
              "b": {**dict.fromkeys(READINGS, 7.0), "camera→world": 32.0, "centre as t": 32.0},
              "f": {**dict.fromkeys(READINGS, 44.0), "camera→world": 37.5, "centre as t": 37.5}}
    cw = (0.05, 2.0, 1.0, 40.0)
    geometry = {s: {**_same((0.3, 60.0, 150.0, 5.0)), "camera→world": cw, "centre as t": (0.05, 60.0, 100.0, 40.0)}
                for s in ("a", "b")}
    geometry["f"] = {**_same((0.04, 50.0, 120.0, 45.0)), "camera→world": (0.06, 1.8, 1.0, 38.0),
                     "centre as t": (0.06, 50.0, 90.0, 38.0)}
    assert [r for _, r, *_ in _check(scores, geometry).findings()] == ["camera→world"]
    # a scene written right (its rotations say so) does split it: the scenes are named instead
    geometry["f"] = {**_same((0.04, 2.0, 1.0, 45.0)), "camera→world": (0.06, 50.0, 120.0, 38.0),
                     "centre as t": (0.06, 2.0, 90.0, 38.0)}
    check = _check(scores, geometry)
    assert check.findings() == [] and {s for _, s, *_ in check.scene_findings()} <= {"a", "b"}


def test_cameras_along_a_line_leave_the_frames_agreement_out() -> None:
    """A fit's turn about the line of a forward track is arbitrary: it told camera→world and centre-as-t slips apart
    at random (4 of 6 named the wrong one); the track's scenes now have no ``turn``, the orbit's keep it."""
    from test_metric import TH, frame

    from imc_core.convention import fit_table

    line = np.column_stack([np.linspace(0.0, 20.0, 10), np.zeros(10), np.zeros(10)])
    R_line = [_look_at(c, c + np.array([1.0, 0.0, 0.05])) for c in line]
    R_orbit, orbit = _orbit(10, np.zeros(3))
    gt = frame([(DS, "track", f"t{i}.png", R_line[i], line[i]) for i in range(10)]
               + [(DS, "arc", f"a{i}.png", R_orbit[i], orbit[i]) for i in range(10)])
    fits = fit_table(gt, gt, thresholds={(DS, "track"): TH, (DS, "arc"): TH})
    turn = fits.groupby("scene")["turn"]
    assert turn.apply(lambda x: x.isna().all())["track"] and turn.apply(lambda x: x.notna().all())["arc"]
    assert (fits["quick"] >= 0).all() and fits.loc[fits["reading"] == "as written", "quick"].eq(100.0).all()


@pytest.mark.parametrize("sizes, registered", [({"s1": 3, "s2": 2}, None), ({"s1": 10, "s2": 8}, 2)])
def test_a_scene_too_small_to_fit_beside_one_that_fits_is_checked(sizes: dict[str, int], registered: int | None
                                                                   ) -> None:
    """A scene of two cameras (or one of which the pipeline registered two) has no fit; beside a scene that has one,
    the geometry's tables held other scenes and comparing them raised, so `score` failed on ordinary files."""
    from imc_core.convention import check_scored

    gt, th, _ = make_gt(np.random.default_rng(0), sizes, outliers=1)
    sub = submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)))
    if registered is not None:
        lost = (sub["scene"] == "s2").to_numpy() & (sub.groupby("scene").cumcount() >= registered).to_numpy()
        sub.loc[lost, R_COLS + T_COLS] = np.nan
    res = score(gt, th, sub, details=False)
    check = check_scored(gt, th, sub, res)
    assert check is not None and check.warning() is None
    if sizes["s1"] > 3:  # written camera→world, the scene that fits is still named (three cameras always fit)
        assert (convention_check(gt, th, as_c2w(sub)).warning() or "").startswith("these poses look camera→world")


def test_a_fault_of_the_check_costs_a_warning_not_the_score(case, tmp_path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import imc_core.convention

    gt, th, sub = case
    labels = write_pose_csv(gt, tmp_path / "labels.csv")
    (tmp_path / "thr.csv").write_text("dataset,scene,thresholds\n" + "".join(
        f"{d},{s},{';'.join(map(str, v))}\n" for (d, s), v in th.items()))

    def broken(*args, **kwargs):
        raise ValueError("Can only compare identically-labeled Series objects")

    monkeypatch.setattr(imc_core.convention, "fit_table", broken)
    res = score_files(labels, tmp_path / "thr.csv", write_pose_csv(sub, tmp_path / "sub.csv"), convention=True)
    assert res.score == pytest.approx(100.0)
    assert any(w.startswith("the pose-convention check failed (ValueError: Can only compare") for w in res.warnings)


def test_every_reading_is_scored_with_the_callers_metric(case, tmp_path) -> None:
    """The scores as written are reused; with a metric config of the caller's, the other readings were scored with
    the default one (33.33 as written against 0 under the default), so the table compared two metrics."""
    from imc_core.metric import MetricConfig

    gt, th, sub = case
    labels = write_pose_csv(gt, tmp_path / "labels.csv")
    (tmp_path / "thr.csv").write_text("dataset,scene,thresholds\n" + "".join(
        f"{d},{s},{';'.join(map(str, [50.0, 50.0, *v[2:]]))}\n" for (d, s), v in th.items()))
    path = write_pose_csv(as_c2w(sub), tmp_path / "sub.csv")
    cfg = MetricConfig(skip_top_thresholds=0)
    res = score_files(labels, tmp_path / "thr.csv", path, convention=True, config=cfg)
    table = res.convention.set_index("reading")["mAA"]
    assert table["as written"] == res.datasets[DS].mAA
    full = convention_check(gt, th | {k: np.array([50.0, 50.0, *v[2:]]) for k, v in th.items()}, read_pose_csv(path),
                            every_reading=True, config=cfg)
    assert full.table.set_index("reading")["mAA"].to_dict() == pytest.approx(table.dropna().to_dict() | {
        r: m for r, m in full.table.set_index("reading")["mAA"].items() if r not in table.dropna()})
    assert table["as written"] == pytest.approx(full.table.set_index("reading")["mAA"]["as written"])


@pytest.mark.parametrize("case_dir, dataset, scenes", [
    ("mixed_case9", "d1", {"s0": "centre as t", "s1": "negated translation", "s2": "centre as t"}),
    ("mixed_case103", "d0", {"s0": "negated translation", "s1": "centre as t"}),
])
def test_a_dataset_whose_scenes_read_best_in_different_ways_is_named_scene_by_scene(
        case_dir: str, dataset: str, scenes: dict[str, str]) -> None:
    """Two of a reviewer's 500 random files (scenes slipped each its own way): once the readings the geometry rules
    out went unscored, these datasets drew one claim for the whole dataset ("these poses look written with the
    camera centre as t in d1"), which would break the scene written otherwise."""
    from pathlib import Path

    folder = Path(__file__).parent / "fixtures" / case_dir
    res = score_files(folder / "labels.csv", folder / "thresholds.csv", folder / "submission.csv",
                      convention=True, details=False)
    note = next(w for w in res.warnings if w.startswith(("these poses", "some poses", "the poses")))
    assert f" in {dataset} (" not in note
    for scene, reading in scenes.items():
        assert f"the poses of scene {scene} of {dataset} look {LOOKS[reading]} (" in note, note
