"""AppTest of the Compare page on runs that are not directly comparable: other data roots, dataset subsets,
failed runs, groups (one run of each side by default) and groups whose runs differ in config."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashkit import APP, DATASET, errors_and_exceptions, frame_with, plain

TIMEOUT = 30


def open_compare(runs: list[str]) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["page"] = "compare"
    at.query_params["runs"] = runs
    return at.run()


def no_errors(at: AppTest) -> None:
    errors, exceptions = errors_and_exceptions(at)
    assert not exceptions, exceptions
    assert not errors, errors


#: columns that tell the Compare page's tables apart (AppTest does not report a dataframe's key)
TABLES = {"runs_status": ("aggregated",), "headline": ("arm", "-dataset"), "per_dataset": ("arm", "dataset"),
          "per_scene": ("scene", "-image"), "delta_table": ("pass_change",), "config_diff": ("key", "vs"),
          "spread": ("key", "-vs")}


def _is(frame: pd.DataFrame, table: str) -> bool:
    cols = set(frame.columns)
    return all((c[1:] not in cols) if c.startswith("-") else (c in cols) for c in TABLES[table])


def table_element(at: AppTest, table: str) -> Any:
    for d in at.dataframe:
        if _is(d.value, table):
            return d
    raise AssertionError(f"no {table} table")


def frame_by_key(at: AppTest, table: str) -> pd.DataFrame:
    return table_element(at, table).value


def warnings(at: AppTest) -> str:
    return "\n".join(plain(w.value) for w in at.warning)


def _edit_json(path: Path, change: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def move_to(run: Path, root: Path, dataset: str) -> None:
    """Make a fabricated run look like it ran on ``dataset`` of another data root."""
    def meta(m: dict) -> None:
        m["data_root"], m["datasets"] = str(root), [dataset]

    def scores(s: dict) -> None:
        s["datasets"] = {dataset: s["datasets"][DATASET]}

    _edit_json(run / "run.json", meta)
    _edit_json(run / "scores.json", scores)
    for name in ("per_image.csv", "scenes.csv"):
        frame = pd.read_csv(run / name)
        frame["dataset"] = dataset
        frame.to_csv(run / name, index=False)


def add_dataset(run: Path, dataset: str, score: float) -> None:
    """Give a fabricated run a second dataset (same images, all passing) scoring ``score``; overall = mean."""
    def scores(s: dict) -> None:
        s["datasets"][dataset] = {"score": score, "mAA": score, "clusterness": 100.0}
        per = s["datasets"].values()
        for m in ("score", "mAA", "clusterness"):
            s[m] = sum(v[m] for v in per) / len(per)

    def meta(m: dict) -> None:
        m["datasets"] = [*m["datasets"], dataset]

    _edit_json(run / "scores.json", scores)
    _edit_json(run / "run.json", meta)
    for name in ("per_image.csv", "scenes.csv"):
        frame = pd.read_csv(run / name)
        extra = frame[frame["dataset"] == DATASET].copy()
        extra["dataset"] = dataset
        pd.concat([frame, extra]).to_csv(run / name, index=False)


def test_runs_on_different_data_shows_no_deltas(make_run: Callable[..., Path], tmp_path: Path) -> None:
    make_run("ets-run", score=70.0)
    move_to(make_run("synth-run", score=100.0), tmp_path / "synthetic", "synth_boxes")
    at = open_compare(["ets-run", "synth-run"])
    no_errors(at)
    text = warnings(at)
    assert "Different data roots" in text and str(tmp_path / "synthetic") in text
    assert "synth_boxes" in text and f"{DATASET} (" in text and "cannot be compared" in text
    head = frame_by_key(at, "headline")
    assert "Δ score" not in head.columns and "verdict" not in head.columns
    per_ds = frame_by_key(at, "per_dataset")
    assert "Δ score" not in per_ds.columns and set(per_ds["verdict"]) == {"not in every run"}
    assert not any(_is(d.value, "delta_table") for d in at.dataframe)  # no per-image gains / losses
    infos = " ".join(i.value for i in at.info)
    assert "ets-run and synth-run share no scored dataset: no per-image gains or losses." in infos
    assert text.count("Different data roots") == 1  # said once, at the top


def test_subset_of_datasets_compares_on_the_shared_ones(make_run: Callable[..., Path]) -> None:
    add_dataset(make_run("all", score=60.0), "ds2", 100.0)  # overall 80 over ds1 + ds2
    make_run("part", score=62.0, failing=("s1_1.png",))  # ds1 only
    at = open_compare(["all", "part"])
    no_errors(at)
    text = warnings(at)
    assert "ds2 only in all" in text and "**ds1**" in text
    head = frame_by_key(at, "headline").set_index("arm")
    assert head.loc["all", "score"] == pytest.approx(60.0)  # ds1 only, not the run's own overall of 80
    assert head.loc["part", "Δ score"] == pytest.approx(2.0)  # not 62 - 80
    per_ds = frame_by_key(at, "per_dataset")
    assert per_ds.loc[per_ds["dataset"] == "ds2", "verdict"].tolist() == ["not in every run"]
    assert per_ds.loc[per_ds["dataset"] == "ds2", "Δ score"].isna().all()
    # cells without a value read "—", not Streamlit's grey "None"
    assert {table_element(at, t).proto.placeholder for t in ("headline", "per_dataset")} == {"—"}
    delta = frame_by_key(at, "delta_table")
    assert set(delta["dataset"]) == {DATASET}  # no ds2 image counted as lost
    assert delta.set_index("image").loc["s1_1.png", "pass_change"] == "lost"
    assert at.selectbox(key="scene_dataset").options == [DATASET]


def test_failed_runs_are_listed_but_never_aggregated_nor_reference(make_run: Callable[..., Path]) -> None:
    failed = make_run("broken", status="failed")
    for name in ("scores.json", "per_image.csv", "scenes.csv"):
        (failed / name).unlink()
    make_run("stale", status="cancelled", score=99.0)  # scores.json left from an earlier attempt
    for i, s in enumerate((60.0, 60.5)):
        make_run(f"base-{i}", score=s, group="base", seed=i, failing=("s2_3.png",))
    for i, s in enumerate((70.0, 70.5)):
        make_run(f"new-{i}", score=s, group="new", seed=i, failing=("s1_1.png",))
    at = open_compare(["broken", "base-0", "base-1", "stale", "new-0", "new-1"])
    no_errors(at)
    status = frame_by_key(at, "runs_status").set_index("run")
    assert status.loc["broken", "status"] == "failed" and status.loc["broken", "aggregated"].startswith("no")
    assert status.loc["stale", "aggregated"] == "no (status cancelled)"
    assert status.loc["base-0", "aggregated"] == "yes"
    infos = " ".join(i.value for i in at.info)
    assert "broken (status failed)" in infos and "stale (status cancelled)" in infos
    assert "the reference is group: base" in infos
    head = frame_by_key(at, "headline")
    # what answers "did it help?" first: at 1,400 px the verdict sat past the right edge
    # (seeds 0 and 1 on both sides, each 10 points up: no spread of the differences, so no p, interval or test)
    assert list(head.columns[:6]) == ["arm", "runs", "score", "Δ score", "verdict", "score ± std"]
    head = head.set_index("arm")
    assert list(head.index) == ["group: base", "group: new"]  # no row for broken / stale
    assert head.loc["group: base", "verdict"] == "reference"
    assert head.loc["group: new", "verdict"] == "differs by the same at every seed; noise unknown"
    assert head.loc["group: new", "Δ score"] == pytest.approx(10.0)
    # per-image: one run of each group by default, not two seeds of the reference group
    assert at.selectbox(key="delta_a").value == "base-0" and at.selectbox(key="delta_b").value == "new-0"
    changes = frame_by_key(at, "delta_table").set_index("image")["pass_change"]
    assert changes.to_dict() == {"s1_1.png": "lost", "s2_3.png": "gained"}
    captions = " ".join(c.value for c in at.caption)
    assert r"group\: base: base-0 (first of 2 runs)" in captions
    # per-scene means are shown rounded like the other tables
    per_scene = table_element(at, "per_scene")
    formats = {k: v.get("type_config", {}).get("format") for k, v in json.loads(per_scene.proto.columns).items()}
    assert formats["group: base"] == "%.2f" and formats["Δ group: new"] == "%.2f"


def test_group_with_mixed_configs_is_flagged(make_run: Callable[..., Path]) -> None:
    make_run("g-0", group="g", seed=0)
    make_run("g-1", group="g", seed=1, config_overrides={"features": {"max_keypoints": 999}})
    make_run("h-0", group="h", seed=0)
    make_run("h-1", group="h", seed=1)  # seeds differ: expected, not flagged
    at = open_compare(["g-0", "g-1", "h-0", "h-1"])
    no_errors(at)
    text = warnings(at)
    assert "group: g: its runs differ in config beyond the seed (features.max_keypoints)" in text
    assert "group: h" not in text
    spread = frame_by_key(at, "spread")
    assert list(spread["key"]) == ["features.max_keypoints"] and list(spread["g-1"]) == ["999"]


def test_comparable_runs_show_no_warning(make_run: Callable[..., Path]) -> None:
    make_run("a", score=60.0)
    make_run("b", score=62.0)
    at = open_compare(["a", "b"])
    no_errors(at)
    assert not at.warning and not at.info
    assert frame_by_key(at, "headline").set_index("arm").loc["b", "Δ score"] == pytest.approx(2.0)


def test_a_copy_of_the_same_data_compares_as_one_root(make_run: Callable[..., Path], tmp_path: Path) -> None:
    """A teammate's bundle records the teammate's path: with the same ground-truth hashes it is the same data."""
    mine, theirs = make_run("mine", score=60.0), make_run("theirs", score=64.0)
    copy = tmp_path / "teammate" / "data"
    copy.mkdir(parents=True)
    _edit_json(mine / "run.json", lambda m: m.update(gt_hashes={DATASET: "abc"}))
    _edit_json(theirs / "run.json", lambda m: m.update(data_root=str(copy), gt_hashes={DATASET: "abc"},
                                                      label="teammate's try"))
    at = open_compare(["mine", "theirs"])
    no_errors(at)
    runs = frame_by_key(at, "runs_status").set_index("run")
    assert runs.loc["theirs", "label"] == "teammate's try" and runs.loc["theirs", "data root"] == str(copy)
    assert "Different data roots" not in warnings(at)
    assert any("Same ground truth in another folder" in c.value and str(copy) in c.value for c in at.caption)
    head = frame_by_key(at, "headline").set_index("arm")
    assert head.loc["teammate's try (theirs)", "Δ score"] == pytest.approx(4.0)  # a lone run: label (run id)
    # other ground truth under the same dataset name: still two roots, nothing compared
    _edit_json(theirs / "run.json", lambda m: m.update(gt_hashes={DATASET: "def"}))
    at = open_compare(["mine", "theirs"])
    assert "Different data roots" in warnings(at) and "cannot be compared" in warnings(at)


def test_a_run_without_gt_hashes_gets_them_from_its_data_root(make_run: Callable[..., Path], tmp_path: Path) -> None:
    """Runs made before ``gt_hashes`` existed: their data root, when it is here, gives the hashes."""
    from imc_core.data import DataRoot, ground_truth_hashes

    old, theirs = make_run("old", score=60.0), make_run("theirs", score=64.0)
    root = DataRoot(json.loads((old / "run.json").read_text())["data_root"])
    real = ground_truth_hashes(root.labels, root.thresholds, [DATASET])
    copy = tmp_path / "teammate" / "data"
    copy.mkdir(parents=True)
    _edit_json(old / "run.json", lambda m: m.pop("gt_hashes", None))
    _edit_json(theirs / "run.json", lambda m: m.update(data_root=str(copy), gt_hashes=real))
    at = open_compare(["old", "theirs"])
    no_errors(at)
    assert "Different data roots" not in warnings(at)
    assert frame_by_key(at, "headline").set_index("arm").loc["theirs", "Δ score"] == pytest.approx(4.0)
    _edit_json(theirs / "run.json", lambda m: m.update(gt_hashes={DATASET: "other ground truth"}))
    assert "Different data roots" in warnings(open_compare(["old", "theirs"]))


def test_config_diff_between_groups_leaves_the_seed_out(make_run: Callable[..., Path]) -> None:
    for i in range(2):
        make_run(f"a-{i}", group="a", seed=i)
        make_run(f"b-{i}", group="b", seed=5 + i)
    at = open_compare(["a-0", "a-1", "b-0", "b-1"])
    no_errors(at)
    assert any("Identical configs." in c.value for c in at.caption)
    assert any("The seed is left out" in c.value for c in at.caption)


def _camera_views(at: AppTest) -> list[str]:
    """Titles of the 3-D camera figures on the page (the score bars are a plotly chart too)."""
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return [f["layout"]["title"]["text"] for f in figs if any(t.get("type") == "scatter3d" for t in f["data"])]


def test_any_number_of_runs_can_be_drawn_side_by_side(make_run: Callable[..., Path]) -> None:
    ids = [f"r{i}" for i in range(5)]
    for i, run_id in enumerate(ids):
        make_run(run_id, score=60.0 + i)
    at = open_compare(ids)
    no_errors(at)
    assert not _camera_views(at)  # nothing drawn until asked
    at.toggle(key="show_3d").set_value(True).run()
    no_errors(at)
    assert at.multiselect(key="draw_runs").value == ids[:3]
    assert len(_camera_views(at)) == 3
    at.multiselect(key="draw_runs").set_value(ids).run()
    no_errors(at)
    assert len(_camera_views(at)) == 5  # two rows: three views, then two
    assert [c.value for c in at.caption if c.value in ids] == ids
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]  # coloured as the metric counts passes
    bins = {t["name"] for f in figs for t in f["data"] if t.get("name", "").startswith("pred: ")}
    assert bins and all("passes" in b for b in bins), bins
    at.multiselect(key="runs").set_value(ids[2:]).run()  # runs left out of the comparison leave the picker too
    no_errors(at)
    assert at.multiselect(key="draw_runs").value == ids[2:]
    assert len(_camera_views(at)) == 3


def test_a_link_naming_runs_that_are_not_here_says_so(make_run: Callable[..., Path]) -> None:
    """The picker silently dropped them, and the reference became another run."""
    make_run("a", score=60.0)
    make_run("b", score=62.0)
    at = open_compare(["ghost-run", "a", "b"])
    no_errors(at)
    assert "does not hold: ghost-run. Import their bundles" in warnings(at)
    assert at.multiselect(key="runs").value == ["a", "b"]
    at.run()  # still said on the next rerun (the URL no longer has it)
    assert "ghost-run" in warnings(at)
    at.multiselect(key="runs").set_value(["b", "a"]).run()  # the user moved on
    assert "ghost-run" not in warnings(at)


def test_importing_a_run_the_link_named_adds_it_to_the_comparison(make_run: Callable[..., Path],
                                                                  tmp_path: Path) -> None:
    """The link's warning said to import the bundle, then pick the run; once imported, the warning was gone and
    nothing said which run to pick."""
    import shutil

    from imc_core.runs import export_bundle

    make_run("a", score=60.0)
    make_run("b", score=62.0)
    gone = make_run("c", score=64.0)
    bundle = export_bundle(gone, tmp_path / "c.zip")
    shutil.rmtree(gone)
    at = open_compare(["a", "c", "b"])
    no_errors(at)
    assert "does not hold: c." in warnings(at)
    at.file_uploader(key="bundle").upload("c.zip", bundle.read_bytes(), "application/zip").run()
    no_errors(at)
    assert at.multiselect(key="runs").value == ["a", "b", "c"]
    assert [m.value for m in at.success] == ["Imported as c, and added to the runs compared, as the link named it"]
    assert "does not hold" not in warnings(at)


def test_a_hand_written_link_may_list_runs_with_commas(make_run: Callable[..., Path]) -> None:
    """``runs=a,b`` (the page writes runs=a&runs=b) was read as one unknown run named "a,b"."""
    make_run("a", score=60.0)
    make_run("b", score=62.0)
    at = open_compare(["b, a", "ghost-run"])
    no_errors(at)
    assert at.multiselect(key="runs").value == ["b", "a"]
    assert "does not hold: ghost-run." in warnings(at)
    assert "b, a" not in warnings(at)


def test_a_seed_run_twice_in_a_group_counts_once(make_run: Callable[..., Path]) -> None:
    """A second launch of seed 3 in a group (a cache hit, same poses) counted as a third repeat: "runs 3", a
    smaller std and a stronger noise verdict."""
    for i, s in enumerate((60.0, 64.0)):
        make_run(f"a-{i}", score=s, group="a", seed=i)
    make_run("b-3", score=70.0, group="b", seed=3)
    make_run("b-4", score=74.0, group="b", seed=4)
    make_run("b-3again", score=70.0, group="b", seed=3)
    make_run("b-5other", score=90.0, group="b", seed=5, config_overrides={"features": {"max_keypoints": 999}})
    at = open_compare(["a-0", "a-1", "b-3", "b-4", "b-3again"])
    no_errors(at)
    assert [w for w in warnings(at).split("\n") if "seed 3" in w] == [
        "group: b: seed 3 was run 2 times with one config and a deterministic mapper (b-3, b-3again): the same "
        "measurement, counted once (b-3)."]
    head = frame_with(at, "verdict").set_index("arm")
    assert head.loc["group: b", "runs"] == 2 and head.loc["group: b", "score"] == pytest.approx(72.0)
    status = frame_with(at, "aggregated").set_index("run")
    assert status.loc["b-3again", "aggregated"] == "no (seed 3 again, as b-3)"
    assert status.loc["b-3again", "score"] == pytest.approx(70.0)  # its score is real: shown, not blank
    # another config under the same seed is another experiment: kept (and the mixed group is flagged as before)
    from dashboard import state
    from dashboard.views.compare import repeated_seeds

    views = [state.run_view(r) for r in ("b-3", "b-3again")]
    twin_cfg = state.run_view("b-5other")
    twin_cfg.meta["seed"] = 3
    arms, twice = repeated_seeds({"group: b": [*views, twin_cfg]})
    assert [rv.id for rv in arms["group: b"]] == ["b-3", "b-5other"] and twice == [("group: b", 3, ["b-3", "b-3again"])]


def test_a_stopped_run_of_a_seed_does_not_drop_its_finished_twin(make_run: Callable[..., Path]) -> None:
    """A run stopped by Ctrl-C and launched again under the same seed: the stopped one, picked first, kept the
    seed's place, the finished one was "counted once" with it, and the group lost its only measurement of it."""
    make_run("a-0", score=60.0, group="a", seed=0)
    make_run("a-1", score=64.0, group="a", seed=1)
    (make_run("b-3stopped", score=70.0, group="b", seed=3, status="stopped") / "scores.json").unlink()
    make_run("b-3", score=70.0, group="b", seed=3)
    make_run("b-4", score=74.0, group="b", seed=4)
    at = open_compare(["a-0", "a-1", "b-3stopped", "b-3", "b-4"])
    no_errors(at)
    assert "counted once" not in warnings(at)
    head = frame_with(at, "verdict").set_index("arm")
    assert head.loc["group: b", "runs"] == 2 and head.loc["group: b", "score"] == pytest.approx(72.0)
    assert "b-3stopped (status stopped)" in " ".join(i.value for i in at.info)


def test_runs_made_by_different_code_are_said_so_and_never_twins(make_run: Callable[..., Path]) -> None:
    """Runs of one variant from before and after an upgrade: same config and seed, "counted once", and no word that
    the code differed (a default that changed moves the score where the config diff shows nothing)."""
    import json

    make_run("a-0", score=60.0, group="a", seed=0)
    make_run("a-1", score=64.0, group="a", seed=1)
    for name, score, code in (("b-old", 66.0, None), ("b-new", 70.0, {"version": "0.1.0", "commit": "abc123def456"})):
        run = make_run(name, score=score, group="b", seed=3)
        meta = json.loads((run / "run.json").read_text())
        meta["code"] = code
        (run / "run.json").write_text(json.dumps(meta))
    at = open_compare(["a-0", "a-1", "b-old", "b-new"])
    no_errors(at)
    note = " ".join(plain(i.value) for i in at.info)
    assert ("made by different imc-lab code" in note and "0.1.0 at abc123def456: b-new" in note
            and "not recorded (an imc-lab from before runs said): a-0, a-1, b-old" in note), note
    assert "counted once" not in warnings(at)
    assert frame_with(at, "verdict").set_index("arm").loc["group: b", "runs"] == 2
    at = open_compare(["a-0", "a-1"])
    assert "different imc-lab code" not in " ".join(i.value for i in at.info)


def test_a_run_whose_scores_name_no_dataset_is_left_out_not_blocking(make_run: Callable[..., Path]) -> None:
    """scores.json with its overall alone: "No dataset is scored by every run: these runs cannot be compared"."""
    import json

    make_run("a", score=60.0)
    make_run("b", score=62.0)
    (make_run("c", score=64.0) / "scores.json").write_text(json.dumps({"score": 64.0, "mAA": 70.0, "clusterness": 90.0}))
    at = open_compare(["a", "b", "c"])
    no_errors(at)
    assert "cannot be compared" not in warnings(at)
    assert "c (scores.json has no per-dataset scores)" in " ".join(i.value for i in at.info)
    assert set(frame_with(at, "verdict")["arm"]) == {"a", "b"}


def test_an_unreadable_config_is_named_not_diffed(make_run: Callable[..., Path]) -> None:
    """Its config read as {} and the diff listed every key of the other run as removed."""
    make_run("a", score=60.0)
    (make_run("b", score=62.0) / "config.toml").write_text("[features\nbroken")
    at = open_compare(["a", "b"])
    assert not errors_and_exceptions(at)[1]
    text = warnings(at)
    assert "b: file(s) that cannot be read" in text and "cannot read TOML" in text
    assert "Config diff leaves out b" in text
    assert not any(_is(d.value, "config_diff") for d in at.dataframe)


def test_an_outside_submission_is_left_out_of_the_config_diff(make_run: Callable[..., Path]) -> None:
    """A run of `add-submission` has no pipeline config: its diff listed every key as removed, each value "None"."""
    import tomli_w

    make_run("a", score=60.0)
    b = make_run("b", score=62.0, config_overrides={"matching": {"min_matches": 40}})
    with open(b / "config.toml", "a") as f:
        f.write("\n[extra]\nonly_in_b = 1\n")  # a key run a lacks: its cell there reads "—"
    c = make_run("c", score=61.0)
    meta = json.loads((c / "run.json").read_text())
    (c / "run.json").write_text(json.dumps({**meta, "variant": "submission", "source": "mine.csv"}))
    (c / "config.toml").write_text(tomli_w.dumps({"meta": {"variant": "submission", "source": "mine.csv"}}))
    at = open_compare(["a", "b", "c"])
    no_errors(at)
    assert any(x.value.startswith("Config diff leaves out c: scored from a submission made outside imc-lab")
               for x in at.caption)
    (diff,) = [d.value for d in at.dataframe if _is(d.value, "config_diff")]
    assert set(diff["vs"]) == {"b"} and "None" not in set(diff.to_numpy().ravel())
    assert diff.set_index("key").loc["extra.only_in_b", "a"] == "—"
    # a key one config lacks is another imc-lab version's, not a value left out
    assert any(x.value.startswith("A key only one side's config holds (added, removed) comes from another version")
               for x in at.caption)
    assert any(x.value == "Configs compared: a; b." for x in at.caption)  # not c, which has no config
    two = open_compare(["a", "c"])
    no_errors(two)
    assert any(x.value == "Only one imc-lab config: nothing to diff." for x in two.caption)
    assert not any(x.value == "Identical configs." for x in two.caption)
    # the submission picked first ("Select all" puts the newest first): the others are still diffed, against the
    # first run with a config (nothing was diffed, and the groups' spreads were not shown)
    first = open_compare(["c", "a", "b"])
    no_errors(first)
    (diff,) = [d.value for d in first.dataframe if _is(d.value, "config_diff")]
    assert set(diff["vs"]) == {"b"} and "matching.min_matches" in set(diff["key"])
    assert any(x.value == "**Config diff** (reference: a)" for x in first.markdown)


def test_lone_runs_are_named_by_their_label_and_pass_changes_are_counted(make_run: Callable[..., Path]) -> None:
    """Outside submissions showed as bare run ids in the arms and the chart legend, though they had labels; the
    per-image line counted only images passing some threshold, not one whose passes went from 4 to 1."""
    make_run("base", score=60.0)
    moved = make_run("moved", score=55.0)
    _edit_json(moved / "run.json", lambda m: m.update(label="perturbed"))
    pi = pd.read_csv(moved / "per_image.csv")
    pi.loc[pi["image"] == "s1_1.png", [f"pass_{k}" for k in (3, 4, 5)]] = False
    pi.to_csv(moved / "per_image.csv", index=False)
    at = open_compare(["base", "moved"])
    no_errors(at)
    assert list(frame_by_key(at, "headline")["arm"]) == ["base", "perturbed (moved)"]
    legends = [[t.get("name") for t in json.loads(c.proto.spec)["data"]] for c in at.get("plotly_chart")]
    assert ["base", "perturbed (moved)"] in legends  # the score bars
    line = next(c.value for c in at.caption if c.value.startswith("images passing some threshold"))
    assert "both: 8 · neither: 2" in line and "thresholds passed: more for 0, fewer for 1" in line
    assert at.selectbox(key="delta_b").format_func("moved") == "perturbed (moved)"


def test_the_per_image_pair_follows_the_runs_compared_and_the_link(make_run: Callable[..., Path]) -> None:
    """Runs added one at a time: the pickers kept the pair chosen among the first ones (two seeds of one group),
    and the share link held no pair, so a teammate saw another one."""
    for i, s in enumerate((60.0, 60.5)):
        make_run(f"base-{i}", score=s, group="base", seed=i, failing=("s2_3.png",))
        make_run(f"new-{i}", score=s + 10, group="new", seed=i, failing=("s1_1.png",))
    at = open_compare(["base-0", "base-1"])
    no_errors(at)
    assert (at.selectbox(key="delta_a").value, at.selectbox(key="delta_b").value) == ("base-0", "base-1")
    at.multiselect(key="runs").select("new-0").select("new-1").run()
    no_errors(at)
    assert (at.selectbox(key="delta_a").value, at.selectbox(key="delta_b").value) == ("base-0", "new-0")
    at.selectbox(key="delta_b").select("new-1").run()  # a pick of one's own stays while the runs stay
    assert at.selectbox(key="delta_b").value == "new-1"
    share = "\n".join(c.value for c in at.sidebar.code)
    assert "delta_a=base-0" in share and "delta_b=new-1" in share
    linked = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    linked.query_params.update(page="compare", runs=["base-0", "base-1", "new-0", "new-1"], delta_a="base-1",
                               delta_b="new-1")
    linked.run()
    no_errors(linked)
    assert (linked.selectbox(key="delta_a").value, linked.selectbox(key="delta_b").value) == ("base-1", "new-1")
    # the address bar holds the pair on screen (a reload showed the link's pair), and fewer than two runs none
    linked.selectbox(key="delta_b").select("new-0").run()
    assert (linked.query_params["delta_a"], linked.query_params["delta_b"]) in (("base-1", "new-0"),
                                                                                 (["base-1"], ["new-0"]))
    linked.multiselect(key="runs").set_value(["base-0"]).run()
    assert "delta_a" not in linked.query_params and "delta_a=" not in "\n".join(c.value for c in linked.sidebar.code)


def test_a_share_link_brings_back_the_per_scene_dataset_and_the_3d_views(make_run: Callable[..., Path],
                                                                         dash_env: Any) -> None:
    """The link named the runs, the 3-D scene and the per-image pair, not the per-scene table's dataset, the 3-D
    views drawn (off again) nor "Changed only"."""
    for name, score in (("a", 60.0), ("b", 62.0), ("c", 64.0)):
        add_dataset(make_run(name, score=score), "ds2", score - 10)
    at = open_compare(["a", "b", "c"])
    no_errors(at)
    picker = at.selectbox(key="scene_dataset")
    other = next(d for d in picker.options if d != picker.value)  # not the one shown first
    at.selectbox(key="scene_dataset").select(other).run()
    at.toggle(key="show_3d").set_value(True).run()
    at.multiselect(key="draw_runs").set_value(["b", "c"]).run()
    at.checkbox(key="delta_changed").uncheck().run()
    no_errors(at)
    link = "\n".join(c.value for c in at.sidebar.code)
    for part in (f"scene_dataset={other}", "show_3d=True", "draw_runs=b&draw_runs=c", "delta_changed=False"):
        assert part in link, (part, link)
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(link.strip()).query)
    opened = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key, values in query.items():
        opened.query_params[key] = values if len(values) > 1 else values[0]
    opened.run()
    no_errors(opened)
    assert opened.selectbox(key="scene_dataset").value == other
    assert opened.toggle(key="show_3d").value is True
    assert opened.multiselect(key="draw_runs").value == ["b", "c"]
    assert opened.checkbox(key="delta_changed").value is False


def test_a_whole_group_is_added_at_once(make_run: Callable[..., Path]) -> None:
    """The run picker lists bare ids: picking a group's seeds one by one needed the History beside."""
    make_run("lone", score=50.0)
    for i in range(3):
        make_run(f"g-{i}", score=60.0 + i, group="def3", seed=i)
    at = open_compare(["lone"])
    no_errors(at)
    picker = at.selectbox(key="add_group")
    assert picker.options == ["def3 (3 runs)"]
    picker.select_index(0).run()
    at.button(key="add_group_go").click().run()
    no_errors(at)
    chosen = at.multiselect(key="runs").value
    assert chosen == ["lone", "g-0", "g-1", "g-2"]  # the reference stays first; the group in seed order
    assert at.selectbox(key="add_group").value is None and at.button(key="add_group_go").disabled
    assert "group: def3" in list(frame_by_key(at, "headline")["arm"])


def test_the_run_picker_shows_labels_keeps_ids_in_the_link_and_the_picks_across_pages(
        make_run: Callable[..., Path]) -> None:
    """The Compare picker listed bare ids (a picker bound to the URL would write what it shows into the link), and
    the runs compared were gone after a visit to another page."""
    run = make_run("run-l", score=61.5, group="sweep")
    _edit_json(run / "run.json", lambda meta: meta.update(label="fewer keypoints"))
    make_run("run-m", score=40.0)
    make_run("run-n", score=45.0)
    at = open_compare(["run-m", "run-l"])
    no_errors(at)
    picker = at.multiselect(key="runs")
    assert picker.value == ["run-m", "run-l"]
    assert set(picker.options) == {"run-l · fewer keypoints · sweep · 61.50", "run-m · 40.00", "run-n · 45.00"}
    assert at.query_params["runs"] == ["run-m", "run-l"]  # the link holds the ids
    picker.set_value(["run-m", "run-l", "run-n"]).run()
    no_errors(at)
    assert at.query_params["runs"] == ["run-m", "run-l", "run-n"]
    assert "runs=run-m&runs=run-l&runs=run-n" in "\n".join(c.value for c in at.sidebar.code)  # the share link
    at.switch_page("views/results.py").run()  # another page: the picker's state is dropped
    at.query_params.pop("runs", None)
    at.switch_page("views/compare.py").run()
    no_errors(at)
    assert at.multiselect(key="runs").value == ["run-m", "run-l", "run-n"]
    at.multiselect(key="runs").set_value([]).run()  # cleared by the user: stays cleared
    at.run()
    assert at.multiselect(key="runs").value == []


def test_per_scene_table_says_which_scene_moved_beyond_noise(make_run: Callable[..., Path]) -> None:
    """The per-scene table gave Δ without any noise estimate: a researcher could not tell which scene's change was
    real. With repeats, each scene gets the verdict on its own mAA (paired by seed here: seeds 0–2 on both sides)."""
    for i, (a, b) in enumerate(((60.0, 62.0), (60.4, 62.5), (59.8, 61.7))):
        make_run(f"base-{i}", score=a, group="base", seed=i)
        make_run(f"new-{i}", score=b, group="new", seed=i, config_overrides={"features": {"max_keypoints": 999}})
    at = open_compare([*(f"base-{i}" for i in range(3)), *(f"new-{i}" for i in range(3))])
    no_errors(at)
    scenes = frame_by_key(at, "per_scene").set_index("scene")
    assert list(scenes.columns) == ["group: base", "group: new", "Δ group: new", "verdict group: new"]
    assert scenes["Δ group: new"].to_list() == pytest.approx([2.0, 2.0])
    assert set(scenes["verdict group: new"]) == {"significantly better"}
    make_run("one", score=60.0)
    make_run("two", score=61.0)
    at = open_compare(["one", "two"])  # single runs: no verdict to give, no column of "unknown"
    no_errors(at)
    assert list(frame_by_key(at, "per_scene").columns) == ["scene", "one", "two", "Δ two"]


def test_side_by_side_draws_one_run_of_each_arm_by_default(make_run: Callable[..., Path]) -> None:
    """The first three runs were drawn: three seeds of the reference group, and not the run compared with them."""
    for i in range(3):
        make_run(f"base-{i}", score=60.0 + i, group="base", seed=i)
    make_run("new", score=70.0)
    at = open_compare(["base-0", "base-1", "base-2", "new"])
    at.toggle(key="show_3d").set_value(True).run()
    no_errors(at)
    assert at.multiselect(key="draw_runs").value == ["base-0", "new"]
    assert len(_camera_views(at)) == 2
    assert r"base-0 (group\: base)" in [c.value for c in at.caption]


def test_per_scene_headers_are_not_cut() -> None:
    """Arm labels embed the run id: at 70 px the per-scene headers read "ets 512kp (20261128-0257…"."""
    from dashboard.views.compare import per_scene_columns

    arm = "ets 512kp (20261128-025731-default-a1b2)"
    table = pd.DataFrame({"scene": ["s1"], "group: base": [50.0], arm: [52.0], f"Δ {arm}": [2.0],
                          f"verdict {arm}": ["not significant"]})
    cols = per_scene_columns(table)
    assert "scene" not in cols and cols["group: base"]["width"] == 7 * len("group: base") + 24
    assert cols[arm]["width"] == min(260, 7 * len(arm) + 24) > 200 and cols[f"verdict {arm}"]["width"] == 260
    assert cols[arm]["type_config"]["format"] == "%.2f"
    assert cols[arm]["help"] == arm and cols[f"verdict {arm}"]["help"] == f"verdict {arm}"  # (cut at 260 px)


def test_the_3d_views_start_on_the_per_scene_tables_dataset(make_run: Callable[..., Path]) -> None:
    """The 3-D views started on the first run's first dataset, one the other run had not scored, while the per-scene
    table above showed the dataset both runs scored."""
    first = make_run("a", score=60.0)
    add_dataset(first, "ds2", 50.0)
    _edit_json(first / "run.json", lambda meta: meta.update(datasets=["ds2", DATASET]))
    make_run("b", score=62.0)
    at = open_compare(["a", "b"])
    no_errors(at)
    assert at.selectbox(key="scene_dataset").value == DATASET
    assert at.selectbox(key="dataset").options == ["ds2", DATASET]
    assert at.selectbox(key="dataset").value == DATASET
    # and they stay together when the table moves to another dataset (they parted)
    second = make_run("c", score=61.0)
    add_dataset(second, "ds2", 51.0)
    add_dataset(make_run("d", score=63.0), "ds2", 52.0)
    at = open_compare(["c", "d"])
    at.selectbox(key="scene_dataset").select("ds2").run()
    no_errors(at)
    assert at.selectbox(key="dataset").value == "ds2"
    at.selectbox(key="dataset").select(DATASET).run()  # (the 3-D views' own pick stays while the table's does)
    assert at.selectbox(key="dataset").value == DATASET


def test_a_link_naming_a_run_twice_says_it_is_compared_once(make_run: Callable[..., Path]) -> None:
    make_run("a", score=60.0)
    make_run("b", score=62.0)
    at = open_compare(["a", "b", "a", "gone", "gone"])  # (a run not here, named twice: not compared at all)
    no_errors(at)
    assert at.multiselect(key="runs").value == ["a", "b"]
    said = [plain(c.value) for c in at.caption if "more than once" in c.value]
    assert said == ["The link names a more than once: each run is compared once."]
    at.multiselect(key="runs").set_value(["b", "a"]).run()  # another pick: said enough
    assert not [c for c in at.caption if "more than once" in c.value]


def test_a_page_switch_drops_the_other_pages_query(make_run: Callable[..., Path]) -> None:
    """Results' ?run= stayed in Compare's address bar (a link copied from it named a run Compare did not show)."""
    make_run("a", score=60.0)
    make_run("b", score=62.0)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(page="results", run="a")
    at.run()
    no_errors(at)
    assert at.query_params["run"] in ("a", ["a"])
    at.query_params.update(runs=["a", "b"])
    at.switch_page("views/compare.py").run()
    no_errors(at)
    assert "run" not in at.query_params and at.multiselect(key="runs").value == ["a", "b"]
    at.switch_page("views/results.py").run()
    no_errors(at)
    assert "runs" not in at.query_params and at.selectbox(key="run").value == "a"
    # Compare with no runs: its link names no dataset (Results' was in it, a view the link did not draw)
    at.query_params.pop("run", None)
    at.switch_page("views/compare.py").run()
    at.multiselect(key="runs").set_value([]).run()
    no_errors(at)
    link = "\n".join(c.value for c in at.sidebar.code)
    assert "page=compare" in link and "dataset=" not in link and "scene=" not in link, link


def test_the_test_column_says_when_a_paired_test_left_runs_out() -> None:
    """One arm ran a fourth seed: the three shared seeds are paired, and the column says a run was left out (the
    Δ and the runs compared are then the pairs', not the arms' means)."""
    from dashboard.views.compare import _test_label
    from imc_core.analysis import compare_repeats

    a, b = [70.0, 76.19, 74.70], [68.35, 73.17, 73.17, 71.5]
    assert _test_label(compare_repeats(a, b, [0, 1, 2], [0, 1, 2, 3])) == "paired t, 3 seeds (1 unpaired run left out)"
    assert _test_label(compare_repeats(a, b[:3], [0, 1, 2], [0, 1, 2])) == "paired t, 3 seeds"
    assert _test_label(compare_repeats(a, b)) == "Welch t"
    assert _test_label(compare_repeats(a[:1], b[:1])) is None


def test_a_link_naming_a_run_with_markup_shows_it_as_text(make_run: Callable[..., Path]) -> None:
    """A crafted share link's run id `![x](http://…)` was shown as an image the browser fetched."""
    make_run("a", score=60.0)
    make_run("b", score=62.0)
    at = open_compare(["![x](http://e.example/a.png)", "a", "b"])
    no_errors(at)
    [shown] = [w.value for w in at.warning if "does not hold" in w.value]
    assert r"\!\[x\]\(http\:" in shown and "![x](" not in shown


def test_runs_without_scores_still_have_their_configs_compared(make_run: Callable[..., Path]) -> None:
    """Two test-split runs (no ground truth, so no scores) read "nothing to compare" and no config diff, and a test run
    beside a scored one was left out of the diff: what sets variants apart before a Kaggle submission."""
    runs = {"t1": make_run("t1"), "t2": make_run("t2", config_overrides={"matching": {"min_matches": 40}})}
    for run in runs.values():
        for name in ("scores.json", "scenes.csv", "per_image.csv", "alignments.json"):
            (run / name).unlink()
        meta = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**meta, "split": "test"}))
    at = open_compare(["t1", "t2"])
    no_errors(at)
    assert "None of these runs has scores: no score, delta or noise verdict to compare" in warnings(at)
    (diff,) = [d.value for d in at.dataframe if _is(d.value, "config_diff")]
    assert list(diff["key"]) == ["matching.min_matches"] and list(diff["vs"]) == ["t2"]
    make_run("a", score=60.0)
    at = open_compare(["a", "t2"])
    no_errors(at)
    (diff,) = [d.value for d in at.dataframe if _is(d.value, "config_diff")]
    assert list(diff["key"]) == ["matching.min_matches"] and list(diff["vs"]) == ["t2"]
    assert any(x.value == "Configs compared: a; t2." for x in at.caption)
