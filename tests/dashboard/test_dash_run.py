"""AppTest of the Run page: generated parameter widgets → --set list, background job with live progress, cancel.

The pipeline process is replaced by a tiny fake (``jobs.BASE_COMMAND`` monkeypatched) that writes progress, then
blocks on a named pipe until the test lets it finish, so the test sees the job mid-run without sleeping.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from dashkit import APP, DashEnv, errors_and_exceptions, open_app, plain
from streamlit.testing.v1 import AppTest

from dashboard import jobs, state

FAKE = textwrap.dedent('''
    import json, os, sys, time
    args = sys.argv[1:]
    out = args[args.index("--out") + 1]

    def write(name, obj):
        tmp = os.path.join(out, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, os.path.join(out, name))

    write("argv.json", args)
    meta = json.load(open(os.path.join(out, "run.json")))
    now = time.time()
    write("progress.json", {"stage": "ds1/features", "done": 3, "total": 10, "message": "extracting features",
                            "updated": now, "stages": {
        "ds1/pairs": {"done": 1, "total": 1, "cached": False, "seconds": 0.1, "started": now - 5},
        "ds1/features": {"done": 3, "total": 10, "cached": False, "seconds": None, "started": now - 3}}})
    with open(os.environ["FAKE_FIFO"]) as f:  # blocks until the test has looked at the progress
        f.read()
    if os.path.exists(os.path.join(out, "CANCEL")):
        meta["status"] = "cancelled"
    else:
        write("scores.json", {"score": 42.5, "mAA": 50.0, "clusterness": 36.9,
                              "datasets": {"ds1": {"score": 42.5, "mAA": 50.0, "clusterness": 36.9}}})
        meta["status"] = "done"
    write("run.json", meta)
''')


@pytest.fixture()
def fake_pipeline(dash_env: DashEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the fake pipeline; returns the named pipe that releases it."""
    script = tmp_path / "fake_pipeline.py"
    script.write_text(FAKE)
    fifo = tmp_path / "go.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("FAKE_FIFO", str(fifo))
    monkeypatch.setattr(jobs, "BASE_COMMAND", [sys.executable, str(script)])
    return fifo


def run_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.query_params["page"] = "run"
    return at.run()


def test_widgets_build_the_set_list(dash_env: DashEnv) -> None:
    at = run_page()
    assert not errors_and_exceptions(at)[1]
    assert at.session_state["run_overrides"] == []
    at.text_input(key="cfg.default.matching.min_matches").input("42")
    at.checkbox(key="cfg.default.reconstruction.deterministic").uncheck()
    at.selectbox(key="cfg.default.reconstruction.mapper").select("global")
    at.number_input(key="cfg.default.reconstruction.verify_max_error").set_value(2.5)
    at.run()
    assert sorted(at.session_state["run_overrides"]) == sorted([
        "matching.min_matches=42", "reconstruction.deterministic=false", 'reconstruction.mapper="global"',
        "reconstruction.verify_max_error=2.5"])
    assert any("--set matching.min_matches=42" in c.value for c in at.code)
    # the preview pastes into a shell as it is: quoted where a value has quotes or spaces
    preview = next(c.value for c in at.code if "--set" in c.value)
    import shlex

    from imc_core.cli import build_parser

    args = build_parser().parse_args(["run", "--data-root", "x", *shlex.split(preview)])
    assert sorted(args.set) == sorted(at.session_state["run_overrides"])
    at.text_input(key="cfg.default.matching.min_matches").input("15").run()  # back to the variant's value
    assert "matching.min_matches=42" not in at.session_state["run_overrides"]
    # every section of the typed config has its expander
    assert {e.label for e in at.expander} >= {"features", "matching", "pairs", "reconstruction", "fusion"}
    # each says which of its keys the settings leave unread (COLMAP's SIFT showed ALIKED's model like its own keys)
    features = next(e for e in at.expander if e.label == "features")
    [note] = [c.value for c in features.caption if c.value.startswith("Not read")]
    assert note.startswith("Not read with these settings: model, ") and "not read by features.method = colmap_sift" \
        in note
    recon = next(e for e in at.expander if e.label == "reconstruction")
    assert any("not read by reconstruction.mapper = global" in c.value for c in recon.caption)


def test_share_link_carries_the_parameter_edits(dash_env: DashEnv) -> None:
    """The Run page's share link names the edited parameters (``set=`` per override), and opening such a link
    sets them on the parameter widgets, the rest at the variant's values; a bad value in a link is named."""
    from urllib.parse import parse_qs

    at = run_page()
    at.text_input(key="cfg.default.matching.min_matches").input("42")
    at.selectbox(key="cfg.default.reconstruction.mapper").select("global").run()
    overrides = sorted(at.session_state["run_overrides"])
    link = next(c.value for c in at.sidebar.code)
    query = parse_qs(link.split("?", 1)[1])
    assert sorted(query["set"]) == overrides == ["matching.min_matches=42", 'reconstruction.mapper="global"']
    assert query["page"] == ["run"] and query["variant"] == ["default"]

    opened = AppTest.from_file(str(APP), default_timeout=30)
    for k, v in query.items():
        opened.query_params[k] = v
    opened.session_state["cfg.default.matching.ratio"] = 0.5  # an edit of the visitor's own: the link resets it
    opened.run()
    assert not errors_and_exceptions(opened)[1]
    assert opened.text_input(key="cfg.default.matching.min_matches").value == "42"
    assert opened.selectbox(key="cfg.default.reconstruction.mapper").value == "global"
    assert sorted(opened.session_state["run_overrides"]) == overrides
    assert sorted(opened.query_params["set"]) == overrides  # the address bar keeps the form's (a reload reopens it)
    opened.text_input(key="cfg.default.matching.min_matches").input("50").run()  # applied once, then editable
    assert "matching.min_matches=50" in opened.session_state["run_overrides"]
    assert "matching.min_matches=50" in opened.query_params["set"]  # (the edit, not the link's value)

    bad = AppTest.from_file(str(APP), default_timeout=30)
    bad.query_params["page"] = "run"
    bad.query_params["set"] = ["matching.min_matches=zero", "matching.ratio=0.7"]  # one bad value, one good
    bad.run()
    assert any(w.value.startswith("Left out of the link's parameters: ") and "matching.min_matches" in w.value
               and "ratio" not in w.value for w in bad.warning)
    assert bad.session_state["run_overrides"] == ["matching.ratio=0.7"]


def test_share_link_carries_the_launch_fields(dash_env: DashEnv) -> None:
    """The Run link also carries the split, the dataset subset, repeats, group, label and an unticked cache; opening
    it fills the form once per session (the address bar then follows the form); fields a link does not name take their defaults;
    values that do not fit are named."""
    import shutil
    from urllib.parse import parse_qs

    train = dash_env.data_root / "train"
    shutil.copytree(train / "ds1", train / "ds2")
    shutil.copytree(train / "ds1", dash_env.data_root / "test" / "t1")
    shutil.copytree(train / "ds1", dash_env.data_root / "test" / "t2")
    at = run_page()
    assert not errors_and_exceptions(at)[1]
    assert "repeats=" not in next(c.value for c in at.sidebar.code)  # defaults stay out of the link
    at.radio(key="split").set_value("test").run()
    at.multiselect(key="datasets_test").set_value(["t2"])
    at.number_input(key="repeats").set_value(3)
    at.text_input(key="group").input("sweep-a")
    at.text_input(key="label").input("ratio test")
    at.checkbox(key="use_cache").uncheck()
    at.text_input(key="cfg.default.matching.min_matches").input("42")
    at.run()
    assert not errors_and_exceptions(at)[1]
    query = parse_qs(next(c.value for c in at.sidebar.code).split("?", 1)[1])
    assert {k: query[k] for k in ("split", "datasets", "repeats", "group", "label", "cache")} == {
        "split": ["test"], "datasets": ["t2"], "repeats": ["3"], "group": ["sweep-a"], "label": ["ratio test"],
        "cache": ["off"]}

    opened = AppTest.from_file(str(APP), default_timeout=30)
    opened.query_params["page"] = "run"
    for k, v in query.items():
        opened.query_params[k] = v
    opened.run()
    assert not errors_and_exceptions(opened)[1]
    assert opened.radio(key="split").value == "test"
    assert opened.multiselect(key="datasets_test").value == ["t2"]
    assert opened.number_input(key="repeats").value == 3
    assert opened.text_input(key="group").value == "sweep-a" and opened.text_input(key="label").value == "ratio test"
    assert opened.checkbox(key="use_cache").value is False
    assert opened.session_state["run_overrides"] == ["matching.min_matches=42"]
    assert {k: opened.query_params[k] for k in ("split", "datasets", "repeats", "group", "label", "cache")} == {
        k: v if len(v) > 1 else v[0] for k, v in query.items()
        if k in ("split", "datasets", "repeats", "group", "label", "cache")}  # (kept in the address bar)
    opened.number_input(key="repeats").set_value(2).run()  # applied once, then editable
    assert opened.number_input(key="repeats").value == 2 and opened.query_params["repeats"] == "2"

    bad = AppTest.from_file(str(APP), default_timeout=30)
    bad.query_params["page"] = "run"
    bad.query_params["datasets"] = ["nope", "ds2"]
    bad.query_params["repeats"] = "0"
    bad.query_params["cache"] = "maybe"
    bad.session_state["label"] = "the visitor's own"  # a link describes the whole form: unnamed fields reset
    bad.run()
    assert not errors_and_exceptions(bad)[1]
    (warning,) = [w.value for w in bad.warning if w.value.startswith("Left out of the link's parameters: ")]
    assert "“nope”" in warning and "repeats “0”" in warning and "cache “maybe”" in warning and "ds2" not in warning
    assert bad.multiselect(key="datasets").value == ["ds2"] and bad.number_input(key="repeats").value == 1
    assert bad.checkbox(key="use_cache").value is True and bad.text_input(key="label").value == ""


def test_a_reload_keeps_the_launch_form(dash_env: DashEnv) -> None:
    """Repeats 4, a label and a parameter edit, then F5: the form came back empty (its fields were in the share
    link, never in the address bar, and a reload is a new session). The address bar follows the form, a new session
    on it gets the form back, and a page switch and back within the session keeps it."""
    at = run_page()
    at.number_input(key="repeats").set_value(4)
    at.text_input(key="label").input("my experiment")
    at.text_input(key="cfg.default.matching.min_matches").input("30").run()
    assert not errors_and_exceptions(at)[1]
    address = {k: at.query_params[k] for k in at.query_params}
    assert address["repeats"] == "4" and address["label"] == "my experiment"
    assert "matching.min_matches=30" in address["set"]

    reloaded = AppTest.from_file(str(APP), default_timeout=30)  # F5: the same address, a new session
    reloaded.query_params["page"] = "run"
    for k, v in address.items():
        reloaded.query_params[k] = v
    reloaded.run()
    assert not errors_and_exceptions(reloaded)[1]
    assert reloaded.number_input(key="repeats").value == 4
    assert reloaded.text_input(key="label").value == "my experiment"
    assert reloaded.text_input(key="cfg.default.matching.min_matches").value == "30"
    reloaded.text_input(key="label").input("").run()  # back to the default: out of the address bar
    assert "label" not in reloaded.query_params and reloaded.query_params["repeats"] == "4"

    # the browser's Back within the session: the address bar holds an older entry (no repeats) when the page next
    # runs; applied as a link it set repeats back to 1 without a word. The form stands, and the bar follows it.
    del reloaded.query_params["repeats"]
    reloaded.query_params["label"] = "an older entry"
    reloaded.run()
    assert not errors_and_exceptions(reloaded)[1]
    assert reloaded.number_input(key="repeats").value == 4 and reloaded.text_input(key="label").value == ""
    assert reloaded.query_params["repeats"] == "4" and "label" not in reloaded.query_params


def test_launch_refuses_data_the_pipeline_would_refuse(dash_env: DashEnv, fake_pipeline: Path) -> None:
    """Labels the CLI refuses with exit 2 before any run folder: Launch started a run that failed at once and
    stayed in the history. Now nothing is launched and the file and row are named."""
    labels = dash_env.data_root / "train_labels.csv"
    good = labels.read_text()
    lines = good.splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",1.0;abc;2"
    labels.write_text("\n".join(lines) + "\n")
    at = run_page()
    at.button(key="launch").click().run()
    assert not errors_and_exceptions(at)[1]
    assert [e.value for e in at.error] == [f"Nothing launched: {labels}:4: translation_vector: cannot parse number "
                                           "'abc'"]
    assert not [p for p in dash_env.runs.iterdir() if p.is_dir()]
    thresholds = dash_env.data_root / "train_thresholds.csv"
    labels.write_text(good)
    thresholds.write_text(thresholds.read_text().splitlines()[0] + "\n" + thresholds.read_text().splitlines()[1]
                          + "\n")  # scene s2 has no thresholds
    at.button(key="launch").click().run()
    assert len(at.error) == 1 and "Nothing launched" in at.error[0].value and "s2" in at.error[0].value
    assert not [p for p in dash_env.runs.iterdir() if p.is_dir()]


@pytest.mark.timeout(120)
def test_launch_shows_progress_and_finishes(dash_env: DashEnv, fake_pipeline: Path) -> None:
    at = run_page()
    at.text_input(key="cfg.default.matching.min_matches").input("33")
    at.button(key="launch").click().run()
    (run_dir,) = [p for p in dash_env.runs.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    with open(fake_pipeline, "w") as go:  # opens once the fake has written its progress
        at.run()
        bars = {plain(p.proto.text): p.value for p in at.get("progress")}
        assert any("ds1/features: 3/10" in t and "ETA" in t for t in bars), bars
        assert any(t.startswith("ds1/pairs: 1/1") for t in bars)
        # the last message names the stage that said it (datasets reconstructed at once interleave theirs)
        assert "ds1/features · extracting features" in [c.value for c in at.caption]
        assert any(run_dir.name in m.value and "running" in m.value for m in at.markdown)
        assert any(b.label == "Cancel" for b in at.button)
        go.write("go")
    assert jobs.wait(run_dir, timeout=60) == 0
    argv = json.loads((run_dir / "argv.json").read_text())
    assert argv[argv.index("--set") + 1] == "matching.min_matches=33" and argv[argv.index("--out") + 1] == str(run_dir)
    at.run()
    assert not errors_and_exceptions(at)[1]
    assert any(run_dir.name in m.value and "done" in m.value for m in at.markdown)
    # the pair list, made anew every run, is no stage the cache could have given ("2 stages, 0 from cache")
    assert "score 42.50 · 1 stage, 0 from cache" in [c.value for c in at.caption]
    history = next(d.value for d in at.dataframe if "score" in d.value.columns)
    assert list(history["score"]) == [42.5] and list(history["status"]) == ["done"]


@pytest.mark.timeout(120)
def test_cancel_writes_cancel_and_the_job_stops(dash_env: DashEnv, fake_pipeline: Path) -> None:
    at = run_page()
    assert not any("job(s) running" in c.value for c in at.caption)
    at.button(key="launch").click().run()
    (run_dir,) = [p for p in dash_env.runs.iterdir() if p.is_dir()]
    with open(fake_pipeline, "w") as go:
        at.run()
        # another Launch now waits for it: the page says so
        assert any("1 job(s) running: runs launched now wait for them" in c.value for c in at.caption)
        at.button(key=f"cancel::{run_dir.name}").click().run()
        assert (run_dir / "CANCEL").exists()
        assert any("Cancel requested" in c.value for c in at.caption)
        go.write("go")
    assert jobs.wait(run_dir, timeout=60) == 0
    at.run()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "cancelled"
    assert any(run_dir.name in m.value and "cancelled" in m.value for m in at.markdown)
    # where it stopped: "1 stage, 0 from cache" alone read as a run that had finished
    assert "cancelled during ds1/features (3/10) · 1 stage, 0 from cache" in [c.value for c in at.caption]


def test_repeats_share_a_group_with_consecutive_seeds(dash_env: DashEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[jobs.LaunchSpec] = []
    monkeypatch.setattr(jobs, "launch_queue", lambda specs, runs_dir=None: started.extend(specs) or [dash_env.runs])
    at = run_page()
    at.text_input(key="cfg.default.reconstruction.seed").input("5")
    at.number_input(key="repeats").set_value(3)
    at.button(key="launch").click().run()
    assert [[o for o in s.overrides if "seed" in o] for s in started] == [
        ["reconstruction.seed=5"], ["reconstruction.seed=6"], ["reconstruction.seed=7"]]
    assert len({s.group for s in started}) == 1 and started[0].group


def _wait_for(predicate: object, timeout: float = 60.0) -> None:
    import time

    end = time.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.time() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.timeout(180)
def test_repeats_run_one_after_the_other_and_a_queued_one_can_be_cancelled(dash_env: DashEnv,
                                                                           fake_pipeline: Path) -> None:
    """Seeds side by side would share the cores (meaningless timings) and compute the same features cold: the
    queue starts each run when the one before has ended; cancelling a waiting run takes it out at once."""
    spec = jobs.LaunchSpec(dash_env.data_root, [], "default", [], "g")
    dirs = jobs.launch_repeats(spec, 3, seed=0, runs_dir=dash_env.runs)
    assert [json.loads((d / "run.json").read_text())["status"] for d in dirs] == ["queued"] * 3
    _wait_for(lambda: (dirs[0] / "argv.json").exists())  # the fake of the first run has started
    assert [jobs.job_status(d).status for d in dirs[1:]] == ["queued", "queued"]
    assert {j.id for j in jobs.active_jobs(dash_env.runs)} >= {dirs[1].name, dirs[2].name}
    assert not (dirs[1] / "argv.json").exists()
    jobs.cancel(dirs[2])
    assert jobs.job_status(dirs[2]).status == "cancelled"
    # a reloaded page's job list still shows it (its run.json named no machine: taken for another one's), and
    # History names what it was to run (its datasets cell was blank)
    assert dirs[2].name in [j.id for j in jobs.recent_jobs(dash_env.runs)]
    from imc_core.runs import list_runs

    history = state.history_frame(list_runs(dash_env.runs), ["id", "datasets", "status"]).set_index("id")
    assert history.loc[dirs[2].name, "datasets"] == "(every dataset)"
    with open(fake_pipeline, "w") as go:  # releases the first run
        go.write("go")
    _wait_for(lambda: (dirs[1] / "argv.json").exists())  # only now does the second start
    assert json.loads((dirs[0] / "run.json").read_text())["status"] == "done"
    with open(fake_pipeline, "w") as go:
        go.write("go")
    _wait_for(lambda: json.loads((dirs[1] / "run.json").read_text())["status"] == "done")
    _wait_for(lambda: not jobs.active_jobs(dash_env.runs))
    assert json.loads((dirs[2] / "run.json").read_text())["status"] == "cancelled"
    assert not (dirs[2] / "argv.json").exists()  # never started
    seeds = [json.loads((d / "argv.json").read_text()) for d in dirs[:2]]
    assert [a[a.index("--set") + 1] for a in seeds] == ["reconstruction.seed=0", "reconstruction.seed=1"]


@pytest.mark.timeout(180)
def test_a_run_launched_while_another_runs_waits_for_it(dash_env: DashEnv, fake_pipeline: Path) -> None:
    """Separate launches ran at once and shared the cores (a run alone took 8.5 s, three together 23–25 s each):
    a launch while a job runs is queued, and its queue starts it when that job has ended."""
    spec = jobs.LaunchSpec(dash_env.data_root, [], "default", [], None)
    (first,) = jobs.launch_repeats(spec, runs_dir=dash_env.runs)
    _wait_for(lambda: (first / "argv.json").exists())
    assert [j.id for j in jobs.started_jobs(dash_env.runs)] == [first.name]
    (second,) = jobs.launch_repeats(spec, runs_dir=dash_env.runs, wait=True)
    assert jobs.job_status(second).status == "queued"
    import time

    time.sleep(2.5)  # the queue polls every second: it must still be waiting
    assert not (second / "argv.json").exists()
    with open(fake_pipeline, "w") as go:  # releases the first run
        go.write("go")
    _wait_for(lambda: (second / "argv.json").exists())  # only now does the second start
    assert json.loads((first / "run.json").read_text())["status"] == "done"
    with open(fake_pipeline, "w") as go:
        go.write("go")
    _wait_for(lambda: not jobs.active_jobs(dash_env.runs))


def test_jobs_that_ended_lately_come_back_after_a_reload(tmp_path: Path) -> None:
    """The Jobs panel listed the finished jobs of its own session only: a reload emptied it."""
    import os
    import time

    from imc_core.runs import RunWriter

    import datetime as dt

    def run(name: str, status: str, job: bool = True, age_s: float = 0.0, **meta: object) -> Path:
        d = tmp_path / name
        t = time.time() - age_s
        import platform

        RunWriter(d).write_meta(id=name, status=status, created="2026", **{"host": platform.node(), **meta},
                                finished=dt.datetime.fromtimestamp(t).astimezone().isoformat())
        if job:
            (d / jobs.JOB_FILE).write_text(json.dumps({"command": ["x"], "queued": time.time()}))
        os.utime(d / "run.json", (t, t))
        return d

    run("20260101-000001-default-aaaa", "done", age_s=60)
    run("20260101-000002-default-bbbb", "failed", age_s=5)
    run("20260101-000003-default-cccc", "done", age_s=jobs.RECENT_S + 60)  # ended too long ago
    run("20260101-000004-default-dddd", "done", job=False)  # a CLI run: not a job
    run("20260101-000005-default-eeee", "queued")  # still waiting: the active list shows it
    run("20260101-000006-default-ffff", "done", imported_from="b.zip")  # a teammate's: no job of this dashboard
    run("20260101-000008-default-hhhh", "failed", host="elsewhere")  # a teammate's machine, folder shared
    old = run("20260101-000007-default-gggg", "done", age_s=jobs.RECENT_S + 60)
    os.utime(old / "run.json")  # rewritten since (e.g. a label edited): it ended long ago all the same
    assert [j.id for j in jobs.recent_jobs(tmp_path)] == ["20260101-000002-default-bbbb",
                                                          "20260101-000001-default-aaaa"]


def test_a_queue_that_died_leaves_its_runs_stopped(tmp_path: Path) -> None:
    from imc_core.runs import RunWriter

    run = tmp_path / "20260101-000000-x-abcd"
    RunWriter(run).write_meta(id=run.name, status="queued", created="2026")
    (run / jobs.JOB_FILE).write_text(json.dumps({"command": ["x"], "queued": 0, "queue_pid": 2**22 + 12345}))
    job = jobs.job_status(run)
    assert job.status == "stopped" and "queue process ended" in (job.error or "")
    assert jobs.active_jobs(tmp_path) == []
    (run / jobs.JOB_FILE).write_text(json.dumps({"command": ["x"], "queued": __import__("time").time()}))
    assert jobs.job_status(run).status == "queued"  # its queue has not recorded itself yet




@pytest.mark.timeout(180)
def test_a_queue_checks_and_starts_under_the_runs_folder_lock(dash_env: DashEnv, fake_pipeline: Path) -> None:
    """Two queues that found no job running at the same instant both started theirs (the check polls every
    second): the check and the start are one step under a lock on the runs folder, which another queue holds
    until its run has recorded that it started."""
    from dashboard import runqueue

    spec = jobs.LaunchSpec(dash_env.data_root, [], "default", [], None)
    with runqueue.turn_lock(dash_env.runs):  # as another queue between its check and its start
        (run,) = jobs.launch_queue([spec], dash_env.runs)
        import time

        time.sleep(2.5)
        assert not (run / "argv.json").exists() and jobs.job_status(run).status == "queued"
    _wait_for(lambda: (run / "argv.json").exists())
    with open(fake_pipeline, "w") as go:
        go.write("go")
    _wait_for(lambda: not jobs.active_jobs(dash_env.runs))
    assert json.loads((run / "run.json").read_text())["status"] == "done"


def test_a_link_to_a_data_root_missing_here_says_so(dash_env: DashEnv, tmp_path: Path) -> None:
    """A teammate's Run link named a root this machine lacks: the form filled in on another root without a word,
    and Launch would have run on other data."""
    gone = str(tmp_path / "teammates" / "imc25")
    at = open_app("run", root=gone, variant="default", label="teammate")
    assert not at.exception
    [warning] = [w.value for w in at.warning if "not on this machine" in w.value]
    assert warning.startswith(f"This link's data root `{gone}` is not on this machine, so the page shows "
                              f"`{dash_env.data_root}` instead")
    at.run()  # still said on the page's own reruns (the address bar now names the root shown)
    assert any("not on this machine" in w.value for w in at.warning)
    fine = open_app("run", root=str(dash_env.data_root), variant="default")
    assert not any("not on this machine" in w.value for w in fine.warning)


def test_a_group_holding_another_config_is_named_before_launch(dash_env: DashEnv) -> None:
    """The group stayed in the form after a parameter change: the next launch put another experiment into the
    seed group, and Compare averaged both. The page now says so before Launch."""
    from dashkit import write_run

    from imc_core.config import dump_config, resolve_config

    run = write_run(dash_env, "seed-3", group="g", seed=3)
    (run / "config.toml").write_text(dump_config(resolve_config("default", ["reconstruction.seed=3"]),
                                                 {"variant": "default"}))
    at = run_page()
    at.text_input(key="group").input("g").run()
    assert not errors_and_exceptions(at)[1]
    assert not [w for w in at.warning if "already holds runs of another config" in w.value]  # the seed aside
    at.text_input(key="cfg.default.matching.min_matches").input("33").run()
    [warning] = [w.value for w in at.warning if "already holds runs of another config" in w.value]
    assert "seed-3 differs in `matching.min_matches`" in plain(warning)
    at.text_input(key="group").input("g2").run()
    assert not [w for w in at.warning if "already holds runs of another config" in w.value]


def test_a_group_holding_runs_of_another_data_root_is_named_before_launch(dash_env: DashEnv, tmp_path: Path) -> None:
    """A run on another data root joined a group of seeds without a word (a tester's Compare counted it in)."""
    from dashkit import write_run

    from imc_core.config import dump_config, resolve_config

    run = write_run(dash_env, "elsewhere-1", group="g", seed=1)
    (run / "config.toml").write_text(dump_config(resolve_config("default", ["reconstruction.seed=1"]),
                                                 {"variant": "default"}))
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "data_root": str(tmp_path / "another_root")}))
    at = run_page()
    at.text_input(key="group").input("g").run()
    assert not errors_and_exceptions(at)[1]
    [warning] = [w.value for w in at.warning if "already holds runs" in w.value]
    assert "already holds runs on another data root (elsewhere-1)" in plain(warning)
    # a config change is said with it (the other root's warning alone hid it: a tester)
    (run / "config.toml").write_text(dump_config(resolve_config("default", ["reconstruction.seed=1",
                                                                            "features.max_keypoints=99"]),
                                                 {"variant": "default"}))
    at.text_input(key="group").input(" g").run()
    [warning] = [w.value for w in at.warning if "already holds runs" in w.value]
    assert "already holds runs of another config (elsewhere-1 differs in `features.max_keypoints`), and runs on " \
           "another data root: Compare" in plain(warning)
    (run / "config.toml").write_text(dump_config(resolve_config("default", ["reconstruction.seed=1"]),
                                                 {"variant": "default"}))
    (run / "run.json").write_text(json.dumps(meta))  # the same root as the form's: only the seed differs
    at.text_input(key="group").input("g ").run()
    assert not [w for w in at.warning if "already holds runs" in w.value]


def test_every_seed_of_the_repeats_is_checked(dash_env: DashEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 2147483646 × 3 showed 'Seeds 2147483646 … 2147483648' with Launch enabled, and the third run failed on
    its seed after launch; the message names the seed's real range (the config said '-2147483648 and 2147483647'
    of a seed it refuses below 0)."""
    monkeypatch.setattr(jobs, "launch_queue", lambda specs, runs_dir=None: pytest.fail("launched"))
    at = run_page()
    at.text_input(key="cfg.default.reconstruction.seed").input("2147483646")
    at.number_input(key="repeats").set_value(3).run()
    assert not errors_and_exceptions(at)[1]
    assert at.button(key="launch").disabled
    [error] = [e.value for e in at.error]
    assert error == ("Invalid parameters, nothing launched: reconstruction.seed must be between 0 and 2147483647: "
                     "the 3 runs would take seeds 2147483646 … 2147483648 (start at 2147483645 at most)")
    assert not [c for c in at.caption if c.value.startswith("Seeds ")]  # (not listed again under the error)
    at.number_input(key="repeats").set_value(2).run()
    assert [c.value for c in at.caption if c.value.startswith("Seeds ")] == ["Seeds 2147483646 … 2147483647"]
    assert not at.error and not at.button(key="launch").disabled
    at.text_input(key="cfg.default.reconstruction.seed").input("2147483648").run()
    assert [e.value for e in at.error] == ["Invalid parameters, nothing launched: reconstruction.seed must be "
                                           "between 0 and 2147483647: the 2 runs would take seeds 2147483648 … "
                                           "2147483649 (start at 2147483646 at most)"]
    at.number_input(key="repeats").set_value(1).run()
    assert [e.value for e in at.error] == ["Invalid parameters, nothing launched: reconstruction.seed must be "
                                           "between 0 and 2147483647, got 2147483648"]
    assert at.button(key="launch").disabled


def test_an_integer_field_reads_what_was_typed_or_says_why_not(dash_env: DashEnv,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's integer input read a typed 1e4 as 1, and an emptied one as 0, without a word; and a "Repeat N
    times" above 50 kept the last value in range, so Launch started one run (a tester)."""
    monkeypatch.setattr(jobs, "launch_queue", lambda specs, runs_dir=None: pytest.fail("launched"))
    at = run_page()
    field = "cfg.default.reconstruction.min_model_size"
    for typed, read in (("1e4", "10000"), (" 8_192 ", "8192"), ("12.0", "12")):
        at.text_input(key=field).input(typed).run()
        assert not at.error and f"--set reconstruction.min_model_size={read}" in at.code[0].value, typed
    for typed in ("", "1.5", "many"):
        at.text_input(key=field).input(typed).run()
        assert not errors_and_exceptions(at)[1] and at.button(key="launch").disabled, typed
        [error] = [e.value for e in at.error]
        assert error.startswith("Invalid parameters, nothing launched: ") and \
            f"reconstruction.min_model_size must be an integer, got {typed!r}" in error, error
    at.text_input(key="cfg.default.reconstruction.seed").input("x").run()  # (the seed's own check needs a number)
    assert not errors_and_exceptions(at)[1] and at.button(key="launch").disabled
    at.text_input(key=field).input("3")
    at.text_input(key="cfg.default.reconstruction.seed").input("0").run()
    assert not at.error and not at.button(key="launch").disabled
    for repeats in (1000, 0):
        at.number_input(key="repeats").set_value(repeats).run()
        assert [e.value for e in at.error] == [f"Invalid parameters, nothing launched: Repeat N times must be from 1 "
                                               f"to 50, got {repeats}"]
        assert at.button(key="launch").disabled


def test_launch_says_why_it_is_greyed_out_without_datasets(dash_env: DashEnv) -> None:
    at = run_page()
    assert not any("Pick at least one dataset" in c.value for c in at.caption)
    at.multiselect(key="datasets").set_value([]).run()
    assert at.button(key="launch").disabled
    assert any(c.value == "Pick at least one dataset to launch." for c in at.caption)


def test_an_idle_jobs_panel_keeps_looking(dash_env: DashEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel stopped refreshing with no job active: a run launched from another tab or the CLI stayed unseen."""
    import streamlit as st

    paces: list[object] = []
    real = st.fragment

    def fragment(func: object = None, *, run_every: object = None) -> object:
        paces.append(run_every)
        return real(func, run_every=run_every)

    monkeypatch.setattr(st, "fragment", fragment)
    at = run_page()
    assert not errors_and_exceptions(at)[1]
    assert paces and paces[-1] is not None and 1.0 < float(paces[-1]) <= 5.0  # type: ignore[arg-type]


def _cards(at: AppTest) -> dict[str, list[str]]:
    """Run id → what its keyed card holds (``markdown:…``, ``progress``, ``button:Cancel``, ``page_link``…)."""
    out: dict[str, list[str]] = {}

    def walk(node: object, card: str | None) -> None:
        proto = getattr(node, "proto", None)
        block_id = getattr(proto, "id", "") if node.__class__.__name__ == "Block" else ""
        if block_id and "job_" in block_id:
            card = block_id.split("job_", 1)[1]
            out.setdefault(card, [])
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child, card)
        elif card is not None:
            kind = node.__class__.__name__.lower()
            label = getattr(node, "label", None) or getattr(node, "value", None)
            out[card].append(f"{kind}:{label}" if isinstance(label, str) else kind)

    walk(at._tree, None)
    return out


@pytest.mark.timeout(180)
def test_each_job_card_is_keyed_and_an_ended_one_has_no_cancel(dash_env: DashEnv, fake_pipeline: Path) -> None:
    """When a run of a repeated launch ended, the cards moved and for 1–3 s the queued one showed the finished
    run's bars and a second Cancel: each card is a container keyed by its run, and an ended job has no Cancel;
    a card names the run's label and datasets."""
    at = run_page()
    at.number_input(key="repeats").set_value(2)
    at.text_input(key="label").input("two seeds")
    at.button(key="launch").click().run()
    from imc_core.runs import meta_seed

    # in the order they run (seed 0 first): their ids share the launch second, and a random suffix sorted the
    # queued one first half the time (the test then waited for a run that waits for the other)
    dirs = sorted((p for p in dash_env.runs.iterdir() if p.is_dir()),
                  key=lambda p: meta_seed(json.loads((p / "run.json").read_text())))
    assert len(dirs) == 2
    _wait_for(lambda: (dirs[0] / "argv.json").exists())
    at.run()
    cards = _cards(at)
    assert set(cards) >= {d.name for d in dirs}, cards
    first, second = (cards[d.name] for d in dirs)
    assert [c for c in first if c == "button:Cancel"] == ["button:Cancel"]
    assert [c for c in second if c == "button:Cancel"] == ["button:Cancel"]
    assert any(c.startswith("markdown:") and "two seeds" in c for c in first)
    assert any("datasets: every dataset (train): ds1" in plain(c) for c in first)  # (named: a tester)
    with open(fake_pipeline, "w") as go:
        go.write("go")
    _wait_for(lambda: (dirs[1] / "argv.json").exists())
    at.run()
    cards = _cards(at)
    first, second = (cards[d.name] for d in dirs)
    assert "button:Cancel" not in first and "progress" not in first and any(c.startswith("pagelink") for c in first)
    assert "button:Cancel" in second
    with open(fake_pipeline, "w") as go:
        go.write("go")
    _wait_for(lambda: not jobs.active_jobs(dash_env.runs))


def test_a_killed_run_says_where_it_stopped_and_stays_listed(tmp_path: Path) -> None:
    """A run whose process was killed read 'stopped · 3 stages, 2 from cache' with no link to its results, and a
    reload dropped it from the Jobs panel (it never writes a finished time)."""
    import time

    from imc_core.runs import RunWriter

    from dashboard import jobview

    run = tmp_path / "20260101-000000-default-kill"
    writer = RunWriter(run)
    import platform

    writer.write_meta(id=run.name, status="running", created="2026", host=platform.node(), pid=2**22 + 12345)
    (run / jobs.JOB_FILE).write_text(json.dumps({"command": ["x"], "pid": 2**22 + 12345, "started": time.time()}))
    writer.progress("ETs/pairs", 1, 1, force=True)
    writer.progress("ETs/features", 1, 1, cached=True, force=True)
    writer.progress("ETs/matching", 1, 1, force=True)
    job = jobs.job_status(run)
    assert job.status == "stopped"
    assert jobview.ended_summary(job) == "stopped after ETs/matching · 2 stages, 1 from cache"
    writer.progress("ETs/reconstruction", 2, 5, force=True)
    assert jobview.ended_summary(jobs.job_status(run)) == ("stopped during ETs/reconstruction (2/5) · 3 stages, 1 "
                                                           "from cache")
    assert [j.id for j in jobs.recent_jobs(tmp_path)] == [run.name]
    old = time.time() - jobs.RECENT_S - 60
    for name in ("run.json", "progress.json"):
        os.utime(run / name, (old, old))
    assert jobs.recent_jobs(tmp_path) == []


def test_a_run_that_never_started_says_so(tmp_path: Path) -> None:
    from imc_core.runs import RunWriter, record_failure

    from dashboard import jobview

    run = tmp_path / "20260101-000000-default-never"
    writer = RunWriter(run)
    writer.write_meta(id=run.name, status="queued", created="2026")
    writer.progress("queued", 0, 1, "waiting", force=True)
    record_failure(run, "no such dataset")
    job = jobs.job_status(run)
    assert job.status == "failed" and jobview.ended_summary(job) == "failed before it started"
    RunWriter(run).write_meta(id=run.name, status="cancelled", created="2026")
    assert jobview.ended_summary(jobs.job_status(run)) == "cancelled before it started"
