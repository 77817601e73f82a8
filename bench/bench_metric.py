"""Benchmark of :mod:`imc_core.metric` on perturbed submissions built from the official IMC-2025 labels.

Cases (need ``/work/shared/imc25/train_labels.csv``, or ``--labels``):

* ``heritage``: ``imc2023_heritage`` (209 images, 3 scenes + outliers) submitted as ONE cluster, every scene moved by
  a random similarity and noise of ``sigma`` × the scene's 4th threshold, 5% gross errors, 3% nan poses
  (the official code took 51 s on this machine);
* ``two100``: ``pt_stpeters_stpauls`` (two scenes of 100 images), one cluster per scene, the same perturbations
  (official: 264 s).

Each case is scored ``--repeat`` times (median wall and process-CPU seconds reported) with ``details=False`` and
once with ``details=True``. The one-off cost of the numba kernels (import, then compilation or loading from the
on-disk cache) is measured first, on a tiny registration, and reported apart from the steady-state times;
``--cold-jit`` points ``NUMBA_CACHE_DIR`` at an empty temporary folder so that it is a full compilation.
Prints a markdown table and the command line.

Run: ``.venv/bin/python bench/bench_metric.py [--repeat 5] [--sigma 1.0] [--cold-jit]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if "--cold-jit" in sys.argv:  # before numba is imported anywhere
    import atexit
    import shutil
    import tempfile

    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="imc_numba_cache_")
    atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"], True)

from imc_core import metric  # noqa: E402
from imc_core.data import read_labels, read_thresholds  # noqa: E402
from imc_core.metric import MetricConfig, register_cameras, score  # noqa: E402
from imc_core.submission import R_COLS, T_COLS, camera_centers  # noqa: E402

from bench._cmd import command_line  # noqa: E402

SHARED = Path("/work/shared/imc25")
OFFICIAL_SECONDS = {"heritage": 51.0, "two100": 264.0}


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def perturb(
    gt: pd.DataFrame,
    thresholds: dict[tuple[str, str], np.ndarray],
    *,
    one_cluster: bool,
    sigma: float,
    seed: int,
) -> pd.DataFrame:
    """A submission: GT poses moved per scene by a similarity, centre noise, gross errors, nan poses.

    Args:
        gt: labels pose frame of one dataset.
        thresholds: official thresholds.
        one_cluster: all images in cluster ``c0`` (else one cluster per GT scene, outliers to ``outliers``).
        sigma: noise standard deviation in units of the scene's 4th threshold.
        seed: RNG seed.

    Returns:
        The submission pose frame (rows shuffled).
    """
    rng = np.random.default_rng(seed)
    sub = gt.copy()
    R = sub[R_COLS].to_numpy(copy=True).reshape(-1, 3, 3)
    c = np.array(camera_centers(sub), copy=True)
    for k, sc in enumerate(pd.unique(sub["scene"])):
        rows = np.flatnonzero(sub["scene"].to_numpy() == sc)
        if sc == "outliers":
            R[rows] = np.stack([_random_rotation(rng) for _ in rows])
            c[rows] = rng.standard_normal((len(rows), 3)) * 10
            sub.loc[rows, "scene"] = "c0" if one_cluster else "outliers"
            continue
        th = thresholds[(sub["dataset"].iloc[rows[0]], sc)]
        S = _random_rotation(rng)
        s = float(rng.uniform(0.5, 2.0))
        t = rng.standard_normal(3) * 5
        c[rows] = s * c[rows] @ S.T + t + rng.standard_normal((len(rows), 3)) * sigma * th[3] * s
        R[rows] = R[rows] @ S.T
        gross = rows[rng.random(len(rows)) < 0.05]
        c[gross] += rng.standard_normal((len(gross), 3)) * 20 * th[5] * s
        sub.loc[rows, "scene"] = "c0" if one_cluster else f"c{k}"
    t_wc = -np.einsum("nij,nj->ni", R, c)
    sub[R_COLS] = R.reshape(-1, 9)
    sub[T_COLS] = t_wc
    lost = rng.random(len(sub)) < 0.03
    sub.loc[lost, R_COLS + T_COLS] = np.nan
    return sub.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _time(
    gt: pd.DataFrame, th: dict, sub: pd.DataFrame, repeat: int, details: bool, config: MetricConfig
) -> tuple[float, float, float]:
    """Median wall seconds, median process CPU seconds (all threads) and the score."""
    walls, cpus = [], []
    res = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = score(gt, th, sub, details=details, config=config)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    assert res is not None
    return statistics.median(walls), statistics.median(cpus), res.score


def jit_warmup() -> tuple[float, float, str]:
    """Wall and CPU seconds of the first registration in this process (numba import + compile or cache load)."""
    t0, c0 = time.perf_counter(), time.process_time()
    kernels = metric._kernels()
    gt = np.random.default_rng(0).standard_normal((8, 3))
    # exact data and a zero threshold: every triplet is near a threshold, so every kernel runs once
    register_cameras(gt.copy(), gt, np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.5]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if kernels is None:
        return wall, cpu, "numba not installed: NumPy path"
    cache = os.environ.get("NUMBA_CACHE_DIR", "imc_core/__pycache__")
    return wall, cpu, f"numba {__import__('numba').__version__}, cache {cache}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(SHARED / "train_labels.csv"))
    ap.add_argument("--thresholds", default=str(SHARED / "train_thresholds.csv"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold-jit", action="store_true", help="compile the numba kernels into an empty cache folder")
    ap.add_argument("--numpy", action="store_true", help="NumPy path only (MetricConfig(numba=False))")
    args = ap.parse_args()
    if not Path(args.labels).exists():
        sys.exit(f"labels not found: {args.labels}")
    labels = read_labels(args.labels)
    th_all = read_thresholds(args.thresholds)
    cases = {
        "heritage": ("imc2023_heritage", True),
        "two100": ("pt_stpeters_stpauls", False),
    }
    config = MetricConfig(numba=not args.numpy)
    jit = jit_warmup() if not args.numpy else None
    rows = []
    for name, (ds, one) in cases.items():
        gt = labels[labels["dataset"] == ds].reset_index(drop=True)
        th = {k: v for k, v in th_all.items() if k[0] == ds}
        sub = perturb(gt, th, one_cluster=one, sigma=args.sigma, seed=args.seed)
        fast, cpu, s = _time(gt, th, sub, args.repeat, details=False, config=config)
        tracemalloc.start()
        full, _, _ = _time(gt, th, sub, 1, details=True, config=config)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        off = OFFICIAL_SECONDS[name]
        rows.append((name, ds, len(gt), s, fast, cpu, full, peak, off, off / fast, off / cpu))
    print("| case | dataset | images | score | ours wall (s, median) | ours CPU (s, median) | ours details (s) "
          "| peak MiB | official (s) | speed-up (wall) | speed-up (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:.3f} | {r[7]:.0f} "
              f"| {r[8]:.0f} | {r[9]:.0f}× | {r[10]:.0f}× |")
    print()
    if jit is not None:
        print(f"one-off first call in the process (numba import + {'compilation' if args.cold_jit else 'cache load'}"
              f", not in the table): {jit[0]:.2f} s wall, {jit[1]:.2f} s CPU ({jit[2]})")
    print("official: the imc25-utils code, single-threaded, wall seconds on this machine when quiet (its CPU time ≈ "
          "wall); speed-up (CPU) = official / our median process CPU time")
    print(f"load average during the run: {' '.join(open('/proc/loadavg').read().split()[:3])} "
          f"(the 2 cores are shared: compare wall times only at low load)")
    print("command: " + command_line("bench_metric.py"))


if __name__ == "__main__":
    main()
