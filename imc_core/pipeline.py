"""Chain the stages for one data root + one config and write a run directory.

``run_pipeline`` is what the CLI's ``run`` command and the dashboard's background job call. Per dataset:
pairs → features → matching → reconstruction, each stage cached (:mod:`imc_core.cache`) under a key made of its
config, its inputs' keys and the dataset fingerprint; then all datasets' poses form ``submission.csv``, which is scored
with the exact metric when ground truth exists.

Datasets are independent once matched, so their reconstructions run in a small thread pool (``jobs``; pycolmap
releases the GIL while it maps) while the main thread extracts and matches the next dataset. With the deterministic
switch on every mapper uses one thread, so the poses do not depend on ``jobs``; only the wall time does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .cache import (Artifact, artifact_key, cache_root, cached, content_fingerprint, drop_artifact, files_problem,
                    get_or_build, h5_problem, register_live_run, release_live_run, restore_marker, sqlite_problem)
from .config import (DEFAULT_VARIANT, PipelineConfig, bare_variant_note, dump_config, resolve_config, stable_hash,
                     unread_keys, unused_settings)
from .errors import Cancelled, ConfigError, ImcError, InputError, RunFolderRemoved
from .images import describe_unusable, exif_problems, unusable_error, unusable_images
from .liveness import process_start
from .runs import (RunWriter, check_run_dir, check_run_text, claim_run_dir, code_version, new_run_dir, now_iso,
                   read_json, record_failure, release_run_dir, runs_root)
from .stages.features import TORCH_METHODS as _TORCH_FEATURES
from .stages.features import colmap_extraction_threads
from .stages.matching import TORCH_METHODS as _TORCH_MATCHERS
from .stages.matching import match_processes_cap

#: progress(stage, done, total, message)
ProgressFn = Callable[[str, int, int, str], None]
STAGES = ("pairs", "features", "matching", "reconstruction", "scoring")
#: a features artifact's note of the images whose EXIF cannot be used as it is (empty when none; absent in
#: artifacts made before it)
EXIF_NOTE = "exif.txt"
#: a features artifact's list of the images that cannot be decoded, ``[[name, why], ...]`` (absent in artifacts made
#: before it: they had none). Those images get no features and count as unregistered.
UNUSABLE_NOTE = "unusable.json"


@dataclass
class DatasetResult:
    """What the pipeline produced for one dataset."""

    name: str
    poses: pd.DataFrame
    artifacts: dict[str, str] = field(default_factory=dict)  # stage → cache folder used by this run
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)
    pairs_stats: pd.DataFrame | None = None
    ok: bool = True
    #: why the reconstruction failed (``ok`` false): every image is then an outlier
    error: str | None = None
    #: seconds per step inside the reconstruction stage (a cache hit: those of the run that computed it)
    reconstruction_steps: dict[str, float] = field(default_factory=dict)
    #: what the reconstruction warned of (its log's ``WARNING:`` lines: a group of images no model holds, the
    #: mapping's time cap reached, a final adjustment that failed), kept as the run's warnings
    warnings: list[str] = field(default_factory=list)


def _device_name(cfg: PipelineConfig) -> str:
    """Where the run's torch stages compute (``run.json``'s ``device``): ``cuda (<GPU name>)`` or ``cpu``; ``cpu``
    without importing torch when no stage uses it (:meth:`PipelineConfig.uses_torch`)."""
    if not cfg.uses_torch():
        return "cpu"
    try:
        from .device import resolve_device

        dev = resolve_device("auto")
        if dev.type == "cuda":
            import torch

            return f"cuda ({torch.cuda.get_device_name(dev)})"
        return "cpu"
    except Exception:  # device detection must never break a run
        return "cpu"


class _Reporter:
    """Fans progress out to the run directory and the caller's callback; checks for cancellation."""

    def __init__(self, writer: RunWriter, progress: ProgressFn | None, should_cancel: Callable[[], bool] | None):
        self.writer, self.cb, self.cancel_cb = writer, progress, should_cancel
        self._lock = threading.Lock()  # reconstructions report from worker threads
        self._aborted = False

    def abort(self) -> None:
        """Make :meth:`cancelled` true from now on (the run is stopping: workers should too)."""
        self._aborted = True

    def cancelled(self) -> bool:
        return self._aborted or self.writer.cancel_requested() or bool(self.cancel_cb and self.cancel_cb())

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled by user")

    def stage(self, dataset: str, stage: str) -> Callable[[int, int, str], None]:
        key = f"{dataset}/{stage}"

        def report(done: int, total: int, message: str = "") -> None:
            self.emit(key, done, total, message)
            self.check()

        return report

    def emit(self, key: str, done: int, total: int, message: str = "", **kw: Any) -> None:
        with self._lock:
            self.writer.progress(key, done, total, message, **kw)
            if self.cb:
                self.cb(key, done, total, message)


def check_devices(cfg: PipelineConfig) -> None:
    """Check, before any work, that ``$IMC_DEVICE`` and the devices the config's torch stages ask for exist here
    (``cuda`` on a machine without CUDA failed after the features were extracted, or passed unnoticed while the
    stage was cached).

    Raises:
        ConfigError: naming the key, e.g. ``matching.device='cuda' but CUDA is not available here``.
    """
    keys = [("features", cfg.features.device, cfg.features.method in _TORCH_FEATURES),
            # (COLMAP's matcher reads its device too: cuda failed after the features, or passed while cached)
            ("matching", cfg.matching.device, cfg.matching.method in (*_TORCH_MATCHERS, "colmap")),
            ("global_descriptors", cfg.global_descriptors.device, bool(cfg.global_descriptors.models))]
    from .device import ENV_VAR, resolve_device

    if os.environ.get(ENV_VAR, "").strip().lower() not in ("", "auto", "cpu"):
        # every stage's "auto" reads it, COLMAP's too: a typo, or CUDA where there is none, failed only after the
        # run folder was made
        resolve_device("auto")
    for section, device, used in keys:
        if used and device.strip().lower() != "auto":  # auto falls back to the CPU ($IMC_DEVICE checked above)
            try:
                resolve_device(device)
            except ConfigError as err:
                raise ConfigError(f"{section}.{str(err)}") from None


def reconstruction_jobs(cfg: PipelineConfig, n_datasets: int, jobs: int | None = None) -> int:
    """How many datasets reconstruct at once.

    Args:
        cfg: the run's config (``reconstruction.deterministic`` decides the automatic value).
        n_datasets: datasets in the run.
        jobs: requested value; ``None`` reads ``$IMC_JOBS``, else automatic: one per CPU core when the mapper is
            deterministic (one thread each), 1 otherwise (COLMAP's own threads already use every core).

    Returns:
        A value in ``[1, max(1, n_datasets)]``.

    Raises:
        ConfigError: ``jobs`` / ``$IMC_JOBS`` is not a positive integer.
    """
    source = "jobs"
    if jobs is None and os.environ.get("IMC_JOBS"):
        source = "$IMC_JOBS"
        try:
            jobs = int(os.environ["IMC_JOBS"])
        except ValueError:
            raise ConfigError(f"IMC_JOBS must be a positive integer, got {os.environ['IMC_JOBS']!r}") from None
    if jobs is None:
        jobs = (os.cpu_count() or 1) if cfg.reconstruction.deterministic else 1
    if jobs < 1:
        raise ConfigError(f"{source} must be ≥ 1, got {jobs}")
    return max(1, min(jobs, n_datasets))


def mapping_jobs(cfg: PipelineConfig, n_jobs: int) -> int:
    """Cores per reconstruction job when the mapper is deterministic: match-graph components of one dataset mapped at
    once (``reconstruction.map_components``, one thread each) and threads that verify its pairs. Else 1: COLMAP's own
    threads use the cores (``reconstruction.num_threads``, the verification's included)."""
    if not cfg.reconstruction.deterministic:
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, n_jobs))


def _check_not_in_data(run_place: Path, data_root: Path, how: str = "write the run elsewhere (--out, or "
                                                                     "$IMC_RUNS_DIR)") -> None:
    """Refuse a run folder (``--out``, or the runs folder) or the cache folder inside the data root's ``train/`` or
    ``test/``: it would read as a dataset there, and every later run on the root was refused ("no images in this
    folder"). ``how`` says where else to put it."""
    place = Path(os.path.abspath(run_place))
    for split in ("train", "test"):
        folder = Path(os.path.abspath(data_root / split))
        if place == folder or folder in place.parents:
            raise InputError(run_place, f"inside the data root's {split}/ folder, where it would read as a dataset: "
                                        f"{how}")


def run_pipeline(
    data_root: str | Path,
    *,
    datasets: list[str] | None = None,
    variant: str = DEFAULT_VARIANT,
    overrides: list[str] | tuple[str, ...] = (),
    config: PipelineConfig | None = None,
    out: str | Path | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
    use_cache: bool = True,
    label: str | None = None,
    group: str | None = None,
    raise_errors: bool = False,
    jobs: int | None = None,
    split: str = "auto",
) -> Path:
    """Run one pipeline variant on a data root and return the run directory.

    Args:
        data_root: folder in the IMC-2025 layout (``train/`` + labels, or ``test/`` [+ sample_submission.csv]).
        datasets: dataset names to run (default: all of the split).
        variant: variant name (``imc_core/variants/<name>.toml``).
        overrides: ``section.key=value`` strings applied on top of the variant.
        config: a ready config, checked again here (then ``variant`` is only recorded, ``overrides`` ignored).
        out: run directory to write (default: a new folder under ``$IMC_RUNS_DIR``).
        progress: ``progress(stage, done, total, message)``, stage like ``"<dataset>/features"``.
        should_cancel: polled between steps; True stops the run (status ``cancelled``).
        use_cache: False recomputes every stage.
        label, group: free text stored in ``run.json`` (group ties repeated seeds of one experiment together).
        raise_errors: re-raise failures after recording them (the CLI prints them; the dashboard reads run.json).
        jobs: datasets reconstructed at once (:func:`reconstruction_jobs`; default ``$IMC_JOBS`` or automatic).
        split: ``train``, ``test`` or ``auto`` (:meth:`DataRoot.select <imc_core.data.DataRoot.select>`).

    The run directory records status ``done``, ``failed`` (with a one-line error) or ``cancelled``; cached stage
    artifacts are never lost by a failure or cancellation.

    Raises:
        ConfigError, InputError: before any folder is made, for a bad config, data root, dataset name or ``out``
            (a folder holding another run, a file). In a folder a launcher prepared (:func:`runs.check_run_dir`)
            the error is also recorded as a failed run.
    """
    from .data import DataRoot

    prepared = check_run_dir(out) if out else False
    try:
        # (a ready config is checked again: one edited in place had skipped every check)
        cfg = config.checked() if config is not None else resolve_config(variant, overrides)
        check_run_text(label, group)
        root = DataRoot(Path(data_root))
        _check_not_in_data(Path(out) if out else runs_root(), root.path)
        # (its first run went well, and made the root unusable for every later one; --no-cache writes there too)
        _check_not_in_data(cache_root(), root.path, "put the cache elsewhere ($IMC_CACHE_DIR)")
        # images missing, label rows or thresholds that cannot be scored: found before any folder or work
        split, loaded = root.load_for_run(datasets, split)
        names = list(loaded)
        n_jobs = reconstruction_jobs(cfg, len(names), jobs)
        check_devices(cfg)
        colmap_extraction_threads()  # ($IMC_COLMAP_THREADS and $IMC_MATCH_PROCESSES: a bad value failed the run
        match_processes_cap()  # after its folder was made, or once matching began)
        # a weight file missing or cut short: refused here, not after the features were extracted
        from .weights import stage_weight_files

        stage_weight_files(cfg.features.method, cfg.features.model, cfg.matching.method, load=True)
        if (cache := cache_root()).exists() and not cache.is_dir():  # (a run folder was made, then the run failed)
            raise InputError(cache, "the cache folder ($IMC_CACHE_DIR) is not a folder")
        # (one under a file: the run folder was made, and the run failed with "features: Not a directory")
        if (above := next((p for p in cache.parents if p.exists()), None)) is not None and not above.is_dir():
            raise InputError(cache, f"the cache folder ($IMC_CACHE_DIR) cannot be made: {above} is a file")
    except ImcError as err:
        if prepared:  # the launcher's folder says running/queued: it must learn why nothing ran
            record_failure(Path(out), str(err))
        raise
    try:
        run_dir = Path(out) if out else new_run_dir(variant)
        claim_run_dir(run_dir)
        writer = RunWriter(run_dir, claimed=True)
    except OSError as err:
        raise InputError(Path(out) if out else runs_root(), f"cannot create the run folder: {err.strerror or err}") \
            from None
    rep = _Reporter(writer, progress, should_cancel)
    t_start = time.perf_counter()
    base = None if config is not None else resolve_config(variant)
    warns = unused_settings(cfg, base)
    if config is None and (note := bare_variant_note(variant)):
        warns.append(note)
    if split == "train" and not datasets and (absent := root.labelled_datasets_without_folder()):
        folders = {f.lower(): f for f in root.train_datasets()}
        cased = [f"{a} (train/ has {folders[a.lower()]}: names are case-sensitive)" if a.lower() in folders else a
                 for a in absent[:5]]
        warns.append(f"{root.labels_path} labels {len(absent)} dataset(s) that train/ has no folder for, not run: "
                     f"{', '.join(cased)}{' …' if len(absent) > 5 else ''}")
    if split == "test" and not datasets and (left := root.test_folders_without_sample_rows()):
        warns.append(f"{root.sample_submission_path} has no rows for {len(left)} folder(s) under test/, not run "
                     f"(a Kaggle submission holds the sample's rows and no others): "
                     f"{', '.join(left[:5])}{' …' if len(left) > 5 else ''}")
    if clash := _group_clash(group, cfg, run_dir, data_root):
        warns.append(clash)
    # a launcher's folder keeps its launch time: a queued seed run read as created when it started, a minute after
    # a run launched later, and a run's time changed in Results as it started
    launched = read_json(run_dir / "run.json") if prepared else None
    started = now_iso()
    created = launched.get("created") if isinstance(launched, dict) else None
    writer.write_meta(
        id=run_dir.name, created=created if isinstance(created, str) and created else started, started=started,
        status="running", variant=variant,
        data_root=str(Path(data_root).resolve()), pid=os.getpid(), pid_start=process_start(os.getpid()),
        split=split, datasets=list(names), config_hash=cfg.hash(), device=_device_name(cfg),
        deterministic=cfg.reconstruction.deterministic, seed=cfg.reconstruction.seed, overrides=list(overrides),
        label=label, group=group, host=platform.node(), error=None, warnings=warns, code=code_version(),
    )
    writer.write_text("config.toml", dump_config(cfg, {"variant": variant, "overrides": list(overrides)}))
    writer.log(f"run {run_dir.name}: variant={variant} overrides={list(overrides)} data_root={data_root} "
               f"split={split}")
    writer.log_lines(f"WARNING: {w}" for w in warns)
    timings: dict[str, Any] = {"total": 0.0, "datasets": {}, "cache": {}}
    # (said in the cache itself: `cache prune` keeps what this run builds and reads, wherever its folder is)
    lease = register_live_run(run_dir)
    try:
        writer.write_meta(jobs=n_jobs)
        if n_jobs > 1:
            writer.log(f"{len(names)} datasets, up to {n_jobs} reconstructions at once")
        with warnings.catch_warnings():  # (the workers have stopped when it returns)
            # PIL's warnings of a damaged EXIF block name no file: the features stage names them (EXIF_NOTE)
            warnings.filterwarnings("ignore", module=r"PIL\.TiffImagePlugin")
            results = _run_datasets(loaded, cfg, run_dir, writer, rep, use_cache, n_jobs, timings)
        if base is not None and cfg.features.max_keypoints != base.features.max_keypoints:
            for note in _keypoint_cap_notes(results, cfg):
                writer.add_warning(note)
        _write_outputs(root, split, loaded, results, run_dir, writer, rep, timings)
        timings["total"] = time.perf_counter() - t_start
        writer.write_json("timings.json", timings)
        writer.set_status("done")
        writer.log(f"done in {timings['total']:.1f} s")
    except Cancelled:
        writer.log("cancelled by user; cached stage artifacts are kept")
        writer.set_status("cancelled")
        if raise_errors:
            raise
    except RunFolderRemoved:  # (nothing can be recorded in a folder that is gone)
        raise
    except KeyboardInterrupt as err:  # Ctrl-C: the run must not read "running" for ever
        writer.log("interrupted (Ctrl-C); cached stage artifacts are kept")
        writer.set_status("cancelled", error="interrupted (Ctrl-C)")
        err.run_dir = str(writer.path)  # type: ignore[attr-defined]  # (`run --json` names it)
        raise
    except Exception as err:
        msg = str(err) if isinstance(err, ImcError) else f"{type(err).__name__}: {err}"
        # an input or config error names its file and problem: the traceback is for the bugs
        writer.log(f"FAILED: {msg}" if isinstance(err, ImcError) else f"FAILED: {msg}\n{traceback.format_exc()}")
        writer.set_status("failed", error=msg.splitlines()[0] if msg else type(err).__name__)
        if raise_errors:
            raise
    finally:
        release_live_run(lease)
        timings["total"] = time.perf_counter() - t_start
        try:
            writer.write_json("timings.json", timings)
        except RunFolderRemoved:
            pass  # (said by the error on its way out, or by the caller's look at the folder)
        finally:
            release_run_dir(run_dir)
    return run_dir


def _keypoint_cap_notes(results: list[DatasetResult], cfg: PipelineConfig) -> list[str]:
    """Warnings on a ``features.max_keypoints`` the researcher set that does not do what it says, per dataset: no
    image reached it (the run's features are those of any higher cap), or COLMAP's SIFT kept more keypoints than it
    (its cap works in whole scale levels, before extra orientations). A tester's three seeds at 2,048 scored exactly
    as at 8,192: COLMAP had kept the same 3,230 keypoints on an image under both, and nothing said so."""
    import h5py

    cap = cfg.features.max_keypoints
    out = []
    for res in results:
        path = Path(res.artifacts.get("features", "")) / "features.h5"
        try:
            with h5py.File(path, "r") as f:
                counts = [int(f[n]["keypoints"].shape[0]) for n in f]
        except (OSError, KeyError):
            continue
        if not counts:
            continue
        if max(counts) < cap:
            out.append(f"{res.name}: features.max_keypoints = {cap} bound no image (at most {max(counts)} keypoints "
                       "per image): these features are those of any higher cap")
        elif cfg.features.method == "colmap_sift" and max(counts) > cap:
            out.append(f"{res.name}: features.max_keypoints = {cap}, yet COLMAP's SIFT kept up to {max(counts)} "
                       "keypoints per image: it caps its detections in whole scale levels, before adding extra "
                       "orientations, so images keep more than the cap, and another cap may change nothing (compare "
                       "the keypoint counts of runs)")
    return out


def _asdict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _stage_conf(conf: Any, module: Any, cfg: PipelineConfig, section: str) -> dict[str, Any]:
    """Config dict (``conf``: ``cfg``'s ``section``, as the stage runs it) used in a cache key: the stage code's
    ``VERSION`` is in, ``device`` (which does not change the artifact's meaning) is out, and a key ``cfg`` never
    reads (:func:`~imc_core.config.unread_keys`, e.g. ``features.root_sift`` with COLMAP's SIFT) enters as its
    default: setting it does not rebuild the stage."""
    d = _asdict(conf)
    defaults = _asdict(type(conf)())
    for key in unread_keys(cfg):
        sec, name = key.split(".", 1)
        if sec == section:
            d[name] = defaults[name]
    d.pop("device", None)
    d["_stage_version"] = module.stage_version(conf) if hasattr(module, "stage_version") \
        else getattr(module, "VERSION", 1)
    if section in ("features", "matching"):
        from .weights import override_digests, stage_weight_files

        files = stage_weight_files(cfg.features.method, cfg.features.model, cfg.matching.method)[section]
        if digests := override_digests(files):  # weights from $IMC_WEIGHTS_DIR: other weights, other artifact
            d["_weights"] = digests
    return d


def _run_datasets(loaded: dict[str, Any], cfg: PipelineConfig, run_dir: Path, writer: RunWriter, rep: _Reporter,
                  use_cache: bool, n_jobs: int, timings: dict[str, Any]) -> list[DatasetResult]:
    """Every dataset of ``loaded`` (name → :class:`~imc_core.data.Dataset`) through the stages: pairs, features and
    matching here, reconstructions in ``n_jobs`` threads.

    On an error, the reconstructions already submitted (their matches are ready) still finish and are cached before
    the error propagates, so that the re-run after the fix only redoes what failed. A cancellation (or Ctrl-C) stops
    them at their next check instead.
    """
    artifacts: dict[str, dict[str, str]] = {}
    futures: list[Future[DatasetResult]] = []
    pool = ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="imc-reconstruction")
    map_jobs = mapping_jobs(cfg, n_jobs)
    names = list(loaded)

    def record(name: str, res: DatasetResult) -> None:
        if not res.ok:  # not an error of the run (the others still count), but never a silent score of 0
            writer.add_warning(f"{name}: reconstruction failed, so every image counts as an outlier: "
                               f"{res.error or 'see the log'}")
        for warning in res.warnings:
            writer.add_warning(f"{name}: {warning}")
        timings["datasets"][name] = res.timings
        timings["cache"][name] = res.cache
        if res.reconstruction_steps:
            timings.setdefault("reconstruction_steps", {})[name] = res.reconstruction_steps
        writer.write_json("timings.json", timings)
        artifacts[name] = res.artifacts
        writer.write_json("artifacts.json", artifacts)

    try:
        for name, ds in loaded.items():
            rep.check()
            for w in ds.warnings:  # e.g. images on disk that the labels do not name: kept with the run
                writer.add_warning(w)
            if note := _model_size_note(cfg, name, len(ds.images)):
                writer.add_warning(note)
            matched = _match_dataset(ds, cfg, writer, rep, use_cache)
            futures.append(pool.submit(_reconstruct_dataset, matched, cfg, run_dir, writer, rep, use_cache,
                                       map_jobs))
        results = []
        for name, fut in zip(names, futures, strict=True):
            results.append(fut.result())
            record(name, results[-1])
        return results
    except BaseException as err:
        if isinstance(err, Cancelled) or not isinstance(err, Exception):  # cancel / Ctrl-C: stop the workers too
            rep.abort()
            for fut in futures:
                fut.cancel()
        else:
            if pending := sum(not f.done() for f in futures):
                writer.log(f"error: finishing {pending} reconstruction(s) already under way first (they get cached)")
            pool.shutdown(wait=True)
            # the datasets that did finish keep their stage times and cache status in the failed run's timings
            for name, fut in zip(names, futures, strict=False):
                if name not in timings["datasets"] and not fut.cancelled() and fut.exception() is None:
                    record(name, fut.result())
        raise
    finally:
        pool.shutdown(wait=True)


@dataclass
class _Matched:
    """A dataset after pairs, features and matching: what its reconstruction needs."""

    ds: Any
    pairs: list[tuple[str, str]]
    features: Artifact
    matches: Artifact
    fkey: str  # features artifact key
    mkey: str  # matching artifact key
    fingerprint: str  # the images' content fingerprint the keys hold (cache.content_fingerprint)
    timings: dict[str, float]
    cache: dict[str, str]
    unusable: list[str] = field(default_factory=list)  # images that cannot be decoded: no features, unregistered


def _recorder(name: str, timings: dict[str, float], cache: dict[str, str], writer: RunWriter,
              rep: _Reporter) -> Callable[[str, Artifact], None]:
    """``record(stage, artifact)``: its time and cache status into the dicts, the progress and the log."""

    def record(stage: str, art: Artifact) -> None:
        if art.rebuilt_because:
            writer.add_warning(f"{name}: the cached {stage} artifact ({art.path.name}) was rebuilt: "
                               f"{art.rebuilt_because}")
        timings[stage] = art.seconds
        cache[stage] = "hit" if art.hit else "miss"
        rep.emit(f"{name}/{stage}", 1, 1, "cached" if art.hit else "done", cached=art.hit, seconds=art.seconds,
                 force=True)
        writer.log(f"[{name}] {stage}: {'cache hit' if art.hit else f'{art.seconds:.1f} s'} ({art.path.name})")

    return record


def _group_clash(group: str | None, cfg: PipelineConfig, run_dir: Path, data_root: str | Path) -> str | None:
    """The warning for a ``group`` that already holds runs of another config, or on another data root, beside
    ``run_dir`` (the Run page says it before a launch; the CLI and library said nothing, and Compare then averaged
    two experiments)."""
    import tomllib

    from .runs import group_clash_warning

    if not (group or "").strip():
        return None
    return group_clash_warning(group, tomllib.loads(dump_config(cfg)), run_dir.parent, exclude=[run_dir.name],
                               data_root=data_root)


def _read_text(path: Path) -> str:
    """A small text file of an artifact, stripped; empty when it is absent or unreadable."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def cache_key_confs(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The configs the features and matching stages key their cache artifacts by in a run of ``cfg`` (the matcher's
    threads resolved as the run resolves them): the one definition, for the pipeline and for readers that look a
    run's artifacts up (the dashboard's pair viewer, for a run without artifacts.json or an imported one)."""
    from .stages import features as features_mod
    from .stages import matching as matching_mod

    mconf = matching_mod.resolve_threads(cfg.matching, cfg.reconstruction.deterministic)
    return {"features": _stage_conf(cfg.features, features_mod, cfg, "features"),
            "matching": _stage_conf(mconf, matching_mod, cfg, "matching")}


def _match_dataset(ds: Any, cfg: PipelineConfig, writer: RunWriter, rep: _Reporter, use_cache: bool) -> _Matched:
    from .stages import matching as matching_mod
    from .stages.features import extract_features
    from .stages.matching import match_features
    from .stages.pairs import make_pairs, write_pairs

    name = ds.name
    timings: dict[str, float] = {}
    cache: dict[str, str] = {}
    record = _recorder(name, timings, cache, writer, rep)

    # pairs
    t0 = time.perf_counter()
    pairs = make_pairs(ds.images, cfg.pairs)
    timings["pairs"] = time.perf_counter() - t0
    cache["pairs"] = "computed"
    pairs_key = stable_hash(pairs)
    rep.emit(f"{name}/pairs", 1, 1, f"{len(pairs)} pairs", force=True)
    writer.log(f"[{name}] {len(ds.images)} images, {len(pairs)} pairs ({cfg.pairs.method})")

    # features (every image checked first: a dataset with bad files fails at once, naming all of them)
    images = [(n, ds.image_dir / n) for n in ds.images]
    key_confs = cache_key_confs(cfg)
    fconf = key_confs["features"]
    fingerprint = content_fingerprint(ds.image_dir, ds.images)
    fkey = fkey_now = artifact_key("features", fconf, [], fingerprint)
    if use_cache and ds.fingerprint and cached("features", name, fkey) is None:
        # artifacts of an imc-lab from before the keys held the images' contents are keyed by the images' names,
        # sizes and times: while those are unchanged they are exactly as valid as they were (an upgrade recomputed
        # every stage of every dataset, and the cache doubled)
        old_fkey = artifact_key("features", fconf, [], ds.fingerprint)
        if cached("features", name, old_fkey) is not None:
            fingerprint, fkey = ds.fingerprint, old_fkey

    def build_features(tmp: Path) -> None:
        paths, names = [p for _, p in images], [n for n, _ in images]  # (names: `a/x.png` and `b/x.png` differ)
        rep.emit(f"{name}/features", 0, len(images), "reading the images")
        # every image checked first: one that cannot be decoded is left out (it counts as unregistered, and every
        # run that reads these features says so); a dataset of such images fails at once, naming them
        bad = unusable_images(paths, names)
        if len(bad) == len(paths):  # (decoded once: the error is made from what was found)
            raise unusable_error(paths, names, bad)
        skip = {n for n, _ in bad}
        good = [(n, p) for n, p in images if n not in skip]
        (tmp / UNUSABLE_NOTE).write_text(json.dumps([[n, why] for n, why in bad]) + "\n", encoding="utf-8")
        # (here, in the main thread, with the file names; kept with the features so every run that reads them says it)
        (tmp / EXIF_NOTE).write_text(exif_problems([p for _, p in good], names=[n for n, _ in good]) or "",
                                     encoding="utf-8")
        extract_features(good, cfg.features, tmp / "features.h5", progress=rep.stage(name, "features"),
                         should_cancel=rep.cancelled)

    feats = get_or_build(
        "features", name, fkey, build_features,
        use_cache=use_cache, meta={"conf": fconf, "dataset": name},
        check=lambda path: h5_problem(path / "features.h5"))
    record("features", feats)
    if fkey != fkey_now and feats.hit:  # (said once the artifact passed its check: a damaged one is rebuilt)
        writer.log(f"[{name}] cached artifacts keyed by the images' times (an older imc-lab's keys) reused")
    if note := _read_text(feats.path / EXIF_NOTE):
        writer.add_warning(f"{name}: {note}")
    unusable = _unusable(feats.path)
    if unusable:
        writer.add_warning(f"{name}: {len(unusable)} of {len(ds.images)} images cannot be used, so they count as "
                           f"unregistered ({describe_unusable(unusable)}); fix or remove them")
        skip = {n for n, _ in unusable}
        pairs = [pair for pair in pairs if pair[0] not in skip and pair[1] not in skip]
        pairs_key = stable_hash(pairs)

    # matching (COLMAP's matcher threads resolved first: they decide whether the matches repeat)
    mconf = matching_mod.resolve_threads(cfg.matching, cfg.reconstruction.deterministic)
    mkey_conf = key_confs["matching"]
    mkey = artifact_key("matching", mkey_conf, [fkey, pairs_key], fingerprint)

    def build_matches(tmp: Path) -> None:
        rep.emit(f"{name}/matching", 0, len(pairs), "starting")
        write_pairs(pairs, tmp / "pairs.txt")
        match_features(pairs, feats.path / "features.h5", mconf, tmp / "matches.h5",
                       feature_method=cfg.features.method, progress=rep.stage(name, "matching"),
                       should_cancel=rep.cancelled)

    matches = get_or_build("matching", name, mkey, build_matches, use_cache=use_cache,
                           meta={"conf": mkey_conf, "inputs": [fkey, pairs_key],
                                 "dataset": name}, check=lambda path: h5_problem(path / "matches.h5"))
    record("matching", matches)
    return _Matched(ds, pairs, feats, matches, fkey, mkey, fingerprint, timings, cache, [n for n, _ in unusable])


def _unusable(features: Path) -> list[tuple[str, str]]:
    """The images a features artifact left out because they cannot be decoded (:data:`UNUSABLE_NOTE`)."""
    try:
        listed = json.loads((features / UNUSABLE_NOTE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    return [(str(item[0]), str(item[1])) for item in listed if isinstance(item, list) and len(item) == 2] \
        if isinstance(listed, list) else []


def _reconstruct_dataset(matched: _Matched, cfg: PipelineConfig, run_dir: Path, writer: RunWriter, rep: _Reporter,
                         use_cache: bool, map_jobs: int = 1) -> DatasetResult:
    from .stages import reconstruction as reconstruction_mod
    from .stages.reconstruction import reconstruct
    from .submission import read_pose_csv, write_pose_csv

    ds, pairs, feats, matches = matched.ds, matched.pairs, matched.features, matched.matches
    fkey, mkey = matched.fkey, matched.mkey
    name = ds.name
    left_out = set(matched.unusable)
    images = [n for n in ds.images if n not in left_out]  # (those with features)
    timings, cache = matched.timings, matched.cache
    record = _recorder(name, timings, cache, writer, rep)

    # reconstruction (cached only when deterministic: otherwise every run is a fresh sample of mapper noise, kept
    # under a key of its own run, so that the next sample does not replace the one its artifacts.json names)
    rconf = _stage_conf(cfg.reconstruction, reconstruction_mod, cfg, "reconstruction")
    own = [] if cfg.reconstruction.deterministic else [run_dir.name]
    rkey = artifact_key("reconstruction", rconf, [mkey, fkey, *own], matched.fingerprint)
    cacheable = use_cache and cfg.reconstruction.deterministic
    # its verified database has a key of its own: a change of a mapping key re-maps without re-verifying
    dconf = {**reconstruction_mod.database_conf(cfg.reconstruction), "_stage_version": reconstruction_mod.VERSION}
    dkey = artifact_key("database", dconf, [mkey, fkey], matched.fingerprint)
    dmeta = {"conf": dconf, "inputs": [mkey, fkey], "dataset": name}
    db_dir = _part_of_reconstruction("database", name, dkey, dmeta, lambda d: sqlite_problem(d / "database.db"),
                                     writer, "verified database", "is dropped, and verified again when a "
                                     "reconstruction needs it") if cacheable else None
    db_file = db_dir / "database.db" if db_dir is not None else None

    # and so do the mapper's models before the final adjustment: a change of a refine_* key only adjusts again
    pconf = {**reconstruction_mod.mapping_conf(cfg.reconstruction), "_stage_version": reconstruction_mod.VERSION}
    pkey = artifact_key("mapping", pconf, [mkey, fkey], matched.fingerprint)
    pmeta = {"conf": pconf, "inputs": [mkey, fkey], "dataset": name}
    mapped_dir = _part_of_reconstruction("mapping", name, pkey, pmeta, reconstruction_mod.mapped_problem, writer,
                                         "mapped models", "are dropped, and mapped again when a reconstruction "
                                         "needs them") if cacheable else None

    def build_rec(tmp: Path) -> None:
        keep = cacheable and mapped_dir is None
        res = reconstruct(ds.image_dir, images, feats.path / "features.h5", matches.path / "matches.h5", pairs,
                          cfg.reconstruction, tmp, dataset=name, progress=rep.stage(name, "reconstruction"),
                          should_cancel=rep.cancelled, database=db_file, map_jobs=map_jobs, mapped=mapped_dir,
                          keep_mapped=keep)
        if cfg.reconstruction.deterministic and db_file is None and res.database_verified:
            get_or_build("database", name, dkey, lambda d: shutil.copyfile(tmp / "database.db", d / "database.db"),
                         meta=dmeta, use_cache=False)
        kept = tmp / reconstruction_mod.MAPPED_DIR
        if keep and kept.is_dir():  # (not when mapping failed)
            get_or_build("mapping", name, pkey, lambda d: _move_children(kept, d), meta=pmeta, use_cache=False)
        shutil.rmtree(kept, ignore_errors=True)  # (never part of the reconstruction artifact)
        poses = res.poses.copy()
        poses["dataset"] = name
        write_pose_csv(poses, tmp / "poses.csv")
        (tmp / "reconstruction.log").write_text("\n".join(res.log) + "\n")
        (tmp / "result.json").write_text(json.dumps({"ok": res.ok, "n_models": res.n_models, "steps": res.steps,
                                                     "error": None if res.ok else res.error}) + "\n")

    reuse = cacheable
    if reuse and (hit := cached("reconstruction", name, rkey)) is not None and not _reconstruction_ok(hit):
        # a failure is cached like any result, but it may have been transient (pycolmap, memory): try again
        writer.log(f"[{name}] reconstruction: the cached result ({hit.name}) had failed; mapping again")
        reuse = False
    rec = get_or_build("reconstruction", name, rkey, build_rec, use_cache=reuse,
                       meta={"conf": rconf, "inputs": [mkey, fkey], "dataset": name},
                       check=lambda path: reconstruction_problem(path, images))
    record("reconstruction", rec)
    rec_log = (rec.path / "reconstruction.log").read_text().splitlines()
    writer.log_lines(f"[{name}] {line}" for line in rec_log if not line.startswith("WARNING: "))  # (said below)
    models_src = rec.path / "models"
    if models_src.exists():
        dst = run_dir / "models" / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(models_src, dst)
    stats = _pairs_stats(name, matches.path / "matches.h5", pairs, rec.path / "database.db")
    poses = read_pose_csv(rec.path / "poses.csv")
    if matched.unusable:  # unregistered, in the dataset's order (a submission holds every image)
        from .stages.reconstruction import OUTLIERS
        from .submission import pose_frame

        poses = pd.concat([poses, pose_frame(name, OUTLIERS, matched.unusable)], ignore_index=True)
        order = {n: i for i, n in enumerate(ds.images)}
        poses = poses.iloc[poses["image"].map(order).argsort(kind="stable")].reset_index(drop=True)
    ok = _reconstruction_ok(rec.path)
    artifacts = {"features": str(feats.path), "matching": str(matches.path), "reconstruction": str(rec.path)}
    return DatasetResult(name, poses, artifacts, timings, cache, stats, ok,
                         None if ok else _reconstruction_error(rec.path), _reconstruction_steps(rec.path),
                         [line.removeprefix("WARNING: ") for line in rec_log if line.startswith("WARNING: ")])


def _part_of_reconstruction(stage: str, name: str, key: str, meta: dict[str, Any],
                            check: Callable[[Path], str | None], writer: RunWriter, what: str,
                            dropped: str) -> Path | None:
    """The cached artifact of ``stage`` (a verified database, mapped models) that a reconstruction may start from, or
    None. One emptied by hand or damaged (its files, or ``check``) is dropped with a run warning, so that a
    reconstruction that needs it makes it again (a cached reconstruction does not: the same warning came back at every
    run while the damaged copy stayed). One whose ``DONE`` lost what it said gets ``meta`` back
    (:func:`imc_core.cache.restore_marker`)."""
    found = cached(stage, name, key)
    if found is not None and (problem := files_problem(found) or check(found)) is not None:
        drop_artifact(found)
        writer.add_warning(f"{name}: the cached {what} ({found.name}) {dropped}: {problem}")
        return None
    if found is not None:
        restore_marker(found, stage, key, meta)
    return found


def _move_children(src: Path, dst: Path) -> None:
    """Move what folder ``src`` holds into folder ``dst`` (same file system: renames)."""
    for child in src.iterdir():
        os.replace(child, dst / child.name)


def _model_size_note(cfg: PipelineConfig, name: str, n_images: int) -> str | None:
    """Why a ``reconstruction.min_model_size`` larger than a dataset changes less than it says (a tester's 50 on
    ETs' 22 images kept its models of 10 and 9 images, the override shown above results that ignored it)."""
    size = cfg.reconstruction.min_model_size
    if cfg.reconstruction.mapper != "incremental" or size <= n_images:
        return None
    return (f"{name}: reconstruction.min_model_size = {size} is more than its {n_images} images; COLMAP lowers a "
            f"value that large to a share of the images it maps, so models of fewer than {size} images are kept")


def _reconstruction_steps(path: Path) -> dict[str, float]:
    """Seconds per step of the reconstruction artifact at ``path`` (its ``result.json``; empty for older ones)."""
    try:
        steps = json.loads((path / "result.json").read_text()).get("steps") or {}
        return {str(k): float(v) for k, v in steps.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _reconstruction_error(path: Path) -> str | None:
    """Why the failed reconstruction artifact at ``path`` failed: its ``result.json``, else its log's last
    ``FAILED:`` line (artifacts cached before ``error`` was recorded); the first line, at most 300 characters."""
    try:
        error = json.loads((path / "result.json").read_text()).get("error")
    except (OSError, ValueError, AttributeError):
        error = None
    if not error:
        try:
            lines = (path / "reconstruction.log").read_text().splitlines()
        except OSError:
            lines = []
        error = next((ln.removeprefix("FAILED: ") for ln in reversed(lines) if ln.startswith("FAILED: ")), None)
    if not error:
        return None
    first = str(error).splitlines()[0]
    return first if len(first) <= 300 else first[:299] + "…"


def reconstruction_problem(path: Path, images: list[str]) -> str | None:
    """``None`` when the cached reconstruction artifact at ``path`` can be used, else what is wrong with it (a
    ``check`` for :func:`~imc_core.cache.get_or_build`): its result, log and poses (one row per image) must read,
    and a successful one's verified database and COLMAP models too. A file removed or cut short failed every later
    run (a missing log, poses short of images blamed on the run's own submission) or, worse, passed: the pair
    inliers read 0 from a damaged database, a truncated images.bin was copied into the run."""
    from .submission import read_pose_csv

    try:
        result = json.loads((path / "result.json").read_text())
        (path / "reconstruction.log").read_text()
        poses = read_pose_csv(path / "poses.csv")
    except (OSError, ValueError, ImcError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    if sorted(poses["image"].astype(str)) != sorted(images):
        return f"poses.csv holds {len(poses)} of the dataset's {len(images)} images"
    if not (isinstance(result, dict) and result.get("ok")):
        return None  # a failure: mapped again anyway (the caller checks it before)
    if (problem := sqlite_problem(path / "database.db")) is not None:
        return problem
    models = sorted(p for p in (path / "models").glob("*") if p.is_dir()) if (path / "models").is_dir() else []
    if len(models) != int(result.get("n_models") or 0):
        return f"models/ holds {len(models)} of its {result.get('n_models')} model(s)"
    import pycolmap

    for model in models:
        try:
            pycolmap.Reconstruction(str(model))
        except Exception as err:  # pycolmap raises its own types for a file cut short
            return f"models/{model.name} cannot be read ({str(err).splitlines()[0] if str(err) else err})"
    return None


def _reconstruction_ok(path: Path) -> bool:
    """Whether the reconstruction artifact at ``path`` holds a successful result (its ``result.json``)."""
    try:
        return bool(json.loads((path / "result.json").read_text()).get("ok"))
    except (OSError, ValueError):
        return False


def _pairs_stats(dataset: str, matches_path: Path, pairs: list[tuple[str, str]],
                 db_path: Path | None = None) -> pd.DataFrame:
    """Matches and verified inliers per pair (for the dashboard's match graph)."""
    from .stages.matching import match_counts
    from .stages.reconstruction import pair_inliers

    inliers: dict[tuple[str, str], int] = {}
    if db_path is not None and db_path.exists():
        try:
            inliers = pair_inliers(db_path)
        except Exception:  # an unreadable database only loses the inlier column
            inliers = {}
    counts = match_counts(matches_path, pairs)  # (shapes alone, one pass: a file opened per pair took 0.2 s of ETs)
    rows = [(dataset, a, b, counts.get((a, b), 0), inliers.get((a, b), 0)) for a, b in pairs]
    return pd.DataFrame(rows, columns=["dataset", "name0", "name1", "n_matches", "n_inliers"])


def _write_outputs(root: Any, split: str, loaded: dict[str, Any], results: list[DatasetResult], run_dir: Path,
                   writer: RunWriter, rep: _Reporter, timings: dict[str, Any]) -> None:
    from .submission import write_pose_csv

    names = list(loaded)
    sub = pd.concat([r.poses for r in results], ignore_index=True)
    stats = [r.pairs_stats for r in results if r.pairs_stats is not None]
    if stats:
        writer.write_csv("pairs_stats.csv", pd.concat(stats, ignore_index=True))
    if split == "test":
        sub = _with_test_image_ids(loaded, sub)
        write_pose_csv(sub, run_dir / "submission.csv", image_id=True)
        writer.log(f"wrote Kaggle submission with {len(sub)} rows")
        return
    write_pose_csv(sub, run_dir / "submission.csv", image_id=False)
    if not root.has_labels:
        writer.add_warning(f"not scored: {root.labels_path} not found (poses and clusters only)")
        return
    from .data import ground_truth_hashes
    from .metric import about_the_ground_truth, score

    labelled = set(root.labels["dataset"].astype(str))
    if unlabelled := [n for n in names if n not in labelled]:  # scored as 0 they would read as a failed pipeline
        writer.add_warning(f"not scored: {root.labels_path} has no rows for {len(unlabelled)} dataset(s) "
                           f"({', '.join(unlabelled)}); their poses and clusters are in submission.csv only")
        names = [n for n in names if n in labelled]
        if not names:
            return
        sub = sub[sub["dataset"].astype(str).isin(names)].reset_index(drop=True)
    t0 = time.perf_counter()
    rep.emit("scoring", 0, 1, "scoring")
    gt = root.labels[root.labels["dataset"].isin(names)].reset_index(drop=True)
    thr = {k: v for k, v in root.thresholds.items() if k[0] in names}
    res = score(gt, thr, sub, submission_path=str(run_dir / "submission.csv"))
    writer.write_json("scores.json", res.to_json())
    writer.write_meta(gt_hashes=ground_truth_hashes(gt, thr, names))  # Compare: same data in another folder
    writer.write_csv("scenes.csv", res.scenes)
    writer.write_csv("per_image.csv", res.per_image)
    writer.write_json("alignments.json", res.alignments)
    for w in res.warnings:  # what the metric says of the labels (a scene of fewer than 3 images), as `score` says it
        if about_the_ground_truth(w):
            writer.add_warning(f"scoring: {w}")
        else:  # (how the clusters met the scenes: the per-scene table says it; above 100: said below)
            writer.log(f"metric warning: {w}")
    for ds, d in res.datasets.items():  # (a score above 100 read as a great run: it is a lost scene)
        if d.mAA > 100.0:
            writer.add_warning(f"{ds}: mAA {d.mAA:.2f} exceeds 100, the official metric's quirk when a whole scene "
                               "went to 'outliers' listed first: a scene was lost (see its warning in the "
                               "per-scene table)")
    timings["scoring"] = time.perf_counter() - t0
    rep.emit("scoring", 1, 1, f"score {res.score:.2f}", force=True)
    writer.log(f"score {res.score:.4f} (mAA {res.mAA:.4f}, clusterness {res.clusterness:.4f})")
    for ds, d in res.datasets.items():
        writer.log(f"  {ds}: score {d.score:.4f} mAA {d.mAA:.4f} clusterness {d.clusterness:.4f}")


def _with_test_image_ids(loaded: dict[str, Any], sub: pd.DataFrame) -> pd.DataFrame:
    """Attach Kaggle image_ids in test mode: those of the sample submission the datasets were ``loaded`` from
    (name → :class:`~imc_core.data.Dataset`), else made from the names."""
    from .submission import kaggle_image_id

    ids = {}
    for name, ds in loaded.items():
        if getattr(ds, "image_ids", None):
            ids.update({(name, img): iid for img, iid in zip(ds.images, ds.image_ids)})
    sub = sub.copy()
    sub.insert(0, "image_id", [ids.get((d, i), kaggle_image_id(d, i)) for d, i in zip(sub["dataset"], sub["image"])])
    return sub
