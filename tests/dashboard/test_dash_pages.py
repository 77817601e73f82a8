"""AppTest: every page renders on fabricated runs; Results, Compare, Datasets, sharing and error handling."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashkit import DashEnv, errors_and_exceptions, frame_with, open_app, plain



def assert_clean(at: AppTest) -> None:
    errors, exceptions = errors_and_exceptions(at)
    assert not exceptions, exceptions
    assert not errors, errors



def share_text(at: AppTest) -> str:
    return "\n".join(c.value for c in at.sidebar.code)


@pytest.mark.parametrize("page, title", [("datasets", "Datasets"), ("run", "Run"), ("results", "Results"),
                                         ("compare", "Compare")])
def test_every_page_renders(make_run: Callable[..., Path], page: str, title: str) -> None:
    make_run("run-a", score=60.0)
    make_run("run-b", score=62.0)
    at = open_app(page, **({"runs": ["run-a", "run-b"]} if page == "compare" else {}))
    assert_clean(at)
    assert [t.value for t in at.title] == [title]
    assert f"page={page}" in share_text(at)


def test_pages_render_without_any_run(dash_env: DashEnv) -> None:
    for page in ("run", "results", "compare"):
        assert_clean(open_app(page))
    assert any("No runs yet" in i.value for i in open_app("results").info)


def test_results_score_and_image_table_filters(make_run: Callable[..., Path]) -> None:
    make_run("run-a", score=60.0, failing=("s2_3.png", "s1_4.png"))
    at = open_app("results", run="run-a", tab="Images")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Score"] == "60.00" and metrics["Clusterness"] == "90.00"
    table = frame_with(at, "t2")
    assert len(table) == 10 and {"✓", "✗"} <= set(table["t2"])
    at.selectbox(key="image_filter").select("unregistered (no pose, or in outliers)").run()
    table = frame_with(at, "t2")
    assert sorted(table["image"]) == ["s1_4.png", "s2_3.png"]
    at.selectbox(key="image_filter").select("GT outliers left out, as they should be").run()
    assert list(frame_with(at, "t2")["image"]) == ["out_0.png"]
    at.selectbox(key="image_filter").select("all images").run()
    at.text_input(key="image_search").input("s2_").run()
    assert len(frame_with(at, "t2")) == 4
    at.selectbox(key="scene").select("s1").run()
    assert len(frame_with(at, "t2")) == 0  # s2_ images within scene s1
    captions = " ".join(c.value for c in at.caption)
    assert "data root" in captions and "device cpu" in captions  # which data and machine made this run


def test_share_link_holds_the_view(make_run: Callable[..., Path], dash_env: DashEnv) -> None:
    make_run("run-a")
    at = open_app("results", run="run-a", scene="s1", tab="Images")
    assert_clean(at)
    share = share_text(at)  # (AppTest drops the sidebar on reruns, so only a first run shows it)
    for part in ("page=results", "run=run-a", "scene=s1", "tab=Images", "dataset=ds1", "root="):
        assert part in share, share
    assert at.session_state["tab"] == "Images" and at.session_state["scene"] == "s1"


def test_results_name_link_values_that_are_not_in_the_run(make_run: Callable[..., Path]) -> None:
    """A link with a dataset, scene or tab the run lacks shows the defaults and says which values it left out (it
    fell back without a word)."""
    make_run("run-a")
    at = open_app("results", run="run-a", dataset="typo", scene="nope", tab="Graphs")
    assert_clean(at)
    assert [w.value for w in at.warning] == [
        "Not in this run, so left out of the link: dataset “typo”, scene “nope”, tab “Graphs”. Showing ds1 · "
        "(all scenes) · Overview instead."]
    assert at.session_state["dataset"] == "ds1" and at.session_state["tab"] == "Overview"
    at.selectbox(key="scene").select("s1").run()  # the page's own changes say nothing
    assert_clean(at)
    assert not at.warning
    good = open_app("results", run="run-a", dataset="ds1", scene="s2", tab="Images")
    assert_clean(good)
    assert not good.warning


def test_results_tab_link_ignores_case(make_run: Callable[..., Path]) -> None:
    """``?tab=images`` typed by hand opened the Overview with a warning; tab names match whatever their case."""
    make_run("run-a")
    at = open_app("results", run="run-a", tab="images")
    assert_clean(at)
    assert not at.warning and at.session_state["tab"] == "Images"
    assert "tab=Images" in share_text(at)
    assert open_app("results", run="run-a", tab="3d").session_state["tab"] == "3D"


def test_results_of_a_test_split_run(make_run: Callable[..., Path]) -> None:
    """A test-split run has no ground truth: the page says what its submission holds, and offers no GT scene
    picker (it offered "(all scenes)" and nothing else)."""
    run_dir = make_run("run-t")
    for name in ("scores.json", "scenes.csv", "per_image.csv", "alignments.json"):
        (run_dir / name).unlink(missing_ok=True)
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "split": "test"}))
    at = open_app("results", run="run-t")
    assert_clean(at)
    assert any("What the submission holds" in m.value for m in at.markdown)
    assert [s.label for s in at.selectbox if s.label in ("Dataset", "GT scene")] == ["Dataset"]


def test_pairs_tab_says_when_the_runs_data_root_is_not_here(make_run: Callable[..., Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A teammate's run whose features are cached here but whose data root is not: the pair viewer said "image
    file not found" for one image, not why."""
    import numpy as np

    from dashboard import state

    run_dir = make_run("run-a")
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "data_root": str(tmp_path / "alice" / "data")}))
    monkeypatch.setattr(state, "find_match_artifacts", lambda *a, **k: (tmp_path / "f.h5", tmp_path / "m.h5"))
    monkeypatch.setattr(state, "read_pair", lambda *a: (np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2), int)))
    monkeypatch.setattr(state, "inlier_mask", lambda *a: None)
    at = open_app("results", run="run-a", tab="Pairs")
    assert_clean(at)
    assert [i.value for i in at.info if i.value.startswith("Graph only")] == [
        f"Graph only: the run's data root `{tmp_path / 'alice' / 'data'}` is not on this machine, so its images "
        "cannot be drawn."]


@pytest.mark.parametrize("n_matches", [1, 0, 7])
def test_a_pair_of_one_match_is_drawn(make_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path, n_matches: int) -> None:
    """A run with ``matching.min_matches=1`` stored a pair of one match, and the tab failed on it: "StreamlitInvalid
    MinMaxError: The min_value and max_value parameters are both set to 1"."""
    import numpy as np

    from dashboard import state

    make_run("run-a")
    kpts = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0], [5.0, 5.0], [6.0, 6.0], [7.0, 7.0]])
    m = np.stack([np.arange(n_matches), np.arange(n_matches)], axis=1)
    monkeypatch.setattr(state, "find_match_artifacts", lambda *a, **k: (tmp_path / "f.h5", tmp_path / "m.h5"))
    monkeypatch.setattr(state, "read_pair", lambda *a: (kpts, kpts, m))
    monkeypatch.setattr(state, "inlier_mask", lambda *a: np.ones(n_matches, bool))
    at = open_app("results", run="run-a", tab="Pairs")
    assert_clean(at)
    assert [s.label for s in at.slider if s.key == "pair_lines"] == (["Match lines drawn (evenly subsampled, per "
                                                                      "class)"] if n_matches > 1 else [])
    assert any(f"{n_matches} of {n_matches} matches kept" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # the graph and the pair


def test_the_whole_dataset_tabs_say_they_do_not_follow_the_scene_picker(make_run: Callable[..., Path]) -> None:
    """A tester picked the GT scene ET and read the Pairs graph and the Clusters matrix as the scene's."""
    from dashboard.views.results import DATASET_TABS

    make_run("run-a")
    for tab in ("Clusters", "Pairs", "Descriptors", "Images"):
        for scene in ("s1", None):
            at = open_app("results", run="run-a", tab=tab, **({"scene": scene} if scene else {}))
            assert_clean(at)
            said = [c.value for c in at.caption if "does not follow the GT scene picker" in c.value]
            assert said == ([f"All of ds1: this tab does not follow the GT scene picker (s1); "
                             f"{DATASET_TABS[tab]}"] if scene and tab != "Images" else []), (tab, scene, said)


def test_the_pair_list_opens_on_the_picked_scenes_pairs(make_run: Callable[..., Path]) -> None:
    """With the GT scene s2 picked, the pair list opened on s1's strongest pair: the scene's own pairs come first."""
    make_run("run-a")
    at = open_app("results", run="run-a", tab="Pairs", scene="s2")
    assert_clean(at)
    pick = next(s for s in at.selectbox if s.key == "pair")
    assert pick.value == "s2_0.png ↔ s2_1.png (55)"
    assert pick.label == "Pair: the 1 of s2 first, then the others (most matches first)"
    assert pick.options[1:] == ["s1_0.png ↔ s1_1.png (120)", "s1_1.png ↔ s1_2.png (80)"]
    next(s for s in at.selectbox if s.key == "scene").set_value("s1").run()  # another scene: its own pair
    assert_clean(at)
    pick = next(s for s in at.selectbox if s.key == "pair")
    assert pick.value == "s1_0.png ↔ s1_1.png (120)" and pick.label.startswith("Pair: the 2 of s1 first")
    at = open_app("results", run="run-a", tab="Pairs")  # no scene picked: most matches first
    assert [s.value for s in at.selectbox if s.key == "pair"] == ["s1_0.png ↔ s1_1.png (120)"]


def state_roots() -> list[str]:
    from dashboard import state

    return state.load_roots()


def test_results_share_link_holds_the_runs_own_data_root(make_run: Callable[..., Path], dash_env: DashEnv,
                                                          tmp_path: Path) -> None:
    run_dir = make_run("run-a")
    meta = json.loads((run_dir / "run.json").read_text())
    other = tmp_path / "elsewhere"
    (other / "train").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({**meta, "data_root": str(other)}))
    at = open_app("results", run="run-a")
    assert_clean(at)
    share = share_text(at)
    assert f"root={quote(str(other), safe='')}" in share and quote(str(dash_env.data_root), safe="") not in share
    # the sidebar follows: it shows the run's data root, not the one picked before (and no stored root changes)
    assert at.session_state["root"] == str(other)
    assert str(other) in at.sidebar.selectbox[0].options
    assert str(other) not in state_roots()
    # ... and keeps it when the page's own widgets change: the URL names it too, not only the session (a root set
    # from code on a widget bound to the URL never reached the URL, and the next tab change put the default back)
    assert at.query_params["root"] in (str(other), [str(other)])
    at.selectbox(key="scene").select_index(1).run()
    assert_clean(at)
    assert at.session_state["root"] == str(other) and at.query_params["root"] in (str(other), [str(other)])


def test_results_keep_the_sidebar_root_when_the_runs_root_is_missing_here(make_run: Callable[..., Path],
                                                                     dash_env: DashEnv, tmp_path: Path) -> None:
    """A teammate's run on a folder this machine lacks: the sidebar keeps its root; the header names the run's."""
    run_dir = make_run("run-a")
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "data_root": str(tmp_path / "not-here")}))
    at = open_app("results", run="run-a")
    assert_clean(at)
    assert at.session_state["root"] == str(dash_env.data_root)
    at = open_app("results", run="run-a", tab="3D")  # all scenes: said once, not once per scene
    assert [i.value for i in at.info if "not available here" in i.value] == [
        f"Ground-truth poses are not available here (data root `{tmp_path / 'not-here'}` is missing), so "
        "only camera centres are drawn, from the run's per_image.csv: the predicted ones placed by the metric's "
        "similarity, without orientations or 3-D points."]
    # the centres (a teammate's bundle drew nothing at all)
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(figs) == 2 and all("GT centres" in {t.get("name") for t in f["data"]} for f in figs)
    assert not [c for c in at.checkbox if "3-D points" in c.label]
    pi = pd.read_csv(run_dir / "per_image.csv")  # an older run without the centres: nothing to draw, said once
    pi.drop(columns=[c for c in pi.columns if c.startswith(("gt_c", "pred_c"))]).to_csv(run_dir / "per_image.csv",
                                                                                      index=False)
    at = open_app("results", run="run-a", tab="3D")
    assert [i.value for i in at.info if "not available here" in i.value] == [
        f"Ground-truth poses are not available here (data root `{tmp_path / 'not-here'}` is missing), so "
        "cameras cannot be drawn."] and not at.get("plotly_chart")


def test_a_run_without_ground_truth_draws_its_clusters_as_submitted(make_run: Callable[..., Path]) -> None:
    """A test-split run's 3D tab said "No GT scenes for this dataset in the run." and drew nothing: checking a
    cluster's cameras before submitting it is what a test run is for."""
    run_dir = make_run("run-t")
    for name in ("per_image.csv", "scenes.csv", "scores.json", "alignments.json"):
        (run_dir / name).unlink(missing_ok=True)
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "split": "test"}))
    sub = pd.read_csv(run_dir / "submission.csv")
    sizes = sub[sub["scene"] != "outliers"]["scene"].value_counts()
    at = open_app("results", run="run-t", tab="3D")
    assert_clean(at)
    picker = at.selectbox(key="cluster")
    order = sorted(sizes.index, key=lambda c: (-sizes[c], c))  # (the largest first)
    assert picker.options == [f"{c} ({sizes[c]} images)" for c in order]
    assert picker.value == order[0] and f"cluster={order[0]}" in share_text(at)
    # the cluster picked is in the share link, and the link opens it (it opened the largest one)
    at = open_app("results", run="run-t", tab="3D", cluster=order[-1])
    assert_clean(at)
    picker = at.selectbox(key="cluster")
    assert picker.value == order[-1] and f"cluster={order[-1]}" in share_text(at)
    at = open_app("results", run="run-t", tab="3D", cluster="cluster99")  # not in the run: said, not silently
    assert picker.options == at.selectbox(key="cluster").options and at.selectbox(key="cluster").value == order[0]
    assert [w.value for w in at.warning] == ["Not in this dataset's submission, so left out of the link: cluster "
                                             "“cluster99”. Showing its largest cluster instead."]
    at = open_app("results", run="run-t", tab="3D")
    (fig,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = {t.get("name") for t in fig["data"]}
    assert names == {"cameras", "centres"}
    centres = next(t for t in fig["data"] if t.get("name") == "centres")
    assert sorted(centres["text"]) == sorted(sub.loc[sub["scene"] == order[0], "image"])
    assert not [c for c in at.checkbox if "3-D points" in c.label]  # (no COLMAP model in this run)
    assert not [i for i in at.info if "No GT scenes" in i.value]
    at = open_app("results", run="run-t", tab="Pairs")  # the circle's arcs are the submitted clusters
    assert_clean(at)
    caption = " ".join(c.value for c in at.caption)
    assert "each submitted cluster is an arc" in caption and "GT scene" not in caption
    (graph,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert {t.get("name") for t in graph["data"] if t.get("mode") == "markers"} >= set(sizes.index)
    at = open_app("results", run="run-t", tab="Clusters")  # (it said "No per-image table in this run.")
    assert_clean(at)
    (table,) = [d.value for d in at.dataframe if "cluster" in d.value.columns]
    clustered = sub[sub["scene"] != "outliers"]["scene"].value_counts().to_dict()
    assert dict(zip(table["cluster"], table["images"], strict=True)) == clustered  # (outliers are no cluster)
    n_out = int((sub["scene"] == "outliers").sum())
    assert f"{n_out} of {len(sub)} images submitted as outliers (no cluster)." in [c.value for c in at.caption]


def test_the_3d_tab_says_which_pose_convention(make_run: Callable[..., Path]) -> None:
    make_run("run-p")
    at = open_app("results", run="run-p", tab="3D")
    assert_clean(at)
    assert [c.value for c in at.caption if c.value.startswith("Poses: ")] == [
        "Poses: world→camera, x_cam = R·x_world + t with R row-major, camera centre c = −Rᵀ·t (COLMAP's "
        "cam_from_world; what IMC-2025 wants). imc-lab writes its own runs so, from COLMAP's models."]


def test_the_3d_tab_colours_by_thresholds_passed_or_by_error(make_run: Callable[..., Path]) -> None:
    """The 3-D colours followed the largest threshold's alignment alone and disagreed with the Images tab's passes:
    by default they count the thresholds passed, as the metric does; the error under the drawn alignment is a
    click away."""
    make_run("run-c")
    at = open_app("results", run="run-c", tab="3D", dataset="ds1", scene="s1")
    assert_clean(at)
    (radio,) = [r for r in at.radio if r.label == "Colour cameras by"]
    assert radio.value == "thresholds passed (as the metric)"

    def bins(app: AppTest) -> set[str]:
        (fig,) = [json.loads(c.proto.spec) for c in app.get("plotly_chart")]
        return {t["name"] for t in fig["data"] if t.get("name", "").startswith("pred: ")}

    assert bins(at) and all(" thresholds" in b or b.startswith("pred: passes none") for b in bins(at)), bins(at)
    assert any("counts the thresholds each passes" in c.value for c in at.caption)
    radio.set_value("error under the drawn alignment").run()
    assert_clean(at)
    assert bins(at) and not any("passes" in b for b in bins(at)), bins(at)
    assert any("Their colour is their error under that alignment" in c.value for c in at.caption)


def test_a_runs_own_words_are_shown_as_text_not_markup(make_run: Callable[..., Path]) -> None:
    """A teammate's bundle with `![x](http://…)` in its run.json made every page view fetch that address."""
    import json

    beacon = "![x](http://e.example/b.png)"
    run = make_run("run-h")
    meta = json.loads((run / "run.json").read_text())
    meta.update(variant=beacon, created=beacon, device=beacon, warnings=[beacon, "second " + beacon],
                data_root=f"/data`{beacon}`", overrides=[f"x=`{beacon}`"])
    (run / "run.json").write_text(json.dumps(meta))
    at = open_app("results", run="run-h")
    texts = [x.value for x in [*at.markdown, *at.caption, *at.warning, *at.error, *at.info]]
    shown = [t for t in texts if "example" in t]
    assert len(shown) >= 4
    # outside code spans every "![" is escaped; inside them (data root, overrides) the fence is longer than any
    # backtick run of the value, so nothing leaves the span
    assert all("![x](" not in t.replace("``", "") or "`` " in t for t in shown), shown


def test_the_header_says_which_code_made_the_run(make_run: Callable[..., Path]) -> None:
    run = make_run("run-c")
    meta = json.loads((run / "run.json").read_text())
    meta["code"] = {"version": "0.1.0", "commit": "abc123def456", "dirty": True}
    (run / "run.json").write_text(json.dumps(meta))
    at = open_app("results", run="run-c")
    assert_clean(at)
    assert any("imc-lab 0.1.0 at abc123def456 with uncommitted changes" in plain(c.value) for c in at.caption)


def test_the_convention_note_of_an_outside_file_follows_its_check() -> None:
    from types import SimpleNamespace

    from dashboard.views.results import pose_convention_note

    def note(*warnings: str) -> str:
        return pose_convention_note(SimpleNamespace(outside=True, meta={"warnings": list(warnings)}))

    assert note().endswith("scored unless the fit ruled it out; none did clearly better.")
    assert note("these poses look camera→world (t holding the camera centre) in ds").endswith(
        "look written another way: see the warning above (and the Loss tab).")
    assert note("the pose-convention check failed (ValueError: x); the score above stands").endswith(
        "was not checked: the check failed (warning above).")


@pytest.mark.parametrize("tab", ["Overview", "3D", "Clusters", "Pairs", "Loss", "Timings", "Log", "Descriptors"])
def test_results_tabs_render(make_run: Callable[..., Path], tab: str) -> None:
    make_run("run-a", score=60.0, misplaced=("s1_2.png",))
    at = open_app("results", run="run-a", tab=tab, scene="s2")
    assert_clean(at)
    text = " ".join(x.value for x in [*at.info, *at.caption, *at.markdown])
    if tab == "Descriptors":
        # the fabricated run names no artifacts (as runs of an imc-lab from before artifacts.json)
        assert "No global descriptors" in text and "does not name its cached features (no artifacts.json" in text
        (make_run("run-b") / "artifacts.json").write_text('{"ds1": {"features": "/gone/features/ds1-x"}}')
        at = open_app("results", run="run-b", tab=tab)
        assert "no longer in the cache" in " ".join(x.value for x in at.info)
    if tab == "Pairs":
        assert "Graph only: cached features not found" in text  # no cache in the test: the graph alone, and why
    if tab == "Clusters":
        assert "Misplaced images** (1)" in text
    if tab == "3D":
        assert "cluster1" in text
        assert "Their colour counts the thresholds each passes" in text  # as the Images tab's ✓ count
        at = open_app("results", run="run-a", tab=tab, scene="outliers")
        assert_clean(at)
        assert any("Outliers have no ground-truth pose" in i.value for i in at.info)


def test_descriptors_tab_projects_the_runs_cached_features(make_run: Callable[..., Path], dash_env: DashEnv) -> None:
    """With the run's features still cached, the tab shows the appearance scatter by GT scene and by cluster."""
    import json

    import h5py
    import numpy as np
    from dashkit import SCENES

    run = make_run("run-a", misplaced=("s1_2.png",))
    fdir = dash_env.cache / "features" / "ds1-0123456789abcdef"
    fdir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(fdir / "features.h5", "w") as f:
        for k, (scene, names) in enumerate(SCENES.items()):
            for name in names:
                g = f.create_group(name)
                g["descriptors"] = (k + rng.normal(scale=0.1, size=(20, 8))).astype(np.float32)
                g["keypoints"] = np.zeros((20, 2), np.float32)
    (fdir / "DONE").write_text("{}")
    (run / "artifacts.json").write_text(json.dumps({"ds1": {"features": str(fdir)}}))
    at = open_app("results", run="run-a", tab="Descriptors")
    assert_clean(at)
    text = " ".join(x.value for x in [*at.info, *at.caption, *at.markdown])
    assert "no longer in the cache" not in text
    assert "Images with features: 10 of 10" in text
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    fig = json.loads(charts[0].proto.spec)
    names = {t["name"] for t in fig["data"]}
    assert {"s1", "s2", "outliers"} <= names and any(n.startswith("cluster") for n in names)
    # without ground truth (a test split): coloured by cluster alone (the tab drew nothing)
    for name in ("per_image.csv", "scenes.csv", "scores.json", "alignments.json"):  # (read again, not the cache's)
        (run / name).unlink(missing_ok=True)
    at = open_app("results", run="run-a", tab="Descriptors")
    assert_clean(at)
    (chart,) = at.get("plotly_chart")
    groups = {t.get("legendgroup") for t in json.loads(chart.proto.spec)["data"]}
    assert groups == {"cluster"}
    assert any("coloured by their submitted cluster" in c.value for c in at.caption)


def test_broken_run_dir_gives_a_readable_error(make_run: Callable[..., Path], dash_env: DashEnv) -> None:
    bad = make_run("run-bad")
    (bad / "run.json").write_text("{not json")
    at = open_app("results", run="run-bad")
    errors, exceptions = errors_and_exceptions(at)
    assert not exceptions
    assert len(errors) == 1 and "run.json" in errors[0] and "cannot read JSON" in errors[0]
    assert not [e for e in at.main.expander if e.label == "Details"]  # a known error: no traceback details

    broken_scores = make_run("run-bad-scores")
    (broken_scores / "scores.json").write_text("[1, 2")
    at = open_app("results", run="run-bad-scores")
    errors, exceptions = errors_and_exceptions(at)  # the rest of the run still shows, the file is named
    # (a run's own words are escaped markdown: "scores\\.json")
    assert not exceptions and not errors and any("scores.json" in w.value.replace("\\", "") for w in at.warning)
    at = open_app("results", run="../../etc")
    errors, exceptions = errors_and_exceptions(at)
    assert not exceptions and any("invalid run id" in e for e in errors)


def test_a_cancelled_runs_timings_say_how_far_it_got(make_run: Callable[..., Path]) -> None:
    """Cancelled during its first dataset's features: the Timings tab said "no timings" and nothing else."""
    run_dir = make_run("run-c", status="cancelled")
    (run_dir / "timings.json").write_text(json.dumps({"total": 7.9, "datasets": {}, "cache": {}}))
    (run_dir / "progress.json").write_text(json.dumps({
        "stage": "ds1/features", "done": 4, "total": 10, "updated": 1000.0, "stages": {
            "ds1/pairs": {"done": 1, "total": 1, "cached": False, "seconds": 0.01, "started": 992.0},
            "ds1/features": {"done": 4, "total": 10, "cached": False, "seconds": None, "started": 992.5}}}))
    at = open_app("results", run="run-c", tab="Timings")
    assert_clean(at)
    table = frame_with(at, "state")
    assert table.to_dict("records") == [
        {"stage": "ds1/pairs", "done": "1/1", "seconds": 0.01, "state": "finished"},
        {"stage": "ds1/features", "done": "4/10", "seconds": 7.5, "state": "stopped here"}]
    assert any("(it was cancelled before a dataset finished)" in m.value for m in at.markdown)  # ("it cancelled")
    # said once, with why, in the header (three notes said it: "is cancelled", "No scores: …", the Overview's)
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "error": "terminated (SIGTERM)"}))
    at = open_app("results", run="run-c", tab="Timings")
    said = [i.value for i in at.info if "cancelled" in i.value]
    said += [c.value for c in at.caption if "No scores" in c.value]
    assert said == ["This run was cancelled (terminated \\(SIGTERM\\)): no scores, and its results stop where it did."]


def test_a_run_named_with_spaces_or_other_letters_opens(make_run: Callable[..., Path]) -> None:
    """`run --out "exp 1 (baseline)"` is a valid run folder: the pickers listed it, Results refused it."""
    for name in ("exp 1 (baseline)", "résumé-日本"):
        make_run(name, score=61.0)
        at = open_app("results", run=name)
        errors, exceptions = errors_and_exceptions(at)
        assert not exceptions and not errors, errors
        assert any(m.value == "61.00" for m in at.metric)


def test_compare_deltas_and_noise_marker(make_run: Callable[..., Path]) -> None:
    for i, s in enumerate((60.0, 60.4, 59.8)):
        make_run(f"base-{i}", score=s, group="base", seed=i)
    for i, s in enumerate((60.3, 60.1, 59.9)):
        make_run(f"same-{i}", score=s, group="same", seed=i, config_overrides={"features": {"max_keypoints": 999}})
    make_run("better", score=75.0)
    runs = [*(f"base-{i}" for i in range(3)), *(f"same-{i}" for i in range(3)), "better"]
    at = open_app("compare", runs=runs)
    assert_clean(at)
    head = frame_with(at, "arm").set_index("arm")
    assert list(head["runs"]) == [3, 3, 1]
    assert head.loc["group: base", "verdict"] == "reference"
    assert head.loc["group: same", "verdict"] == "not significant"
    assert head.loc["group: same", "test"] == "paired t, 3 seeds"  # both groups ran seeds 0–2
    better = next(a for a in head.index if "better" in a)
    assert head.loc[better, "verdict"] == "significantly better" and head.loc[better, "test"] == "one run vs repeats"
    assert head.loc["group: same", "p"] > 0.05 and pd.isna(head.loc["group: base", "p"])
    low, high = (float(x) for x in head.loc["group: same", "95% CI of Δ"].split(" … "))
    assert low < head.loc["group: same", "Δ score"] < high
    assert head.loc[better, "Δ score"] == pytest.approx(75.0 - (60.0 + 60.4 + 59.8) / 3)
    assert head.loc["group: base", "score ± std"] == pytest.approx(0.3055, abs=1e-3)
    per_ds = frame_with(at, "dataset")
    assert set(per_ds["dataset"]) == {"ds1"} and len(per_ds) == 3
    diff_tables = [d.value for d in at.dataframe if "key" in d.value.columns]
    assert any("features.max_keypoints" in set(t["key"]) for t in diff_tables)
    assert "run=" not in share_text(at) and "runs=base-0" in share_text(at)


def test_compare_per_image_gains_and_losses(make_run: Callable[..., Path]) -> None:
    make_run("a", failing=("s2_3.png",))
    make_run("b", failing=("s1_1.png",))
    at = open_app("compare", runs=["a", "b"])
    assert_clean(at)
    delta = frame_with(at, "pass_change").set_index("image")
    assert delta.loc["s2_3.png", "pass_change"] == "gained" and delta.loc["s1_1.png", "pass_change"] == "lost"
    assert len(delta) == 2


def test_bad_bundle_is_rejected_and_nothing_written(make_run: Callable[..., Path], dash_env: DashEnv) -> None:
    make_run("a")
    make_run("b")
    before = sorted(p.name for p in dash_env.runs.iterdir())
    at = open_app("compare")
    at.file_uploader(key="bundle").upload("evil.zip", b"this is not a zip file", "application/zip").run()
    errors, exceptions = errors_and_exceptions(at)
    assert not exceptions and any("Import failed" in e and "not a valid zip" in e for e in errors)
    assert any(e.startswith("Import failed: evil.zip: ") for e in errors), errors  # the upload, not a temp path
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x/../../escape.txt", "boom")
    at = open_app("compare")
    at.file_uploader(key="bundle").upload("evil2.zip", buf.getvalue(), "application/zip").run()
    errors, _ = errors_and_exceptions(at)
    assert any("unsafe path" in e for e in errors)
    assert sorted(p.name for p in dash_env.runs.iterdir()) == before
    assert not (dash_env.runs.parent / "escape.txt").exists()


def test_an_outside_submission_is_scored_as_a_run(dash_env: DashEnv, make_run: Callable[..., Path]) -> None:
    """Compare page: a submission.csv made elsewhere is scored against the sidebar's data root and kept as a run;
    written camera→world, it is named; a bad file names the upload and writes nothing."""
    from imc_core.submission import R_COLS, T_COLS, cam_to_world, read_pose_csv, rotations, translations, write_pose_csv

    sub = read_pose_csv(dash_env.data_root / "train_labels.csv")
    R_c2w, c = cam_to_world(rotations(sub), translations(sub))
    sub[R_COLS], sub[T_COLS] = R_c2w.reshape(-1, 9), c  # the slip: camera→world poses written as they are
    path = write_pose_csv(sub, dash_env.runs.parent / "c2w.csv")
    at = open_app("compare")
    at.text_input(key="outside_label").input("kaggle v3")
    at.file_uploader(key="outside_submission").upload("my_sub.csv", path.read_bytes(), "text/csv").run()
    assert_clean(at)
    (run_dir,) = [p for p in dash_env.runs.iterdir() if p.is_dir()]
    scores = json.loads((run_dir / "scores.json").read_text())
    assert [m.value for m in at.success] == [f"Scored as {run_dir.name}: score {scores['score']:.2f} · mAA "
                                             f"{scores['mAA']:.2f} · clusterness {scores['clusterness']:.2f}"]
    # (a small dataset: re-read although it reaches 58 mAA written wrongly)
    assert any(plain(w.value).startswith("these poses look camera→world (t holding the camera centre) in ds1 (mAA "
                                         "58.33 as written, 100.00 read so)") for w in at.warning), \
        [w.value for w in at.warning]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["label"] == "kaggle v3" and meta["source"] == "my_sub.csv" and meta["variant"] == "submission"
    results = open_app("results", run=run_dir.name)
    assert_clean(results)
    assert r"scored from my\_sub\.csv, made outside imc-lab" in " ".join(m.value for m in results.markdown)
    assert {m.label: m.value for m in results.metric}["Time"] == "—"  # its 0.1 s of scoring is no pipeline's time
    three_d = open_app("results", run=run_dir.name, tab="3D")
    assert_clean(three_d)
    assert not [c for c in three_d.checkbox if "3-D points" in c.label]  # no COLMAP model to take points from
    # "are my poses world→camera or camera→world?" answered where the cameras are drawn
    assert any(c.value.startswith("Poses: world→camera") and "This file's poses look written another way" in c.value
               for c in three_d.caption)
    for tab in ("Pairs", "Timings", "Descriptors"):  # not "no pairs_stats.csv" or "no longer in the cache"
        view = open_app("results", run=run_dir.name, tab=tab)
        assert_clean(view)
        assert [i.value for i in view.info if "outside imc-lab" in i.value], tab
    make_run("pipeline")
    side = open_app("compare", runs=["pipeline", run_dir.name])  # the slip explains the Δ beside it
    assert_clean(side)
    assert any(w.value.startswith(f"{run_dir.name}: these poses look camera→world") for w in side.warning)
    scene_note = "the poses of scene s2 of ds1 look camera→world (t holding the camera centre) (mAA 0.00 …)"
    # one scene written so: shown there too, and so is what else is wrong with the file (rows of NaN explained a
    # Δ of −24 in a tester's comparison, and were said only where the file was uploaded and on Results)
    nan_note = "my_sub.csv: 11 row(s) with a pose neither all finite nor all nan, scored as unregistered"
    (run_dir / "run.json").write_text(json.dumps({**meta, "warnings": [scene_note, nan_note]}))
    side = open_app("compare", runs=["pipeline", run_dir.name])
    assert [plain(w.value) for w in side.warning if run_dir.name in w.value] == [
        f"{run_dir.name}: {scene_note}", f"{run_dir.name}: {nan_note}"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    again = open_app("compare")  # the same bytes, another session: not a second run of one submission
    again.file_uploader(key="outside_submission").upload("copy.csv", path.read_bytes(), "text/csv").run()
    assert any(i.value.startswith(f"Not added again: this file was already scored on this data root as {run_dir.name}")
               for i in again.info)
    bad = open_app("compare")
    bad.file_uploader(key="outside_submission").upload("broken.csv", b"dataset,scene\nx,y\n", "text/csv").run()
    errors, exceptions = errors_and_exceptions(bad)
    assert not exceptions and errors and errors[0].startswith("Not scored: broken.csv:1: missing column(s)")
    assert sorted(p.name for p in dash_env.runs.iterdir() if p.is_dir()) == sorted([run_dir.name, "pipeline"])


def test_good_bundle_is_imported(make_run: Callable[..., Path], dash_env: DashEnv, tmp_path: Path) -> None:
    from imc_core.runs import export_bundle

    run = make_run("shared-run", score=70.0)
    data = export_bundle(run, tmp_path / "b.zip").read_bytes()
    at = open_app("compare")
    at.file_uploader(key="bundle").upload("b.zip", data, "application/zip").run()
    # the very same run: said so, not "Imported"
    assert "Not imported: this bundle's run is already here as shared-run" in [i.value for i in at.info]
    assert not at.success
    make_run("shared-run", score=71.0)  # a teammate's run of the same id, other results
    at = open_app("compare")
    at.file_uploader(key="bundle").upload("b.zip", data, "application/zip").run()
    assert_clean(at)
    success = [s.value for s in at.success]
    assert success and "Imported as shared-run-imported-" in success[0]
    assert len([p for p in dash_env.runs.iterdir() if p.name.startswith("shared-run-imported-")]) == 1
    at.run()  # a rerun does not import the same upload twice
    assert len([p for p in dash_env.runs.iterdir() if p.name.startswith("shared-run-imported-")]) == 1


def test_datasets_page_counts_and_thumbnails(dash_env: DashEnv) -> None:
    at = open_app("datasets")
    assert_clean(at)
    assert {m.label: m.value for m in at.metric} == {"Datasets": "1", "Scenes": "2", "Images": "10"}
    assert len(list((dash_env.cache / "thumbs").glob("*.jpg"))) == 10
    assert any("**s1** — 5 images" in m.value for m in at.markdown)
    assert "dataset=train%2Fds1" in share_text(at) or "dataset=train/ds1" in share_text(at)


def test_a_broken_sample_submission_does_not_block_train_work(dash_env: DashEnv) -> None:
    """It is optional and only test mode reads it: it blanked the Datasets page and hid the Run page's Launch."""
    (dash_env.data_root / "sample_submission.csv").write_text("image_id,dataset,scene,image\nx,ds1,a,b.png\n")
    at = open_app("datasets")
    assert_clean(at)
    assert {m.label: m.value for m in at.metric}["Images"] == "10"
    assert any("sample_submission.csv:1: missing column(s)" in plain(w.value) and "train work does not need" in
               w.value for w in at.warning)
    at = open_app("run")
    assert_clean(at)
    assert at.button(key="launch")


def test_a_test_dataset_read_from_train_counts_its_images_once(dash_env: DashEnv) -> None:
    """strecha_mix (a sample submission of its train images, no test/ folder) read "Images 172" for its 86 files."""
    names = sorted(p.name for p in (dash_env.data_root / "train" / "ds1").iterdir())
    nan = ";".join(["nan"] * 9), ";".join(["nan"] * 3)
    (dash_env.data_root / "sample_submission.csv").write_text(
        "image_id,dataset,scene,image,rotation_matrix,translation_vector\n"
        + "".join(f"ds1_{n}_public,ds1,cluster0,{n},{nan[0]},{nan[1]}\n" for n in names))
    at = open_app("datasets")
    assert_clean(at)
    metrics = {m.label: m for m in at.metric}
    assert metrics["Datasets"].value == "2" and metrics["Images"].value == str(len(names)) == "10"
    assert "counts once" in metrics["Images"].help
    assert any("listed under both splits" in i.value for i in at.info)


def test_add_data_root(dash_env: DashEnv, tmp_path: Path) -> None:
    from PIL import Image

    other = tmp_path / "other"
    (other / "train" / "x").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(other / "train" / "x" / "a.png")
    at = open_app("datasets")
    at.text_input(key="new_root").input(str(other))
    at.button[0].click().run()
    assert_clean(at)
    assert str(other) in dash_env.roots_file.read_text()
    assert at.session_state["root"] == str(other)
    assert any(f"Added data root {other}" in m.value for m in at.success)
    at.text_input(key="new_root").input(str(other))
    at.button[0].click().run()  # again: not "Added"
    assert [i.value for i in at.info if "already a data root" in i.value] == [f"{other} is already a data root"]
    assert not any("Added data root" in m.value for m in at.success)
    at.text_input(key="new_root").input(str(other.parent / ".." / other.parent.name / other.name))
    at.button[0].click().run()  # the same folder typed another way: not a second entry
    assert json.loads(dash_env.roots_file.read_text()).count(str(other)) == 1
    at.button(key=f"forget::{other}").click().run()
    assert str(other) not in dash_env.roots_file.read_text() and at.session_state["root"] == str(dash_env.data_root)
    # forgetting touches nothing on disk and can be undone at once (one click, no confirmation, was final)
    assert [i.value for i in at.info if "Forgot" in i.value] == [
        f"Forgot data root `{other}` (nothing on disk was touched)."]
    at.button(key=f"forget_undo::{other}").click().run()
    assert_clean(at)
    assert str(other) in dash_env.roots_file.read_text() and at.session_state["root"] == str(other)
    assert any(f"Data root {other} is back" in m.value for m in at.success)
    assert not any("Forgot" in i.value for i in at.info)
    at.button(key=f"forget::{other}").click().run()
    assert str(other) not in dash_env.roots_file.read_text()
    at = open_app("datasets")
    at.text_input(key="new_root").input(str(tmp_path / "missing"))
    at.button[0].click().run()
    assert any("data root not found" in e.value for e in at.error) and not at.exception


def test_undo_forget_gives_back_exactly_what_was_removed(dash_env: DashEnv, tmp_path: Path) -> None:
    """Undo re-checked the folder (a root whose datasets had gone was lost for good) and put it back last."""
    import shutil

    from PIL import Image

    roots = []
    for name in ("one", "two", "three"):
        (tmp_path / name / "train" / "x").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name / "train" / "x" / "a.png")
        roots.append(str(tmp_path / name))
    dash_env.roots_file.write_text(json.dumps(roots))
    at = open_app("datasets")
    shutil.rmtree(tmp_path / "one" / "train")  # its datasets went away since it was added
    at.button(key=f"forget::{roots[0]}").click().run()
    assert json.loads(dash_env.roots_file.read_text()) == roots[1:]
    at.button(key=f"forget_undo::{roots[0]}").click().run()
    assert_clean(at)
    assert json.loads(dash_env.roots_file.read_text()) == roots  # at its old place, unchecked
    assert any(f"Data root {roots[0]} is back" in m.value for m in at.success)


def test_forgetting_roots_keeps_an_existing_root_and_every_undo(dash_env: DashEnv, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With the bundled root missing (no `make data`), forgetting the active root fell back to it ("run make
    data"); its Undo's confirmation sat in a closed box; a second Forget lost the first one's Undo; and the share
    link kept the forgotten root's dataset (a tester)."""
    from PIL import Image

    monkeypatch.setenv("IMC_DEFAULT_ROOT", str(tmp_path / "not_made"))
    roots = []
    for name in ("one", "two", "three"):
        (tmp_path / name / "train" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name / "train" / name / "a.png")
        roots.append(str(tmp_path / name))
    dash_env.roots_file.write_text(json.dumps(roots))
    at = open_app("datasets", root=roots[0])
    assert_clean(at)
    assert at.session_state["root"] == roots[0]
    at.button(key=f"forget::{roots[0]}").click().run()
    assert_clean(at)
    assert at.session_state["root"] == roots[1]  # an existing remembered root, not the missing default
    assert "dataset=train%2Fone" not in share_text(at) and "dataset=train/one" not in share_text(at)
    at.button(key=f"forget::{roots[2]}").click().run()
    # both keep their Undo, the latest first, in the open panel
    assert [i.value for i in at.info if "Forgot" in i.value] == [
        f"Forgot data root `{r}` (nothing on disk was touched)." for r in (roots[2], roots[0])]
    assert at.expander[0].proto.expanded
    at.button(key=f"forget_undo::{roots[0]}").click().run()
    assert_clean(at)
    assert any(f"Data root {roots[0]} is back" in m.value for m in at.success) and at.expander[0].proto.expanded
    assert at.session_state["root"] == roots[0]  # (it was the active one)
    at.button(key=f"forget_undo::{roots[2]}").click().run()
    assert json.loads(dash_env.roots_file.read_text()) == roots


def test_add_data_root_names_the_usual_slips(dash_env: DashEnv, tmp_path: Path) -> None:
    """A split folder given as the root, and a file:// address pasted from a browser."""
    from PIL import Image

    (tmp_path / "imc" / "train" / "x").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "imc" / "train" / "x" / "a.png")
    at = open_app("datasets")
    at.text_input(key="new_root").input(str(tmp_path / "imc" / "train"))
    at.button[0].click().run()
    assert any(f"train/ is a split folder of a data root: use its parent, {tmp_path / 'imc'}" in e.value
               for e in at.error)
    at.text_input(key="new_root").input(f"file://{tmp_path / 'imc'}")
    at.button[0].click().run()
    assert_clean(at)
    assert at.session_state["root"] == str(tmp_path / "imc")


def test_timings_tab_explains_parallel_reconstructions(make_run: Callable[..., Path]) -> None:
    import json

    run_dir = make_run("run-a")
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "jobs": 2}))
    stages = {"pairs": 0.1, "features": 1.2, "matching": 0.8, "reconstruction": 1.4}
    (run_dir / "timings.json").write_text(json.dumps({"total": 4.0, "datasets": {"a": stages, "b": stages},
                                                      "cache": {}}))
    at = open_app("results", run="run-a", tab="Timings")
    assert_clean(at)
    assert any("2 datasets were reconstructed at once" in c.value for c in at.caption)


def test_timings_tab_of_a_fully_cached_run_says_so(make_run: Callable[..., Path]) -> None:
    """Every stage a cache hit: the chart showed microsecond bars under a title with the run's wall time."""
    run_dir = make_run("run-a")
    cached = {"pairs": 8.8e-05, "features": 0.0, "matching": 0.0, "reconstruction": 0.0}
    hits = {"pairs": "computed", "features": "hit", "matching": "hit", "reconstruction": "hit"}
    (run_dir / "timings.json").write_text(json.dumps({"total": 0.17, "datasets": {"a": cached},
                                                      "cache": {"a": hits}}))
    at = open_app("results", run="run-a", tab="Timings")
    assert_clean(at)
    assert any(i.value.startswith("Every stage of this run came from the cache, so its 0.2 s") for i in at.info)
    assert not at.get("plotly_chart")
    (run_dir / "timings.json").write_text(json.dumps({"total": 1.4, "cache": {"a": {**hits, "reconstruction": "miss"}},
                                                      "datasets": {"a": {**cached, "reconstruction": 1.2}}}))
    at = open_app("results", run="run-a", tab="Timings")  # a re-run that mapped again: charted
    assert_clean(at)
    assert not any("came from the cache" in i.value for i in at.info) and at.get("plotly_chart")


def test_timings_tab_breaks_the_reconstruction_into_its_steps(make_run: Callable[..., Path]) -> None:
    run_dir = make_run("run-a")
    stages = {"pairs": 0.1, "features": 0.0, "matching": 0.0, "reconstruction": 1.4}
    steps = {"a": {"inputs read": 0.01, "verified database reused": 0.02, "mapping": 0.9,
                   "final bundle adjustment": 0.4, "models written": 0.05},
             "b": {"models written": 0.1, "inputs read": 0.02, "database import": 0.1, "geometric verification": 0.5,
                   "mapping": 0.7},
             "c": {"inputs read": 0.01, "verified database reused": 0.02, "mapped models reused": 0.02,
                   "final bundle adjustment": 0.4, "models written": 0.05}}
    (run_dir / "timings.json").write_text(json.dumps({
        "total": 3.0, "datasets": {"a": stages, "b": stages, "c": stages}, "reconstruction_steps": steps,
        "cache": {"a": {"reconstruction": "miss"}, "b": {"reconstruction": "hit"}, "c": {"reconstruction": "miss"}}}))
    at = open_app("results", run="run-a", tab="Timings")
    assert_clean(at)
    table = frame_with(at, "mapping")
    assert list(table.columns) == ["dataset", "inputs read", "database import", "geometric verification",
                                   "verified database reused", "mapping", "mapped models reused",
                                   "final bundle adjustment", "models written", "cache"]  # run order
    rows = table.set_index("dataset")
    assert rows.loc["a", "mapping"] == pytest.approx(0.9) and pd.isna(rows.loc["a", "geometric verification"])
    assert rows.loc["b", "cache"] == "hit"
    # a miss says what it read from the cache all the same
    assert any(c.value == "**a**: a cache miss that reused the verified database. **c**: a cache miss that reused the "
               "verified database and the mapped models." for c in at.caption)
    assert any("On a cache hit the row shows the run that computed" in c.value for c in at.caption)
    # runs from before the steps existed: no table, no error
    (run_dir / "timings.json").write_text(json.dumps({"total": 3.0, "datasets": {"a": stages}, "cache": {}}))
    at = open_app("results", run="run-a", tab="Timings")
    assert_clean(at)
    assert not any("mapping" in d.value.columns for d in at.dataframe)


def test_results_does_not_take_the_sidebar_back_to_an_old_runs_root(make_run: Callable[..., Path],
                                                                      dash_env: DashEnv, tmp_path: Path) -> None:
    """Results reopened the run shown last, on another data root, though the sidebar had moved on: the sidebar
    flipped back to that root and the run just launched on the new one was hidden. It now opens the newest run of
    the sidebar's root."""
    from dashboard import state

    old = make_run("old-elsewhere")
    meta = json.loads((old / "run.json").read_text())
    other = tmp_path / "elsewhere"
    (other / "train").mkdir(parents=True)
    (old / "run.json").write_text(json.dumps({**meta, "data_root": str(other)}))
    make_run("new-here")
    at = open_app("results", run="old-elsewhere")
    assert_clean(at)
    assert at.session_state["root"] == str(other)
    # another page showed (the picker's state is dropped) and the sidebar moved back to the bundled root
    at.switch_page("views/run.py").run()
    at.query_params.pop("run", None)
    at.query_params["root"] = str(dash_env.data_root)
    at.session_state["root"] = str(dash_env.data_root)
    at.switch_page("views/results.py").run()
    assert_clean(at)
    assert at.session_state["run"] == "new-here" and at.session_state["root"] == str(dash_env.data_root)
    runs = state.runs_table()
    assert state.made_on(runs, "new-here", dash_env.data_root) and not state.made_on(runs, "old-elsewhere",
                                                                                       dash_env.data_root)


@pytest.mark.parametrize("address, said", [
    ("", "This dashboard listens on every network interface"),
    ("0.0.0.0", "Shared on the network at `0.0.0.0`"),
    ("127.0.0.1", None),
])
def test_the_sidebar_says_when_the_dashboard_listens_beyond_this_machine(address: str, said: str | None) -> None:
    """Launched from another folder than the checkout, Streamlit skips its config and listens everywhere."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", address)
    try:
        at = open_app("datasets")
    finally:
        config.set_option("server.address", before)
    texts = [x.value for x in [*at.sidebar.warning, *at.sidebar.caption]]
    found = [t for t in texts if "network" in t]
    assert (found == []) if said is None else any(t.startswith(said) for t in found), texts


def test_a_hand_copied_run_naming_an_image_outside_its_folder_draws_nothing_of_it(
        make_run: Callable[..., Path]) -> None:
    """An absolute image name in per_image.csv showed that file of the machine as a thumbnail."""
    run = make_run("run-o", misplaced=("s1_2.png",))
    for name in ("per_image.csv", "submission.csv"):
        (run / name).write_text((run / name).read_text().replace("s1_2.png", "/usr/share/x.png"))
    at = open_app("results", run="run-o", tab="Clusters")
    assert_clean(at)
    assert any(plain(c.value).startswith("Not drawn, named outside the dataset's folder: /usr/share/x.png")
               for c in at.caption), [c.value for c in at.caption]


def test_the_pairs_tab_of_an_exhaustive_dataset_stays_usable(make_run: Callable[..., Path]) -> None:
    """17,000 pairs of 225 images drew as a solid disk, the pair list took seconds to filter, and every cached view
    of the run carried the whole table into every page."""
    from dashboard.views.results import GRAPH_EDGES_PER_IMAGE, MAX_PAIR_OPTIONS

    names = [f"im{k:02d}.png" for k in range(60)]
    rows = [("ds1", a, b, 1000 - i - j, 900 - i - j) for i, a in enumerate(names) for j, b in enumerate(names)
            if i < j]
    run = make_run("run-big")
    pd.DataFrame(rows, columns=["dataset", "name0", "name1", "n_matches", "n_inliers"]).to_csv(
        run / "pairs_stats.csv", index=False)
    at = open_app("results", run="run-big", tab="Pairs")
    assert_clean(at)
    caption = " ".join(c.value for c in at.caption)
    assert "1770 matched pairs" in caption and "**The graph draws " in caption, caption
    drawn = int(caption.split("**The graph draws ")[1].split(" ")[0])
    assert 60 * GRAPH_EDGES_PER_IMAGE // 2 <= drawn <= 60 * GRAPH_EDGES_PER_IMAGE
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    midpoints = next(t for t in figure["data"] if t.get("name") == "edge midpoints")
    assert len(midpoints["customdata"]) == drawn
    assert len(at.selectbox(key="pair").options) == MAX_PAIR_OPTIONS
    at.selectbox(key="pairs_of").set_value("im07.png").run()
    assert_clean(at)
    options = at.selectbox(key="pair").options
    assert len(options) == 59 and all("im07.png" in o for o in options)
    from dashboard import state

    assert not hasattr(state.run_view("run-big"), "pairs_stats")  # read by the Pairs tab alone


def test_the_run_picker_shows_label_group_and_score_and_keeps_the_id(make_run: Callable[..., Path]) -> None:
    """300 runs listed as bare ids could not be found by their labels."""
    run = make_run("run-l", score=61.5, group="sweep")
    meta = json.loads((run / "run.json").read_text())
    meta["label"] = "fewer keypoints"
    (run / "run.json").write_text(json.dumps(meta))
    make_run("run-m", score=40.0)
    at = open_app("results", run="run-l")
    assert_clean(at)
    picker = at.selectbox(key="run")
    assert picker.value == "run-l" and at.query_params["run"] in ("run-l", ["run-l"])
    assert set(picker.options) == {"run-l · fewer keypoints · sweep · 61.50", "run-m · 40.00"}


def test_the_clusters_tab_says_when_it_draws_only_some_misplaced_images(make_run: Callable[..., Path]) -> None:
    from dashboard.views.results import MISPLACED_SHOWN

    run = make_run("run-x", misplaced=("s1_1.png",))
    at = open_app("results", run="run-x", tab="Clusters", scene="s1")
    assert not any("are drawn" in c.value for c in at.caption)
    table = pd.read_csv(run / "per_image.csv")
    row = table[table["image"] == "s1_1.png"]
    more = pd.concat([row.assign(image=f"extra_{k}.png") for k in range(MISPLACED_SHOWN)])
    pd.concat([table, more]).to_csv(run / "per_image.csv", index=False)
    at = open_app("results", run="run-x", tab="Clusters", scene="s1")
    assert_clean(at)
    assert (f"The first {MISPLACED_SHOWN} of {MISPLACED_SHOWN + 1} are drawn; the Images tab lists every image."
            in [c.value for c in at.caption])


def test_a_run_a_teammates_import_would_refuse_is_not_offered_for_export(make_run: Callable[..., Path]) -> None:
    """Export zipped a run whose label held an escape sequence; the teammate's import then refused the bundle."""
    run = make_run("run-x")
    at = open_app("results", run="run-x")
    assert_clean(at)
    assert not [c for c in at.caption if "Not exportable" in c.value]
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "label": "red\x1b[31m"}))
    at = open_app("results", run="run-x")
    assert_clean(at)
    said = [plain(c.value) for c in at.caption if "Not exportable" in c.value]
    assert len(said) == 1 and "'label' holds control characters" in said[0] and "run.json" in said[0]
    assert at.button(key="dl_bundle").disabled
