"""Command line: ``python -m imc_core {score,synth,run,variants,runs,export,add-submission,import,cache}``.

Contracts (ARCHITECTURE.md): ``score --json`` prints one JSON object with full float precision; bad input exits
non-zero with one line naming the file, row and problem.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigError, ImcError, InputError, RunFolderRemoved


def _cmd_score(args: argparse.Namespace) -> int:
    from .metric import score_files

    if args.json and args.details:  # (--details was ignored: the object keeps the schema of ARCHITECTURE.md)
        raise ConfigError("score: --details prints tables, --json one object of fixed schema: use one of them "
                          "(warnings go to stderr either way)")
    try:
        res = score_files(args.gt, args.thresholds, args.submission, details=args.details, datasets=args.dataset,
                          convention=args.convention_check)
    except InputError as err:  # (the metric's words are the official code's; the flag is the CLI's)
        if " of the ground truth is not in the submission" in err.problem and not args.dataset:
            raise InputError(err.path, f"{err.problem}; to score the datasets it has, name them with --dataset "
                                       "(`add-submission` scores a part of the data and says so)", err.row) from None
        raise
    if args.json:
        print(json.dumps(res.to_json()))
    else:
        print(f"score {res.score:.4f}  mAA {res.mAA:.4f}  clusterness {res.clusterness:.4f}")
        for name, d in res.datasets.items():
            print(f"  {name:30s} score {d.score:8.4f}  mAA {d.mAA:8.4f}  clusterness {d.clusterness:8.4f}")
        if args.details:
            print(res.scenes.to_string(index=False))
            if res.convention is not None:
                print("pose convention (each dataset that is small, below 50 mAA, holds a clustered scene below 50 "
                      "mAA or fits the ground truth better read another way, read four more ways; clusterness is "
                      "the same for all):")
                for row in res.convention.itertuples():
                    shown = "not scored" if row.mAA != row.mAA else f"mAA {row.mAA:8.4f}"
                    print(f"  {row.dataset:30s} {row.reading:20s} {shown:13s}  ({row.meaning})")
                if res.convention["mAA"].isna().any():
                    print("  (not scored: the poses' geometry rules that reading out in every scene, so no score "
                          "could name it)")
            elif args.convention_check:
                print("pose convention: not re-read, every dataset is large and reaches 50 mAA as written")
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .synth import BUNDLED, generate

    given = {"datasets": args.datasets, "scenes_per_dataset": args.scenes, "images_per_scene": args.images,
             "outliers_per_dataset": args.outliers_per_dataset, "width": args.width, "height": args.height,
             "roll_fraction": args.roll, "seed": args.seed}
    try:
        conf = replace(BUNDLED, **{k: v for k, v in given.items() if v is not None})
    except ConfigError as err:  # the config's field names are not what was typed: name the flag
        text = str(err)
        for field, flag in SYNTH_FLAGS.items():
            if text.startswith(f"synth.{field} must "):
                why = text.removeprefix(f"synth.{field} must ").rsplit(", got", 1)[0]
                why = re.sub(r"satisfy (\d+) <= min <= max", r"be at least \1", why)
                raise ConfigError(f"synth {flag} {given[field]}: must {why}") from None
        raise
    print(generate(Path(args.out), conf))
    return 0


#: `synth` flag of each config field a message may name
SYNTH_FLAGS = {"datasets": "--datasets", "scenes_per_dataset": "--scenes", "images_per_scene": "--images",
               "outliers_per_dataset": "--outliers", "roll_fraction": "--roll", "seed": "--seed"}


def _positive_int(text: str | None, flag: str) -> int | None:
    """``text`` as a positive integer (None stays None), else a ConfigError naming ``flag``: checked by the command,
    not by argparse, so that ``run --json`` still prints its one "refused" object."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{flag}: must be a positive integer, got {text!r}")
    return value


class ProgressLine:
    """The ``run`` command's progress on stderr: one live line with every stage under way (a reconstruction can run
    beside the next dataset's features), and a line of its own for each stage that finishes. When the stream is not
    a terminal (``live`` False by default then: a log file, a pipe) only the finished stages are written, as plain
    lines without carriage returns."""

    def __init__(self, stream: TextIO | None = None, width: int | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.width = width or max(40, shutil.get_terminal_size((120, 24)).columns - 1)
        self.live = live if live is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.active: dict[str, str] = {}

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        if done >= total:
            self.active.pop(stage, None)
            self._write(f"{stage:40s} {done:5d}/{total:<5d} {message}", end="\n")
        else:
            self.active[stage] = f"{stage} {done}/{total} {message}".strip()
        if self.active and self.live:
            self._write(" | ".join(self.active.values()), end="")

    def _write(self, text: str, end: str) -> None:
        if self.live:
            print("\r" + text[:self.width].ljust(self.width), end=end, file=self.stream, flush=True)
        else:
            print(text.rstrip(), end=end, file=self.stream, flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    args.jobs = _positive_int(args.jobs, "run --jobs")
    progress = None if args.quiet or args.json else ProgressLine()

    if not args.verbose:
        import pycolmap

        pycolmap.logging.minloglevel = 2  # COLMAP's INFO/WARNING lines would drown the progress; log.txt has ours
    stop = {"requested": False, "interrupted": False, "finished": False}

    def on_term(signum: int, frame: object) -> None:  # SIGTERM → a clean "cancelled" run, cache kept
        stop["requested"] = True

    def on_int(signum: int, frame: object) -> None:
        """Ctrl-C: KeyboardInterrupt as Python's own handler raises it, and remembered, since Python drops the
        exception when it lands in a callback whose errors are ignored (a weak-reference callback of the import
        system: the run then went on to "done"); once the run has ended, only remembered."""
        stop["interrupted"] = True
        if not stop["finished"]:
            raise KeyboardInterrupt

    def should_cancel() -> bool:
        if stop["interrupted"] and threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt  # a Ctrl-C the interpreter dropped: the run ends as any other Ctrl-C does
        return stop["requested"] or stop["interrupted"]

    handlers = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (an ignored SIGINT stays ignored)
        handlers[signal.SIGINT] = signal.signal(signal.SIGINT, on_int)
    try:
        return _run_and_report(args, progress, should_cancel, stop)
    finally:  # (tests call main in-process)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _run_and_report(args: argparse.Namespace, progress: ProgressLine | None, should_cancel: Callable[[], bool],
                    stop: dict[str, bool]) -> int:
    """The body of :func:`_cmd_run` once its signal handlers are in place."""
    from .glogfilter import glog_lines_dropped
    from .pipeline import run_pipeline
    from .runs import RunWriter, load_run

    shown: set[str] = set()  # warnings printed as they happened (the data's, when loaded) are not repeated

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        shown.add(str(message))
        _one_line_warning(message, *args, **kwargs)

    try:
        with glog_lines_dropped() if not args.verbose else nullcontext(), warnings.catch_warnings():
            warnings.showwarning = show
            run_dir = run_pipeline(args.data_root, datasets=args.dataset or None, variant=args.variant,
                                   overrides=args.set, out=args.out, progress=progress, use_cache=not args.no_cache,
                                   label=args.label, group=args.group, should_cancel=should_cancel,
                                   jobs=args.jobs, split=args.split)
    except RunFolderRemoved as err:  # (`runs rm --force`, or a hand, took the folder while it ran)
        stop["finished"] = True
        print(f"error: {err}", file=sys.stderr)
        if stop["interrupted"]:
            raise KeyboardInterrupt from None
        return 1
    stop["finished"] = True
    if not (run_dir / "run.json").is_file():  # (removed as the run ended)
        print(f"error: {run_dir}: the run folder was removed while the run went on", file=sys.stderr)
        return 1
    run = load_run(run_dir)
    # why a run that stopped at a poll was cancelled: a Ctrl-C dropped while the main thread waited on --jobs
    # workers, or SIGTERM (`runs rm --force`, a system's kill), read as the dashboard's Cancel did, with no why
    why = ("interrupted (Ctrl-C)" if stop["interrupted"] else "terminated (SIGTERM)"
           if stop["requested"] and not (run_dir / "CANCEL").exists() else None)
    if run.status == "cancelled" and why and not run.meta.get("error"):
        writer = RunWriter.reopen(run_dir)
        writer.write_meta(error=why)
        writer.log(why)
        run = load_run(run_dir)
    if args.json:  # (before a Ctrl-C's exit too: a script reading stdout got nothing)
        _print_run_json(args, str(run_dir), run.status, run.meta.get("error"),
                        run.scores if run.status == "done" else None, run.timings)
    if run.status == "cancelled" and stop["interrupted"]:
        raise KeyboardInterrupt  # (reported as every Ctrl-C is: exit status 130)
    for warning in run.meta.get("warnings") or []:
        if warning not in shown:
            print(f"warning: {warning}", file=sys.stderr)
    if not args.json:
        print(run_dir)
        if run.scores and run.status == "done":
            print(f"score {run.scores['score']:.4f}  mAA {run.scores['mAA']:.4f}  "
                  f"clusterness {run.scores['clusterness']:.4f}")
    if run.status != "done":
        error = run.meta.get("error")
        print(f"run {run.status}{f': {error}' if error else ''} (see {run_dir / 'log.txt'})", file=sys.stderr)
        return 1
    return 0


def _cmd_variants(args: argparse.Namespace) -> int:
    from .config import list_variants, load_variant
    from .pipeline import check_devices

    for name in list_variants():
        v = load_variant(name)
        missing = v.missing_requirements()
        try:  # ($IMC_DEVICE=cuda on a machine without CUDA refused every run while this said "ok")
            check_devices(v.config())
        except ConfigError as err:
            missing.append(str(err).splitlines()[0])
        status = "ok" if not missing else "cannot run here: " + "; ".join(missing)
        print(f"{name:26s} {v.description}  [{status}]")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from .runs import RUN_STATUSES, list_runs, remove_runs, runs_root

    if args.action not in ("list", "rm"):  # a run id where the action goes: said below, with the hint
        args.ids, args.action = [args.action, *args.ids], "list"

    if unknown := [x for x in args.status if x not in RUN_STATUSES]:  # (it matched no run, and said "0 run(s)")
        raise ConfigError(f"runs{' rm' if args.action == 'rm' else ''}: unknown --status {', '.join(unknown)} "
                          f"(statuses: {', '.join(RUN_STATUSES)})")
    if "" in args.group:  # (`runs rm --group ""` must not read as every run without a group)
        raise ConfigError("runs: --group needs a group's name")
    if args.last is not None and args.last < 1:
        raise ConfigError(f"runs: --last {args.last}: a number of runs, 1 or more")
    if args.action == "rm":
        if args.variant or args.last is not None or args.data_root or args.json:  # (a bulk removal stays easy to say)
            raise ConfigError("runs rm: --variant, --last, --data-root and --json only serve the list; remove by "
                              "RUN_ID, --status or --group")
        if not (args.ids or args.status or args.group):
            raise ConfigError("runs rm: name RUN_IDs and/or --status and/or --group")
        gone = remove_runs(args.ids, Path(args.root) if args.root else None, statuses=args.status,
                           groups=args.group, force=args.force, dry_run=args.dry_run)
        for p in gone:
            print(f"{'would remove' if args.dry_run else 'removed'} {p}")
        print(f"{len(gone)} run(s){' (dry run)' if args.dry_run else ''}")
        return 0
    if args.ids:
        raise ConfigError(f"runs: unexpected {' '.join(args.ids)} (did you mean `runs rm`?)")
    if args.force or args.dry_run:  # (accepted without a word, as if they did something to the list)
        raise ConfigError("runs: --force and --dry-run only serve `runs rm`")
    if args.root and not Path(args.root).exists():
        raise InputError(Path(args.root), "runs folder not found")
    root = Path(args.root) if args.root else runs_root()
    if (root / "run.json").is_file():  # (one run's folder, e.g. `run --out`'s: it read "no runs")
        raise InputError(root, f"a run folder, not a folder of runs: list its folder with `runs --root {root.parent}`")
    df = list_runs(root)
    if args.status:  # (it listed every run, without a word)
        df = df[df["status"].isin(args.status)]
    if args.group:
        df = df[df["group"].isin(args.group)]
    if args.variant:
        df = df[df["variant"].isin(args.variant)]
    if args.data_root:  # (runs record their data root resolved; a teammate's import keeps theirs)
        wanted = {os.path.normpath(str(Path(d).resolve())) for d in args.data_root}
        df = df[[bool(r) and os.path.normpath(str(Path(r).resolve())) in wanted for r in df["data_root"]]]
    if args.last is not None:  # (list_runs: newest first)
        df = df.head(args.last)
    if args.json:  # (for scripts: every column list_runs has, numbers as numbers, missing ones null)
        records = df.astype(object).where(df.notna(), None).to_dict("records")
        for rec in records:  # (a column with a blank seed is float: 1.0)
            rec["seed"] = None if rec["seed"] is None else int(rec["seed"])
            rec["datasets"] = [d for d in str(rec["datasets"] or "").split(",") if d]
        print(json.dumps({"runs": records, "unreadable": df.attrs["unreadable"]}, indent=1))
        return 0
    cols = ["id", "status", "variant", "datasets", "score", "mAA", "clusterness", "seconds", "seed", "group", "label"]
    if df["data_root"].nunique() > 1:  # (runs of several data roots: ETs and a copy of it read alike)
        cols.append("data_root")
    shown = df.astype({"seed": "Int64"})[cols].astype(object).where(df[cols].notna(), "")
    for c, digits in (("score", 4), ("mAA", 4), ("clusterness", 4), ("seconds", 1)):  # as `run` prints them
        shown[c] = [_decimals(v, digits) for v in shown[c]]
    shown["datasets"] = [_few(str(v)) for v in shown["datasets"]]
    for c in ("group", "label"):  # (one 160-character label made every line 367 wide; --json keeps them whole)
        shown[c] = [v if len(v := str(x)) <= TEXT_WIDTH else v[:TEXT_WIDTH - 1] + "…" for x in shown[c]]
    # (a run folder copied by hand can hold escape sequences in its labels: shown, not acted on by the terminal)
    shown = shown.map(lambda v: "".join(c if c.isprintable() else "?" for c in v) if isinstance(v, str) else v)
    said = [f"{name} {' or '.join(values)}" for name, values in
            (("with status", args.status), ("of group", args.group), ("of variant", args.variant),
             ("on data root", args.data_root)) if values]
    print(shown.to_string(index=False) if len(df) else f"no runs{' ' + ', '.join(said) if said else ''}")
    unreadable = dict(df.attrs["unreadable"])
    if unreadable:  # damaged files: left out above, and said so, each with why (`runs rm ID` removes them)
        print(f"warning: {len(unreadable)} run folder(s) could not be read (`runs rm ID` removes one):",
              file=sys.stderr)
        for name, why in unreadable.items():
            print("  " + "".join(c if c.isprintable() else "?" for c in f"{name}: {why}"), file=sys.stderr)
    return 0


#: longest group or label the text listing of `runs` shows whole
TEXT_WIDTH = 40


def _few(names: str, width: int = 40) -> str:
    """A comma-separated list cut to what fits ``width`` characters, then ``+N more`` (a run of the 13 IMC-2025
    training datasets made every line of `runs` 330 characters wide)."""
    items = [x for x in names.split(",") if x]
    if len(names) <= width or len(items) <= 1:
        return names
    kept: list[str] = []
    for item in items:
        if len(",".join([*kept, item])) > width - 10:
            break
        kept.append(item)
    kept = kept or items[:1]
    return f"{','.join(kept)} +{len(items) - len(kept)} more"


def _decimals(value: object, digits: int) -> str:
    """A number with ``digits`` decimals (``runs`` showed 73.170732 where ``run`` prints 73.1707); anything else as
    it is."""
    try:
        return "" if value == "" else f"{float(value):.{digits}f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def _cmd_export(args: argparse.Namespace) -> int:
    from .runs import export_bundle, runs_root

    run_dir = Path(args.run_dir)
    by_id = runs_root() / args.run_dir.rstrip("/")
    if not run_dir.exists() and Path(args.run_dir).name == args.run_dir.rstrip("/"):
        if not by_id.is_dir():  # (it said "nope/run.json: not a run directory")
            raise InputError(args.run_dir, f"no such run folder here, and no run of that id in {runs_root()}")
        run_dir = by_id  # a run id as `runs` lists it
    print(export_bundle(run_dir, args.out, overwrite=args.force))
    return 0


def _cmd_add_submission(args: argparse.Namespace) -> int:
    from .ingest import submission_run
    from .runs import load_run

    if args.submission and args.submission_file and args.submission != args.submission_file:
        raise ConfigError(f"add-submission: two files named ({args.submission}, --submission "
                          f"{args.submission_file}): name one")
    if not (path := args.submission or args.submission_file):
        raise ConfigError("add-submission: name the submission file (add-submission FILE --data-root DIR)")
    run_dir, new = submission_run(path, args.data_root, label=args.label, group=args.group)
    run = load_run(run_dir)
    if not new:
        def own(key: str) -> str:  # (Python's None was printed: "(it has None)")
            return f"{key} {run.meta[key]!r}" if run.meta.get(key) is not None else f"no {key}"

        print(f"not added: this file was already added on this data root as {run.id} ({own('label')})",
              file=sys.stderr)
        # (a --group or --label given now was dropped without a word: the run kept its own)
        ignored = [f"{flag} {given!r} (it has {own(key)})" for flag, key, given in
                   (("--label", "label", args.label), ("--group", "group", args.group))
                   if given is not None and given != run.meta.get(key)]
        if ignored:
            print(f"not applied: {'; '.join(ignored)}", file=sys.stderr)
    for warning in run.meta.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    print(run.path)
    scores = run.scores or {}
    print(f"score {scores['score']:.4f}  mAA {scores['mAA']:.4f}  clusterness {scores['clusterness']:.4f}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .runs import import_run

    dest, new = import_run(args.bundle, Path(args.root) if args.root else None)
    if not new:
        print(f"not imported: this bundle's run is already here as {dest.name}", file=sys.stderr)
    print(dest)
    return 0


def _mb(n: int) -> str:
    return f"{n / 1024**2:,.1f} MB"


def _when(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text!r}")
    return value


def _cmd_cache(args: argparse.Namespace) -> int:
    from .cache import cache_root, list_artifacts, list_leftovers

    root = Path(args.cache_dir) if args.cache_dir else cache_root()
    if root.exists() and not root.is_dir():
        raise InputError(root, "the cache folder is not a folder")
    if args.cache_dir and not root.exists():  # (the default one is missing until a first run: an empty cache)
        raise InputError(root, "cache folder not found")
    if args.action == "prune":
        return _cache_prune(args, root)
    given = [f"--{k.replace('_', '-')}" for k in ("unused", "older_than", "stage", "runs_dir", "grace_hours", "dry_run")
             if getattr(args, k) not in (None, False)]
    if given:  # (they were ignored: a listing that looked like a filtered one)
        raise ConfigError(f"cache: {', '.join(given)} only with `cache prune`")
    entries = list_artifacts(root)
    leftovers = list_leftovers(root) if root.is_dir() else []
    stages: dict[str, list] = {}
    for e in entries:
        stages.setdefault(e.stage, []).append(e)
    if args.json:
        print(json.dumps({"root": str(root), "stages": {
            st: {"artifacts": len(es), "bytes": sum(e.size for e in es),
                 "last_used": max(e.last_used for e in es), "oldest_use": min(e.last_used for e in es)}
            for st, es in stages.items()}, "bytes": sum(e.size for e in entries),
            "temporary": {"folders": len(leftovers), "bytes": sum(t.size for t in leftovers)}}))
        return 0
    print(f"cache {root}")
    temp_line = None
    if leftovers:
        unmarked = sum(t.incomplete for t in leftovers)
        temp_line = (f"{len(leftovers)} temporary folder(s), {_mb(sum(t.size for t in leftovers))}, newest write "
                     f"{_when(max(t.last_write for t in leftovers))}: builds at work or left by killed runs, "
                     + (f"{unmarked} artifact folder(s) whose DONE marker is gone (never read again), " if unmarked
                        else "")
                     + "and removals cut short (`cache prune` clears the builds"
                     + (" and those folders" if unmarked else "") + " untouched for an hour, the removals at once)")
    if not entries:
        print("no artifacts")
        if temp_line:
            print(temp_line)
        return 0
    # each artifact's last use (built or read); per stage: the stalest one's and the freshest one's
    print(f"{'stage':16s} {'artifacts':>9s} {'size':>12s}  {'oldest last use':16s}  {'newest last use':16s}")
    for st, es in stages.items():
        print(f"{st:16s} {len(es):9d} {_mb(sum(e.size for e in es)):>12s}  "
              f"{_when(min(e.last_used for e in es)):16s}  {_when(max(e.last_used for e in es)):16s}")
    print(f"{'total':16s} {len(entries):9d} {_mb(sum(e.size for e in entries)):>12s}")
    if temp_line:
        print(temp_line)
    print("(`cache prune --older-than DAYS` removes artifacts whose last use is older; `--unused` those no run names)")
    return 0


def _live_runs_started(folders: list[Path], cache: Path, dry_run: bool = False) -> float | None:
    """When the oldest run still at work started, as epoch seconds (None when none is): the runs of ``folders``
    (runs folders, or run folders themselves) that are running, queued or cancelling, their process alive, and
    every run that says in the cache that it is at work (:func:`imc_core.cache.live_runs`: a run written anywhere,
    ``run --out`` outside the runs folders included)."""
    from .cache import live_runs
    from .liveness import read_json, run_state
    from .runs import list_runs

    at_work = ("running", "queued", "cancelling")
    starts = [run["started"] for run in live_runs(cache, forget_ended=not dry_run)] if cache.is_dir() else []
    for folder in folders:
        if not folder.is_dir():
            continue
        if (folder / "run.json").is_file():  # a run folder named by itself (--runs-dir RUN_DIR)
            meta = read_json(folder / "run.json")
            if isinstance(meta, dict) and run_state(folder, meta).status in at_work:
                starts.append(_epoch(meta.get("created")))
            continue
        df = list_runs(folder)
        if df.empty:
            continue
        starts += [_epoch(created) for created in
                   df.loc[df["status"].isin(at_work), "created"]]
    return min(starts) if starts else None


def _epoch(created: object) -> float:
    """A run's ``created`` (ISO time) as epoch seconds; unreadable: a day back (what it built stays)."""
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(str(created)).timestamp()
    except ValueError:
        return time.time() - 86400.0


def _hours(seconds: float) -> str:
    """A span for a message: ``1 h``, ``2.5 h``, ``45 min``, ``30 s``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _cache_prune(args: argparse.Namespace, root: Path) -> int:
    from .cache import EVERY_STAGE, FINGERPRINTS, GRACE_S, STAGES, prune, stale_leftovers
    from .errors import ConfigError
    from .runs import referenced_artifacts, runs_root

    if args.json:  # (it was ignored: prune prints what it removes, a line each)
        raise ConfigError("cache prune: --json only lists the cache (`cache --json`)")
    if not args.unused and args.older_than is None:
        raise ConfigError("cache prune: say what to remove: --unused (no run needs it), --older-than DAYS "
                          "(not used for that long), or both")
    if args.stage:
        # (the images' fingerprint memo is no stage: named, it was taken and nothing went)
        known = sorted({*STAGES, *(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                                   and p.name != FINGERPRINTS)} if root.is_dir() else STAGES)
        if unknown := [s for s in args.stage if s not in known]:
            raise ConfigError(f"cache prune: no stage {unknown[0]!r}; stages: {', '.join(known)}")
    folders = [Path(d) for d in args.runs_dir] if args.runs_dir else [runs_root()]
    referenced: set[tuple[str, str]] | None = None
    if args.unused:
        referenced = set().union(*(referenced_artifacts(f) for f in folders))
        if not referenced:  # (a wrong IMC_RUNS_DIR, or runs kept elsewhere: every artifact would look unused)
            raise ConfigError(f"cache prune --unused: no run in {', '.join(map(str, folders))} names a cache "
                              "artifact, so every artifact would count as unused; name the folders (or run folders) "
                              "that hold your runs with --runs-dir (repeatable), or prune with --older-than DAYS")
        if whole := sorted(name for stage, name in referenced if stage == EVERY_STAGE):
            print(f"note: runs made by an older imc-lab do not name the cache artifacts they read, so every artifact "
                  f"of {', '.join(whole)} stays (remove those runs to prune them)", file=sys.stderr)
    runs = ", ".join(map(str, folders))
    grace = GRACE_S if args.grace_hours is None else args.grace_hours * 3600.0
    started = _live_runs_started(folders, root, args.dry_run)
    if started is not None and time.time() - started + 60.0 > grace:
        # what a run still at work has built or is building is newer than its start: a short grace removed it
        grace = time.time() - started + 60.0
        print(f"note: a run is still at work (since {_when(started)}): what the cache got since then stays",
              file=sys.stderr)
    stale = stale_leftovers(root, grace, args.stage) if root.is_dir() else []  # what prune clears besides
    gone = prune(root, referenced=referenced,
                 older_than_s=None if args.older_than is None else args.older_than * 86400.0,
                 stages=args.stage, grace_s=grace, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for e in gone:
        print(f"{verb} {e.stage}/{e.name}  {_mb(e.size)}  last used {_when(e.last_used)}")
    print(f"{verb} {len(gone)} artifact(s), {_mb(sum(e.size for e in gone))}"
          + (f" (runs read from {runs})" if args.unused else ""))
    if stale:
        unmarked = sum(t.incomplete for t in stale)
        print(f"{'would clear' if args.dry_run else 'cleared'} {len(stale)} temporary folder(s) left by killed runs"
              + (f" or without their DONE marker ({unmarked})" if unmarked else "")
              + f", {_mb(sum(t.size for t in stale))}")
    gone_paths = {e.path for e in gone}
    recent = [e for e in prune(root, referenced=referenced,
                               older_than_s=None if args.older_than is None else args.older_than * 86400.0,
                               stages=args.stage, grace_s=0.0, dry_run=True) if e.path not in gone_paths]
    if recent:  # (a tester read "0 artifact(s)" right after removing runs as "nothing is unused")
        asked = GRACE_S if args.grace_hours is None else args.grace_hours * 3600.0
        # (a run at work widened the grace: "--grace-hours 0 includes them" was said to one who had given it)
        why = (f"since the run still at work started ({_when(started)}): they stay while it runs"
               if started is not None and grace > asked else
               f"in the last {_hours(grace)} (a run may be reading them): --grace-hours 0 includes them")
        print(f"kept {len(recent)} more artifact(s), {_mb(sum(e.size for e in recent))}, that match but were built or "
              f"used {why}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m imc_core", description="imc-lab: IMC-2025 multi-scene SfM workbench")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="score a submission with the exact IMC-2025 metric")
    s.add_argument("--gt", required=True, help="train_labels.csv")
    s.add_argument("--thresholds", required=True, help="train_thresholds.csv")
    s.add_argument("--submission", required=True, help="submission.csv")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--details", action="store_true",
                   help="per-scene table and the pose-convention readings (text mode, not with --json)")
    s.add_argument("--dataset", action="append", metavar="NAME",
                   help="score only this dataset of the labels (repeatable; default: all of them, each of which "
                        "the submission must hold)")
    s.add_argument("--no-convention-check", dest="convention_check", action="store_false",
                   help="skip the pose-convention check (by default each dataset that is small, below 50 mAA, "
                        "holds a posed, clustered scene below 50 mAA, or whose camera centres fit the ground truth "
                        "clearly better read another way is also scored with its poses read as camera→world, with "
                        "transposed rotations, with t's sign flipped and with the camera centre as t, each where "
                        "the poses' geometry does not rule it out, and a warning names the datasets, or single "
                        "scenes, one of those scores clearly better and the geometry supports; --details prints "
                        "every reading)")
    s.set_defaults(func=_cmd_score)

    s = sub.add_parser("synth", help="generate the synthetic multi-scene benchmark")
    s.add_argument("--out", required=True, metavar="DIR", help="data root to write (train/, labels, thresholds); "
                   "files of an earlier generation there are replaced, and folders they leave empty removed")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same bytes (default 0)")
    # (the defaults are the bundled benchmark's, synth.BUNDLED; a test keeps these words in step with it)
    s.add_argument("--datasets", type=int, help="number of datasets, 1..8 (default 2)")
    s.add_argument("--scenes", type=int, help="scenes per dataset (default 2 to 3; scenes and outliers share 17 "
                   "bundled photos, two or more per scene)")
    s.add_argument("--images", type=int, help="images per scene, at least 2 (default 8 to 12)")
    s.add_argument("--outliers", dest="outliers_per_dataset", type=int, metavar="N",
                   help="outlier images per dataset (default 2 to 3)")
    s.add_argument("--width", type=int, help="image width in pixels, at least 16 (default 640)")
    s.add_argument("--height", type=int, help="image height in pixels, at least 16 (default 480)")
    s.add_argument("--roll", type=float, help="fraction of views rolled by 90/180 degrees, 0 to 1 (default 0.1)")
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("run", help="run a pipeline variant and write a run directory")
    s.add_argument("--data-root", required=True, metavar="DIR",
                   help="folder in the IMC-2025 layout: train/<dataset>/ (+ train_labels.csv, train_thresholds.csv) "
                   "and/or test/<dataset>/ (+ sample_submission.csv)")
    s.add_argument("--dataset", action="append", help="dataset name (repeatable; default all)")
    s.add_argument("--split", choices=("auto", "train", "test"), default="auto",
                   help="auto (default): train when DIR has train/ datasets, unless every --dataset is a test one")
    s.add_argument("--variant", default="default",
                   help="a variant of `variants` (default: default), or a .toml file of your own; such a file starts "
                        "from the built-in defaults (ALIKED + LightGlue) unless it says extends = \"default\" (or "
                        "another variant)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable), e.g. reconstruction.min_model_size=4")
    s.add_argument("--out", help="run directory, new or empty (default: new folder under $IMC_RUNS_DIR)")
    s.add_argument("--json", action="store_true",
                   help="print one JSON object: run_dir, status, error, scores, timings (also when the run is "
                        "refused before it starts: run_dir null, status \"refused\", exit code 2)")
    s.add_argument("--no-cache", action="store_true", help="recompute every stage (the new artifacts replace the "
                   "cached ones: the cache folder must be writable)")
    s.add_argument("--label", help="free text kept in run.json (shown in History, Results and `runs`)")
    s.add_argument("--group", help="group name tying repeated runs (seeds) of one experiment")
    s.add_argument("--jobs", metavar="N",
                   help="datasets reconstructed at once (default $IMC_JOBS, else one per core when deterministic, "
                   "1 otherwise; the cores left map a dataset's match-graph components side by side); poses do not "
                   "depend on it")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.add_argument("--verbose", action="store_true", help="also print COLMAP's own log lines")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("variants", help="list pipeline variants")
    s.set_defaults(func=_cmd_variants)

    s = sub.add_parser("runs", help="list run directories, or remove some",
                       description="Without an action: every run with its scores, newest first (--status, --group, "
                       "--variant, --data-root and --last narrow the list; a data_root column when they span "
                       "several). `rm` deletes the runs named and/or every run of a --status and/or --group (cache "
                       "artifacts stay: `cache prune --unused` frees them).")
    # (no choices: `runs RUN_ID` then gets the hint below instead of argparse's "invalid choice")
    s.add_argument("action", nargs="?", default="list", metavar="{list,rm}")
    s.add_argument("ids", nargs="*", metavar="RUN_ID", help="rm: run folder names")
    s.add_argument("--root", help="runs folder (default $IMC_RUNS_DIR or data/runs)")
    s.add_argument("--status", action="append", default=[],
                   help="only the runs with this status as `runs` lists it (repeatable), e.g. failed, "
                   "cancelled, stopped (its process ended without recording a result); rm: removes every one")
    s.add_argument("--group", action="append", default=[],
                   help="only the runs of this group (repeatable); rm: removes every one (with --status: those of "
                   "that status)")
    s.add_argument("--variant", action="append", default=[], help="list: only the runs of this variant (repeatable)")
    s.add_argument("--last", type=int, metavar="N", help="list: only the N newest runs (after the other filters)")
    s.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="list: only the runs made on this data root (repeatable)")
    s.add_argument("--json", action="store_true",
                   help="list: print {\"runs\": [one object per run, with its path and data_root], \"unreadable\": "
                        "{folder: why}}")
    s.add_argument("--force", action="store_true",
                   help="rm: also runs whose process still runs (stopped first: SIGTERM, then SIGKILL after 10 s), "
                        "or that ran on another host")
    s.add_argument("--dry-run", action="store_true", help="rm: list what would go, remove nothing")
    s.set_defaults(func=_cmd_runs)

    s = sub.add_parser("export", help="export a run as a zip bundle")
    s.add_argument("run_dir", help="run folder, or a run id of the runs folder ($IMC_RUNS_DIR)")
    s.add_argument("--out", help="bundle file (default RUN_DIR.zip beside the run folder)")
    s.add_argument("--force", action="store_true", help="replace the bundle file when it exists")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("add-submission", help="score a submission made outside imc-lab and keep it as a run",
                       description="Score SUBMISSION.csv (from a Kaggle notebook or another pipeline) against the "
                                   "data root's labels and write it as a run directory, so the dashboard shows and "
                                   "compares it like imc-lab's own runs; its pose convention is checked on the way.")
    s.add_argument("submission", nargs="?", help="submission.csv ([image_id,]dataset,scene,image,rotation_matrix,"
                                                 "translation_vector)")
    # (as `score` names it: `add-submission --submission FILE` was refused as an unrecognized argument)
    s.add_argument("--submission", dest="submission_file", metavar="SUBMISSION", help="the same, as `score` takes it")
    s.add_argument("--data-root", required=True, help="data root whose train_labels.csv / train_thresholds.csv "
                                                      "score it")
    s.add_argument("--label", help="the run's label (default: the file's name)")
    s.add_argument("--group", help="the run's group")
    s.set_defaults(func=_cmd_add_submission)

    s = sub.add_parser("import", help="import a run bundle")
    s.add_argument("bundle", help="a .zip made by `export` (a teammate's run); every file is checked before any "
                   "is written")
    s.add_argument("--root", metavar="DIR", help="runs folder to import into (default $IMC_RUNS_DIR or data/runs)")
    s.set_defaults(func=_cmd_import)

    s = sub.add_parser("cache", help="stage artifacts: size per stage, or prune what no run needs",
                       description="Without an action: artifacts, size and last use per stage. `prune` removes "
                       "artifacts that meet every criterion given; artifacts built or used in the last hour (a "
                       "running pipeline may read them; --grace-hours) stay.")
    s.add_argument("action", nargs="?", choices=["list", "prune"], default="list")
    s.add_argument("--cache-dir", help="cache root (default $IMC_CACHE_DIR or data/cache)")
    s.add_argument("--json", action="store_true", help="list: print one JSON object")
    s.add_argument("--unused", action="store_true",
                   help="prune: only artifacts that no run directory names in its artifacts.json (verified "
                   "databases stay with their reconstruction)")
    s.add_argument("--older-than", type=_nonnegative_float, metavar="DAYS",
                   help="prune: only artifacts not built or used for DAYS days")
    s.add_argument("--stage", action="append", help="prune: only this stage (repeatable)")
    s.add_argument("--runs-dir", action="append",
                   help="prune --unused: a folder of runs, or one run folder (`run --out`), whose runs protect the "
                        "artifacts they name (repeatable; default $IMC_RUNS_DIR)")
    s.add_argument("--grace-hours", type=_nonnegative_float, metavar="H",
                   help="prune: keep whatever was built or used in the last H hours (default 1; 0 only when no "
                   "pipeline is running)")
    s.add_argument("--dry-run", action="store_true", help="prune: list what would go, remove nothing")
    s.set_defaults(func=_cmd_cache)
    return p


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the CLI: ``warning: <message>`` as the run's own warnings print, without the
    source file and line that Python's default adds (they name our code, not the user's problem)."""
    print(f"warning: {message}", file=file or sys.stderr)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line. ``runs rm`` takes its run ids before or after options (``runs rm --dry-run ID``):
    argparse leaves positionals that follow an option of a subcommand with two positionals unparsed."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "runs":
        args.ids = [*args.ids, *(e for e in extra if not e.startswith("-"))]
        extra = [e for e in extra if e.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except SystemExit as exc:  # argparse's refusal (a missing --data-root, a bad --split): said on stderr
        if exc.code == 2 and _wants_run_json(list(sys.argv[1:] if argv is None else argv)):
            print(_run_json(None, "refused", "the command line was refused (see stderr)"))
        raise
    with warnings.catch_warnings():  # restores the caller's showwarning (tests call main in-process)
        warnings.showwarning = _one_line_warning
        return _main(args)


#: options that name a file or folder: an empty one (an unset shell variable) read as "not given" or as the
#: current folder, e.g. `run --out "$OUT"` wrote a new run under the runs folder without a word
PATH_OPTIONS = ("out", "data_root", "root", "runs_dir", "cache_dir", "gt", "thresholds", "submission",
                "submission_file")


#: each command's positional arguments naming a file or folder (an empty RUN_DIR exported the current folder)
PATH_ARGUMENTS = {"export": ("run_dir",), "import": ("bundle",), "add-submission": ("submission",), "runs": ("ids",)}


def _check_no_empty_paths(args: argparse.Namespace) -> None:
    positional = PATH_ARGUMENTS.get(str(getattr(args, "command", "")), ())
    for name in dict.fromkeys([*PATH_OPTIONS, *positional]):
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip() or isinstance(value, list) and any(
                isinstance(v, str) and not v.strip() for v in value):
            what = ({"ids": "RUN_ID"}.get(name, name.upper()) if name in positional
                    else {"submission_file": "--submission"}.get(name, f"--{name.replace('_', '-')}"))
            raise ConfigError(f"{what} is empty (an unset shell variable?): name a file or folder")


def _run_json(run_dir: str | None, status: str, error: str | None, scores: Any = None, timings: Any = None) -> str:
    """``run --json``'s one object."""
    return json.dumps({"run_dir": run_dir, "status": status, "error": error, "scores": scores, "timings": timings})


def _print_run_json(args: argparse.Namespace, run_dir: str | None, status: str, error: str | None,
                    scores: Any = None, timings: Any = None) -> None:
    """``run --json``'s one object on stdout (once, whatever ends the run)."""
    if getattr(args, "_json_printed", False):
        return
    args._json_printed = True
    print(_run_json(run_dir, status, error, scores, timings))


def _wants_run_json(argv: list[str]) -> bool:
    """Whether a command line argparse refused was ``run ... --json`` (its script still reads one object)."""
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] == "run" and "--json" in argv


def _main(args: argparse.Namespace) -> int:
    try:
        _check_no_empty_paths(args)
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return rc
    except ImcError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if args.command == "run" and getattr(args, "json", False):  # a script reading stdout gets its one object
            _print_run_json(args, None, "refused", reason)
        print(f"error: {reason}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"error: {err.filename}: file not found", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if args.command == "run" and getattr(args, "json", False):  # (the pipeline names its folder, when it had one)
            _print_run_json(args, getattr(err, "run_dir", None), "cancelled", "interrupted (Ctrl-C)")
        kept = "; cached stage artifacts are kept" if args.command == "run" else ""
        print(f"interrupted (Ctrl-C){kept}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
