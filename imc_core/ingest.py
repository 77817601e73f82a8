"""A submission made outside imc-lab (a Kaggle notebook, another pipeline) turned into a scored run directory.

The run holds what a pipeline run holds once scored (``submission.csv``, ``scores.json``, ``scenes.csv``,
``per_image.csv``, ``alignments.json``, ``timings.json``, ``log.txt``; see ``docs/formats.md``), so the dashboard's
Results and Compare pages read it like any other: loss attribution, per-image registration, 3-D cameras against
the ground truth, side by side with imc-lab's own runs. Its ``config.toml`` holds only a ``[meta]`` table (the
file it came from): no imc-lab stage made it. The pose convention is checked on the way in
(:mod:`imc_core.convention`): a submission that looks camera→world gets a warning on the run.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from .errors import InputError

__all__ = ["SUBMISSION_VARIANT", "submission_run"]

SUBMISSION_VARIANT = "submission"
"""The ``variant`` of a run made from an outside submission."""


def submission_run(submission_csv: str | Path, data_root: str | Path, *, label: str | None = None,
                   group: str | None = None, runs_dir: Path | None = None, name: str | None = None
                   ) -> tuple[Path, bool]:
    """Score an outside ``submission.csv`` against the labels of ``data_root`` and record it as a run, unless that
    file (the same bytes) was already added on the same data root: one submission added twice would read as two
    seeds whose scores agree, and make any difference look significant.

    Args:
        submission_csv: the submission (``[image_id,]dataset,scene,image,rotation_matrix,translation_vector``).
        data_root: the IMC-2025 data root whose ``train_labels.csv`` / ``train_thresholds.csv`` score it; the
            submission's datasets that the labels lack are left out, and it is scored on the labelled datasets it
            has (both named in the run's warnings).
        label: the run's label (default: the file's name).
        group: the run's group.
        runs_dir: parent folder of run directories (default ``$IMC_RUNS_DIR``).
        name: the file name to record (an upload's own name, when ``submission_csv`` is a temporary copy).

    Returns:
        The run directory (status ``done``) and whether it was made now (False: the run already made from it).

    Raises:
        InputError: the data root has no labels, no dataset of the submission is labelled, or a file is bad (named,
            with its line); nothing is written then.
    """
    import tomli_w

    from .convention import check_scored
    from .data import DataRoot, ground_truth_hashes
    from .metric import score
    from .runs import RunWriter, check_run_text, code_version, group_clash_warning, new_run_dir, now_iso, runs_root
    from .submission import read_pose_csv, take_rows, write_pose_csv

    check_run_text(label, group)
    t0 = time.perf_counter()
    submission_csv = Path(submission_csv)
    shown = name or str(submission_csv)  # in errors
    source = name or submission_csv.name  # in the run
    root = DataRoot(Path(data_root))
    runs_dir = runs_dir or runs_root()
    try:
        digest = hashlib.sha256(submission_csv.read_bytes()).hexdigest()
    except OSError as err:
        raise InputError(shown, "file not found" if isinstance(err, FileNotFoundError) else
                         f"cannot be read ({err.strerror or err})") from None
    if (same := _added_before(runs_dir, digest, root.path.resolve())) is not None:
        return same, False
    if not root.has_labels:
        raise InputError(root.labels_path, "not found: a submission is scored against the data root's labels"
                                           + root.parent_hint())
    sub = read_pose_csv(submission_csv, require_rows=True)
    labels = root.labels
    labelled = set(labels["dataset"].astype(str))
    submitted = list(dict.fromkeys(sub["dataset"].astype(str)))
    names = [d for d in submitted if d in labelled]
    if not names:
        have = sorted(labelled)
        raise InputError(shown, f"none of its datasets ({', '.join(submitted[:5]) or 'none'}) is in "
                                f"{root.labels_path} ({', '.join(have[:5])}{' …' if len(have) > 5 else ''})")
    root.check_scorable(names)
    warnings = []
    if unlabelled := [d for d in submitted if d not in labelled]:
        warnings.append(f"left out of the score: {root.labels_path} has no rows for {len(unlabelled)} dataset(s) "
                        f"of the submission ({', '.join(unlabelled)})")
        sub = take_rows(sub, sub["dataset"].astype(str).isin(names).to_numpy())
    if absent := sorted(labelled - set(names)):  # `score` refuses such a file; a run of part of the data is fine,
        # as long as it says so (its overall score is not that of the whole data root)
        warnings.append(f"scored on {len(names)} of the data root's {len(labelled)} labelled datasets: the "
                        f"submission has no rows for {', '.join(absent[:5])}{' …' if len(absent) > 5 else ''}")
    gt = labels[labels["dataset"].astype(str).isin(names)].reset_index(drop=True)
    thr = {k: v for k, v in (root.thresholds or {}).items() if k[0] in names}
    res = score(gt, thr, sub, submission_path=shown)
    # the file's own faults (odd rows, rotations that are not ones) and a score the official quirk lifted above
    # 100 go with the run, as `score` prints them; scene-by-scene notes stay in the per-scene table and the log
    warnings += [w for w in res.warnings if w.startswith(f"{shown}: ") or "exceeds 100%" in w]
    check = check_scored(gt, thr, sub, res)
    if check is not None and (note := check.warning()):
        warnings.append(note)
    if clash := group_clash_warning(group, {"meta": {"variant": SUBMISSION_VARIANT}}, runs_dir, data_root=data_root):
        warnings.append(clash)  # (a group of pipeline runs: Compare counted the submission as one of their seeds)
    seconds = time.perf_counter() - t0

    run_dir = new_run_dir(SUBMISSION_VARIANT, runs_dir)
    writer = RunWriter(run_dir)
    writer.write_meta(id=run_dir.name, created=now_iso(), status="running", variant=SUBMISSION_VARIANT,
                      data_root=str(root.path.resolve()), split="train", datasets=names, label=label or source,
                      group=group, source=source, source_sha256=digest, error=None, warnings=warnings,
                      gt_hashes=ground_truth_hashes(gt, thr, names), code=code_version())
    writer.write_text("config.toml", "# scored from a submission made outside imc-lab: no stage of it ran\n"
                      + tomli_w.dumps({"meta": {"variant": SUBMISSION_VARIANT, "source": source,
                                                "source_sha256": digest}}))
    write_pose_csv(sub, run_dir / "submission.csv")
    writer.write_json("scores.json", res.to_json())
    writer.write_csv("scenes.csv", res.scenes)
    writer.write_csv("per_image.csv", res.per_image)
    writer.write_json("alignments.json", res.alignments)
    writer.write_json("timings.json", {"total": seconds, "datasets": {}, "cache": {}, "scoring": seconds})
    writer.log(f"submission {source} (sha256 {digest[:12]}…) scored against {root.labels_path}")
    writer.log_lines(f"WARNING: {w}" for w in warnings)
    writer.log_lines(f"metric warning: {w}" for w in res.warnings)
    writer.log(f"score {res.score:.4f} (mAA {res.mAA:.4f}, clusterness {res.clusterness:.4f})")
    for ds, d in res.datasets.items():
        writer.log(f"  {ds}: score {d.score:.4f} mAA {d.mAA:.4f} clusterness {d.clusterness:.4f}")
    if check is not None:
        writer.log_lines(f"pose convention: {row.dataset}, {row.reading}: "
                         + (f"mAA {row.mAA:.4f}" if row.mAA == row.mAA else "not scored (the geometry rules it out)")
                         for row in check.table.itertuples())
    writer.set_status("done")
    return run_dir, True


def _added_before(runs_dir: Path, digest: str, data_root: Path) -> Path | None:
    """The run an earlier :func:`submission_run` made from the same bytes on the same data root, if any."""
    from .liveness import read_json

    if not runs_dir.is_dir():
        return None
    for run_dir in sorted(runs_dir.iterdir()):
        meta = read_json(run_dir / "run.json") if run_dir.is_dir() else None
        if (isinstance(meta, dict) and meta.get("variant") == SUBMISSION_VARIANT and meta.get("status") == "done"
                and meta.get("source_sha256") == digest and meta.get("data_root") == str(data_root)):
            return run_dir
    return None

