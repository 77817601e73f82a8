"""Are the learned stages repeatable on this machine? ALIKED features and LightGlue matches (fp32 and fp16), each
computed in ``--runs`` fresh processes, with torch's default kernels and with torch's deterministic kernels
(:func:`torch_determinism`), compared image by image and pair by pair.

Usage:
    python3 bench/bench_gpu_repro.py --data-root ROOT [--dataset NAME] [--runs 3] [--max-keypoints 4096]
        [--out bench/results/gpu_repro.md]

Meant for a CUDA machine (on the CPU every row should read "identical"). Each process extracts ALIKED-n16 features
of every image of the dataset (the ``aliked_lightglue`` variant's settings) and matches every exhaustive pair, once
in fp32 and once in fp16 (batches of ``--batch-size``). Every run is compared with the first run of the same mode:
images whose keypoints or descriptors differ (and the largest difference), pairs whose matches differ. The last row
compares the two modes' first runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._cmd import write_report  # noqa: E402

MODES = ("torch default", "torch_determinism")


@contextmanager
def torch_determinism(on: bool) -> Iterator[None]:
    """torch's deterministic kernels inside the block when ``on`` (``use_deterministic_algorithms`` with warnings
    only, cuDNN deterministic without benchmarking, cuBLAS's repeatable workspace), the previous settings after it."""
    import torch

    if not on:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts, in this fresh process
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def child(args: argparse.Namespace) -> None:
    """One fresh process: features + fp32 and fp16 matches into ``args.work``; seconds as JSON on stdout."""
    import torch

    from imc_core.data import DataRoot
    from imc_core.stages.features import FeaturesConfig, extract_features
    from imc_core.stages.matching import MatchingConfig, match_features

    work = Path(args.work)
    ds = DataRoot(Path(args.data_root)).load_dataset(args.dataset, "train")
    images = [(n, ds.image_dir / n) for n in ds.images]
    pairs = list(itertools.combinations(ds.images, 2))
    fconf = FeaturesConfig(method="aliked", model="aliked-n16", max_keypoints=args.max_keypoints, resize=1024)

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    seconds = {}
    with torch_determinism(args.mode == MODES[1]):
        t0 = time.perf_counter()
        feats = extract_features(images, fconf, work / "features.h5")
        sync()
        seconds["features"] = time.perf_counter() - t0
        for fp16 in (False, True):
            conf = MatchingConfig(method="lightglue", fp16=fp16, batch_size=args.batch_size, min_matches=0)
            t0 = time.perf_counter()
            match_features(pairs, feats, conf, work / f"matches-fp16={fp16}.h5", feature_method="aliked")
            sync()
            seconds[f"matching fp16={fp16}"] = time.perf_counter() - t0
    print(json.dumps(seconds))


def _read(path: Path) -> dict[str, dict[str, np.ndarray]]:
    import h5py

    out: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                group, _, key = name.rpartition("/")
                out.setdefault(group, {})[key] = obj[()]
        f.visititems(visit)
    return out


def compare(a: Path, b: Path) -> str:
    """``"identical"`` or how features/matches in run folders ``a`` and ``b`` differ."""
    fa, fb = _read(a / "features.h5"), _read(b / "features.h5")
    img_diff, largest = 0, 0.0
    for name in fa:
        x, y = fa[name], fb.get(name, {})
        if any(k not in y or x[k].shape != y[k].shape or not np.array_equal(x[k], y[k]) for k in x):
            img_diff += 1
            for k in ("keypoints", "descriptors"):
                if k in y and x[k].shape == y[k].shape:
                    largest = max(largest, float(np.abs(x[k].astype(np.float64) - y[k]).max()))
    parts = [f"{img_diff}/{len(fa)} images differ" + (f" (largest keypoint/descriptor difference {largest:.2g})"
                                                      if img_diff else "")]
    for fp16 in (False, True):
        ma, mb = _read(a / f"matches-fp16={fp16}.h5"), _read(b / f"matches-fp16={fp16}.h5")
        keys = set(ma) | set(mb)
        differ = sum(1 for k in keys if k not in ma or k not in mb or any(
            ma[k][d].shape != mb[k][d].shape or not np.array_equal(ma[k][d], mb[k][d]) for d in ma[k]))
        parts.append(f"{'fp16' if fp16 else 'fp32'} matches: {differ}/{len(keys)} pairs differ")
    text = "; ".join(parts)
    return "identical" if not img_diff and " 0/" in parts[1] and " 0/" in parts[2] else text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--dataset", default=None, help="default: the first train dataset")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-keypoints", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dataset is None:
        from imc_core.data import DataRoot

        args.dataset = DataRoot(Path(args.data_root)).train_datasets()[0]
    if args.child:
        return child(args)

    import torch

    from bench.bench_pipeline import device_name

    rows = []
    with tempfile.TemporaryDirectory() as td:
        firsts = {}
        for mode in MODES:
            for i in range(args.runs):
                work = Path(td) / f"{mode}-{i}"
                work.mkdir()
                cmd = [sys.executable, __file__, "--child", "--mode", mode, "--work", str(work),
                       "--data-root", args.data_root, "--dataset", args.dataset,
                       "--max-keypoints", str(args.max_keypoints), "--batch-size", str(args.batch_size)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:
                    raise SystemExit(f"{mode} run {i} failed:\n{res.stderr[-3000:]}")
                seconds = json.loads(res.stdout.strip().splitlines()[-1])
                warned = sorted({ln.strip() for ln in res.stderr.splitlines() if "Warning" in ln})
                firsts.setdefault(mode, work)
                verdict = "(reference)" if i == 0 else compare(firsts[mode], work)
                rows.append((mode, i, seconds, verdict, warned))
                print(rows[-1], flush=True)
        across = compare(firsts[MODES[0]], firsts[MODES[1]])
    table = ("| mode | run | features s | matching fp32 s | matching fp16 s | against run 0 of its mode |\n"
             "|---|---|---|---|---|---|\n")
    table += "".join(f"| {m} | {i} | {s['features']:.2f} | {s['matching fp16=False']:.2f} | "
                     f"{s['matching fp16=True']:.2f} | {v} |\n" for m, i, s, v, _ in rows)
    warnings = sorted({w for *_, ws in rows for w in ws})
    notes = [f"device: {device_name()}; dataset {args.dataset}, ALIKED-n16 ≤{args.max_keypoints} kpts @ 1024 px, "
             f"LightGlue batch size {args.batch_size}; cuDNN {torch.backends.cudnn.version()}",
             f"The two modes' first runs against each other: {across}.",
             "Warnings: " + ("; ".join(warnings)[:2000] if warnings else "none")]
    write_report("bench_gpu_repro.py", notes, table, args.out)


if __name__ == "__main__":
    main()
