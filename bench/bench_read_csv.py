"""Benchmark of :func:`imc_core.submission.read_pose_csv` (every submission, label file and run's poses go through it).

Writes submissions of ``--rows`` random poses (one dataset, one scene; a tenth of them unregistered, ``nan``) with
:func:`imc_core.submission.write_pose_csv`, reads each once to warm up, then ``--repeat`` times, and reports the
median wall seconds and rows per second. Replaces a timed unit test (2,000 rows under 0.1 s): timings belong here.

Run: ``.venv/bin/python bench/bench_read_csv.py [--rows 2000 20000 200000] [--repeat 5] [--out FILE]``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imc_core.submission import pose_frame, read_pose_csv, write_pose_csv  # noqa: E402

from bench._cmd import median_seconds, timing_parser, write_report  # noqa: E402


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3, 3)`` rotations (QR of Gaussian matrices, determinant +1)."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0] *= -1
    return q


def main() -> None:
    ap = timing_parser(__doc__, 5)
    ap.add_argument("--rows", type=int, nargs="+", default=[2000, 20000, 200000])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lines = ["| rows | file MB | median s | rows / s |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            R, t = random_rotations(n, rng), rng.normal(size=(n, 3))
            lost = rng.random(n) < 0.1
            R[lost], t[lost] = np.nan, np.nan
            path = write_pose_csv(pose_frame("ds", "s", [f"img_{i:07d}.png" for i in range(n)], R, t),
                                  Path(tmp) / f"sub_{n}.csv")
            read_pose_csv(path)  # warm-up (page cache, pandas' first parse)
            med = median_seconds(lambda path=path: read_pose_csv(path), args.repeat)
            lines.append(f"| {n:,} | {path.stat().st_size / 1e6:.1f} | {med:.3f} | {n / med:,.0f} |")
    write_report("bench_read_csv.py", [f"Median of {args.repeat} reads after one warm-up, one process."],
                 "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
