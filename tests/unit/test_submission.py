"""Pose CSV I/O, the pose convention and submission validation (imc_core.submission)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imc_core.errors import InputError
from imc_core.submission import (
    OUTLIERS,
    POSE_COLS,
    R_COLS,
    T_COLS,
    cam_to_world,
    camera_centers,
    kaggle_image_id,
    pose_frame,
    read_pose_csv,
    rotations,
    to_kaggle,
    translations,
    validate_submission,
    world_to_cam,
    write_pose_csv,
)

HEADER = "dataset,scene,image,rotation_matrix,translation_vector\n"
EYE = "1;0;0;0;1;0;0;0;1"
NAN9 = ";".join(["nan"] * 9)
NAN3 = "nan;nan;nan"


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0] *= -1
    return q


def write(tmp_path: Path, text: str, name: str = "poses.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


# ------------------------------------------------------------------------------------------------------- read/write


def test_read_basic_frame(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        HEADER + f"ds,sc,a.png,{EYE},1;2;3\n" + f"ds,{OUTLIERS},b.png,{NAN9},{NAN3}\n",
    )
    df = read_pose_csv(p)
    assert list(df.columns) == ["dataset", "scene", "image", *POSE_COLS]
    assert len(POSE_COLS) == 12 and POSE_COLS == R_COLS + T_COLS
    assert df["image"].tolist() == ["a.png", "b.png"]
    assert all(df[c].dtype == np.float64 for c in POSE_COLS)
    assert pd.api.types.is_string_dtype(df["dataset"])
    np.testing.assert_array_equal(rotations(df)[0], np.eye(3))
    np.testing.assert_array_equal(translations(df)[0], [1, 2, 3])
    assert np.isnan(df.loc[1, POSE_COLS].to_numpy(dtype=float)).all()
    assert df.attrs["path"] == str(p)


def test_round_trip_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 200
    R = random_rotations(n, rng)
    t = rng.normal(size=(n, 3)) * 10.0 ** rng.integers(-12, 12, size=(n, 1))
    t[0] = [-0.0, 5e-324, 1.7976931348623157e308]  # sign of zero, subnormal, max
    R[3] = np.nan
    t[3] = np.nan
    df = pose_frame("ds", ["s"] * n, [f"img_{i:04d}.jpg" for i in range(n)], R, t)
    p = write_pose_csv(df, tmp_path / "sub.csv")
    back = read_pose_csv(p)
    a, b = df[POSE_COLS].to_numpy(), back[POSE_COLS].to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    np.testing.assert_array_equal(bits(a[ok]), bits(b[ok]))
    assert back[["dataset", "scene", "image"]].equals(df[["dataset", "scene", "image"]])
    # the unregistered row is written as literal nan
    line = p.read_text().splitlines()[4]
    assert line.endswith(f",{NAN9},{NAN3}")
    # writing what was read gives the same bytes
    p2 = write_pose_csv(back, tmp_path / "again.csv")
    assert p2.read_bytes() == p.read_bytes()


def test_image_id_handling(tmp_path: Path) -> None:
    df = pose_frame("ds", "c0", ["a.png", "b.png"], np.eye(3)[None].repeat(2, 0), np.zeros((2, 3)))
    # None: no column in the frame → none written
    write_pose_csv(df, tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_text().startswith("dataset,")
    # True: computed Kaggle ids
    write_pose_csv(df, tmp_path / "b.csv", image_id=True)
    b = read_pose_csv(tmp_path / "b.csv", require_image_id=True)
    assert list(b.columns)[0] == "image_id"
    assert b["image_id"].tolist() == ["ds_a.png_public", "ds_b.png_public"]
    # existing ids are kept (also numeric-looking ones, as strings); False drops them
    k = df.copy()
    k.insert(0, "image_id", ["0", "17"])
    write_pose_csv(k, tmp_path / "c.csv")
    c = read_pose_csv(tmp_path / "c.csv")
    assert c["image_id"].tolist() == ["0", "17"]
    write_pose_csv(k, tmp_path / "d.csv", image_id=False)
    assert "image_id" not in read_pose_csv(tmp_path / "d.csv").columns
    # require_image_id
    with pytest.raises(InputError, match=r"a\.csv:1: missing column\(s\) image_id"):
        read_pose_csv(tmp_path / "a.csv", require_image_id=True)


def test_kaggle_ids() -> None:
    assert kaggle_image_id("stairs", "x_1.png") == "stairs_x_1.png_public"
    df = pose_frame(["a", "b"], "c", ["1.png", "2.png"])
    k = to_kaggle(df)
    assert list(k.columns)[0] == "image_id"
    assert k["image_id"].tolist() == ["a_1.png_public", "b_2.png_public"]
    assert "image_id" not in df.columns  # a copy
    k2 = k.copy()
    k2["image_id"] = ["keep", ""]
    assert to_kaggle(k2)["image_id"].tolist() == ["keep", "b_2.png_public"]


def test_write_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    df = pose_frame("ds", "c", ["a.png"], np.eye(3)[None], np.zeros((1, 3)))
    target = tmp_path / "deep" / "er" / "sub.csv"
    write_pose_csv(df, target)
    write_pose_csv(df, target)  # overwrite
    assert sorted(os.listdir(target.parent)) == ["sub.csv"]


def test_write_rejects_frame_without_pose_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tz"):
        write_pose_csv(pd.DataFrame({"dataset": ["a"], "scene": ["b"], "image": ["c"]}), tmp_path / "x.csv")


def test_blank_lines_and_extra_columns(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "dataset,scene,image,rotation_matrix,translation_vector,note\n"
        f"ds,s,a.png,{EYE},0;0;0,hi\n"
        ",,,,,\n"
        f"ds,s,b.png,{EYE},0;0;x,yo\n",
    )
    with pytest.raises(InputError) as e:
        read_pose_csv(p)
    assert e.value.row == 4  # the blank line is counted
    assert "poses.csv:4:" in str(e.value) and "'x'" in str(e.value)


def test_empty_header_only_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"empty\.csv: empty file"):
        read_pose_csv(write(tmp_path, "", "empty.csv"))
    df = read_pose_csv(write(tmp_path, HEADER, "header.csv"))
    assert len(df) == 0 and list(df.columns) == ["dataset", "scene", "image", *POSE_COLS]
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        read_pose_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("dataset,scene,image,rotation_matrix\n", 1, "missing column(s) translation_vector"),
        (HEADER + f"d,s,a,{EYE},0;0;0\nd,s,b,1;0;0;0;1;0;0;0,0;0;0\n", 3, "rotation_matrix must have 9"),
        (HEADER + f"d,s,a,{EYE},0;0;0\nd,s,b,{EYE};1,0;0;0\n", 3, "got 10"),
        (HEADER + f"d,s,a,{EYE},0;0\n", 2, "translation_vector must have 3 ';'-separated numbers, got 2"),
        (HEADER + f"d,s,a,{EYE},\n", 2, "translation_vector must have 3 ';'-separated numbers, got 0 (an "
                                        "unregistered image writes nan for each)"),
        (HEADER + f"d,s,a,{EYE},0;0;0\nd,s,b,{EYE},0;abc;0\n", 3, "cannot parse number 'abc'"),
        (HEADER + "d,s,a,1;0;0;0;1;0;0;0;,0;0;0\n", 2, "cannot parse number '' (write nan for a missing value: an "
                                                       "unregistered image has nan for all 12)"),
        # a stray character joining two numbers: the token named, not "must have 9 numbers, got 8"
        (HEADER + "d,s,a,1|0;0;0;1;0;0;0;1,0;0;0\n", 2, "rotation_matrix: cannot parse number '1|0' (it must have 9"),
        (HEADER + f"d,s,a,{EYE},0;0;0\nd,s,b,{EYE},0;0;0,extra\n", 3, "malformed CSV row"),
        # a quote never closed: the line it opens on (pandas counts from 0 at the header, so it said one less)
        (HEADER + f"d,s,a,{EYE},0;0;0\nd,s,\"b,{EYE},0;0;0\nd,s,c,{EYE},0;0;0\n", 3,
         "a quoted field opened here is never closed"),
        # a short row: its field count, not "rotation_matrix must have 9 numbers, got 0"
        (HEADER + f"d,s,a,{EYE},0;0;0\nd,s,b\n", 3, "row has 3 field(s), expected 5 (dataset,scene,image,"),
        # the header as written, not pandas' "Unnamed: 1" for its empty cells
        ("garbage,,,\n1,2,3,4\n", 1, "header is 'garbage,,,'"),
        # a spreadsheet's export with another separator: said, not only the columns it lacks
        ("dataset;scene;image;rotation_matrix;translation_vector\nd;s;a;1;0\n", 1,
         "(its fields are separated by semicolons; IMC's CSV files separate them by commas)"),
        ("dataset\tscene\timage\trotation_matrix\ttranslation_vector\n", 1, "separated by tabs"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    p = write(tmp_path, text, "bad_input.csv")
    with pytest.raises(InputError) as e:
        read_pose_csv(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: "), msg
    assert "bad_input.csv" in msg and fragment in msg
    assert e.value.row == line


def test_a_large_file_reads_back_exactly(tmp_path: Path) -> None:
    """2,000 rows with unregistered ones among them round-trip bit for bit (how fast: bench/bench_read_csv.py)."""
    rng = np.random.default_rng(1)
    n = 2000
    R, t = random_rotations(n, rng), rng.normal(size=(n, 3))
    R[::10], t[::10] = np.nan, np.nan
    p = write_pose_csv(pose_frame("ds", "s", [f"{i}.png" for i in range(n)], R, t), tmp_path / "big.csv")
    back = read_pose_csv(p)
    assert list(back["image"]) == [f"{i}.png" for i in range(n)]
    assert np.array_equal(bits(rotations(back)), bits(R)) and np.array_equal(bits(translations(back)), bits(t))


# ------------------------------------------------------------------------------------------------------ conventions


def test_camera_center_hand_example() -> None:
    # 90° about z: world x → camera y. A camera at world (1, 2, 3): t = -R c.
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    c = np.array([1.0, 2.0, 3.0])
    t = -R @ c
    np.testing.assert_array_equal(t, [2.0, -1.0, -3.0])
    df = pose_frame("d", "s", ["a", "b"], np.stack([R, np.full((3, 3), np.nan)]), np.stack([t, [np.nan] * 3]))
    cc = camera_centers(df)
    np.testing.assert_allclose(cc[0], c, atol=0)
    assert np.isnan(cc[1]).all()
    # the camera centre maps to the camera origin
    np.testing.assert_allclose(R @ c + t, 0.0, atol=0)


def test_cam_to_world_world_to_cam_inverse() -> None:
    rng = np.random.default_rng(2)
    R = random_rotations(10, rng).reshape(2, 5, 3, 3)
    t = rng.normal(size=(2, 5, 3))
    Rc, c = cam_to_world(R, t)
    assert Rc.shape == (2, 5, 3, 3) and c.shape == (2, 5, 3)
    np.testing.assert_allclose(Rc, np.swapaxes(R, -1, -2))
    np.testing.assert_allclose(c, -np.einsum("...ji,...j->...i", R, t))
    R2, t2 = world_to_cam(Rc, c)
    np.testing.assert_allclose(R2, R, atol=1e-15)
    np.testing.assert_allclose(t2, t, atol=1e-12)
    # a world point seen by the camera: x_cam = R x + t, and x = R_c2w x_cam + c
    x = rng.normal(size=3)
    x_cam = R[0, 0] @ x + t[0, 0]
    np.testing.assert_allclose(Rc[0, 0] @ x_cam + c[0, 0], x, atol=1e-12)


def test_pose_frame_constructor() -> None:
    df = pose_frame("d", ["s1", "s2"], ["a", "b"], image_id=["i1", "i2"])
    assert list(df.columns) == ["image_id", "dataset", "scene", "image", *POSE_COLS]
    assert np.isnan(df[POSE_COLS].to_numpy()).all()
    with pytest.raises(ValueError):
        pose_frame("d", "s", ["a", "b"], np.eye(3)[None], np.zeros((1, 3)))


# ------------------------------------------------------------------------------------------------------- validation


def _expected(*names: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(names, columns=["dataset", "image"])


def _sub_file(tmp_path: Path, rows: list[str]) -> pd.DataFrame:
    return read_pose_csv(write(tmp_path, HEADER + "".join(r + "\n" for r in rows), "sub.csv"))


GOOD = [f"d,c0,a.png,{EYE},0;0;0", f"d,c0,b.png,{EYE},1;0;0", f"d,outliers,c.png,{NAN9},{NAN3}"]
EXP = _expected(("d", "a.png"), ("d", "b.png"), ("d", "c.png"))


def test_validate_ok(tmp_path: Path) -> None:
    validate_submission(_sub_file(tmp_path, GOOD), EXP, check_rotations=True)


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        (GOOD + [f"d,c1,a.png,{EYE},0;0;0"], 5, "duplicate image d/a.png (first seen on line 2)"),
        (GOOD + [f"d,c1,z.png,{EYE},0;0;0"], 5, "unknown image d/z.png"),
        (GOOD + [f"e,c1,a.png,{EYE},0;0;0"], 5, "dataset 'e' is not expected"),
        ([GOOD[0], f"d,c0,b.png,{EYE},1;nan;0", GOOD[2]], 3, "partly non-finite (ty = nan)"),
        ([GOOD[0], f"d,c0,b.png,{EYE},1;inf;0", GOOD[2]], 3, "partly non-finite (ty = inf)"),
        ([GOOD[0], f"d, ,b.png,{EYE},1;0;0", GOOD[2]], 3, "empty scene (cluster name)"),
    ],
)
def test_validate_row_errors(tmp_path: Path, rows: list[str], line: int, fragment: str) -> None:
    sub = _sub_file(tmp_path, rows)
    with pytest.raises(InputError) as e:
        validate_submission(sub, EXP)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'sub.csv'}:{line}: "), msg
    assert fragment in msg


def test_validate_missing_images(tmp_path: Path) -> None:
    sub = _sub_file(tmp_path, GOOD[:1])
    with pytest.raises(InputError, match=r"sub\.csv: missing images: 2, e\.g\. d/b\.png, d/c\.png"):
        validate_submission(sub, EXP)


def test_validate_path_override_and_in_memory_rows() -> None:
    sub = pose_frame("d", "c", ["a.png", "a.png"])
    with pytest.raises(InputError, match=r"^given\.csv:3: duplicate"):
        validate_submission(sub, _expected(("d", "a.png")), path="given.csv")


def test_validate_rotations(tmp_path: Path) -> None:
    rows = [GOOD[0], "d,c0,b.png,1;0;0;0;1;0;0;0;1.01,1;0;0", GOOD[2]]
    sub = _sub_file(tmp_path, rows)
    validate_submission(sub, EXP)  # off by default
    with pytest.raises(InputError, match=r"sub\.csv:3: rotation of d/b\.png is not orthonormal"):
        validate_submission(sub, EXP, check_rotations=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        validate_submission(sub, EXP, check_rotations="warn")
    assert any("not orthonormal" in str(x.message) for x in w)
    refl = _sub_file(tmp_path, [GOOD[0], "d,c0,b.png,1;0;0;0;1;0;0;0;-1,1;0;0", GOOD[2]])
    with pytest.raises(InputError, match="reflection"):
        validate_submission(refl, EXP, check_rotations=True)


OFFICIAL = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "toy_fb82"


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="real data not present")
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("submission", None),
        ("submission_bad_0", "unknown image ETs/800A.jpg"),
        ("submission_bad_1", "missing images: 1"),
        ("gt_bad", "duplicate image"),
    ],
)
def test_validate_matches_official_outcomes(name: str, fragment: str | None) -> None:
    """The organizer's toy submissions: the official metric accepts the first and asserts on the others."""
    gt = read_pose_csv(OFFICIAL / "train_labels.csv")
    sub = read_pose_csv(OFFICIAL / "submissions" / f"{name}.csv")
    if fragment is None:
        validate_submission(sub, gt)
    else:
        with pytest.raises(InputError, match=fragment):
            validate_submission(sub, gt)
