"""LightGlue matching speed: fp16 vs fp32 and batch sizes, on real ALIKED features of one dataset.

Usage:
    .venv/bin/python bench/bench_lightglue.py --data-root ../shared/datasets/ets [--pairs 60]
        [--max-keypoints 4096] [--resize 1024] [--out bench/results/lightglue.md]

Extracts ALIKED-n16 features once (timed), then matches the first ``--pairs`` exhaustive pairs with each setting
after a warm-up on 8 pairs, and reports seconds, pairs per second and the mean number of matches per pair (so a
speed-up that changes the matches shows up). Meant for a CUDA machine; on CPU fp16 and batching do not apply.

``--first-calls N`` first times single fp32 LightGlue calls in this fresh process: one pair twice, then N pairs
with new keypoint counts, then the same N pairs again. It tells a one-off start-up cost from a cost paid per new
input shape (the pipeline's first matching in a process was ~19 s slower than the next on an H200).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imc_core.data import DataRoot  # noqa: E402
from imc_core.stages.features import FeaturesConfig, extract_features  # noqa: E402
from imc_core.stages.matching import MatchingConfig, match_features, read_matches  # noqa: E402

from bench._cmd import command_line  # noqa: E402
from bench.bench_pipeline import device_name  # noqa: E402


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def first_calls(feats: Path, pairs: list[tuple[str, str]], n: int) -> str:
    """Seconds of single fp32 LightGlue calls in a fresh process (markdown): start-up vs per-shape costs."""
    import h5py

    from imc_core.device import resolve_device
    from imc_core.stages.matching import _build_lightglue, _FeatureStore

    device = resolve_device("auto")
    t0 = time.perf_counter()
    run = _build_lightglue("aliked", MatchingConfig(method="lightglue", fp16=False, batch_size=1), device)
    _sync()
    t_load = time.perf_counter() - t0
    with h5py.File(feats, "r") as f:
        store = _FeatureStore(f, feats, device)
        data = {name: store.get(name) for pair in pairs[: n + 1] for name in pair}

        def timed(pair: tuple[str, str]) -> float:
            t = time.perf_counter()
            run([(data[pair[0]], data[pair[1]])])
            _sync()
            return time.perf_counter() - t

        same = [timed(pairs[0]), timed(pairs[0])]
        new = [timed(p) for p in pairs[1: n + 1]]
        again = [timed(p) for p in pairs[1: n + 1]]
    line = (f"First calls (fp32, one pair each): model load {t_load:.2f} s; pair 0 first {same[0]:.3f} s, again "
            f"{same[1]:.3f} s; the next {len(new)} pairs {sum(new):.2f} s (slowest {max(new):.3f}, median "
            f"{np.median(new):.3f}), the same pairs again {sum(again):.2f} s (median {np.median(again):.3f}).\n\n")
    print(line, flush=True)
    return line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--dataset", default=None, help="default: the first train dataset")
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--max-keypoints", type=int, default=4096)
    ap.add_argument("--resize", type=int, default=1024)
    ap.add_argument("--first-calls", type=int, default=0, help="time the first N single calls (see above)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    data = DataRoot(Path(args.data_root))
    name = args.dataset or data.train_datasets()[0]
    ds = data.load_dataset(name, "train")
    images = [(n, ds.image_dir / n) for n in ds.images]
    pairs = list(itertools.combinations(ds.images, 2))[: args.pairs]
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        fconf = FeaturesConfig(method="aliked", model="aliked-n16", max_keypoints=args.max_keypoints,
                               resize=args.resize)
        t0 = time.perf_counter()
        feats = extract_features(images, fconf, tmp / "features.h5")
        _sync()
        t_feat = time.perf_counter() - t0
        first = first_calls(feats, pairs, args.first_calls) if args.first_calls else ""
        settings = [(fp16, bs) for fp16 in (True, False) for bs in (1, 8)]
        for fp16, bs in settings:
            conf = MatchingConfig(method="lightglue", fp16=fp16, batch_size=bs)
            match_features(pairs[:8], feats, conf, tmp / "warm.h5", feature_method="aliked")
            _sync()
            t0 = time.perf_counter()
            out = match_features(pairs, feats, conf, tmp / f"m-{fp16}-{bs}.h5", feature_method="aliked")
            _sync()
            dt = time.perf_counter() - t0
            counts = [len(m[0]) if (m := read_matches(out, a, b)) is not None else 0 for a, b in pairs]
            rows.append({"fp16": fp16, "batch_size": bs, "seconds": dt, "pairs_per_s": len(pairs) / dt,
                         "mean_matches": float(np.mean(counts))})
            print(rows[-1], flush=True)
    head = (f"`{command_line('bench_lightglue.py')}`\n\n"
            f"device: {device_name()}; dataset {name}: {len(images)} images, {len(pairs)} pairs, "
            f"ALIKED-n16 ≤{args.max_keypoints} kpts @ {args.resize} px (features {t_feat:.2f} s incl. model load)\n\n")
    table = "| fp16 | batch_size | seconds | pairs/s | mean matches |\n|---|---|---|---|---|\n" + "".join(
        f"| {r['fp16']} | {r['batch_size']} | {r['seconds']:.2f} | {r['pairs_per_s']:.1f} | {r['mean_matches']:.1f} |\n"
        for r in rows)
    print(head + first + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(head + first + table)


if __name__ == "__main__":
    main()
