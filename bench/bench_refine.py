"""The default's final bundle adjustment: time and pose change per Ceres iteration cap and per thread count.

Usage:
    .venv/bin/python bench/bench_refine.py --datasets ets toy_fb82 [--iterations 25 50 100] [--jobs 1 2]
        [--function-tolerance 0 1e-6] [--repeats 5] [--root-dir ../shared/datasets]
        [--out bench/results/refine_iterations.md]

Runs the default variant once per dataset with ``reconstruction.refine_loss=none`` (its models as the mapper left
them, in a temporary run folder and cache), then applies :func:`imc_core.stages.reconstruction.refine_models` with
the default's final-adjustment settings and each ``refine_max_iterations`` to fresh copies of those models,
``--repeats`` times, with each ``--jobs`` (models adjusted at once). Reports the median seconds and the largest
camera-centre change against the largest cap with one job, relative to the model's extent (so a cap that stops too
early shows up, and so does any difference that threads make: there should be none).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imc_core.config import resolve_config  # noqa: E402
from imc_core.pipeline import run_pipeline  # noqa: E402
from imc_core.stages.reconstruction import refine_models  # noqa: E402

from bench._cmd import command_line  # noqa: E402
from bench.bench_pipeline import device_name  # noqa: E402


def centres(recs: list) -> list[np.ndarray]:
    """(N_k, 3) camera centres of each model, in image-id order."""
    return [np.array([r.images[i].projection_center() for i in sorted(r.reg_image_ids())]) for r in recs]


def relative_change(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest centre difference between two versions of the same models, over each model's extent."""
    return max(float(np.linalg.norm(x - y, axis=1).max()) / (float(np.ptp(y, axis=0).max()) or 1.0)
               for x, y in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["ets"])
    ap.add_argument("--iterations", nargs="+", type=int, default=[25, 50, 100])
    ap.add_argument("--jobs", nargs="+", type=int, default=[1])
    ap.add_argument("--function-tolerance", nargs="+", type=float, default=[0.0],
                    help="reconstruction.refine_function_tolerance values, each at every iteration cap")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--root-dir", default=str(REPO.parent / "shared" / "datasets"))
    ap.add_argument("--out")
    args = ap.parse_args()

    import pycolmap

    pycolmap.logging.minloglevel = 2
    conf = resolve_config("default").reconstruction
    lines = [f"`{command_line('bench_refine.py')}`", "", f"device: {device_name()}", "",
             "| data | models | registered images | refine_max_iterations | refine_function_tolerance | jobs | median s "
             f"| max centre change vs {max(args.iterations)}, tolerance {min(args.function_tolerance):g}, 1 job "
             "(× model extent) |", "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="imc-bench-refine-") as td:
        os.environ["IMC_CACHE_DIR"] = str(Path(td) / "cache")
        for name in args.datasets:
            run = run_pipeline(Path(args.root_dir) / name, overrides=["reconstruction.refine_loss=none"],
                               out=Path(td) / name, raise_errors=True)
            model_dirs = sorted(p for p in (run / "models").glob("*/*") if (p / "images.bin").is_file())
            results: dict[tuple[int, float, int], tuple[float, list[np.ndarray]]] = {}
            for n in sorted(args.iterations):
                for tol in sorted(args.function_tolerance):
                    c = dataclasses.replace(conf, refine_max_iterations=n, refine_function_tolerance=tol)
                    for jobs in sorted(set(args.jobs) | {1}):
                        times = []
                        for _ in range(args.repeats):
                            recs = [pycolmap.Reconstruction(d) for d in model_dirs]
                            t0 = time.perf_counter()
                            refine_models(recs, c, [], jobs=jobs)
                            times.append(time.perf_counter() - t0)
                        results[n, tol, jobs] = (statistics.median(times), centres(recs))
            ref = results[max(args.iterations), min(args.function_tolerance), 1][1]
            n_reg = sum(len(c) for c in ref)
            for (n, tol, jobs), (sec, cen) in results.items():
                change = relative_change(cen, ref)
                lines.append(f"| {name} | {len(model_dirs)} | {n_reg} | {n} | {tol:g} | {jobs} | {sec:.3f} "
                             f"| {change:.1e} |")
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
