"""Every variant on every dataset in ../shared/datasets, plus COLMAP's own default pipeline as the anchor.

Usage:
    .venv/bin/python bench/bench_pipeline.py [--datasets ets toy_fb82 ...] [--variants default colmap_sift ...]
        [--set section.key=value] [--anchor] [--rerun-mapping] [--rerun-refine] [--seeds N] [--synthetic]
        [--root-dir DIR]
        [--jobs N] [--shared-cache] [--out bench/results/pipeline.md]

A variant may carry its own overrides after colons: ``aliked_lightglue:matching.fp16=false:matching.batch_size=1``
(applied after ``--set``). ``--root-dir`` is the folder holding the IMC-format data roots (default
``../shared/datasets``). The device the run used (CUDA name or CPU) is printed with the table.

Prints (and writes) a markdown table: score, mAA, clusterness, seconds per stage, total. ``--anchor`` also runs
COLMAP 4.2.1's default SIFT pipeline natively (extract_features, match_exhaustive, incremental_mapping with
num_threads=1), scored with our metric, in the same process for a same-machine time ratio. ``--rerun-mapping``
re-runs each variant with only a mapping parameter changed (``min_model_size``) and reports the warm/cold speed-up;
``--rerun-refine`` likewise with only a final-adjustment key changed (``refine_max_iterations`` 50 → 51, which its
tolerance stops first on these datasets, so the poses stay the same), whose mapped models come from the cache. Every
variant row
starts from an empty stage cache of its own (``$IMC_CACHE_DIR`` is ignored), so the rows' times are cold times;
with ``--shared-cache`` a dataset's variants share one, so a variant that differs from an earlier one only in mapping
keys reuses its features and matches (a sweep of mapping settings; its times are then warm times).

torch is imported (and CUDA started) before anything is timed, so the first row does not pay for it; the metric's
numba kernels compile (or load from their disk cache) in the anchor's untimed scoring when ``--anchor`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imc_core.data import DataRoot  # noqa: E402
from imc_core.metric import score  # noqa: E402
from imc_core.pipeline import run_pipeline  # noqa: E402
from imc_core.runs import load_run  # noqa: E402
from imc_core.submission import OUTLIERS, pose_frame, write_pose_csv  # noqa: E402

from bench._cmd import command_line  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"


def colmap_anchor(root: Path, tmp: Path) -> dict:
    """COLMAP's own default pipeline on every train dataset of ``root``, scored with our metric."""
    import numpy as np
    import pycolmap

    data = DataRoot(root)
    frames = []
    t0 = time.perf_counter()
    for name in data.train_datasets():
        ds = data.load_dataset(name, "train")
        work = tmp / f"anchor-{name}"
        work.mkdir(parents=True)
        db = work / "database.db"
        pycolmap.extract_features(db, ds.image_dir, image_names=ds.images)
        pycolmap.match_exhaustive(db)
        opts = pycolmap.IncrementalPipelineOptions()
        opts.num_threads = 1
        models = pycolmap.incremental_mapping(db, ds.image_dir, work / "sparse", options=opts)
        pose: dict[str, tuple] = {}
        for k, rec in sorted(models.items(), key=lambda kv: -kv[1].num_reg_images()):
            for img in rec.images.values():
                if img.has_pose and img.name not in pose:
                    cfw = img.cam_from_world()
                    pose[img.name] = (f"cluster{k}", cfw.rotation.matrix().copy(), np.array(cfw.translation))
        R = np.stack([pose[n][1] if n in pose else np.full((3, 3), np.nan) for n in ds.images])
        t = np.stack([pose[n][2] if n in pose else np.full(3, np.nan) for n in ds.images])
        scenes = [pose[n][0] if n in pose else OUTLIERS for n in ds.images]
        frames.append(pose_frame([name] * len(ds.images), scenes, ds.images, R, t))
    seconds = time.perf_counter() - t0
    sub = pd.concat(frames, ignore_index=True)
    gt = data.labels
    res = score(gt, data.thresholds, sub, details=False)
    write_pose_csv(sub, tmp / "anchor_submission.csv")
    return {"variant": "COLMAP native (anchor)", "score": res.score, "mAA": res.mAA,
            "clusterness": res.clusterness, "total_s": seconds}


def run_variant(root: Path, spec: str, tmp: Path, overrides: list[str] | None = None,
                jobs: int | None = None) -> dict:
    """Run ``spec`` (``variant[:section.key=value...]``) on ``root`` and return one table row."""
    import pycolmap

    pycolmap.logging.minloglevel = 2  # COLMAP's INFO lines would drown the table
    variant, *own = spec.split(":")
    run_dir = run_pipeline(root, variant=variant, overrides=[*(overrides or []), *own],
                           out=tmp / f"run-{variant}-{time.time_ns()}", jobs=jobs)
    run = load_run(run_dir)
    row = {"variant": spec, "status": run.status}
    if run.scores:
        row.update(score=run.scores["score"], mAA=run.scores["mAA"], clusterness=run.scores["clusterness"])
    t = run.timings or {}
    for stage in ("features", "matching", "reconstruction"):
        row[f"{stage}_s"] = sum(d.get(stage, 0.0) for d in t.get("datasets", {}).values())
    row["total_s"] = t.get("total")
    if run.status != "done":
        row["error"] = run.meta.get("error")
    warnings = [line.split("WARNING:", 1)[1].strip()[:90] for line in run.log.splitlines() if "WARNING:" in line]
    if warnings:  # e.g. a mapping cut by reconstruction.max_runtime_s: the row's score is then not the variant's
        row["warnings"] = " / ".join(dict.fromkeys(warnings))
    return row


def device_name() -> str:
    """The accelerator the pipeline picks automatically (CUDA device name), else the CPU with its core count."""
    import torch

    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    return f"CPU only, {os.cpu_count()} cores, torch {torch.__version__}"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (floats with 2 decimals; no extra dependency)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.2f}"
        return "" if v is None else str(v)

    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in df.itertuples(index=False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--variants", nargs="*", default=["default"])
    ap.add_argument("--set", action="append", default=[], help="override applied to every variant")
    ap.add_argument("--anchor", action="store_true")
    ap.add_argument("--rerun-mapping", action="store_true")
    ap.add_argument("--rerun-refine", action="store_true")
    ap.add_argument("--seeds", type=int, default=1,
                    help="also run reconstruction.seed=1..N-1 and report mean ± std of the N scores")
    ap.add_argument("--synthetic", action="store_true", help="also the bundled data/synthetic benchmark")
    ap.add_argument("--root-dir", default=str(SHARED), help="folder of IMC-format data roots")
    ap.add_argument("--jobs", type=int, default=None,
                    help="datasets reconstructed at once (run_pipeline jobs; default $IMC_JOBS or automatic)")
    ap.add_argument("--shared-cache", action="store_true",
                    help="the variants of a dataset share one stage cache: a variant that changes only mapping keys "
                         "reuses the features and matches of the one before it (its times are then warm times)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    base = Path(args.root_dir)
    roots = {p.name: p for p in sorted(base.iterdir()) if (p / "train").is_dir()} if base.exists() else {}
    if args.datasets:
        roots = {k: v for k, v in roots.items() if k in args.datasets}
    if args.synthetic:
        roots["synthetic (bundled)"] = REPO / "data" / "synthetic"
    device = device_name()  # imports torch and starts CUDA before any timing
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for name, root in roots.items():
            if args.anchor:
                r = colmap_anchor(root, tmp / name)
                rows.append({"data": name, **r})
                print(rows[-1], flush=True)
            for i, v in enumerate(args.variants):
                # every variant starts cold (variants sharing a feature config would otherwise reuse its features);
                # its mapping re-run and extra seeds then share its cache
                os.environ["IMC_CACHE_DIR"] = str(tmp / (f"cache-{name}" if args.shared_cache else f"cache-{name}-{i}"))
                cold = run_variant(root, v, tmp, list(args.set), args.jobs)
                rows.append({"data": name, **cold})
                print(rows[-1], flush=True)
                if args.rerun_mapping:
                    warm = run_variant(root, v, tmp, list(args.set) + ["reconstruction.min_model_size=4"], args.jobs)
                    rows.append({"data": name, **warm, "variant": f"{v} (mapping changed, warm)",
                                 "speedup": (cold["total_s"] or 0) / max(warm["total_s"] or 1e-9, 1e-9)})
                    print(rows[-1], flush=True)
                if args.rerun_refine:
                    warm = run_variant(root, v, tmp, list(args.set) + ["reconstruction.refine_max_iterations=51"],
                                       args.jobs)
                    rows.append({"data": name, **warm, "variant": f"{v} (final adjustment changed, warm)",
                                 "speedup": (cold["total_s"] or 0) / max(warm["total_s"] or 1e-9, 1e-9)})
                    print(rows[-1], flush=True)
                if args.seeds > 1:  # seed 0 is the cold row; the others reuse its features and matches
                    scores = [cold.get("score", float("nan"))]
                    for seed in range(1, args.seeds):
                        r = run_variant(root, v, tmp, list(args.set) + [f"reconstruction.seed={seed}"], args.jobs)
                        scores.append(r.get("score", float("nan")))
                    arr = pd.Series(scores, dtype=float)
                    rows.append({"data": name, "variant": f"{v} (seeds 0–{args.seeds - 1})", "score": arr.mean(),
                                 "score_std": arr.std(ddof=1), "seed_scores": " / ".join(f"{x:.2f}" for x in scores)})
                    print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    table = markdown_table(df)
    cmd = f"`{command_line('bench_pipeline.py')}`"
    text = f"{cmd}\n\ndevice: {device}\n\n{table}\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
