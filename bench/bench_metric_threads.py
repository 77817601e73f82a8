"""Scoring time of one large scene with the metric's triplet walk on one thread and on every core.

IMC-2025's ``amy_gardens`` (one scene of 200 images, 1.3 M triplets) dominates the time to score a whole submission.
This scores it ``--repeat`` times with ``MetricConfig(threads=1)`` and ``MetricConfig(threads=0)`` (every core)
alternately in one process, from the labels themselves and from a submission given with ``--submission`` (e.g. the
labels with noisy camera centres), and checks that both give the same scores. Prints a markdown table (medians) and
the command line.

Run: ``.venv/bin/python bench/bench_metric_threads.py [--submission S] [--dataset amy_gardens] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imc_core.metric import MetricConfig, score_files  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "imc25"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", default=str(SHARED / "train_labels.csv"))
    ap.add_argument("--thresholds", default=str(SHARED / "train_thresholds.csv"))
    ap.add_argument("--submission", action="append", default=[], help="another submission to time (repeatable)")
    ap.add_argument("--dataset", default="amy_gardens")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    subs = {"labels": args.labels, **{Path(s).name: s for s in args.submission}}
    cores = len(os.sched_getaffinity(0))
    score_files(args.labels, args.thresholds, args.labels, details=False, datasets=[args.dataset])  # warm numba
    rows = []
    for name, path in subs.items():
        times: dict[int, list[float]] = {1: [], 0: []}
        scores: dict[int, float] = {}
        for _ in range(args.repeat):
            for threads in (1, 0):
                t0 = time.perf_counter()
                res = score_files(args.labels, args.thresholds, path, details=False, datasets=[args.dataset],
                                  config=MetricConfig(threads=threads))
                times[threads].append(time.perf_counter() - t0)
                scores[threads] = res.score
        assert scores[1] == scores[0], (name, scores)
        one, every = statistics.median(times[1]), statistics.median(times[0])
        rows.append(f"| {name} | {scores[0]:.4f} | {one:.2f} s | {every:.2f} s | {one / every:.2f}× |")
    print(f"`{' '.join(['.venv/bin/python', 'bench/bench_metric_threads.py', *sys.argv[1:]])}`\n")
    print(f"dataset {args.dataset}, {cores} cores, medians of {args.repeat}\n")
    print("| submission | score (same on both) | 1 thread | every core | speed-up |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
