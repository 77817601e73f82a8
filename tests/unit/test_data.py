"""The IMC-2025 data layout (imc_core.data): labels, thresholds, image scanning, DataRoot / Dataset."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imc_core.data import (
    IMAGE_EXTS,
    DataRoot,
    Dataset,
    read_labels,
    read_thresholds,
    scan_images,
    summarize,
    write_labels,
    write_thresholds,
)
from imc_core.errors import InputError
from imc_core.submission import POSE_COLS, read_pose_csv

HEADER = "dataset,scene,image,rotation_matrix,translation_vector\n"
EYE = "1;0;0;0;1;0;0;0;1"
RZ = "0;-1;0;1;0;0;0;0;1"
NAN9 = ";".join(["nan"] * 9)
NAN3 = "nan;nan;nan"
THR_HEADER = "dataset,scene,thresholds\n"


def touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"not really an image: the data layer never opens it")


def make_root(tmp_path: Path) -> Path:
    """Two train datasets with labels and thresholds; `alpha` has an extra image on disk."""
    root = tmp_path / "root"
    touch_images(root / "train" / "alpha", ["a1.png", "a2.PNG", "a3.jpg", "out1.JPEG", "extra.png"])
    touch_images(root / "train" / "beta", ["b1.jpg", "b2.jpg"])
    (root / "train_labels.csv").write_text(
        HEADER
        + f"alpha,s1,a3.jpg,{EYE},0;0;1\n"
        + f"alpha,outliers,out1.JPEG,{NAN9},{NAN3}\n"
        + f"beta,x,b2.jpg,{RZ},1;2;3\n"
        + f"alpha,s1,a1.png,{RZ},0;0;2\n"
        + f"alpha,s2,a2.PNG,{EYE},0;0;3\n"
        + f"beta,x,b1.jpg,{EYE},0;0;0\n"
    )
    (root / "train_thresholds.csv").write_text(
        THR_HEADER + "alpha,s1,0;0;0.001;0.025;0.05;0.1\nalpha,s2,1;2;3;4;5;6\nbeta,x,0.5;0.4;0.3;0.2;0.1;0.05\n"
    )
    return root


# ----------------------------------------------------------------------------------------------------------- images


def test_scan_images_case_insensitive_sorted(tmp_path: Path) -> None:
    touch_images(tmp_path, ["b.JPG", "a.png", "C.Jpeg", "d.PNG", "notes.txt", ".hidden.png", "e.tif", "f.WebP",
                            "g.tiff", "h.bmp", "i.gif"])
    (tmp_path / "sub.png").mkdir()
    assert scan_images(tmp_path) == ["C.Jpeg", "a.png", "b.JPG", "d.PNG", "e.tif", "f.WebP", "g.tiff", "h.bmp"]
    assert IMAGE_EXTS == (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")


def test_scan_images_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nowhere: image folder not found"):
        scan_images(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------------------- labels


def test_read_labels_ok_and_round_trip(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    df = read_labels(root / "train_labels.csv")
    assert df["image"].tolist() == ["a3.jpg", "out1.JPEG", "b2.jpg", "a1.png", "a2.PNG", "b1.jpg"]
    write_labels(df, tmp_path / "copy.csv")
    assert (tmp_path / "copy.csv").read_text().startswith("dataset,scene,image,")
    back = read_labels(tmp_path / "copy.csv")
    np.testing.assert_array_equal(back[POSE_COLS].to_numpy(), df[POSE_COLS].to_numpy())


def test_same_image_name_in_two_datasets_is_fine(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    p.write_text(HEADER + f"a,s,x.png,{EYE},0;0;0\nb,s,x.png,{EYE},0;0;0\n")
    assert len(read_labels(p)) == 2


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        (
            [f"d,s,x.png,{EYE},0;0;0", f"d,t,x.png,{EYE},0;0;0"],
            3,
            "duplicate image 'x.png' in dataset 'd' (first on line 2)",
        ),
        (
            [f"d,s,x.png,{EYE},0;0;0", "d,s,y.png,1;0;0;0;1;0;0;0;1.01,0;0;0"],
            3,
            "rotation of d/y.png is not orthonormal",
        ),
        (["d,s,x.png,1;0;0;0;1;0;0;0;-1,0;0;0"], 2, "is a reflection"),
        ([f"d,s,x.png,{EYE},0;0;0", f"d,s,y.png,{NAN9},{NAN3}"], 3, "has a nan pose; only scene 'outliers'"),
        # ", " between fields: the cause is named, not left to the quoting
        ([f"d, outliers, y.png,{NAN9},{NAN3}"], 2, "(note the spaces around ' outliers': the file's fields are "
                                                    "separated by a comma alone)"),
        ([f"d,outliers,x.png,{EYE},0;nan;0"], 2, "partly non-finite (ty = nan)"),
        ([f"d,,x.png,{EYE},0;0;0"], 2, "empty scene name"),
        ([f"d,s,x.png,{EYE},0;0"], 2, "translation_vector must have 3"),
    ],
)
def test_read_labels_errors(tmp_path: Path, rows: list[str], line: int, fragment: str) -> None:
    p = tmp_path / "my_labels.csv"
    p.write_text(HEADER + "".join(r + "\n" for r in rows))
    with pytest.raises(InputError) as e:
        read_labels(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: "), msg
    assert "my_labels.csv" in msg and fragment in msg


# ------------------------------------------------------------------------------------------------------- thresholds


def test_thresholds_read_write(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    th = read_thresholds(root / "train_thresholds.csv")
    assert list(th) == [("alpha", "s1"), ("alpha", "s2"), ("beta", "x")]
    np.testing.assert_array_equal(th[("alpha", "s1")], [0, 0, 0.001, 0.025, 0.05, 0.1])  # zeros are legal
    np.testing.assert_array_equal(th[("beta", "x")], [0.5, 0.4, 0.3, 0.2, 0.1, 0.05])  # not increasing: fine
    th[("gamma", "g")] = np.array([0.1 + 0.2, 1e-17, 2, 3, 4, 5])
    write_thresholds(th, tmp_path / "t.csv")
    back = read_thresholds(tmp_path / "t.csv")
    assert list(back) == list(th)
    for k in th:
        assert np.array_equal(back[k], th[k])


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        (["d,s,1;2;3;4;5"], 2, "must be 6 numbers, got 5"),
        (["d,s,1;2;3;4;5;6", "d,t,1;2;3;x;5;6"], 3, "cannot parse number 'x'"),
        (["d,s,1;2;3;4;5;inf"], 2, "must be finite"),
        (["d,s,1;2;3;4;5;nan"], 2, "must be finite"),
        (["d,s,1;2;-3;4;5;6"], 2, "must not be negative"),
        (["d,s,1;2;3;4;5;6", "d,s,1;2;3;4;5;6"], 3, "duplicate thresholds for d/s (first on line 2)"),
    ],
)
def test_thresholds_errors(tmp_path: Path, rows: list[str], line: int, fragment: str) -> None:
    p = tmp_path / "my_thr.csv"
    p.write_text(THR_HEADER + "".join(r + "\n" for r in rows))
    with pytest.raises(InputError) as e:
        read_thresholds(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: "), msg
    assert fragment in msg


def test_thresholds_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "thr.csv"
    p.write_text("dataset,scene,thr\nd,s,1;2;3;4;5;6\n")
    with pytest.raises(InputError, match=r"thr\.csv:1: missing column\(s\) thresholds"):
        read_thresholds(p)


def test_thresholds_not_utf8_or_a_folder(tmp_path: Path) -> None:
    """Both were tracebacks (UnicodeDecodeError, IsADirectoryError) in the CLI and the dashboard."""
    p = tmp_path / "thr.csv"
    p.write_bytes("dataset,scene,thresholds\nd,caf\u00e9,0;0;1;2;3;4\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"thr\.csv: not UTF-8 text"):
        read_thresholds(p)
    with pytest.raises(InputError, match="is a directory, expected a CSV file"):
        read_thresholds(tmp_path)


def test_labels_or_thresholds_that_are_folders_are_named(tmp_path: Path) -> None:
    """A folder named train_labels.csv made the run say "not scored: not found"."""
    root = make_root(tmp_path)
    for name in ("train_labels.csv", "train_thresholds.csv"):
        (root / name).rename(root / f"{name}.bak")
        (root / name).mkdir()
    data = DataRoot(root)
    assert data.has_labels and data.has_thresholds
    with pytest.raises(InputError, match="train_labels.csv: is a directory"):
        _ = data.labels


# --------------------------------------------------------------------------------------------------------- train


def test_load_train_dataset(tmp_path: Path) -> None:
    root = DataRoot(make_root(tmp_path))
    assert root.has_labels
    assert root.train_datasets() == ["alpha", "beta"]
    assert root.test_datasets() == []
    with pytest.warns(UserWarning, match=r"1 image\(s\) not in train_labels\.csv, ignored: extra\.png"):
        ds = root.load_dataset("alpha")
    assert isinstance(ds, Dataset)
    assert ds.name == "alpha" and ds.split == "train"
    assert ds.image_dir == root.path / "train" / "alpha"
    assert ds.images == ["a3.jpg", "out1.JPEG", "a1.png", "a2.PNG"]  # labels file order
    assert ds.labels is not None and ds.labels["image"].tolist() == ds.images
    assert ds.labels.index.tolist() == [0, 1, 2, 3]
    assert ds.scenes() == {"s1": ["a3.jpg", "a1.png"], "outliers": ["out1.JPEG"], "s2": ["a2.PNG"]}
    assert set(ds.thresholds) == {"s1", "s2"}
    np.testing.assert_array_equal(ds.thresholds["s2"], [1, 2, 3, 4, 5, 6])
    assert len(ds.warnings) == 1 and "extra.png" in ds.warnings[0]
    assert len(ds.fingerprint) == 64
    assert [p.name for p in ds.image_paths] == ds.images
    assert ds.expected()["image"].tolist() == ds.images

    beta = root.load_dataset("beta")
    assert beta.images == ["b2.jpg", "b1.jpg"] and beta.warnings == []
    assert beta.fingerprint != ds.fingerprint


def test_missing_labelled_image_names_labels_row_and_path(tmp_path: Path) -> None:
    root_path = make_root(tmp_path)
    (root_path / "train" / "alpha" / "a1.png").unlink()
    with pytest.raises(InputError) as e:
        DataRoot(root_path).load_dataset("alpha")
    msg = str(e.value)
    missing = root_path / "train" / "alpha" / "a1.png"
    assert msg == f"{root_path / 'train_labels.csv'}:5: image not found: {missing}"
    (root_path / "train" / "alpha" / "A1.PNG").write_bytes(b"x")  # on disk in another case
    with pytest.raises(InputError, match=r"image not found: .*a1\.png \(the folder holds A1\.PNG: names are "
                                         r"case-sensitive\)"):
        DataRoot(root_path).load_dataset("alpha")


def test_scene_without_thresholds_warns(tmp_path: Path) -> None:
    root_path = make_root(tmp_path)
    (root_path / "train_thresholds.csv").write_text(THR_HEADER + "alpha,s1,1;2;3;4;5;6\n")
    with pytest.warns(UserWarning):
        ds = DataRoot(root_path).load_dataset("alpha")
    assert any("no thresholds for alpha/s2" in w for w in ds.warnings)


def test_train_without_labels_scans_folder(tmp_path: Path) -> None:
    root_path = tmp_path / "r"
    touch_images(root_path / "train" / "mine", ["z.PNG", "a.jpg", "m.JpG"])
    root = DataRoot(root_path)
    assert not root.has_labels and root.labels is None and root.thresholds is None
    ds = root.load_dataset("mine")
    assert ds.images == ["a.jpg", "m.JpG", "z.PNG"]
    assert ds.labels is None and ds.thresholds is None and ds.scenes() == {}


def test_train_folder_without_label_rows_warns(tmp_path: Path) -> None:
    root_path = make_root(tmp_path)
    touch_images(root_path / "train" / "gamma", ["g.png"])
    with pytest.warns(UserWarning, match="no rows for dataset 'gamma'"):
        ds = DataRoot(root_path).load_dataset("gamma")
    assert ds.images == ["g.png"] and ds.labels is None


def test_folders_that_are_no_datasets(tmp_path: Path) -> None:
    """A Mac's zip leaves __MACOSX/ (every run was refused: "no images in this folder"); an empty leftover folder
    the labels do not name says how to go on; a run written inside train/ would read as a dataset."""
    from imc_core.pipeline import run_pipeline

    root_path = make_root(tmp_path)
    (root_path / "train" / "__MACOSX" / "alpha").mkdir(parents=True)
    (root_path / "train" / ".hidden").mkdir()
    root = DataRoot(root_path)
    assert root.train_datasets() == ["alpha", "beta"]
    (root_path / "train" / "leftover").mkdir()
    with pytest.raises(InputError, match="no images .* in this folder; train_labels.csv does not name it either: "
                                         "remove the folder, or name the datasets to run with --dataset"):
        DataRoot(root_path).load_dataset("leftover")
    for out in (root_path / "train" / "myrun", root_path / "test" / "a" / "b"):
        with pytest.raises(InputError, match="inside the data root's (train|test)/ folder, where it would read as a "
                                             "dataset") as err:
            run_pipeline(root_path, out=out)
        assert err.value.path == str(out)
    assert not (root_path / "train" / "myrun").exists()


def test_a_cache_inside_the_data_roots_split_folder_is_refused(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``IMC_CACHE_DIR=<root>/train/zcache``: the first run went well, and every later run on the root was refused
    ("no images in this folder"), as a run folder there was (that one was refused before it started)."""
    from imc_core.pipeline import run_pipeline

    root_path = make_root(tmp_path)
    cache = root_path / "train" / "zcache"
    monkeypatch.setenv("IMC_CACHE_DIR", str(cache))
    for use_cache in (True, False):  # (--no-cache writes its artifacts there too)
        with pytest.raises(InputError, match="inside the data root's train/ folder, where it would read as a "
                                             r"dataset: put the cache elsewhere \(\$IMC_CACHE_DIR\)") as err:
            run_pipeline(root_path, out=tmp_path / "run", use_cache=use_cache)
        assert err.value.path == str(cache)
    assert not cache.exists() and not (tmp_path / "run").exists()


def test_fingerprint_changes_when_a_file_changes(tmp_path: Path) -> None:
    root_path = make_root(tmp_path)
    fp0 = DataRoot(root_path).load_dataset("beta").fingerprint
    assert DataRoot(root_path).load_dataset("beta").fingerprint == fp0  # stable
    img = root_path / "train" / "beta" / "b1.jpg"
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    fp1 = DataRoot(root_path).load_dataset("beta").fingerprint
    assert fp1 != fp0
    img.write_bytes(b"different length content")
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same mtime as fp1, new size
    assert DataRoot(root_path).load_dataset("beta").fingerprint not in (fp0, fp1)


def test_bad_root_and_split(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data root not found"):
        DataRoot(tmp_path / "nope")
    root = DataRoot(make_root(tmp_path))
    with pytest.raises(ValueError, match="split"):
        root.load_dataset("alpha", "val")
    with pytest.raises(InputError, match="not found"):
        root.load_dataset("nope")


def test_select_checks_split_and_names_up_front(tmp_path: Path) -> None:
    """A Kaggle download has train/ and test/: the split follows the names asked for, or is chosen; an unknown
    name lists what the split has and says when the other split has it; repeats are dropped."""
    root_path = make_root(tmp_path)
    touch_images(root_path / "test" / "t1", ["x.png"])
    root = DataRoot(root_path)
    assert root.select() == ("train", ["alpha", "beta"])
    assert root.select(["beta", "alpha", "beta"]) == ("train", ["beta", "alpha"])
    assert root.select(["t1"]) == ("test", ["t1"])  # auto: every name is a test dataset
    assert root.select(split="test") == ("test", ["t1"])
    with pytest.raises(InputError, match=r"no train dataset 't1' \(it is a test dataset: choose split test\); "
                                         r"train datasets: alpha, beta"):
        root.select(["t1"], split="train")
    with pytest.raises(InputError, match=r"train.*no train dataset 'gamma'; train datasets: alpha, beta"):
        root.select(["alpha", "gamma"])
    with pytest.raises(InputError, match="split must be"):
        root.select(split="val")
    only_test = DataRoot(make_test_root(tmp_path, None))
    assert only_test.select() == ("test", ["t1", "t2"])
    with pytest.raises(InputError, match="no datasets found under train/"):
        only_test.select(split="train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no datasets found under train/ or test/ \(a data root holds"):
        DataRoot(tmp_path / "empty").select()
    # the train/ folder given as the root: the message names the parent (it said only "no datasets found")
    with pytest.raises(InputError, match=r"train/ is a split folder of a data root: use its parent, "
                                         + re.escape(str(root_path.resolve()))):
        DataRoot(root_path / "train").select()
    assert DataRoot(tmp_path / "empty").parent_hint() == ""
    # a folder of data roots: they are named (it said only "no datasets found")
    folder = tmp_path / "roots"
    for name in ("ets", "mini", ".hidden"):
        (folder / name / "train" / "x").mkdir(parents=True)
    (folder / "notes").mkdir()
    with pytest.raises(InputError, match=r"it holds 2 data roots \(ets, mini\): add one of them, e\.g\. "
                                         + re.escape(str((folder / "ets").resolve()))):
        DataRoot(folder).select()


def test_bad_labels_surface_on_use(tmp_path: Path) -> None:
    root_path = make_root(tmp_path)
    (root_path / "train_labels.csv").write_text(HEADER + f"alpha,s1,a1.png,{EYE},0;0\n")
    root = DataRoot(root_path)
    with pytest.raises(InputError, match=r"train_labels\.csv:2: translation_vector"):
        root.load_dataset("alpha")


# ----------------------------------------------------------------------------------------------------------- test


def make_test_root(tmp_path: Path, sample_rows: list[str] | None) -> Path:
    root = tmp_path / "kaggle"
    touch_images(root / "test" / "t1", ["b.PNG", "a.jpg", "c.jpeg"])
    touch_images(root / "test" / "t2", ["x.JPG", "y.png"])
    if sample_rows is not None:
        (root / "sample_submission.csv").write_text(
            "image_id,dataset,scene,image,rotation_matrix,translation_vector\n"
            + "".join(f"{r},{NAN9},{NAN3}\n" for r in sample_rows)
        )
    return root


def test_test_split_scans_folders_without_sample(tmp_path: Path) -> None:
    root = DataRoot(make_test_root(tmp_path, None))
    assert root.train_datasets() == [] and root.test_datasets() == ["t1", "t2"]
    ds = root.load_dataset("t1", "test")
    assert ds.split == "test" and ds.images == ["a.jpg", "b.PNG", "c.jpeg"]
    assert ds.labels is None and ds.image_ids is None and ds.thresholds is None
    assert ds.image_dir == root.path / "test" / "t1"


def test_a_broken_sample_submission_blocks_test_work_only(tmp_path: Path) -> None:
    """It is optional and only test work reads it: `run --split train` failed on it."""
    root_path = make_root(tmp_path)
    touch_images(root_path / "test" / "t", ["1.png"])
    (root_path / "sample_submission.csv").write_text("image_id,dataset,scene,image\nx,t,a,1.png\n")
    root = DataRoot(root_path)
    assert root.select() == ("train", ["alpha", "beta"]) and root.select(split="train")[0] == "train"
    assert root.test_datasets(strict=False) == ["t"]
    with pytest.raises(InputError, match=r"sample_submission\.csv:1: missing column\(s\) rotation_matrix, "
                                         r"translation_vector"):
        root.select(split="test")
    df = summarize(root_path)
    assert df.loc[df.split == "test", ["dataset", "images"]].values.tolist() == [["t", 1]]
    assert len(df.attrs["problems"]) == 1 and "translation_vector" in df.attrs["problems"][0]


def test_test_split_uses_sample_submission(tmp_path: Path) -> None:
    rows = ["id_c,t1,cluster0,c.jpeg", "id_a,t1,cluster0,a.jpg", "t2_y.png_public,t2,cluster0,y.png"]
    root = DataRoot(make_test_root(tmp_path, rows))
    with pytest.warns(UserWarning, match=r"1 image\(s\) not in sample_submission\.csv, ignored: b\.PNG"):
        t1 = root.load_dataset("t1", "test")
    assert t1.images == ["c.jpeg", "a.jpg"]  # sample order
    assert t1.image_ids == ["id_c", "id_a"]
    with pytest.warns(UserWarning, match="x.JPG"):
        t2 = root.load_dataset("t2", "test")
    assert t2.images == ["y.png"] and t2.image_ids == ["t2_y.png_public"]


def test_sample_submission_dataset_without_rows_falls_back_to_scan(tmp_path: Path) -> None:
    root = DataRoot(make_test_root(tmp_path, ["i,t1,c,a.jpg"]))
    assert root.load_dataset("t2", "test").images == ["x.JPG", "y.png"]


def test_sample_submission_missing_image(tmp_path: Path) -> None:
    root_path = make_test_root(tmp_path, ["i1,t1,c,a.jpg", "i2,t1,c,gone.png"])
    with pytest.raises(InputError) as e:
        DataRoot(root_path).load_dataset("t1", "test")
    assert str(e.value) == (
        f"{root_path / 'sample_submission.csv'}:3: image not found: {root_path / 'test' / 't1' / 'gone.png'}"
    )


def test_sample_submission_lists_dataset_without_folder(tmp_path: Path) -> None:
    root_path = make_test_root(tmp_path, ["i1,hidden,c,a.jpg"])
    root = DataRoot(root_path)
    assert root.test_datasets() == ["hidden"]  # (t1 and t2 have no rows: see the next test)
    with pytest.raises(InputError, match=r"sample_submission\.csv:2: image not found"):
        root.load_dataset("hidden", "test")


def test_a_test_folder_the_sample_does_not_name_is_not_submitted(tmp_path: Path) -> None:
    """Its images went into the Kaggle submission under made-up image_ids, without a word (one image missing from
    the sample is left out with a warning): the submission must hold the sample's rows and no others."""
    root = DataRoot(make_test_root(tmp_path, ["i1,t1,c,a.jpg"]))
    assert root.test_datasets() == ["t1"] and root.test_folders_without_sample_rows() == ["t2"]
    assert root.select(split="test") == ("test", ["t1"])
    with pytest.raises(InputError, match=r"sample_submission\.csv: no rows for dataset 't2', so test/t2/ is not run"):
        root.select(["t2"], split="test")
    # a sample with its header alone is no list of rows: every folder, with a warning on the made-up ids
    empty = DataRoot(make_test_root(tmp_path / "e", []))
    assert empty.test_datasets() == ["t1", "t2"] and empty.test_folders_without_sample_rows() == []
    with pytest.warns(UserWarning, match=r"no data rows \(its header alone\), so every image of .*t1 is submitted"):
        assert empty.load_dataset("t1", "test").image_ids is None


@pytest.mark.parametrize("name", ["../other/x.png", "/abs/x.png", "a/../../x.png", "C:\\x.png"])
def test_an_image_name_leading_out_of_its_folder_is_refused(tmp_path: Path, name: str) -> None:
    """``../other/x.png`` in the labels or the sample read a file outside the dataset and submitted it."""
    root_path = make_root(tmp_path)
    labels = root_path / "train_labels.csv"
    labels.write_text(labels.read_text() + f"alpha,outliers,{name},{NAN9},{NAN3}\n")
    with pytest.raises(InputError, match=r"train_labels\.csv:\d+: image name .* leads out of its dataset's folder"):
        DataRoot(root_path).load_dataset("alpha")
    test_root = make_test_root(tmp_path / "t", [f"i1,t1,c,{name}"])
    with pytest.raises(InputError, match=r"sample_submission\.csv:2: image name .* leads out"):
        DataRoot(test_root).select(split="test")


@pytest.mark.parametrize("name, plain", [("./a1.jpg", "a1.jpg"), ("sub//x.png", "sub/x.png"),
                                         ("sub/./x.png", "sub/x.png"), ("x.png/", "x.png")])
def test_an_image_name_not_written_plainly_is_refused(tmp_path: Path, name: str, plain: str) -> None:
    """``./a1.jpg`` beside ``a1.jpg`` passed the duplicate check (the same file twice in the submission); alone it
    was read, and reported as a file on disk that the labels do not name."""
    root_path = make_root(tmp_path)
    labels = root_path / "train_labels.csv"
    labels.write_text(labels.read_text() + f"alpha,outliers,{name},{NAN9},{NAN3}\n")
    with pytest.raises(InputError, match=rf"train_labels\.csv:\d+: image name '{re.escape(name)}' is not written "
                                         rf"plainly: name it '{re.escape(plain)}'"):
        DataRoot(root_path).load_dataset("alpha")


def test_image_names_whose_pair_keys_clash_are_refused(tmp_path: Path) -> None:
    """matches.h5 keys a pair by its names with "/" written "-" (hloc): ``sub/x.png`` and ``sub-x.png`` shared every
    pair's matches, and an outlier was posed in a scene with a scene image's matches."""
    root_path = make_root(tmp_path)
    labels = root_path / "train_labels.csv"
    base = labels.read_text()
    labels.write_text(base + f"alpha,outliers,sub/x.png,{NAN9},{NAN3}\nalpha,outliers,sub-x.png,{NAN9},{NAN3}\n")
    n = len(base.splitlines())
    with pytest.raises(InputError, match=rf"train_labels\.csv:{n + 2}: image names 'sub/x\.png' and 'sub-x\.png' "
                                         "read the same once '/' is written '-'"):
        DataRoot(root_path).load_dataset("alpha")
    # in two datasets they never share a matches file
    labels.write_text(base + f"alpha,outliers,sub/x.png,{NAN9},{NAN3}\nbeta,outliers,sub-x.png,{NAN9},{NAN3}\n")
    with pytest.raises(InputError, match="image not found"):  # (no such files here: the names themselves pass)
        DataRoot(root_path).load_dataset("alpha")


def test_sample_submission_images_read_from_train_when_no_test_folder(tmp_path: Path) -> None:
    root_path = make_root(tmp_path)
    (root_path / "sample_submission.csv").write_text(
        "image_id,dataset,scene,image,rotation_matrix,translation_vector\n"
        f"beta_b1.jpg_public,beta,cluster0,b1.jpg,{NAN9},{NAN3}\n"
    )
    root = DataRoot(root_path)
    with pytest.warns(UserWarning, match="not found; reading the sample submission's images from"):
        ds = root.load_dataset("beta", "test")
    assert ds.image_dir == root_path / "train" / "beta" and ds.images == ["b1.jpg"]
    # the Datasets page (summarize) says it too: it listed "test · beta · missing 0" beside a folder that is absent
    df = summarize(root_path)
    assert df.attrs["notes"] == [f"{root_path / 'test' / 'beta'} not found: a test run of beta reads the sample "
                                 f"submission's images from {root_path / 'train' / 'beta'}, so its images are the "
                                 "train dataset's, listed under both splits."]
    assert df.attrs["borrowed"] == ["beta"]
    other = summarize(make_root(tmp_path / "other"))
    assert other.attrs["notes"] == [] and other.attrs["borrowed"] == []


# -------------------------------------------------------------------------------------------------------- summary


def test_summarize(tmp_path: Path) -> None:
    root_path = make_root(tmp_path)
    touch_images(root_path / "test" / "t", ["1.png", "2.png"])
    (root_path / "train" / "beta" / "b1.jpg").unlink()
    df = summarize(root_path)
    assert list(df.columns) == ["split", "dataset", "scene", "images", "missing", "thresholds"]
    got = {(r.split, r.dataset, r.scene): (r.images, r.missing) for r in df.itertuples()}
    assert got == {
        ("train", "alpha", "s1"): (2, 0),
        ("train", "alpha", "outliers"): (1, 0),
        ("train", "alpha", "s2"): (1, 0),
        ("train", "beta", "x"): (2, 1),
        ("test", "t", ""): (2, 0),
    }
    assert df.loc[(df.dataset == "alpha") & (df.scene == "s2"), "thresholds"].item() == "1;2;3;4;5;6"
    assert summarize(DataRoot(root_path)).equals(df)


def test_summarize_counts_labelled_images_the_pipeline_opens(tmp_path: Path) -> None:
    """Labelled names in a sub-folder or with an extension the folder scan skips are there (the pipeline opens the
    name): they were counted missing while their thumbnails showed."""
    root_path = make_root(tmp_path)
    beta = root_path / "train" / "beta"
    (beta / "sub").mkdir()
    (beta / "b1.jpg").rename(beta / "sub" / "b1.jpg")
    (beta / "b2.jpg").rename(beta / "b2.gif")
    labels = root_path / "train_labels.csv"
    labels.write_text(labels.read_text().replace("beta,x,b1.jpg", "beta,x,sub/b1.jpg").replace("b2.jpg", "b2.gif"))
    df = summarize(root_path)
    assert df.loc[df.dataset == "beta", ["images", "missing"]].values.tolist() == [[2, 0]]
    (beta / "b2.gif").unlink()
    assert summarize(root_path).loc[lambda d: d.dataset == "beta", "missing"].item() == 1


# ------------------------------------------------------------------------------------------------------ real data

SHARED = Path(os.environ.get("IMC_SHARED_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))


@pytest.mark.skipif(not (SHARED / "ets").is_dir(), reason="real ETs data not present")
def test_real_ets_loads() -> None:
    root = DataRoot(SHARED / "ets")
    assert root.train_datasets() == ["ETs"]
    ds = root.load_dataset("ETs")
    assert len(ds.images) == 22 and ds.warnings == []
    assert {k: len(v) for k, v in ds.scenes().items()} == {"outliers": 3, "ET": 9, "another_ET": 10}
    assert set(ds.thresholds) == {"ET", "another_ET"}
    assert isinstance(summarize(root), pd.DataFrame)
    # the labels parse exactly as written
    raw = read_pose_csv(SHARED / "ets" / "train_labels.csv")
    assert raw[POSE_COLS].equals(ds.labels[POSE_COLS])


@pytest.mark.skipif(not SHARED.is_dir(), reason="real data not present")
@pytest.mark.parametrize("name", ["toy_fb82", "mini_imc25", "strecha_mix"])
def test_real_roots_load(name: str) -> None:
    if not (SHARED / name).is_dir():
        pytest.skip(f"{name} not present")
    root = DataRoot(SHARED / name)
    for ds_name in root.train_datasets():
        ds = root.load_dataset(ds_name)
        assert ds.images and ds.labels is not None and ds.thresholds
    summarize(root)


def test_images_no_run_reads_are_named(tmp_path: Path) -> None:
    """A test folder's nested images were left out of the submission, and a link to nothing was skipped, without a
    word; nested images the labels name are read, and not named."""
    root = make_test_root(tmp_path, None)
    touch_images(root / "test" / "t1" / "sub", ["n.png", "notes.txt"])
    (root / "test" / "t1" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.warns(UserWarning) as caught:
        ds = DataRoot(root).load_dataset("t1", "test")
    assert ds.images == ["a.jpg", "b.PNG", "c.jpeg"]
    assert [str(w.message) for w in caught] == ds.warnings == [
        f"{root / 'test' / 't1'}: 1 image(s) in sub-folders, not read (a dataset's images are those directly in its "
        "folder, or those its labels name): sub/n.png",
        f"{root / 'test' / 't1'}: 1 link(s) to a missing file, ignored: gone.png"]
    assert DataRoot(root).load_dataset("t2", "test").warnings == []

    train = make_root(tmp_path / "train")
    touch_images(train / "train" / "beta" / "deep", ["b3.jpg"])
    with pytest.warns(UserWarning, match=r"1 image\(s\) in sub-folders, not read .*: deep/b3\.jpg"):
        DataRoot(train).load_dataset("beta")
    labels = train / "train_labels.csv"
    labels.write_text(labels.read_text() + f"beta,x,deep/b3.jpg,{EYE},0;0;0\n")
    beta = DataRoot(train).load_dataset("beta")
    assert "deep/b3.jpg" in beta.images and beta.warnings == []


def test_the_walk_for_unread_images_stops_early(tmp_path: Path) -> None:
    from imc_core.data import unread_files

    touch_images(tmp_path / "ds", ["a.png"])
    for k in range(5):
        touch_images(tmp_path / "ds" / f"work{k}", [f"{i}.png" for i in range(10)])
    [note] = unread_files(tmp_path / "ds", ["a.png"], limit=15)
    assert ": at least " in note and int(note.split("at least ")[1].split()[0]) < 50
    [note] = unread_files(tmp_path / "ds", ["a.png"])
    assert ": 50 image(s) in sub-folders" in note
