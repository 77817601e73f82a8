"""Geometric verification on 1..N threads: seconds, and whether the verified database is the one of one thread.

Usage:
    .venv/bin/python bench/bench_verify_threads.py RUN_DIR [RUN_DIR ...] [--threads 1 2 4 8] [--repeats 2]
        [--out bench/results/verify_threads.md]

For each dataset of each run directory (a finished ``python -m imc_core run``), the verified database that the run
cached (``artifacts.json`` → ``reconstruction/<key>/database.db``) is copied, its two-view geometries are cleared,
and the pairs are verified again the way the run's config verifies them (``reconstruction.verify_*``, ``seed``), on
each ``--threads`` count, ``--repeats`` times. Every stored geometry (config, inlier matches, F, E, H) is compared
bit for bit with the first count's first run. The run's own database is never modified.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imc_core.config import load_config  # noqa: E402
from imc_core.stages import reconstruction as rc  # noqa: E402

from bench._cmd import write_report  # noqa: E402
from bench.bench_pipeline import markdown_table  # noqa: E402

Geometries = dict[int, tuple[int, bytes, bytes, bytes, bytes]]


def geometries(db_path: Path) -> Geometries:
    """Every two-view geometry of a database, bit for bit: config, inlier matches, F, E, H."""
    import pycolmap

    with pycolmap.Database.open(db_path) as db:
        return {pair_id: (int(g.config), np.asarray(g.inlier_matches).tobytes(),
                          *(np.asarray(m).tobytes() for m in (g.F, g.E, g.H)))
                for pair_id, g in zip(*db.read_two_view_geometries())}


def verify_copy(src: Path, tmp: Path, conf: rc.ReconstructionConfig, threads: int) -> tuple[float, Geometries]:
    """Seconds to verify a copy of ``src`` from scratch on ``threads`` threads, and its geometries."""
    import pycolmap

    db_path = tmp / "database.db"
    shutil.copyfile(src, db_path)
    with pycolmap.Database.open(db_path) as db:
        db.clear_two_view_geometries()
    t0 = time.perf_counter()
    rc._verify(db_path, conf, pycolmap.CancellationToken(), threads)
    seconds = time.perf_counter() - t0
    out = geometries(db_path)
    db_path.unlink()
    return seconds, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import pycolmap

    pycolmap.logging.minloglevel = 2
    rows = []
    for run_dir in args.runs:
        conf = load_config(run_dir / "config.toml").reconstruction
        for dataset, stages in json.loads((run_dir / "artifacts.json").read_text()).items():
            src = Path(stages["reconstruction"]) / "database.db"
            reference: Geometries | None = None
            with tempfile.TemporaryDirectory(prefix="imc-bench-verify-") as td:
                for threads in args.threads:
                    times, same = [], True
                    for _ in range(args.repeats):
                        seconds, got = verify_copy(src, Path(td), conf, threads)
                        times.append(seconds)
                        reference = got if reference is None else reference
                        same = same and got == reference
                    rows.append({"run": run_dir.name, "dataset": dataset, "verified pairs": len(reference or {}),
                                 "threads": threads, "seconds (median)": statistics.median(times),
                                 "every run": " / ".join(f"{t:.2f}" for t in times),
                                 f"same geometries as {args.threads[0]} thread(s)": same})
                    print(rows[-1], flush=True)
    write_report("bench_verify_threads.py", [f"{os.cpu_count()} CPU cores"], markdown_table(pd.DataFrame(rows)),
                 args.out)


if __name__ == "__main__":
    main()
