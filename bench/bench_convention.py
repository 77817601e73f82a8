"""How often the pose-convention check of ``score`` speaks about a submission written the right way.

Every data root under ``--root-dir`` with ``train_labels.csv`` is submitted as its own ground truth with each camera
centre moved by Gaussian noise of ``sigma`` × its scene's largest threshold (rotations kept), for each sigma and
seed, and :func:`imc_core.convention.convention_check` re-reads every dataset. The poses are world→camera, so every
finding (a dataset, :meth:`~imc_core.convention.ConventionCheck.findings`, or one scene,
:meth:`~imc_core.convention.ConventionCheck.scene_findings`) is a false alarm; the script lists them and counts
them. With ``--slips``, each GT scene in turn (noise of ``--slip-sigma``, seed 0) is also written camera→world, the
usual slip, and the script counts the scenes ``score`` names (as a scene, or through its whole dataset; a dataset
is re-read when it is small, under 50 mAA, or holds a posed and clustered scene under 50 mAA, as ``score`` does;
``--all`` re-reads every dataset). Prints
markdown tables and the command line.

Run: ``.venv/bin/python bench/bench_convention.py [--root-dir ../shared/datasets] [--sigmas 0.5 1 2 5] [--seeds 3]
[--frames] [--rot-noise DEG] [--slips [--slip-sigma 0.1] [--slip-kinds …] [--all]]``
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imc_core.convention import check_scored, convention_check  # noqa: E402
from imc_core.data import read_thresholds  # noqa: E402
from imc_core.metric import score  # noqa: E402
from imc_core.submission import R_COLS, T_COLS, cam_to_world, read_pose_csv, rotations, translations, world_to_cam  # noqa: E402,E501


def noisy(gt, thresholds, sigma: float, seed: int, frames: bool = False, rot_deg: float = 0.0):
    """``gt`` with each camera centre moved by N(0, (sigma · its scene's largest threshold)²) per axis; with
    ``frames`` each GT scene then moved into a world of its own (a random rotation, a scale e^U(−3, 3) and an offset
    of N(0, 100²) per axis: a reconstruction's arbitrary frame, or georeferenced coordinates), and with ``rot_deg``
    each rotation turned by N(0, rot_deg²) degrees about a random axis (a pipeline's rotation errors)."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    R_c2w, c = cam_to_world(rotations(gt), translations(gt))
    scale = np.array([thresholds.get((d, s), np.full(1, np.nan))[-1]
                      for d, s in zip(gt["dataset"].astype(str), gt["scene"].astype(str), strict=True)])
    c = c + rng.normal(size=c.shape) * (sigma * np.nan_to_num(scale, nan=1.0))[:, None]
    if rot_deg > 0:
        # (a rotation vector of N(0, (rot_deg/√3)²) per axis: rot_deg degrees RMS)
        turn = Rotation.from_rotvec(rng.normal(size=(len(gt), 3)) * np.radians(rot_deg) / np.sqrt(3)).as_matrix()
        R_c2w = R_c2w @ turn
    if frames:
        for _, idx in gt.groupby(["dataset", "scene"]).groups.items():
            rows = np.asarray(idx)
            Q = Rotation.random(random_state=rng).as_matrix()
            s, d = float(np.exp(rng.uniform(-3, 3))), rng.normal(0, 100, 3)
            c[rows] = s * c[rows] @ Q.T + d
            R_c2w[rows] = Q @ R_c2w[rows]
    R, t = world_to_cam(R_c2w, c)
    out = gt.copy()
    out[R_COLS], out[T_COLS] = R.reshape(-1, 9), t
    return out


#: the slips ``--slips`` writes one scene at a time: name → (rotation, translation) written from world→camera (R, t)
SLIPS = {
    "camera→world": lambda R, t: cam_to_world(R, t),
    "transposed rotation": lambda R, t: (np.swapaxes(R, -1, -2), t),
    "negated translation": lambda R, t: (R, -t),
    "centre as t": lambda R, t: (R, cam_to_world(R, t)[1]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--slips", action="store_true", help="also write each scene camera→world in turn")
    ap.add_argument("--slip-sigma", type=float, default=0.1, help="noise of the --slips submissions")
    ap.add_argument("--all", action="store_true", help="--slips: re-read every dataset, whatever its score")
    ap.add_argument("--frames", action="store_true", help="each scene in a random frame of its own (see noisy)")
    ap.add_argument("--rot-noise", type=float, default=0.0, help="rotation noise, degrees")
    ap.add_argument("--slip-kinds", nargs="+", default=["camera→world"], choices=list(SLIPS))
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    rows, alarms, slips = [], [], []
    for root in sorted(p for p in Path(args.root_dir).iterdir() if (p / "train_labels.csv").exists()):
        gt = read_pose_csv(root / "train_labels.csv")
        th = read_thresholds(root / "train_thresholds.csv")
        scenes = gt[gt["scene"].astype(str) != "outliers"].groupby(["dataset", "scene"]).ngroups
        for sigma in args.sigmas:
            n_ds = n_sc = 0
            for seed in range(args.seeds):
                check = convention_check(gt, th, noisy(gt, th, sigma, seed, args.frames, args.rot_noise))
                found, per_scene = check.findings(), check.scene_findings()
                n_ds, n_sc = n_ds + len(found), n_sc + len(per_scene)
                alarms += [f"{root.name}, sigma {sigma:g}, seed {seed}: dataset {d}: {r} "
                           f"({w:.2f} as written, {b:.2f} read so)" for d, r, w, b in found]
                alarms += [f"{root.name}, sigma {sigma:g}, seed {seed}: scene {s} of {d}: {r} "
                           f"({w:.2f} as written, {b:.2f} read so)" for d, s, r, w, b in per_scene]
            rows.append((root.name, gt["dataset"].nunique(), scenes, sigma, args.seeds, n_ds, n_sc))
        if args.slips:
            base = noisy(gt, th, args.slip_sigma, 0, args.frames, args.rot_noise)
            for kind, (dataset, scene), idx in ((k, *g) for k in args.slip_kinds
                                                for g in base.groupby(["dataset", "scene"]).groups.items()):
                if scene == "outliers":
                    continue
                R_w, t_w = SLIPS[kind](rotations(base), translations(base))
                rows_of = np.zeros(len(base), bool)
                rows_of[np.asarray(idx)] = True
                sub = base.copy()
                sub.loc[rows_of, R_COLS], sub.loc[rows_of, T_COLS] = R_w.reshape(-1, 9)[rows_of], t_w[rows_of]
                # as `score` does it: the dataset is re-read only when low or small (low_datasets)
                check = (convention_check(gt, th, sub, [str(dataset)]) if args.all
                         else check_scored(gt, th, sub, score(gt, th, sub, details=False)))
                if check is None or str(dataset) not in check.datasets:
                    named = "not re-read"
                else:
                    # (a finding that cannot choose between camera→world and centre as t names both)
                    named = ("as its dataset" if any(d == dataset and kind in r.split(" or ")
                                                     for d, r, *_ in check.findings())
                             else "as a scene" if any((d, s) == (dataset, scene) and kind in r.split(" or ")
                                                      for d, s, r, *_ in check.scene_findings())
                             else "not named")
                slips.append((root.name, kind, str(dataset), str(scene), int(rows_of.sum()), named))
    print(f"`.venv/bin/python bench/bench_convention.py {' '.join(sys.argv[1:])}`".replace(" `", "`"))
    print()
    print("| data root | datasets | scenes | sigma (× largest threshold) | seeds | dataset findings | scene findings |")
    print("|---|---|---|---|---|---|---|")
    for name, n_d, n_s, sigma, seeds, n_ds, n_sc in rows:
        print(f"| {name} | {n_d} | {n_s} | {sigma:g} | {seeds} | {n_ds} | {n_sc} |")
    print()
    print("False alarms:" if alarms else "No false alarm.")
    for line in alarms:
        print(f"- {line}")
    if slips:
        print()
        for kind in args.slip_kinds:
            found = sum(named.startswith("as ") for _, k, *_, named in slips if k == kind)
            print(f"One scene written {kind} (sigma {args.slip_sigma:g}, seed 0): {found} of "
                  f"{sum(k == kind for _, k, *_ in slips)} named.")
        print()
        print("| data root | slip | dataset | scene | images | named |")
        print("|---|---|---|---|---|---|")
        for row in slips:
            print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
