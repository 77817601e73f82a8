"""The IMC-2025 data layout: train labels, thresholds, test folders and ``sample_submission.csv``.

A *data root* looks like Kaggle's competition folder::

    ROOT/
      train/<dataset>/<image>.png|jpg|jpeg      training images
      train_labels.csv                          dataset,scene,image,rotation_matrix,translation_vector
      train_thresholds.csv                      dataset,scene,thresholds (6 values in metres, ';'-separated)
      test/<dataset>/<image>                    test images (no labels)
      sample_submission.csv                     image_id,dataset,scene,image,rotation_matrix,translation_vector

:class:`DataRoot` finds the datasets of a root and :meth:`DataRoot.load_dataset` returns a :class:`Dataset`: the
images to reconstruct (in a fixed order), their labels and thresholds when they exist, and a cheap fingerprint of
the image files (names, sizes, times), under which the stage cache remembers the images' content fingerprint
(:func:`imc_core.cache.content_fingerprint`). Poses follow :mod:`imc_core.submission` (world → camera).

Every problem with the input is an :class:`~imc_core.errors.InputError` naming the file, the row and the problem;
problems that do not stop a run (extra images on disk, a scene without thresholds) are warning strings kept in
:attr:`Dataset.warnings` and also emitted with :func:`warnings.warn`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .errors import InputError
from .fsutil import atomic_write_text
from .submission import (
    OUTLIERS,
    POSE_COLS,
    ROTATION_TOL,
    header_note,
    read_pose_csv,
    read_text_csv,
    rotation_errors,
    row_line,
    write_pose_csv,
)

__all__ = [
    "IMAGE_EXTS",
    "LABELS_FILE",
    "THRESHOLDS_FILE",
    "SAMPLE_SUBMISSION_FILE",
    "N_THRESHOLDS",
    "read_labels",
    "write_labels",
    "read_thresholds",
    "write_thresholds",
    "scenes_without_thresholds",
    "scan_images",
    "DataRoot",
    "Dataset",
    "summarize",
    "fingerprint_files",
]

#: what a folder scan takes as images (any case); IMC's own data is PNG and JPEG, and every stage reads the others too
#: (COLMAP gets them decoded to PNG). A test folder's .webp or .tif used to be skipped without a word, so the
#: submission lacked their rows.
IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
"""Image file extensions, matched case-insensitively."""
LABELS_FILE = "train_labels.csv"
THRESHOLDS_FILE = "train_thresholds.csv"
SAMPLE_SUBMISSION_FILE = "sample_submission.csv"
N_THRESHOLDS = 6
"""Thresholds per scene (metres); the metric skips the first two."""

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")


# ---------------------------------------------------------------------------------------------------------- labels


def leads_out_of_folder(name: str) -> bool:
    """Whether an image ``name`` leads out of its dataset's folder: an absolute path (``/data/x.png``,
    ``C:\\x.png``) or one with a ``..`` part (``../other/x.png``); ``sub/x.png`` stays inside."""
    name = str(name).strip()
    return bool(re.match(r"^([/\\]|[A-Za-z]:[/\\])", name)) or ".." in re.split(r"[/\\]", name)


def check_image_names(df: pd.DataFrame, path: str | Path) -> None:
    """Refuse an ``image`` that leads out of its dataset's folder: an absolute path (``/data/x.png``,
    ``C:\\x.png``) or one with a ``..`` part (``../other/x.png``). Such a name would read a file of another
    dataset, or of no dataset, and put it in the submission. A name in a sub-folder (``sub/x.png``) stays inside
    and is allowed. Refuse too a name not written plainly (``./x.png``, ``sub//x.png``: one file under two names)
    and, within a dataset (``df``'s ``dataset`` column, when it has one), two names that the matches file's pair
    keys would write alike (``sub/x.png`` and ``sub-x.png``).

    Raises:
        InputError: naming ``path`` and the line of the first such row.
    """
    names = df["image"].astype(str).str.strip()
    bad = np.flatnonzero(names.map(leads_out_of_folder).to_numpy(dtype=bool))
    if bad.size:
        i = int(bad[0])
        raise InputError(path, f"image name {names.iloc[i]!r} leads out of its dataset's folder: an image is named "
                               "by its path inside that folder", row_line(df, i))
    # one file, one name: ``./x.png`` or ``sub//x.png`` passed the duplicate check beside ``x.png`` (the same file
    # twice in the submission), and was reported as a file on disk that the labels do not name
    odd = np.flatnonzero(names.map(lambda n: posixpath.normpath(n) != n).to_numpy(dtype=bool))
    if odd.size:
        i = int(odd[0])
        raise InputError(path, f"image name {names.iloc[i]!r} is not written plainly: name it "
                               f"{posixpath.normpath(names.iloc[i])!r}", row_line(df, i))
    # matches.h5 keys a pair by its names with "/" written "-" (hloc's layout): ``sub/x.png`` and ``sub-x.png``
    # shared every pair's matches, and an outlier took a scene image's matches and pose
    groups = df["dataset"].astype(str).tolist() if "dataset" in df else [""] * len(df)
    seen: dict[tuple[str, str], int] = {}
    for i, (group, name) in enumerate(zip(groups, names, strict=True)):
        first = seen.setdefault((group, name.replace("/", "-")), i)
        if names.iloc[first] != name:  # (the same name twice is the duplicate check's to say)
            raise InputError(path, f"image names {names.iloc[first]!r} and {name!r} read the same once '/' is "
                                   "written '-', as the matches file's pair keys write it (hloc's layout): rename "
                                   "one of them", row_line(df, i))


def _spaces_hint(value: str) -> str:
    """A note for an error about ``value`` when spaces around it are the likely cause (", " between fields)."""
    if value != value.strip():
        return f" (note the spaces around {value!r}: the file's fields are separated by a comma alone)"
    return ""


def _case_hint(folder: Path, name: str) -> str:
    """A note for an image not found as ``name`` in ``folder`` when a file there differs from it in case only."""
    target = Path(name)
    try:
        near = [e.name for e in os.scandir(folder / target.parent) if e.name.lower() == target.name.lower()]
    except OSError:
        return ""
    return f" (the folder holds {near[0]}: names are case-sensitive)" if near else ""


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read and validate an IMC-2025 ``train_labels.csv`` into a pose frame (see :mod:`imc_core.submission`).

    Checks, each an :class:`InputError` naming the file and the 1-based line (header = line 1):

    * the CSV itself (columns, 9 + 3 numbers, numbers that parse; see :func:`~imc_core.submission.read_pose_csv`);
    * empty dataset / scene / image names, and image names that lead out of the dataset's folder
      (:func:`check_image_names`);
    * the same image twice within a dataset;
    * a pose with some numbers non-finite and others not;
    * a nan pose outside scene ``outliers`` (only GT outliers are unposed);
    * a rotation that is not orthonormal (``‖RᵀR − I‖_F > 1e-3``) or is a reflection.

    Returns:
        The pose frame in file order (``df.attrs["path"]`` is the file).
    """
    df = read_pose_csv(path)
    p = str(path)
    for col in ("dataset", "scene", "image"):
        empty = np.flatnonzero(df[col].str.strip().eq("").to_numpy())
        if empty.size:
            raise InputError(p, f"empty {col} name", row_line(df, int(empty[0])))
    check_image_names(df, p)

    ds = df["dataset"].to_numpy(dtype=object)
    im = df["image"].to_numpy(dtype=object)
    sc = df["scene"].to_numpy(dtype=object)
    dup = np.flatnonzero(df.duplicated(subset=["dataset", "image"], keep="first").to_numpy())
    if dup.size:
        i = int(dup[0])
        first = int(np.flatnonzero((ds == ds[i]) & (im == im[i]))[0])
        raise InputError(
            p,
            f"duplicate image {im[i]!r} in dataset {ds[i]!r} (first on line {row_line(df, first)})",
            row_line(df, i),
        )

    poses = df[POSE_COLS].to_numpy(dtype=np.float64)
    finite = np.isfinite(poses)
    all_nan = np.isnan(poses).all(axis=1)
    partial = np.flatnonzero(~all_nan & ~finite.all(axis=1))
    if partial.size:
        i = int(partial[0])
        k = int(np.flatnonzero(~finite[i])[0])
        raise InputError(
            p,
            f"pose of {ds[i]}/{im[i]} is partly non-finite ({POSE_COLS[k]} = {float(poses[i, k])!r})",
            row_line(df, i),
        )
    unposed = np.flatnonzero(all_nan & (sc != OUTLIERS))
    if unposed.size:
        i = int(unposed[0])
        raise InputError(
            p,
            f"image {ds[i]}/{im[i]} of scene {sc[i]!r} has a nan pose; only scene {OUTLIERS!r} may be unposed"
            + _spaces_hint(str(sc[i])),
            row_line(df, i),
        )
    reg = np.flatnonzero(~all_nan)
    if reg.size:
        R = poses[reg, :9].reshape(-1, 3, 3)
        err = rotation_errors(R)
        bad = np.flatnonzero(err > ROTATION_TOL)
        if bad.size:
            i = int(reg[bad[0]])
            raise InputError(
                p,
                f"rotation of {ds[i]}/{im[i]} is not orthonormal (‖RᵀR−I‖ = {err[bad[0]]:.3g} > {ROTATION_TOL:g})",
                row_line(df, i),
            )
        det = np.linalg.det(R)
        bad = np.flatnonzero(det < 0)
        if bad.size:
            i = int(reg[bad[0]])
            raise InputError(
                p, f"rotation of {ds[i]}/{im[i]} is a reflection (det = {det[bad[0]]:.3g})", row_line(df, i)
            )
    return df


def write_labels(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a labels pose frame as ``train_labels.csv`` (no ``image_id``; exact floats; atomic)."""
    return write_pose_csv(df, path, image_id=False)


# ------------------------------------------------------------------------------------------------------ thresholds


def read_thresholds(path: str | Path) -> dict[tuple[str, str], np.ndarray]:
    """Read ``train_thresholds.csv`` (``dataset,scene,thresholds``; six ``;``-separated metres per scene).

    Returns:
        ``{(dataset, scene): float64 array of 6}`` in file order. Values must be finite and non-negative (the official
        file has zeros among the first two, which the metric skips); they need not be increasing.

    Raises:
        InputError: missing/empty file, missing columns, a duplicate ``(dataset, scene)``, a row without exactly six
            numbers, a number that does not parse, is not finite or is negative (file + line named).
    """
    p = str(path)
    raw = read_text_csv(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in ("dataset", "scene", "thresholds") if c not in raw.columns]
    if missing:
        raise InputError(p, f"missing column(s) {', '.join(missing)}; {header_note(path)}", 1)
    out: dict[tuple[str, str], np.ndarray] = {}
    first_line: dict[tuple[str, str], int] = {}
    for pos, (ds, sc, th) in enumerate(
        zip(raw["dataset"].tolist(), raw["scene"].tolist(), raw["thresholds"].tolist(), strict=True)
    ):
        line = pos + 2
        if ds == "" and sc == "" and th == "":
            continue  # blank line
        if not ds.strip() or not sc.strip():
            raise InputError(p, "empty dataset or scene name", line)
        key = (ds, sc)
        if key in out:
            raise InputError(p, f"duplicate thresholds for {ds}/{sc} (first on line {first_line[key]})", line)
        toks = th.split(";")
        if len(toks) != N_THRESHOLDS:
            got = 0 if not th.strip() else len(toks)
            raise InputError(p, f"thresholds of {ds}/{sc} must be {N_THRESHOLDS} numbers, got {got}", line)
        vals = np.empty(N_THRESHOLDS, dtype=np.float64)
        for k, tok in enumerate(toks):
            try:
                vals[k] = float(tok)
            except ValueError:
                raise InputError(p, f"thresholds of {ds}/{sc}: cannot parse number {tok.strip()!r}", line) from None
        if not np.isfinite(vals).all():
            raise InputError(p, f"thresholds of {ds}/{sc} must be finite, got {th}", line)
        if (vals < 0).any():
            # Zero is legal: the official IMC-2025 file has 0;0;0.001;... for imc2023_haiper (the metric skips the
            # first two thresholds anyway).
            raise InputError(p, f"thresholds of {ds}/{sc} must not be negative, got {th}", line)
        out[key] = vals
        first_line[key] = line
    return out


def scenes_without_thresholds(labels: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray]
                              ) -> list[tuple[str, str]]:
    """``(dataset, scene)`` of every scene of ``labels`` (outliers aside) that ``thresholds`` lacks, in labels
    order: the metric cannot score them."""
    pairs = dict.fromkeys(zip(labels["dataset"].astype(str), labels["scene"].astype(str), strict=True))
    return [(ds, sc) for ds, sc in pairs if sc != OUTLIERS and (ds, sc) not in thresholds]


def missing_thresholds_error(path: str | Path, lacking: list[tuple[str, str]]) -> InputError:
    """The :class:`InputError` for a thresholds file without the scenes ``lacking`` (non-empty)."""
    ds, sc = lacking[0]
    more = f" (and {len(lacking) - 1} more scene{'s' * (len(lacking) > 2)})" if len(lacking) > 1 else ""
    return InputError(path, f"no thresholds for scene {sc!r} of dataset {ds!r}{more}")


def write_thresholds(thresholds: dict[tuple[str, str], np.ndarray], path: str | Path) -> Path:
    """Write ``{(dataset, scene): 6 floats}`` as ``train_thresholds.csv`` (exact floats; atomic)."""
    rows = []
    for (ds, sc), vals in thresholds.items():
        arr = np.asarray(vals, dtype=np.float64).ravel()
        if arr.size != N_THRESHOLDS:
            raise ValueError(f"thresholds of {ds}/{sc} must be {N_THRESHOLDS} numbers, got {arr.size}")
        rows.append((ds, sc, ";".join(map(float.__repr__, arr.tolist()))))
    text = pd.DataFrame(rows, columns=["dataset", "scene", "thresholds"]).to_csv(index=False, lineterminator="\n")
    return atomic_write_text(path, text)


# ---------------------------------------------------------------------------------------------------------- images


def is_image_name(name: str) -> bool:
    """True for a visible file name with an :data:`IMAGE_EXTS` extension (any case)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTS)


def scan_images(folder: str | Path) -> list[str]:
    """Image file names (not paths) directly inside ``folder``, sorted; extensions per :data:`IMAGE_EXTS`.

    Hidden files and sub-folders are ignored (:func:`unread_files` names the images left so).

    Raises:
        InputError: the folder does not exist or is not a folder.
    """
    f = Path(folder)
    if not f.is_dir():
        raise InputError(f, "image folder not found" if not f.exists() else "not a folder")
    names = []
    with os.scandir(f) as it:
        for e in it:
            if is_image_name(e.name) and e.is_file():
                names.append(e.name)
    return sorted(names)


def unread_files(folder: str | Path, read: list[str], depth: int = 3, limit: int = 2000) -> list[str]:
    """Warnings (one line each, naming ``folder``) on image files there that no run reads, though a researcher may
    think it does: images in its sub-folders (up to ``depth`` levels) that ``read`` does not name (a test folder's
    nested images were left out of the submission without a word), and links to nothing under an image name. The
    walk stops after ``limit`` files in sub-folders (a work folder of 40,000 files took 1.3 s at every load) and
    then says "at least"."""
    base = Path(folder)
    named = set(read)
    nested, broken = [], []
    seen = 0
    for top, dirs, files in os.walk(base):
        if seen >= limit:
            break
        level = len(Path(top).relative_to(base).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if level < depth else []
        for name in sorted(files):
            if level and (seen := seen + 1) > limit:  # (one huge sub-folder is cut short too)
                break
            if not is_image_name(name):
                continue
            rel = (Path(top) / name).relative_to(base).as_posix()
            if not (Path(top) / name).exists():  # (a link whose target is gone)
                broken.append(rel)
            elif level and rel not in named:
                nested.append(rel)
    out = []
    if nested:
        count = f"{'at least ' if seen > limit else ''}{len(nested)}"
        out.append(f"{base}: {count} image(s) in sub-folders, not read (a dataset's images are those directly in its "
                   f"folder, or those its labels name): {_list_names(nested)}")
    if broken:
        out.append(f"{base}: {len(broken)} link(s) to a missing file, ignored: {_list_names(broken)}")
    return out


def fingerprint_files(folder: str | Path, names: list[str]) -> str:
    """sha256 (hex) over the sorted ``(name, size, mtime_ns)`` of ``folder/name`` for each name.

    Cheap (one ``stat`` per file, no reading) and changes when a file is added, removed, renamed, rewritten or
    touched.
    """
    h = hashlib.sha256()
    base = Path(folder)
    for name in sorted(names):
        st = os.stat(base / name)
        h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def ground_truth_hashes(labels: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray],
                        datasets: Sequence[str]) -> dict[str, str]:
    """One sha256 (hex) per dataset over what its score is computed against: its GT rows (scene, image, pose) in
    (scene, image) order and its scenes' thresholds. Equal hashes mean the same ground truth wherever the files lie
    (a teammate's copy of the data), so two runs' scores on that dataset can be compared.
    """
    out = {}
    for name in datasets:
        rows = labels[labels["dataset"].astype(str) == name].sort_values(["scene", "image"], kind="stable")
        h = hashlib.sha256()
        h.update(rows[["scene", "image", *POSE_COLS]].to_csv(index=False, float_format="%.17g").encode())
        for (ds, scene), values in sorted(thresholds.items()):
            if ds == name:
                h.update(f"{scene}\t{';'.join(f'{float(v):.17g}' for v in values)}\n".encode())
        out[name] = h.hexdigest()
    return out


# ---------------------------------------------------------------------------------------------------------- dataset


@dataclass
class Dataset:
    """One dataset of a data root, ready for the pipeline.

    Attributes:
        name: the dataset name (folder under ``train/`` or ``test/``).
        split: ``"train"`` or ``"test"``.
        image_dir: the folder holding the images.
        images: image names relative to ``image_dir``, in order (labels / sample_submission file order, else
            sorted).
        labels: pose frame rows of this dataset (file order, fresh index), ``None`` without ground truth.
        thresholds: ``{scene: 6 floats}`` for this dataset's scenes, ``None`` without a thresholds file.
        warnings: non-fatal problems found while loading (one line each).
        fingerprint: sha256 over sorted ``(name, size, mtime_ns)`` of the images (see :func:`fingerprint_files`);
            the cache keys hold the images' content fingerprint remembered under it.
        image_ids: Kaggle ``image_id`` per image (aligned with ``images``) when a sample submission gave them.
    """

    name: str
    split: str
    image_dir: Path
    images: list[str]
    labels: pd.DataFrame | None = None
    thresholds: dict[str, np.ndarray] | None = None
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""
    image_ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_paths(self) -> list[Path]:
        """Full paths of :attr:`images`, same order."""
        return [self.image_dir / n for n in self.images]

    def scenes(self) -> dict[str, list[str]]:
        """GT scene → its image names (labels file order; ``outliers`` included). Empty without labels."""
        if self.labels is None:
            return {}
        out: dict[str, list[str]] = {}
        for sc, im in zip(self.labels["scene"].tolist(), self.labels["image"].tolist(), strict=True):
            out.setdefault(sc, []).append(im)
        return out

    def expected(self) -> pd.DataFrame:
        """``dataset, image`` frame of the images a submission for this dataset must contain."""
        return pd.DataFrame({"dataset": [self.name] * len(self.images), "image": list(self.images)})


def _warn(msgs: list[str], msg: str) -> None:
    msgs.append(msg)
    warnings.warn(msg, UserWarning, stacklevel=4)  # caller of load_dataset


def name_list(names: Sequence[str], k: int) -> str:
    """The first ``k`` of ``names`` joined by commas, then ``, … (N more)`` when there are more (for messages)."""
    return ", ".join(names[:k]) + (f", … ({len(names) - k} more)" if len(names) > k else "")


def _list_names(names: list[str], k: int = 3) -> str:
    s = ", ".join(names[:k])
    return s + (", ..." if len(names) > k else "")


class DataRoot:
    """A folder in the IMC-2025 layout (see the module docstring).

    Labels, thresholds and the sample submission are read lazily, once, and validated when first used.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            problem = "data root not found" if not self.path.exists() else "data root is not a folder"
            raise InputError(self.path, problem)

    def __repr__(self) -> str:
        return f"DataRoot({str(self.path)!r})"

    # files
    @property
    def labels_path(self) -> Path:
        return self.path / LABELS_FILE

    @property
    def thresholds_path(self) -> Path:
        return self.path / THRESHOLDS_FILE

    @property
    def sample_submission_path(self) -> Path:
        return self.path / SAMPLE_SUBMISSION_FILE

    @property
    def has_labels(self) -> bool:
        """True when ``train_labels.csv`` exists (a folder of that name too: reading it then says what is wrong)."""
        return self.labels_path.exists()

    @property
    def has_thresholds(self) -> bool:
        return self.thresholds_path.exists()

    def parent_hint(self) -> str:
        """``"; … add its parent, P"`` when this folder is the ``train/`` or ``test/`` folder of a data root (a
        common slip), else ``""``: appended to the messages that find no datasets or no labels here."""
        p = self.path.resolve()
        if p.name in ("train", "test") and ((p.parent / LABELS_FILE).exists() or (p.parent / "train").is_dir()
                                            or (p.parent / "test").is_dir()):
            return f"; {p.name}/ is a split folder of a data root: use its parent, {p.parent}"
        # a folder of data roots (a tester added /work/shared/datasets and read only "no datasets found")
        try:
            inner = sorted(c.name for c in p.iterdir() if c.is_dir() and not c.name.startswith(".")
                           and ((c / "train").is_dir() or (c / "test").is_dir()))
        except OSError:
            inner = []
        if inner:
            return (f"; it holds {len(inner)} data root{'s' if len(inner) > 1 else ''} ({name_list(inner, 6)}): add "
                    f"{'one of them' if len(inner) > 1 else 'it'}, e.g. {p / inner[0]}")
        return ""

    def labelled_datasets_without_folder(self) -> list[str]:
        """Datasets that ``train_labels.csv`` names but ``train/`` has no folder for (a copy left out?), sorted."""
        if self.labels is None:
            return []
        return sorted(set(self.labels["dataset"].astype(str)) - set(self.train_datasets()))

    def check_scorable(self, datasets: Sequence[str]) -> None:
        """Check, before a run, that the train datasets ``datasets`` can be scored when the root has labels: the
        labels and thresholds files parse and every labelled scene of theirs has thresholds. A root without labels
        is not scored, and passes.

        Raises:
            InputError: naming the file (and line) at fault.
        """
        labels = self.labels
        if labels is None:
            return
        if not self.has_thresholds:
            raise InputError(self.thresholds_path, f"not found: the labels of {LABELS_FILE} are scored against the "
                                                   "thresholds in this file (dataset,scene,thresholds)")
        rows = labels[labels["dataset"].astype(str).isin(list(datasets))]
        if lacking := scenes_without_thresholds(rows, self.thresholds or {}):
            raise missing_thresholds_error(self.thresholds_path, lacking)

    @cached_property
    def labels(self) -> pd.DataFrame | None:
        """All train labels (validated pose frame), ``None`` without ``train_labels.csv``."""
        return read_labels(self.labels_path) if self.has_labels else None

    @cached_property
    def thresholds(self) -> dict[tuple[str, str], np.ndarray] | None:
        """All thresholds ``{(dataset, scene): 6 floats}``, ``None`` without ``train_thresholds.csv``."""
        return read_thresholds(self.thresholds_path) if self.has_thresholds else None

    @cached_property
    def sample_submission(self) -> pd.DataFrame | None:
        """The sample submission as a pose frame (with ``image_id``), ``None`` when absent."""
        if not self.sample_submission_path.is_file():
            return None
        sub = read_pose_csv(self.sample_submission_path)
        check_image_names(sub, self.sample_submission_path)
        return sub

    # datasets
    def _subdirs(self, split: str) -> list[str]:
        d = self.path / split
        if not d.is_dir():
            return []
        with os.scandir(d) as it:  # (hidden folders, and the __MACOSX/ a Mac's zip leaves, are never datasets)
            return sorted(e.name for e in it if e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX")

    def train_datasets(self) -> list[str]:
        """Dataset folders under ``train/``, sorted."""
        return self._subdirs("train")

    def test_datasets(self, strict: bool = True) -> list[str]:
        """The test datasets, sorted: those of ``sample_submission.csv`` when it has rows (a Kaggle submission
        holds the sample's rows and no others, so a folder under ``test/`` that it does not name is left out:
        :meth:`test_folders_without_sample_rows`), else the folders under ``test/``.

        Args:
            strict: False: a sample submission that cannot be read counts as absent (the folders under ``test/``
                are listed), so that it does not block work on ``train/``; test work reads it and fails then.

        Raises:
            InputError: (strict) ``sample_submission.csv`` cannot be read.
        """
        try:
            sub = self.sample_submission
        except InputError:
            if strict:
                raise
            sub = None
        if sub is not None and len(sub):
            return sorted(set(sub["dataset"].astype(str)))
        return self._subdirs("test")

    def test_folders_without_sample_rows(self) -> list[str]:
        """Folders under ``test/`` that a ``sample_submission.csv`` with rows does not name (not run), sorted."""
        try:
            sub = self.sample_submission
        except InputError:
            return []
        if sub is None or not len(sub):
            return []
        return sorted(set(self._subdirs("test")) - set(sub["dataset"].astype(str)))

    def datasets(self, split: str = "train") -> list[str]:
        """:meth:`train_datasets` or :meth:`test_datasets`."""
        _check_split(split)
        return self.train_datasets() if split == "train" else self.test_datasets()

    def select(self, datasets: Sequence[str] | None = None, split: str = "auto") -> tuple[str, list[str]]:
        """The split and dataset names a run covers, checked before anything runs.

        Args:
            datasets: names asked for (repeats dropped, order kept); empty or None: every dataset of the split.
            split: ``train``, ``test`` or ``auto``: ``train`` when the root has training datasets, unless every
                name asked for is a test dataset and not a training one (a Kaggle download has both).

        Raises:
            InputError: no dataset in the split, or a name the split does not have (the message lists the ones it
                has, and says when the name is in the other split).
        """
        if split not in (*SPLITS, "auto"):
            raise InputError(self.path, f"split must be train, test or auto, got {split!r}")
        names = list(dict.fromkeys(datasets or []))
        train, test = self.train_datasets(), self.test_datasets(strict=False)
        if split == "auto":
            only_test = bool(names) and not set(names) <= set(train) and set(names) <= set(test)
            split = "test" if only_test or not train else "train"
        if split == "test":  # only test work needs the sample submission: a broken one must not block train work
            test = self.test_datasets()
        have = train if split == "train" else test
        if not have:
            where = "train/ or test/" if not (train or test) else f"{split}/" + (
                " or sample_submission.csv" if split == "test" else "")
            raise InputError(self.path, f"no datasets found under {where} (a data root holds train/<dataset>/ "
                                        "image folders with train_labels.csv, or test/<dataset>/)"
                                        + self.parent_hint())
        for name in names:
            if split == "test" and name in self.test_folders_without_sample_rows():
                raise InputError(self.sample_submission_path, f"no rows for dataset {name!r}, so test/{name}/ is not "
                                                              "run: a Kaggle submission holds the sample's rows and no "
                                                              "others (add its rows, or remove the file to submit "
                                                              "every folder under test/)")
            if name not in have:
                other = "test" if split == "train" else "train"
                hint = f" (it is a {other} dataset: choose split {other})" if name in (test if other == "test"
                                                                                          else train) else ""
                raise InputError(self.path / split, f"no {split} dataset {name!r}{hint}; "
                                                    f"{split} datasets: {', '.join(have)}")
        return split, names or have

    def load_for_run(self, datasets: Sequence[str] | None = None, split: str = "auto"
                     ) -> tuple[str, dict[str, Dataset]]:
        """What a run reads, checked as ``run`` checks it before any run folder or work: the split and datasets
        (:meth:`select`), on the train split the labels and thresholds able to score them
        (:meth:`check_scorable`), and every dataset loaded (:meth:`load_dataset`: images present).

        Returns:
            The split and ``{name: Dataset}`` in run order.

        Raises:
            InputError: naming the file (and line) at fault.
        """
        split, names = self.select(datasets, split)
        if split == "train":  # first: loading would also warn about the scenes without thresholds it refuses
            self.check_scorable(names)
        return split, {name: self.load_dataset(name, split) for name in names}

    def load_dataset(self, name: str, split: str = "train") -> Dataset:
        """Load one dataset: its images, labels, thresholds, warnings and fingerprint.

        Train: the images are the labelled images of the dataset in labels order; each must exist in
        ``train/<name>/`` (else an :class:`InputError` naming the labels file, the row and the missing path);
        images on disk without labels give a warning. Without labels (no file, or no rows for this dataset) the
        folder is scanned.

        Test: the rows of ``sample_submission.csv`` for this dataset (order and ``image_id`` kept) when there are
        any, else a scan of ``test/<name>/``. When ``test/<name>/`` does not exist but ``train/<name>/`` does, the
        sample submission's images are looked up there (with a warning).
        """
        _check_split(split)
        if split == "train":
            return self._load_train(name)
        return self._load_test(name)

    def _load_train(self, name: str) -> Dataset:
        image_dir = self.path / "train" / name
        msgs: list[str] = []
        labels = self.labels
        rows = None
        if labels is not None:
            mask = (labels["dataset"] == name).to_numpy()
            if mask.any():
                positions = np.flatnonzero(mask)
                rows = labels.iloc[positions].reset_index(drop=True)
                rows.attrs = {"path": str(self.labels_path)}
        if rows is None:
            if not image_dir.is_dir():
                raise InputError(image_dir, f"train dataset {name!r} not found (no folder and no labels)")
            images = scan_images(image_dir)
            if not images:
                unnamed = (f"; {self.labels_path.name} does not name it either: remove the folder, or name the "
                           "datasets to run with --dataset") if labels is not None else ""
                raise InputError(image_dir, f"no images ({', '.join(IMAGE_EXTS)}) in this folder{unnamed}")
            for msg in unread_files(image_dir, images):
                _warn(msgs, msg)
            if labels is not None:
                _warn(
                    msgs, f"{self.labels_path}: no rows for dataset {name!r}; its {len(images)} images have no labels"
                )
            thresholds = None
        else:
            images = rows["image"].tolist()
            for pos, img in zip(positions.tolist(), images, strict=True):
                if not (image_dir / img).is_file():
                    raise InputError(
                        self.labels_path, f"image not found: {image_dir / img}{_spaces_hint(img)}"
                                          f"{_case_hint(image_dir, img)}", row_line(labels, int(pos))
                    )
            on_disk = scan_images(image_dir)
            labelled = set(images)
            extra = [n for n in on_disk if n not in labelled]
            if extra:
                _warn(
                    msgs,
                    f"{image_dir}: {len(extra)} image(s) not in {LABELS_FILE}, ignored: {_list_names(extra)}",
                )
            for msg in unread_files(image_dir, images):
                _warn(msgs, msg)
            thresholds = None
            if self.thresholds is not None:
                thresholds = {sc: v.copy() for (ds, sc), v in self.thresholds.items() if ds == name}
                lacking = [sc for _, sc in scenes_without_thresholds(rows, self.thresholds)]
                if lacking:
                    _warn(msgs, f"{self.thresholds_path}: no thresholds for {name}/{', '.join(lacking)}")
        return Dataset(
            name=name,
            split="train",
            image_dir=image_dir,
            images=images,
            labels=rows,
            thresholds=thresholds,
            warnings=msgs,
            fingerprint=fingerprint_files(image_dir, images),
        )

    def _load_test(self, name: str) -> Dataset:
        image_dir = self.path / "test" / name
        msgs: list[str] = []
        sub = self.sample_submission
        rows = None
        if sub is not None:
            mask = (sub["dataset"] == name).to_numpy()
            if mask.any():
                positions = np.flatnonzero(mask)
                rows = sub.iloc[positions]
        if rows is None:
            if not image_dir.is_dir():
                raise InputError(
                    image_dir, f"test dataset {name!r} not found (no folder and no {SAMPLE_SUBMISSION_FILE} rows)"
                )
            images = scan_images(image_dir)
            if not images:
                raise InputError(image_dir, f"no images ({', '.join(IMAGE_EXTS)}) in this folder")
            for msg in unread_files(image_dir, images):
                _warn(msgs, msg)
            image_ids = None
            if sub is not None and not len(sub):
                _warn(msgs, f"{self.sample_submission_path}: no data rows (its header alone), so every image of "
                            f"{image_dir} is submitted, with image_ids made up as <dataset>_<image>_public")
        else:
            images = rows["image"].tolist()
            image_ids = rows["image_id"].tolist() if "image_id" in rows.columns else None
            dup = pd.Series(images).duplicated()
            if dup.any():
                i = int(np.flatnonzero(dup.to_numpy())[0])
                raise InputError(
                    self.sample_submission_path,
                    f"duplicate image {images[i]!r} in dataset {name!r}",
                    row_line(sub, int(positions[i])),
                )
            if not image_dir.is_dir() and (self.path / "train" / name).is_dir():
                image_dir = self.path / "train" / name
                _warn(
                    msgs,
                    f"{self.path / 'test' / name} not found; reading the sample submission's images from {image_dir}",
                )
            for pos, img in zip(positions.tolist(), images, strict=True):
                if not (image_dir / img).is_file():
                    raise InputError(
                        self.sample_submission_path, f"image not found: {image_dir / img}", row_line(sub, int(pos))
                    )
            if image_dir.parent.name == "test":
                listed = set(images)
                extra = [n for n in scan_images(image_dir) if n not in listed]
                if extra:
                    _warn(
                        msgs,
                        f"{image_dir}: {len(extra)} image(s) not in {SAMPLE_SUBMISSION_FILE}, ignored: "
                        f"{_list_names(extra)}",
                    )
                for msg in unread_files(image_dir, images):
                    _warn(msgs, msg)
        return Dataset(
            name=name,
            split="test",
            image_dir=image_dir,
            images=images,
            labels=None,
            thresholds=None,
            warnings=msgs,
            fingerprint=fingerprint_files(image_dir, images),
            image_ids=image_ids,
        )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


# --------------------------------------------------------------------------------------------------------- summary

SUMMARY_COLS = ["split", "dataset", "scene", "images", "missing", "thresholds"]


def summarize(root: str | Path | DataRoot) -> pd.DataFrame:
    """One row per (split, dataset, scene) of a data root, for the dashboard's Datasets page.

    Columns: ``split``, ``dataset``, ``scene`` (GT scene; ``""`` for a dataset without labels, e.g. every test
    dataset), ``images`` (labelled or listed images, or images on disk without labels), ``missing`` (labelled or
    listed images not on disk), ``thresholds`` (the six values ``;``-joined, ``""`` when none). Cheap: no image is
    opened and no fingerprint is computed. ``df.attrs["problems"]``: a sample submission that cannot be read (the
    test rows then come from the folders under ``test/``; train work does not need it). ``df.attrs["notes"]``: test
    datasets whose ``test/`` folder is absent, so that a test run reads their images from ``train/``; their names in
    ``df.attrs["borrowed"]`` (their images are the train dataset's: a total of image files counts them once).

    Raises:
        InputError: a labels / thresholds file is malformed.
    """
    dr = root if isinstance(root, DataRoot) else DataRoot(root)
    rows: list[tuple] = []
    labels = dr.labels
    thr = dr.thresholds or {}

    def thr_text(ds: str, sc: str) -> str:
        v = thr.get((ds, sc))
        return "" if v is None else ";".join(f"{x:g}" for x in v.tolist())

    def on_disk(folder: Path) -> set[str]:
        return set(scan_images(folder)) if folder.is_dir() else set()

    def on_disk_as(folder: Path, name: str, present: set[str]) -> bool:
        # a labelled name in a sub-folder or with another extension is there for the pipeline (it opens the name)
        return name in present or (folder / name).is_file()

    train_names = set(dr.train_datasets())
    if labels is not None:
        train_names.update(labels["dataset"].unique().tolist())
    for ds in sorted(train_names):
        folder = dr.path / "train" / ds
        present = on_disk(folder)
        sub = labels[labels["dataset"] == ds] if labels is not None else None
        if sub is None or sub.empty:
            rows.append(("train", ds, "", len(present), 0, ""))
            continue
        for sc, imgs in sub.groupby("scene", sort=False)["image"]:
            names = imgs.tolist()
            missing = sum(1 for n in names if not on_disk_as(folder, n, present))
            rows.append(("train", ds, str(sc), len(names), missing, thr_text(ds, str(sc))))

    try:
        sample = dr.sample_submission
    except InputError as err:  # train work goes on without it; the test rows come from test/ and say why
        sample, sample_problem = None, str(err).splitlines()[0]
    else:
        sample_problem = ""
    notes: list[str] = []
    borrowed: list[str] = []
    for ds in dr.test_datasets(strict=False):
        folder = dr.path / "test" / ds
        if sample is not None and (sample["dataset"] == ds).any():
            names = sample.loc[sample["dataset"] == ds, "image"].tolist()
            if not folder.is_dir() and (dr.path / "train" / ds).is_dir():
                notes.append(f"{folder} not found: a test run of {ds} reads the sample submission's images from "
                             f"{dr.path / 'train' / ds}, so its images are the train dataset's, listed under both splits.")
                folder = dr.path / "train" / ds
                borrowed.append(ds)
            present = on_disk(folder)
            rows.append(("test", ds, "", len(names), sum(1 for n in names if not on_disk_as(folder, n, present)), ""))
        else:
            rows.append(("test", ds, "", len(on_disk(folder)), 0, ""))

    df = pd.DataFrame(rows, columns=SUMMARY_COLS).astype({"images": "int64", "missing": "int64"})
    df.attrs["problems"] = [sample_problem] if sample_problem else []
    df.attrs["notes"] = notes
    df.attrs["borrowed"] = borrowed
    return df
