"""Pose frames, IMC-2025 pose CSVs (labels and submissions) and the one pose convention of imc-lab.

The convention (used by every module; see ``docs/formats.md``):

* ``R`` and ``t`` map **world → camera**: ``x_cam = R @ x_world + t``. This is what IMC-2025 CSVs store and what
  COLMAP calls ``cam_from_world`` (``image.cam_from_world().rotation.matrix()`` / ``.translation``), so COLMAP poses
  go into a pose frame unchanged.
* The camera centre in world coordinates is ``c = -Rᵀ t``; camera → world is ``(Rᵀ, c)``
  (:func:`cam_to_world`, :func:`world_to_cam`).
* An unregistered image has every one of its 12 numbers ``nan`` (CSV text ``nan;nan;...``).

The *pose frame* is a :class:`pandas.DataFrame` with columns ``[image_id,] dataset, scene, image`` (str) followed
by ``r00 … r22`` (row-major rotation) and ``tx, ty, tz`` (float64), rows in file order. It holds labels (``scene`` =
GT scene, outliers in scene ``outliers``) and submissions (``scene`` = predicted cluster).

CSV text: ``[image_id,]dataset,scene,image,rotation_matrix,translation_vector`` with 9 and 3 numbers joined by
``;``. :func:`write_pose_csv` writes ``repr`` of every float, so a written file reads back bit for bit.

Errors are :class:`~imc_core.errors.InputError` naming the file, the 1-based line (header = line 1) and the problem.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .errors import InputError
from .fsutil import atomic_write_text

__all__ = [
    "R_COLS",
    "T_COLS",
    "POSE_COLS",
    "KEY_COLS",
    "CSV_COLS",
    "OUTLIERS",
    "read_pose_csv",
    "write_pose_csv",
    "rotations",
    "translations",
    "camera_centers",
    "cam_to_world",
    "world_to_cam",
    "pose_frame",
    "validate_submission",
    "rotation_errors",
    "kaggle_image_id",
    "to_kaggle",
    "row_line",
]

R_COLS: list[str] = [f"r{i}{j}" for i in range(3) for j in range(3)]
"""Rotation columns of the pose frame, row-major: ``r00 r01 r02 r10 … r22``."""
T_COLS: list[str] = ["tx", "ty", "tz"]
"""Translation columns of the pose frame."""
POSE_COLS: list[str] = R_COLS + T_COLS
"""The 12 float64 pose columns."""
KEY_COLS: list[str] = ["dataset", "scene", "image"]
"""The str columns every pose frame has (``image_id`` optionally precedes them)."""
CSV_COLS: list[str] = ["dataset", "scene", "image", "rotation_matrix", "translation_vector"]
"""Columns of an IMC-2025 labels/submission CSV (a submission may start with ``image_id``)."""
OUTLIERS = "outliers"
"""The special scene / cluster name of images that belong to no scene."""

ROTATION_TOL = 1e-3
"""Tolerance on ``‖RᵀR − I‖_F`` for a matrix to count as a rotation."""

_PARSER_LINE = re.compile(r"line (\d+)")
_PARSER_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


# --------------------------------------------------------------------------------------------------------- reading


def _line_of(df: pd.DataFrame, pos: int) -> int:
    """1-based file line (header = 1) of the row at position ``pos`` of a frame read by :func:`read_pose_csv`."""
    lines = df.attrs.get("lines")
    if lines is not None and len(lines) == len(df):
        return int(lines[pos])
    return pos + 2


def row_line(df: pd.DataFrame, pos: int) -> int:
    """Public form of the row → file line mapping: the 1-based line of the row at position ``pos``.

    Exact for frames from :func:`read_pose_csv` (blank lines in the file accounted for); ``pos + 2`` otherwise.
    """
    return _line_of(df, pos)


def take_rows(df: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """The rows of ``df`` where the ``(N,)`` bool ``keep`` holds, renumbered from 0, each still naming its own file
    line (:func:`row_line`)."""
    lines = df.attrs.get("lines")
    lines = np.asarray(lines) if lines is not None and len(lines) == len(df) else np.arange(len(df)) + 2
    out = df[keep].reset_index(drop=True)
    out.attrs = {**df.attrs, "lines": lines[keep].tolist()}
    return out


def _parse_numbers(
    col: pd.Series, count: int, what: str, path: str, lines: np.ndarray
) -> np.ndarray:
    """Parse a column of ``;``-joined numbers into an ``(N, count)`` float64 array (vectorised, exact)."""
    n = len(col)
    if n == 0:
        return np.empty((0, count), dtype=np.float64)
    values = col.to_numpy(dtype=object)
    # Count check first (a cheap vectorised count of separators), so that a bad row is named precisely.
    seps = col.str.count(";").to_numpy()
    bad = np.flatnonzero(seps != count - 1)
    if bad.size:
        i = int(bad[0])
        got = 0 if values[i].strip() == "" else int(seps[i]) + 1
        for tok in values[i].split(";") if got else []:  # "0.95|0.30;…": the token is the problem, not the count
            try:
                float(tok)
            except ValueError:
                raise InputError(path, f"{what}: cannot parse number {tok.strip()!r} (it must have {count} "
                                       f"';'-separated numbers)", int(lines[i])) from None
        blank = " (an unregistered image writes nan for each)" if got == 0 else ""
        raise InputError(path, f"{what} must have {count} ';'-separated numbers, got {got}{blank}", int(lines[i]))
    flat = ";".join(values).split(";")
    try:
        # numpy's str → float64 conversion is correctly rounded (same as Python's float()).
        arr = np.array(flat, dtype=np.float64)
    except ValueError:
        for i, text in enumerate(values):
            for tok in text.split(";"):
                try:
                    float(tok)
                except ValueError:
                    blank = " (write nan for a missing value: an unregistered image has nan for all 12)" \
                        if not tok.strip() else ""
                    raise InputError(path, f"{what}: cannot parse number {tok.strip()!r}{blank}",
                                     int(lines[i])) from None
        raise  # pragma: no cover - the loop above always finds the culprit
    return arr.reshape(n, count)


def read_text_csv(path: str | Path) -> pd.DataFrame:
    """Every cell of a CSV as text (no NaN conversion, blank lines kept so that positions map to file lines; a UTF-8
    BOM is dropped): the one way the labels, thresholds and submission files are opened.

    Raises:
        InputError: missing, a folder, empty, not UTF-8, or a row that does not parse (its line named).
    """
    p = str(path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False,
                           encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except IsADirectoryError:
        raise InputError(p, "is a directory, expected a CSV file") from None
    except pd.errors.EmptyDataError:
        raise InputError(p, "empty file (expected a header line)") from None
    except pd.errors.ParserError as err:
        msg = str(err).split("C error: ")[-1].strip()
        if m := _PARSER_QUOTE.search(msg):  # pandas counts these rows from 0 at the header: the file's line is +1
            raise InputError(p, "malformed CSV row: a quoted field opened here is never closed (the file ends "
                                "inside it)", int(m.group(1)) + 1) from None
        m = _PARSER_LINE.search(msg)
        raise InputError(p, f"malformed CSV row: {msg}", int(m.group(1)) if m else None) from None
    except UnicodeDecodeError as err:
        raise InputError(p, f"not UTF-8 text ({err.reason})") from None


def header_line(path: str | Path, limit: int = 200) -> str:
    """The file's first line as text (a UTF-8 BOM and the line break dropped), cut at ``limit`` characters."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        line = f.readline().rstrip("\r\n")
    return line if len(line) <= limit else line[:limit] + "…"


def header_note(path: str | Path) -> str:
    """``header is '...'`` for a message on missing columns, and a word when the header is split by semicolons or
    tabs where IMC's files use commas (a spreadsheet's export: the message named the columns only)."""
    line = header_line(path)
    other = next((name for sep, name in ((";", "semicolons"), ("\t", "tabs")) if sep in line), None)
    hint = (f" (its fields are separated by {other}; IMC's CSV files separate them by commas)"
            if other and "," not in line else "")
    return f"header is {line!r}{hint}"


def _check_field_counts(raw: pd.DataFrame, path: str | Path, lines: np.ndarray) -> None:
    """A row with fewer fields than the header reaches pandas as empty trailing cells, and the number parser then
    said "must have 9 numbers, got 0": name the row's field count instead (the csv module reads that line again).
    """
    import csv

    empty = np.zeros(len(raw), dtype=bool)
    for c in ("rotation_matrix", "translation_vector"):
        empty |= (raw[c] == "").to_numpy()
    if not empty.any():
        return
    wanted = {int(n) for n in lines[empty]}
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        for number, fields in enumerate(csv.reader(f), start=1):
            if number in wanted and len(fields) < len(raw.columns):
                raise InputError(str(path), f"row has {len(fields)} field(s), expected {len(raw.columns)} "
                                            f"({','.join(raw.columns)})", number)


def read_pose_csv(path: str | Path, *, require_image_id: bool = False, require_rows: bool = False) -> pd.DataFrame:
    """Read an IMC-2025 labels or submission CSV into a pose frame.

    Args:
        path: the CSV (``[image_id,]dataset,scene,image,rotation_matrix,translation_vector``).
        require_image_id: raise when the file has no ``image_id`` column (Kaggle test submissions).
        require_rows: raise when the file has no pose rows (a submission to score: its header alone would be
            scored as "no dataset of the ground truth").

    Returns:
        The pose frame: ``[image_id,] dataset, scene, image`` (str), ``r00 … r22, tx, ty, tz`` (float64), in file
        order with a fresh ``RangeIndex``. Extra columns of the file are dropped. ``df.attrs["path"]`` is the file.

    Raises:
        InputError: missing file, empty file, missing columns, a row with the wrong number of fields or numbers, a
            number that does not parse. The message names the file and the 1-based line (header = line 1).
    """
    p = str(path)
    raw = read_text_csv(path)

    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in CSV_COLS if c not in raw.columns]
    if require_image_id and "image_id" not in raw.columns:
        missing.insert(0, "image_id")
    if missing:  # the header as the file has it (pandas names an empty header cell "Unnamed: 1")
        raise InputError(p, f"missing column(s) {', '.join(missing)}; {header_note(path)}", 1)

    has_id = "image_id" in raw.columns
    lines = np.arange(2, len(raw) + 2)
    if len(raw):
        # Blank lines come through as rows of empty strings: drop them, keep the true line numbers.
        blank = np.ones(len(raw), dtype=bool)
        for c in raw.columns:
            blank &= (raw[c] == "").to_numpy()
        if blank.any():
            raw = raw.loc[~blank].reset_index(drop=True)
            lines = lines[~blank]

    if require_rows and not len(raw):
        raise InputError(p, "no data rows: the file holds its header line and nothing else")
    _check_field_counts(raw, path, lines)
    out: dict[str, object] = {}
    if has_id:
        out["image_id"] = raw["image_id"].astype(str)
    for c in KEY_COLS:
        out[c] = raw[c].astype(str)
    rot = _parse_numbers(raw["rotation_matrix"], 9, "rotation_matrix", p, lines)
    tra = _parse_numbers(raw["translation_vector"], 3, "translation_vector", p, lines)
    for k, c in enumerate(R_COLS):
        out[c] = rot[:, k]
    for k, c in enumerate(T_COLS):
        out[c] = tra[:, k]
    df = pd.DataFrame(out)
    df.attrs["path"] = p
    if len(lines) and lines[-1] != len(lines) + 1:
        df.attrs["lines"] = lines.tolist()
    return df


# --------------------------------------------------------------------------------------------------------- writing


def _join_numbers(block: np.ndarray) -> list[str]:
    """Rows of floats → ``;``-joined ``repr`` strings (``nan`` for nan), bit-exact on read back."""
    rep = float.__repr__
    return [";".join(map(rep, row)) for row in block.tolist()]


def write_pose_csv(df: pd.DataFrame, path: str | Path, *, image_id: bool | None = None) -> Path:
    """Write a pose frame as an IMC-2025 CSV, atomically (temp file in the same folder, then ``os.replace``).

    Args:
        df: a pose frame (``dataset, scene, image`` + :data:`POSE_COLS`; ``image_id`` optional).
        path: where to write; parent folders are created.
        image_id: ``None`` writes the ``image_id`` column when ``df`` has one; ``True`` always writes it (computed
            with :func:`kaggle_image_id` when ``df`` has none); ``False`` never writes it.

    Returns:
        The written path.

    Every float is written with ``repr`` (shortest exact form), unregistered numbers as ``nan``; rows keep the frame
    order.
    """
    missing = [c for c in KEY_COLS + POSE_COLS if c not in df.columns]
    if missing:
        raise ValueError(f"pose frame lacks column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=range(len(df)))
    with_id = ("image_id" in df.columns) if image_id is None else bool(image_id)
    if with_id:
        if "image_id" in df.columns:
            out["image_id"] = df["image_id"].astype(str).to_numpy()
        else:
            out["image_id"] = [kaggle_image_id(d, i) for d, i in zip(df["dataset"], df["image"], strict=True)]
    for c in KEY_COLS:
        out[c] = df[c].astype(str).to_numpy()
    out["rotation_matrix"] = _join_numbers(df[R_COLS].to_numpy(dtype=np.float64))
    out["translation_vector"] = _join_numbers(df[T_COLS].to_numpy(dtype=np.float64))
    text = out.to_csv(index=False, lineterminator="\n")
    return atomic_write_text(path, text)


# ------------------------------------------------------------------------------------------------- pose conversion


def rotations(df: pd.DataFrame) -> np.ndarray:
    """World→camera rotations of a pose frame, ``(N, 3, 3)`` float64 (nan rows for unregistered images)."""
    return df[R_COLS].to_numpy(dtype=np.float64).reshape(-1, 3, 3)


def translations(df: pd.DataFrame) -> np.ndarray:
    """World→camera translations of a pose frame, ``(N, 3)`` float64."""
    return df[T_COLS].to_numpy(dtype=np.float64).reshape(-1, 3)


def camera_centers(df: pd.DataFrame) -> np.ndarray:
    """Camera centres in world coordinates, ``c = -Rᵀ t``, ``(N, 3)``; nan rows stay nan."""
    return cam_to_world(rotations(df), translations(df))[1]


def cam_to_world(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World→camera ``(R, t)`` → camera→world ``(Rᵀ, c)`` with ``c = -Rᵀ t``.

    Args:
        R: ``(..., 3, 3)`` world→camera rotations.
        t: ``(..., 3)`` world→camera translations.

    Returns:
        ``R_c2w`` ``(..., 3, 3)`` and camera centres ``c`` ``(..., 3)``.
    """
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    R_c2w = np.swapaxes(R, -1, -2)
    c = -(R_c2w @ t[..., None])[..., 0]
    return R_c2w, c


def world_to_cam(R_c2w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera→world ``(R_c2w, c)`` → world→camera ``(R, t)`` with ``R = R_c2wᵀ``, ``t = -R c``.

    Args:
        R_c2w: ``(..., 3, 3)`` camera→world rotations.
        c: ``(..., 3)`` camera centres in world coordinates.

    Returns:
        ``R`` ``(..., 3, 3)`` and ``t`` ``(..., 3)``.
    """
    R_c2w = np.asarray(R_c2w, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    R = np.swapaxes(R_c2w, -1, -2)
    t = -(R @ c[..., None])[..., 0]
    return R, t


def _as_str_list(value: str | Iterable[str], n: int | None, name: str) -> list[str]:
    if isinstance(value, str):
        if n is None:
            raise ValueError(f"{name}: a single string needs R/t or another column to give the row count")
        return [value] * n
    out = [str(v) for v in value]
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries, expected {n}")
    return out


def pose_frame(
    dataset: str | Sequence[str],
    scene: str | Sequence[str],
    image: Sequence[str],
    R: np.ndarray | None = None,
    t: np.ndarray | None = None,
    image_id: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Build a pose frame from arrays.

    Args:
        dataset: one name for every row, or one per row.
        scene: one scene/cluster name for every row, or one per row.
        image: image names, N of them.
        R: ``(N, 3, 3)`` world→camera rotations (``None``: all nan, i.e. unregistered).
        t: ``(N, 3)`` world→camera translations (``None``: all nan).
        image_id: optional Kaggle image ids (N); the column comes first when given.

    Returns:
        The pose frame, rows in the given order.
    """
    images = [str(v) for v in image]
    n = len(images)
    Rm = np.full((n, 3, 3), np.nan) if R is None else np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    tm = np.full((n, 3), np.nan) if t is None else np.asarray(t, dtype=np.float64).reshape(-1, 3)
    if len(Rm) != n or len(tm) != n:
        raise ValueError(f"pose_frame: {n} images but R has {len(Rm)} and t has {len(tm)} rows")
    out: dict[str, object] = {}
    if image_id is not None:
        out["image_id"] = pd.array(_as_str_list(image_id, n, "image_id"), dtype="str")
    out["dataset"] = pd.array(_as_str_list(dataset, n, "dataset"), dtype="str")
    out["scene"] = pd.array(_as_str_list(scene, n, "scene"), dtype="str")
    out["image"] = pd.array(images, dtype="str")
    flatR = Rm.reshape(n, 9)
    for k, c in enumerate(R_COLS):
        out[c] = flatR[:, k].copy()
    for k, c in enumerate(T_COLS):
        out[c] = tm[:, k].copy()
    return pd.DataFrame(out, index=pd.RangeIndex(n))


# ------------------------------------------------------------------------------------------------------ validation


def rotation_errors(R: np.ndarray) -> np.ndarray:
    """``‖RᵀR − I‖_F`` per matrix of an ``(N, 3, 3)`` stack (nan for nan matrices)."""
    R = np.asarray(R, dtype=np.float64)
    eye = np.eye(3)
    return np.linalg.norm(np.swapaxes(R, -1, -2) @ R - eye, axis=(-2, -1))


def kaggle_image_id(dataset: str, image: str) -> str:
    """The Kaggle IMC-2025 test ``image_id``: ``f"{dataset}_{image}_public"``."""
    return f"{dataset}_{image}_public"


def to_kaggle(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a pose frame with an ``image_id`` first column (existing non-empty ids are kept)."""
    out = df.copy()
    ids = [kaggle_image_id(d, i) for d, i in zip(out["dataset"], out["image"], strict=True)]
    if "image_id" in out.columns:
        old = out["image_id"].astype(str).tolist()
        ids = [o if o.strip() else new for o, new in zip(old, ids, strict=True)]
        out = out.drop(columns="image_id")
    out.insert(0, "image_id", pd.array(ids, dtype="str"))
    return out


def validate_submission(
    sub: pd.DataFrame,
    expected: pd.DataFrame,
    *,
    path: str | Path | None = None,
    check_rotations: bool | Literal["warn"] = False,
) -> None:
    """Check a submission pose frame against the images it must cover (the official IMC-2025 checks and more).

    Args:
        sub: the submission pose frame (e.g. from :func:`read_pose_csv`).
        expected: a frame with ``dataset, image`` columns: every image the submission must contain, once.
        path: the file to name in errors (default: ``sub.attrs["path"]`` when the frame was read from a file).
        check_rotations: ``True`` raises, ``"warn"`` warns, on a registered row whose rotation is not orthonormal
            (``‖RᵀR − I‖_F > 1e-3``) or is a reflection.

    Raises:
        InputError: naming the file and the 1-based line of the first offending row: empty cluster name,
            duplicate ``(dataset, image)``, an image not in ``expected`` ("unknown image"), a pose with some numbers
            non-finite and others not; or, without a row, ``missing images: N, e.g. ...``.
    """
    p = str(path) if path is not None else sub.attrs.get("path")
    missing_cols = [c for c in KEY_COLS + POSE_COLS if c not in sub.columns]
    if missing_cols:
        raise InputError(p, f"submission lacks column(s) {', '.join(missing_cols)}")
    for c in ("dataset", "image"):
        if c not in expected.columns:
            raise ValueError(f"expected frame lacks column {c!r}")

    ds = sub["dataset"].astype(str).to_numpy(dtype=object)
    im = sub["image"].astype(str).to_numpy(dtype=object)
    sc = sub["scene"].astype(str).to_numpy(dtype=object)

    # Empty names.
    for name, arr in (("dataset", ds), ("image", im), ("scene (cluster name)", sc)):
        empty = np.flatnonzero(pd.Series(arr, dtype=object).str.strip().eq("").to_numpy())
        if empty.size:
            raise InputError(p, f"empty {name}", _line_of(sub, int(empty[0])))

    # Duplicates.
    keys = pd.MultiIndex.from_arrays([ds, im])
    dup = np.flatnonzero(keys.duplicated(keep="first"))
    if dup.size:
        i = int(dup[0])
        first = int(np.flatnonzero((ds == ds[i]) & (im == im[i]))[0])
        raise InputError(
            p,
            f"duplicate image {ds[i]}/{im[i]} (first seen on line {_line_of(sub, first)})",
            _line_of(sub, i),
        )

    # Unknown images.
    exp_ds = expected["dataset"].astype(str).to_numpy(dtype=object)
    exp_im = expected["image"].astype(str).to_numpy(dtype=object)
    exp_keys = pd.MultiIndex.from_arrays([exp_ds, exp_im])
    known = keys.isin(exp_keys)
    unknown = np.flatnonzero(~known)
    if unknown.size:
        i = int(unknown[0])
        exp_sets = set(exp_ds.tolist())
        why = "" if ds[i] in exp_sets else f" (dataset {ds[i]!r} is not expected)"
        raise InputError(p, f"unknown image {ds[i]}/{im[i]}{why}", _line_of(sub, i))

    # Missing images.
    covered = exp_keys.isin(keys)
    miss = np.flatnonzero(~covered)
    if miss.size:
        eg = ", ".join(f"{exp_ds[i]}/{exp_im[i]}" for i in miss[:3])
        more = ", ..." if miss.size > 3 else ""
        raise InputError(p, f"missing images: {miss.size}, e.g. {eg}{more}")

    # Partial / non-finite poses.
    poses = sub[POSE_COLS].to_numpy(dtype=np.float64)
    nan = np.isnan(poses)
    all_nan = nan.all(axis=1)
    bad = np.flatnonzero(~all_nan & ~np.isfinite(poses).all(axis=1))
    if bad.size:
        i = int(bad[0])
        k = int(np.flatnonzero(~np.isfinite(poses[i]))[0])
        raise InputError(
            p,
            f"pose of {ds[i]}/{im[i]} is partly non-finite ({POSE_COLS[k]} = {float(poses[i, k])!r}); "
            "write all 12 numbers as nan for an unregistered image",
            _line_of(sub, i),
        )

    if check_rotations:
        reg = np.flatnonzero(~all_nan)
        R = poses[reg, :9].reshape(-1, 3, 3)
        err = rotation_errors(R)
        det = np.linalg.det(R) if len(R) else np.empty(0)
        badr = np.flatnonzero((err > ROTATION_TOL) | (det < 0))
        if badr.size:
            j = int(badr[0])
            i = int(reg[j])
            what = (
                f"rotation of {ds[i]}/{im[i]} is not orthonormal (‖RᵀR−I‖ = {err[j]:.3g} > {ROTATION_TOL:g})"
                if err[j] > ROTATION_TOL
                else f"rotation of {ds[i]}/{im[i]} is a reflection (det = {det[j]:.3g})"
            )
            if badr.size > 1:
                what += f" ({badr.size} such rows)"
            if check_rotations == "warn":
                warnings.warn(str(InputError(p, what, _line_of(sub, i))), stacklevel=2)
            else:
                raise InputError(p, what, _line_of(sub, i))
