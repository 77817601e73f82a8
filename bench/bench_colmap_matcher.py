"""COLMAP's SIFT matcher as the default runs it: single-threaded calls in processes against COLMAP's own threads.

Usage:
    .venv/bin/python bench/bench_colmap_matcher.py --datasets ets toy_fb82 [--min-pairs 50 12] [--repeats 3]
        [--root-dir ../shared/datasets] [--out bench/results/colmap_matcher.md]

For every train dataset of each data root: the default variant's COLMAP SIFT features once (untimed), then every
exhaustive pair matched by the default's matcher (``matching.colmap_threads`` = 1, repeatable) in processes, once
per ``--min-pairs`` value of ``imc_core.stages.matching.MIN_PAIRS_PER_PROCESS`` (which, with the core count, sets how
many), and by COLMAP's own threads (``colmap_threads=-1``, not repeatable). Each setting runs ``--repeats`` times;
the table gives the median seconds, the processes used, and whether its matches equal the first setting's pair
for pair (a speed-up that changes the matches shows up).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imc_core.config import resolve_config  # noqa: E402
from imc_core.data import DataRoot  # noqa: E402
from imc_core.stages import matching  # noqa: E402
from imc_core.stages.features import extract_features  # noqa: E402

from bench._cmd import write_report  # noqa: E402
from bench.bench_pipeline import markdown_table  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"


def all_matches(path: Path, pairs: list[tuple[str, str]]) -> list[bytes | None]:
    """Every pair's matches as bytes (``None`` when not stored), for an exact comparison."""
    out = []
    for a, b in pairs:
        m = matching.read_matches(path, a, b)
        out.append(None if m is None else np.ascontiguousarray(m[0]).tobytes())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ets"], help="data roots under --root-dir")
    ap.add_argument("--root-dir", type=Path, default=SHARED)
    ap.add_argument("--min-pairs", nargs="+", type=int, default=[matching.MIN_PAIRS_PER_PROCESS],
                    help="values of MIN_PAIRS_PER_PROCESS to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import pycolmap

    pycolmap.logging.minloglevel = 2
    cfg = resolve_config("default")
    rows = []
    for root_name in args.datasets:
        data = DataRoot(args.root_dir / root_name)
        for name in data.train_datasets():
            ds = data.load_dataset(name, "train")
            pairs = list(itertools.combinations(ds.images, 2))
            with tempfile.TemporaryDirectory(prefix="imc-bench-matcher-") as td:
                tmp = Path(td)
                feats = extract_features([(n, ds.image_dir / n) for n in ds.images], cfg.features, tmp / "f.h5")
                settings = [(f"processes, MIN_PAIRS_PER_PROCESS={n}", n, cfg.matching) for n in args.min_pairs]
                settings.append(("COLMAP's threads (colmap_threads=-1)", matching.MIN_PAIRS_PER_PROCESS,
                                 dataclasses.replace(cfg.matching, colmap_threads=-1)))
                reference = None
                for label, least, conf in settings:
                    matching.MIN_PAIRS_PER_PROCESS = least
                    n_proc = matching.colmap_match_processes(len(pairs), conf, use_gpu=False)
                    times, same = [], True
                    for rep in range(args.repeats):
                        out = tmp / f"m-{len(rows)}-{rep}.h5"
                        t0 = time.perf_counter()
                        matching.match_features(pairs, feats, conf, out, feature_method="colmap_sift")
                        times.append(time.perf_counter() - t0)
                        got = all_matches(out, pairs)
                        reference = got if reference is None else reference
                        same = same and got == reference
                    rows.append({"data": f"{root_name}/{name}", "pairs": len(pairs), "setting": label,
                                 "processes": n_proc, "seconds (median)": statistics.median(times),
                                 "every run": " / ".join(f"{t:.2f}" for t in times),
                                 "same matches as the first setting": same})
                    print(rows[-1], flush=True)
    write_report("bench_colmap_matcher.py",
                 [f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"],
                 markdown_table(pd.DataFrame(rows)), args.out)


if __name__ == "__main__":
    main()
