"""Pure helpers behind the dashboard: config widget specs, --set lists, jobs bookkeeping, thumbnails, h5 pairs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dashboard import jobs, state
from dashkit import open_app, started
from imc_core.errors import InputError


def test_toml_literal_round_trips_through_parse_overrides() -> None:
    from imc_core.config import parse_overrides

    values = {"a.b": True, "a.c": 15, "a.d": 0.1, "a.e": "aliked-n16", "a.f": [1.0, 2.5], "a.g": 1e-5}
    items = [f"{k}={state.toml_literal(v)}" for k, v in values.items()]
    parsed = parse_overrides(items)["a"]
    assert parsed == {k.split(".")[1]: v for k, v in values.items()}


def test_overrides_only_list_changed_values() -> None:
    base = {"features": {"max_keypoints": 4096, "method": "aliked", "resize": 1024.0},
            "reconstruction": {"deterministic": True}}
    values = {"features.max_keypoints": 4096, "features.method": "disk", "features.resize": 1024,
              "reconstruction.deterministic": False}
    assert state.overrides_from_values(base, values) == ['features.method="disk"',
                                                          "reconstruction.deterministic=false"]


def test_comment_choices() -> None:
    assert state.comment_choices("incremental | global (pycolmap.global_mapping, GLOMAP)") == ["incremental",
                                                                                              "global"]
    assert state.comment_choices("SIMPLE_RADIAL | PINHOLE | OPENCV, one per image") == ["SIMPLE_RADIAL", "PINHOLE",
                                                                                       "OPENCV"]
    assert state.comment_choices("geometric verification: colmap (RANSAC)") == []


def test_config_fields_are_generated_from_the_dataclasses() -> None:
    from imc_core.config import SECTIONS, resolve_config

    base = resolve_config("default").to_dict()
    specs = {s.key: s for s in state.config_fields(base)}
    assert set(specs) == {f"{sec}.{k}" for sec, values in base.items() for k in values}
    assert specs["reconstruction.mapper"].kind == "choice" and specs["reconstruction.mapper"].closed
    assert {"incremental", "global"} <= set(specs["reconstruction.mapper"].choices)
    assert specs["reconstruction.deterministic"].kind == "bool"
    assert specs["reconstruction.min_model_size"].kind == "int"
    assert specs["reconstruction.verify_max_error"].kind == "float"
    assert specs["features.method"].kind == "choice" and len(specs["features.method"].choices) > 1
    assert specs["global_descriptors.models"].kind == "list"
    assert specs["reconstruction.min_model_size"].default == base["reconstruction"]["min_model_size"]
    assert len(SECTIONS) == len({s.section for s in specs.values()})


def test_stage_progress_eta_and_text() -> None:
    prog = {"stages": {"ds/features": {"done": 5, "total": 20, "cached": False, "started": 100.0},
                       "ds/matching": {"done": 1, "total": 1, "cached": True, "seconds": 0.0}}}
    feats, match = jobs.stage_progress(prog, now=110.0)
    assert feats.fraction == 0.25 and feats.eta_s == pytest.approx(30.0)
    assert "5/20" in feats.text() and "ETA 30 s" in feats.text()
    assert match.text().endswith("cache hit")
    assert jobs.stage_progress(None) == []
    # the first item took 8 s of set-up (a model load), the next four 2 s: the pace since the first one counts
    prog["stages"]["ds/features"].update(first_at=108.0, first_done=1)
    assert jobs.stage_progress(prog, now=110.0)[0].eta_s == pytest.approx(7.5)  # 15 left at 0.5 s each
    prog["stages"]["ds/features"]["done"] = 1  # nothing since the first: the whole elapsed time again
    assert jobs.stage_progress(prog, now=110.0)[0].eta_s == pytest.approx(190.0)


def test_the_eta_counts_down_between_chunked_reports() -> None:
    """COLMAP's SIFT reports 8 images at a time: with the pace taken up to now, the ETA climbed between two reports
    (20 s, 25 s, 30 s, …) and fell at each. It counts down from the last report at the pace measured then."""
    st = {"done": 8, "total": 24, "cached": False, "started": 100.0, "done_at": 110.0}
    prog = {"stages": {"ds/features": st}}
    etas = [jobs.stage_progress(prog, now=t)[0].eta_s for t in (110.0, 112.0, 115.0, 119.0)]
    assert etas == pytest.approx([20.0, 18.0, 15.0, 11.0])  # 16 images left at 1.25 s each, counted down
    # the stage overran the countdown: the pace up to now (31 s for 8 images → 62 s for the 16 left)
    assert jobs.stage_progress(prog, now=131.0)[0].eta_s == pytest.approx(62.0)
    # the set-up before the first chunk still does not count: first chunk at 106 s, next at 110 s
    st.update(first_at=106.0, first_done=4)
    assert jobs.stage_progress(prog, now=112.0)[0].eta_s == pytest.approx(16 / 4 * 4 - 2)


def test_build_command_and_repeats(tmp_path: Path) -> None:
    spec = jobs.LaunchSpec(tmp_path, ["a"], "default", ["features.max_keypoints=10", "reconstruction.seed=1"],
                           None, "note", False)
    cmd = jobs.build_command(spec, tmp_path / "RUN")
    assert cmd[: len(jobs.BASE_COMMAND)] == jobs.BASE_COMMAND
    for part in (["--out", str(tmp_path / "RUN")], ["--dataset=a"], ["--set", "features.max_keypoints=10"],
                 ["--label=note"]):
        assert any(cmd[i: i + len(part)] == part for i in range(len(cmd)))
    assert "--no-cache" in cmd

    # the CLI reads back what the dashboard wrote, values that start with "-" included (they failed the job)
    from imc_core.cli import build_parser

    odd = jobs.LaunchSpec(tmp_path, ["-neg", "b"], "default", [], "-g", "--fast")
    args = build_parser().parse_args(jobs.build_command(odd, tmp_path / "RUN")[len(jobs.BASE_COMMAND) - 1:])
    assert (args.dataset, args.group, args.label, args.out) == (["-neg", "b"], "-g", "--fast", str(tmp_path / "RUN"))

    launched = jobs.repeat_specs(spec, repeats=3, seed=7)
    seeds = [[o for o in s.overrides if o.startswith("reconstruction.seed=")] for s in launched]
    assert seeds == [["reconstruction.seed=7"], ["reconstruction.seed=8"], ["reconstruction.seed=9"]]
    assert len({s.group for s in launched}) == 1 and launched[0].group


def test_job_status_of_dead_and_live_processes(tmp_path: Path) -> None:
    from imc_core.runs import RunWriter

    run = tmp_path / "20260101-000000-x-abcd"
    RunWriter(run).write_meta(id=run.name, status="running", created="2026")
    (run / jobs.JOB_FILE).write_text(json.dumps({"pid": 2**22 + 12345}))  # no such process
    job = jobs.job_status(run)
    assert job.status == "stopped" and not job.alive and "ended without" in (job.error or "")
    assert jobs.active_jobs(tmp_path) == []
    (run / "CANCEL").write_text("x")
    assert jobs.job_status(run).status == "cancelled"

    # a live process whose command line names the run dir counts as the job; another process does not
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", run.name],
                            stdin=subprocess.PIPE, start_new_session=True)
    try:
        started(proc, run.name)
        (run / jobs.JOB_FILE).write_text(json.dumps({"pid": proc.pid}))
        job = jobs.job_status(run)
        assert job.alive and job.status == "cancelling"
        assert not jobs.enforce_cancel(job, grace_s=3600)  # grace period not over
        assert jobs.enforce_cancel(job, grace_s=0.0)
        assert proc.wait(timeout=20) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not jobs.is_alive(os.getpid(), run)  # pytest's own pid does not name the run


def test_thumbnail_is_written_once(tmp_path: Path) -> None:
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (400, 200), (10, 20, 30)).save(img)
    out = state.make_thumbnail(img, 64, tmp_path / "thumbs")
    with Image.open(out) as im:
        assert im.format == "JPEG" and max(im.size) == 64
    mtime = out.stat().st_mtime_ns
    assert state.make_thumbnail(img, 64, tmp_path / "thumbs") == out and out.stat().st_mtime_ns == mtime
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image"):
        state.make_thumbnail(bad, 64, tmp_path / "thumbs")


def test_thumbnails_and_the_pair_viewer_decode_as_the_pipeline_does(tmp_path: Path) -> None:
    """16-bit PNGs came out white and float TIFFs black (PIL's convert clips them); the pair viewer drew an
    EXIF-rotated JPEG sideways under keypoints that are in the upright frame."""
    import numpy as np
    from PIL import Image

    from imc_core.images import load_image

    ramp = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)  # up to ~61,000
    png16 = tmp_path / "a16.png"
    Image.fromarray(ramp).save(png16)
    tif = tmp_path / "f.tif"
    Image.fromarray(ramp.astype(np.float32) / 65535.0, mode="F").save(tif)
    for path in (png16, tif):
        with Image.open(state.make_thumbnail(path, 32, tmp_path / "thumbs")) as im:
            pixels = np.asarray(im.convert("L"), dtype=float)
        assert 40 < pixels.mean() < 215 and pixels.std() > 20, (path.name, pixels.mean())  # a ramp, not flat

    jpg = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown after a 90° turn
    Image.new("RGB", (80, 40), (200, 30, 30)).save(jpg, exif=exif)
    small, scale = state.load_image_small(jpg, max_side=20)
    assert load_image(jpg).shape == (80, 40, 3) and small.shape == (20, 10, 3) and scale == 0.25
    with pytest.raises(InputError, match="image file not found"):
        state.load_image_small(tmp_path / "gone.png")


def test_read_pair_both_orders(tmp_path: Path) -> None:
    import h5py

    feats, matches = tmp_path / "features.h5", tmp_path / "matches.h5"
    with h5py.File(feats, "w") as f:
        f.create_group("a.png").create_dataset("keypoints", data=np.zeros((5, 2), np.float32))
        f.create_group("b.png").create_dataset("keypoints", data=np.ones((4, 2), np.float32))
    with h5py.File(matches, "w") as f:
        f.create_group(state.names_to_pair("a.png", "b.png")).create_dataset(
            "matches", data=np.array([[0, 1], [4, 3]], np.int32))
    k0, k1, m = state.read_pair(feats, matches, "a.png", "b.png")
    assert k0.shape == (5, 2) and k1.shape == (4, 2) and m.tolist() == [[0, 1], [4, 3]]
    _, _, m_rev = state.read_pair(feats, matches, "b.png", "a.png")
    assert m_rev.tolist() == [[1, 0], [3, 4]]
    with pytest.raises(InputError, match="not in the matches file"):
        state.read_pair(feats, matches, "a.png", "a.png")


def test_match_artifacts_missing_cache_is_explained(dash_env) -> None:  # noqa: ANN001
    from imc_core.config import PipelineConfig

    with pytest.raises(InputError, match="cached features not found"):
        state.find_match_artifacts(PipelineConfig().to_dict(), dash_env.data_root, "ds1")
    with pytest.raises(InputError, match="data root is not available"):
        state.find_match_artifacts({}, dash_env.data_root / "nope", "ds1")


def test_roots_are_remembered(dash_env, tmp_path: Path) -> None:  # noqa: ANN001
    assert state.load_roots() == [str(dash_env.data_root)]
    with pytest.raises(InputError):
        state.add_root(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no datasets"):
        state.add_root(str(empty))
    other = tmp_path / "other"
    (other / "test" / "x").mkdir(parents=True)
    assert state.add_root(str(other)) == str(other)
    assert state.load_roots() == [str(dash_env.data_root), str(other)]
    state.remove_root(str(other))
    assert state.load_roots() == [str(dash_env.data_root)]
    dash_env.roots_file.write_text("{broken")
    assert state.load_roots() == [str(dash_env.data_root)]


def test_an_unreadable_roots_file_is_named_and_never_overwritten(dash_env, tmp_path: Path) -> None:  # noqa: ANN001
    """A roots.json with a syntax error was read as empty, and the next Add replaced it: the roots it listed were
    lost for good."""
    kept = tmp_path / "kept"
    (kept / "train" / "x").mkdir(parents=True)
    text = json.dumps([str(kept)])[:-1] + ", ]"  # a trailing comma: not JSON
    dash_env.roots_file.write_text(text)
    assert state.load_roots() == [str(dash_env.data_root)]
    problem = state.roots_problem()
    assert problem is not None and problem.startswith(f"{dash_env.roots_file}: not valid JSON")
    other = tmp_path / "other"
    (other / "train" / "y").mkdir(parents=True)
    with pytest.raises(InputError, match="not valid JSON"):
        state.add_root(str(other))
    with pytest.raises(InputError, match="not valid JSON"):
        state.remove_root(str(kept))
    assert dash_env.roots_file.read_text() == text
    dash_env.roots_file.write_text('{"roots": []}')
    assert "expected a JSON list of folder paths" in (state.roots_problem() or "")
    dash_env.roots_file.write_text(json.dumps([str(kept)]))
    assert state.roots_problem() is None and state.load_roots() == [str(dash_env.data_root), str(kept)]
    # the page names it (sidebar) and a refused Add says why
    dash_env.roots_file.write_text(text)
    at = open_app("datasets")
    assert any("Remembered data roots not shown" in e.value and "roots.json" in e.value for e in at.sidebar.error)
    at.text_input(key="new_root").input(str(other))
    at.button[0].click().run()
    assert any("Add data root" in e.value and "not valid JSON" in e.value for e in at.error) and not at.exception
    assert dash_env.roots_file.read_text() == text


def test_cache_summary_counts_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imc_core.cache import get_or_build

    monkeypatch.setenv("IMC_CACHE_DIR", str(tmp_path))
    state.cache_summary.clear()
    get_or_build("features", "ds", "k", lambda d: (d / "f.h5").write_bytes(b"x" * 3 * 1024**2), root=tmp_path)
    text = state.cache_summary()
    assert "1 artifact, 3.0 MB, in" in text and str(tmp_path) in text and "cache prune --unused" in text
    (tmp_path / "features" / ".tmp-ds-k2-1234abcd").mkdir()
    (tmp_path / "features" / ".tmp-ds-k2-1234abcd" / "f.h5").write_bytes(b"x" * 1024**2)
    state.cache_summary.clear()
    assert "1 artifact, 3.0 MB (and 1 temporary folder, 1.0 MB: builds at work" in state.cache_summary()
    state.cache_summary.clear()


def test_active_jobs_keep_their_order_as_they_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running jobs first, then queued ones, each by run id: ``created`` changes when a queued run starts, and the
    list reordered under the pointer (a Cancel meant for a queued job cancelled the running one)."""
    from imc_core.runs import RunWriter

    statuses = {"20261127-112958-default-98b9": "queued", "20261127-112958-default-729e": "running",
                "20261127-112958-default-db13": "queued"}
    created = {"20261127-112958-default-98b9": "2026-11-27T11:29:58", "20261127-112958-default-729e":
               "2026-11-27T11:30:40", "20261127-112958-default-db13": "2026-11-27T11:29:58"}
    for name, status in statuses.items():
        RunWriter(tmp_path / name).write_meta(id=name, status=status, created=created[name])
    monkeypatch.setattr(jobs, "job_status", lambda p: jobs.Job(Path(p), statuses[Path(p).name], None, True, [], "",
                                                                 "", created[Path(p).name], None, None, {}))
    order = [j.id for j in jobs.active_jobs(tmp_path)]
    assert order == ["20261127-112958-default-729e", "20261127-112958-default-98b9", "20261127-112958-default-db13"]
    statuses["20261127-112958-default-98b9"] = "running"  # the queue starts the next one
    created["20261127-112958-default-98b9"] = "2026-11-27T11:31:00"
    assert [j.id for j in jobs.active_jobs(tmp_path)][-1] == "20261127-112958-default-db13"


def test_a_repeated_launch_lists_its_runs_in_seed_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs of one "repeat 3 times" share the launch second in their ids, and the random suffix listed seed 0,
    seed 2, seed 1; the queue runs them by seed, and so do the job list and the history."""
    from imc_core.runs import RunWriter, list_runs

    suffixes = {"f00d": 0, "0a11": 2, "7b7b": 1}
    for suffix, seed in suffixes.items():
        name = f"20261127-173049-default-{suffix}"
        RunWriter(tmp_path / name).write_meta(id=name, status="queued", created="2026-11-27T17:30:49+00:00",
                                              overrides=["matching.ratio=0.8", f"reconstruction.seed={seed}"])
    monkeypatch.setattr(jobs, "job_status", lambda p: jobs.Job(Path(p), "queued", None, True, [], "", "", "", None,
                                                                 None, json.loads((Path(p) / "run.json").read_text())))
    assert [suffixes[j.id[-4:]] for j in jobs.active_jobs(tmp_path)] == [0, 1, 2]
    history = list_runs(tmp_path)
    assert history["seed"].tolist() == [2, 1, 0]  # newest first, as the history reads; the seed a queued run will use


def test_a_cli_run_counts_as_started(tmp_path: Path) -> None:
    """A queue waits for every running pipeline, one started from the command line too (it has no job.json)."""
    from imc_core.runs import RunWriter

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "imc_core"])
    try:
        started(proc, "imc_core")
        cli = tmp_path / "20261127-000000-default-cli0"
        RunWriter(cli).write_meta(id=cli.name, status="running", created="2026", pid=proc.pid)
        queued = tmp_path / "20261127-000001-default-q000"
        RunWriter(queued).write_meta(id=queued.name, status="queued", created="2026")
        (queued / jobs.JOB_FILE).write_text(json.dumps({"command": ["x"], "queued": __import__("time").time()}))
        assert [j.id for j in jobs.active_jobs(tmp_path)] == [cli.name, queued.name]
        assert [j.id for j in jobs.started_jobs(tmp_path)] == [cli.name]
    finally:
        proc.kill()
        proc.wait()


def test_the_datasets_summary_follows_images_added_or_removed(tmp_path: Path) -> None:
    """The cache key held the root's and train/'s mtimes only: a removed image stayed counted as present."""
    from PIL import Image

    root = tmp_path / "root"
    (root / "train" / "ds").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(root / "train" / "ds" / name)
    eye = "1;0;0;0;1;0;0;0;1"
    (root / "train_labels.csv").write_text("dataset,scene,image,rotation_matrix,translation_vector\n"
                                           f"ds,s,a.png,{eye},0;0;0\nds,s,b.png,{eye},1;0;0\n")
    (root / "train_thresholds.csv").write_text("dataset,scene,thresholds\nds,s,0;0;1;2;3;4\n")
    assert state.root_summary(root)["missing"].tolist() == [0]
    (root / "train" / "ds" / "b.png").unlink()
    assert state.root_summary(root)["missing"].tolist() == [1]


def test_a_run_id_too_long_for_a_file_name_is_an_invalid_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imc_core.errors import InputError

    monkeypatch.setenv("IMC_RUNS_DIR", str(tmp_path))
    with pytest.raises(InputError, match="invalid run id 'AAAA.*File name too long"):
        state.resolve_run_dir("A" * 5000)
    with pytest.raises(InputError, match="invalid run id '../x'"):
        state.resolve_run_dir("../x")


def test_markdown_from_a_bundle_stays_text() -> None:
    """A bundle's run.json with `![x](http://…)` in its variant, warnings or data root made the browser fetch it."""
    assert state.md("![x](http://e.example/x.png)") == r"\!\[x\]\(http\:\/\/e\.example\/x\.png\)".replace(r"\/", "/")
    assert state.code("/data/root") == "`/data/root`"
    assert state.code("a`![x](http://e/x.png)`b") == "`` a`![x](http://e/x.png)`b ``"
    assert state.code("x``y\nz") == "``` x``y z ```"


def test_image_in_keeps_a_runs_image_names_inside_the_dataset_folder(tmp_path: Path) -> None:
    assert state.image_in(tmp_path, "a.png") == tmp_path / "a.png"
    assert state.image_in(tmp_path, "sub/a.png") == tmp_path / "sub" / "a.png"
    for name in ("/usr/share/x.png", "../x.png", "sub/../../x.png", "..\\x.png", "C:\\x.png"):
        assert state.image_in(tmp_path, name) is None, name


def test_an_absolute_run_folder_must_hold_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``?run=/abs/folder`` (a ``run --out`` elsewhere) told a shared link which folders of the machine exist: a
    folder without a run's files now reads as a missing one, in the same words."""
    from imc_core.errors import InputError

    monkeypatch.setenv("IMC_RUNS_DIR", str(tmp_path / "runs"))
    plain = tmp_path / "plain"
    plain.mkdir()
    for folder in (plain, tmp_path / "missing"):
        with pytest.raises(InputError, match="run directory not found") as err:
            state.resolve_run_dir(str(folder))
        assert str(err.value) == f"{folder}: run directory not found"
    (plain / "run.json").write_text("{}")
    assert state.resolve_run_dir(str(plain)) == plain
    lost = tmp_path / "lost"  # a run whose run.json is lost: still a run's folder (Results names what is missing)
    lost.mkdir()
    (lost / "per_image.csv").write_text("dataset,scene,image\n")
    assert state.resolve_run_dir(str(lost)) == lost


def test_a_folder_it_may_not_read_reads_as_a_missing_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing folder the dashboard may not read said "invalid run id …: Permission denied" where a missing
    one said "not found": a shared link could still tell which folders exist. Both say "not found" now."""
    import errno

    import imc_core.runs
    from imc_core.errors import InputError

    private = tmp_path / "private"
    private.mkdir()

    def refused(folder: Path) -> list[str]:
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    monkeypatch.setattr(imc_core.runs, "_files_of_a_run", refused)  # (the tests run as root: chmod would not do)
    with pytest.raises(InputError) as err:
        state.resolve_run_dir(str(private))
    assert str(err.value) == f"{private}: run directory not found"


def test_a_datasets_pooled_maa_is_explained_where_it_is_not_the_scenes_mean() -> None:
    import pandas as pd

    from dashboard.views.results import pooled_maa_note

    scenes = pd.DataFrame({"scene": ["ET", "another_ET"], "mAA": [66.67, 42.86]})
    note = pooled_maa_note(scenes, {"mAA": 53.85, "score": 65.69})
    assert note is not None and "(53.85) pools its scenes" in note and "mean of the scenes' mAAs (54.77)" in note
    assert pooled_maa_note(scenes, {"mAA": 54.765}) is None  # (equal to the mean: nothing to explain)
    assert pooled_maa_note(scenes.iloc[:1], {"mAA": 10.0}) is None  # one scene
    assert pooled_maa_note(scenes, None) is None and pooled_maa_note(scenes, {"mAA": None}) is None


def test_a_job_of_every_dataset_names_them(tmp_path: Path) -> None:
    from dashboard.jobview import job_datasets

    root = tmp_path / "root"
    for name in ("b", "a", *(f"ds{k}" for k in range(8))):
        (root / "train" / name).mkdir(parents=True)
    assert job_datasets({"datasets": ["x", "y"]}) == "x, y"
    assert job_datasets({"datasets": [], "split": "train", "data_root": str(root)}) == \
        "every dataset (train): a, b, ds0, ds1, ds2, ds3, ds4, ds5, … (2 more)"
    assert job_datasets({"datasets": [], "split": "train", "data_root": str(tmp_path / "gone")}) == \
        "every dataset (train)"
    assert job_datasets({"datasets": []}) == "every dataset"
