"""Builders for the dashboard tests: a tiny data root with GT poses and fabricated run directories.

Run directories are written with :class:`imc_core.runs.RunWriter` in the layout of docs/formats.md (run.json,
config.toml, submission.csv, scores.json, scenes.csv, per_image.csv, alignments.json, timings.json, log.txt,
pairs_stats.csv), so Results / Compare can be tested without running the pipeline.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
DATASET = "ds1"
#: GT scene → images (plus one GT outlier).
SCENES = {"s1": [f"s1_{i}.png" for i in range(5)], "s2": [f"s2_{i}.png" for i in range(4)],
          "outliers": ["out_0.png"]}
THRESHOLDS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]


@dataclass
class DashEnv:
    """Temporary folders the dashboard reads (set through environment variables)."""

    data_root: Path
    runs: Path
    cache: Path
    roots_file: Path


def _rotation(i: int) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec([0.1 * i, 0.2, -0.05 * i]).as_matrix()


def gt_poses() -> pd.DataFrame:
    """GT pose frame of the tiny dataset (world→camera; outliers with nan)."""
    rows = []
    k = 0
    for scene, images in SCENES.items():
        for name in images:
            if scene == "outliers":
                R, t = np.full((3, 3), np.nan), np.full(3, np.nan)
            else:
                R = _rotation(k)
                c = np.array([np.cos(k), np.sin(k), 0.3 * k])
                t = -R @ c
            rows.append((DATASET, scene, name, R, t))
            k += 1
    return _frame(rows)


def _frame(rows: list[tuple[str, str, str, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    def fmt(v: np.ndarray) -> str:
        return ";".join("nan" if not np.isfinite(x) else repr(float(x)) for x in v.ravel())

    return pd.DataFrame({"dataset": [r[0] for r in rows], "scene": [r[1] for r in rows],
                         "image": [r[2] for r in rows], "rotation_matrix": [fmt(r[3]) for r in rows],
                         "translation_vector": [fmt(r[4]) for r in rows]})


def make_data_root(path: Path) -> Path:
    """A data root with ``train/ds1/*.png`` (tiny generated images), labels and thresholds."""
    from PIL import Image

    folder = path / "train" / DATASET
    folder.mkdir(parents=True)
    for k, name in enumerate(n for imgs in SCENES.values() for n in imgs):
        arr = np.full((24, 32, 3), (40 * k) % 255, dtype=np.uint8)
        arr[4:12, 4:20] = (255, 128, 0)
        Image.fromarray(arr).save(folder / name)
    gt_poses().to_csv(path / "train_labels.csv", index=False)
    thr = ";".join(str(x) for x in THRESHOLDS)
    pd.DataFrame({"dataset": [DATASET] * 2, "scene": ["s1", "s2"], "thresholds": [thr, thr]}).to_csv(
        path / "train_thresholds.csv", index=False)
    return path


def write_run(env: DashEnv, name: str, *, score: float = 60.0, group: str | None = None, seed: int = 0,
              variant: str = "default", failing: tuple[str, ...] = ("s2_3.png",),
              misplaced: tuple[str, ...] = (), status: str = "done",
              config_overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """Fabricate a finished run directory named ``name`` under the runs root.

    Images in ``failing`` are submitted as outliers (unregistered), images in ``misplaced`` go to the other scene's
    cluster; every other GT image is registered in the cluster of its scene with its exact GT pose (error 0, passes
    every threshold).
    """
    from imc_core.config import PipelineConfig, dump_config
    from imc_core.runs import RunWriter

    d = env.runs / name
    w = RunWriter(d)
    w.write_meta(id=name, created=f"2026-11-25T10:00:{seed:02d}+00:00", status=status, variant=variant,
                 data_root=str(env.data_root), split="train", datasets=[DATASET], config_hash="abc", device="cpu",
                 deterministic=True, seed=seed, overrides=[], label=None, group=group, error=None)
    cfg = PipelineConfig.from_dict(config_overrides or {})
    cfg.reconstruction.seed = seed
    w.write_text("config.toml", dump_config(cfg, {"variant": variant}))
    gt = gt_poses()
    clusters = {"s1": "cluster0", "s2": "cluster1", "outliers": "outliers"}
    sub = gt.copy()
    other = {"s1": "cluster1", "s2": "cluster0", "outliers": "cluster0"}
    sub["scene"] = [("outliers" if img in failing else other[sc] if img in misplaced else clusters[sc])
                    for sc, img in zip(gt["scene"], gt["image"], strict=True)]
    nan9, nan3 = ";".join(["nan"] * 9), ";".join(["nan"] * 3)
    sub.loc[sub["scene"] == "outliers", "rotation_matrix"] = nan9
    sub.loc[sub["scene"] == "outliers", "translation_vector"] = nan3
    w.write_csv("submission.csv", sub)
    rows = []
    for sc, img in zip(gt["scene"], gt["image"], strict=True):
        ok = sc != "outliers" and img not in failing and img not in misplaced
        rows.append({"dataset": DATASET, "scene": sc, "image": img, "cluster": sub.loc[sub["image"] == img,
                     "scene"].iloc[0], "associated_cluster": clusters[sc] if sc != "outliers" else "",
                     "in_cluster": ok, "pose_valid": ok, "error": 0.0 if ok else float("nan"),
                     **{f"pass_{k}": ok for k in range(6)}, "discounted": img.endswith("_0.png"),
                     "gt_cx": 0.0, "gt_cy": 0.0, "gt_cz": 0.0, "pred_cx": 0.0, "pred_cy": 0.0, "pred_cz": 0.0})
    w.write_csv("per_image.csv", pd.DataFrame(rows))
    scenes = pd.DataFrame([
        {"dataset": DATASET, "scene": s, "n_images": len(SCENES[s]), "cluster": clusters[s],
         "cluster_size": len(SCENES[s]), "overlap": len(SCENES[s]), "mAA": score,
         **{f"registered_{k}": len(SCENES[s]) for k in range(6)}, "warning": ""} for s in ("s1", "s2")])
    w.write_csv("scenes.csv", scenes)
    ident = {"s": 1.0, "R": np.eye(3).tolist(), "t": [0.0, 0.0, 0.0]}
    w.write_json("alignments.json", {DATASET: {s: {"cluster": clusters[s], "thresholds": THRESHOLDS,
                                                   "models": [ident] * 6} for s in ("s1", "s2")}})
    m = score * 90.0 / (180.0 - score)  # (the harmonic mean of it and clusterness 90 is the score, as the metric's)
    w.write_json("scores.json", {"score": score, "mAA": m, "clusterness": 90.0,
                                 "datasets": {DATASET: {"score": score, "mAA": m, "clusterness": 90.0}}})
    w.write_json("timings.json", {"total": 3.5, "datasets": {DATASET: {"pairs": 0.1, "features": 1.2,
                                                                        "matching": 1.0, "reconstruction": 1.2}},
                                  "cache": {DATASET: {"features": "hit", "matching": "miss"}}})
    w.write_csv("pairs_stats.csv", pd.DataFrame({"dataset": [DATASET] * 3, "name0": ["s1_0.png", "s1_1.png",
                                                                                      "s2_0.png"],
                                                 "name1": ["s1_1.png", "s1_2.png", "s2_1.png"],
                                                 "n_matches": [120, 80, 55]}))
    w.log("fabricated run for the dashboard tests")
    return d


#: seconds one AppTest script run may take
TIMEOUT = 30


def open_app(page: str, **params: Any) -> Any:
    """Run the entry script with ``?page=...`` and other query parameters (what a shared link does)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["page"] = page
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def frame_with(at: Any, column: str) -> pd.DataFrame:
    """The first st.dataframe whose frame has ``column``."""
    for d in at.dataframe:
        if column in d.value.columns:
            return d.value
    raise AssertionError(f"no dataframe with column {column!r}")


def shown_frame_with(at: Any, column: str) -> pd.DataFrame:
    """The first st.dataframe with ``column``, as the browser shows it: a Styler's display values where the page
    passed one (``frame_with`` gives the numbers underneath, which sorting uses)."""
    from streamlit import dataframe_util

    for d in at.dataframe:
        if column in d.value.columns:
            shown = d.proto.arrow_data.styler.display_values
            return dataframe_util.convert_arrow_bytes_to_pandas_df(shown) if shown else d.value
    raise AssertionError(f"no dataframe with column {column!r}")


def errors_and_exceptions(at: Any) -> tuple[list[str], list[str]]:
    """(st.error texts, exception messages) of an AppTest after a run."""
    return [plain(e.value) for e in at.error], [str(e.value) for e in at.exception]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def started(proc: Any, text: str, timeout: float = 20.0) -> None:
    """Wait until ``proc`` runs its own command (``text`` in its command line): right after the fork, /proc shows
    the parent's, and a liveness check that reads it then fails (seen once on a loaded machine)."""
    end = time.monotonic() + timeout
    while text not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"):
        assert time.monotonic() < end, "the child never showed its command line"
        time.sleep(0.01)


def plain(text: str) -> str:
    """Markdown source as it reads on the page: backslash escapes (``state.md``) removed."""
    import re

    return re.sub(r"\\(.)", r"\1", text)
