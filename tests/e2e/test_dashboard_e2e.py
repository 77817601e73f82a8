"""End-to-end tests: Debian Chromium (Playwright) against ``streamlit run dashboard/app.py`` on the bundled data.

Flows: browse the datasets; run the default variant from the Run page to a score (live progress, history); open the run
in Results (headline, per-image table, 3-D cameras); compare it with a second run that changes a mapping parameter
(features and matches come from the cache); share a Results / Compare view by URL; export a run bundle and import it
on the Compare page.

Every flow saves full-page screenshots under ``tests/artifacts/``. Clean 1400×900 screenshots for the README go to
``tests/artifacts/readme/`` and, with ``IMC_UPDATE_SCREENSHOTS=1``, to ``docs/screenshots/`` too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from typing import Any

import pytest
from e2ekit import REPO, VIEWPORT, Server, browser_missing_reason

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(browser_missing_reason() is not None, reason=browser_missing_reason() or ""),
]

DATASET = "synth_boxes"  # the smaller bundled dataset: ~35 s for the default variant on 2 CPU cores
OTHER_DATASET = "synth_rooms"
MAPPING_KEY, MAPPING_VALUE = "max_num_models", "1"  # a mapping parameter: features and matches are reused
SCENE = "cellar"
RUN_TIMEOUT_MS = 240_000
PAGE_TIMEOUT_MS = 60_000
README_SHOTS = REPO / "docs" / "screenshots"
README_MAX_BYTES = 400_000
#: hover-only chrome (Plotly mode bar, element toolbars, the sidebar's collapse arrow) kept out of README pictures
HIDE_HOVER_CHROME = (".modebar-container, [data-testid='stElementToolbar'], [data-testid='stSidebarCollapseButton']"
                     " { visibility: hidden !important; }")


# ------------------------------------------------------------------------------------------------ page helpers


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(*args, **kwargs)


def settle(page: Any, timeout: float = PAGE_TIMEOUT_MS) -> None:
    """Wait until Streamlit has no script run in flight (its "Running..." status widget is gone)."""
    page.wait_for_timeout(250)  # tiny poll: the status widget shows up a moment after an interaction
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=timeout)


def assert_clean(page: Any) -> None:
    """No Streamlit exception box and no error boundary message on the page."""
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    expect(page.get_by_text("unexpected error")).to_have_count(0)


def open_page(page: Any, server: Server, path: str, ready: Callable[[Any], Any]) -> None:
    """Go to ``server.url + path`` and wait for ``ready(page)`` to be visible and the script run to end."""
    page.goto(server.url + path)
    expect(ready(page)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    assert_clean(page)


def grid(page: Any, *columns: str) -> list[dict[str, str]]:
    """Rows of the ``st.dataframe`` whose header starts with ``columns`` (Glide's accessible table: rows in view).

    Streamlit only gives a data frame a ``st-key-*`` class when it has a selection, so tables are found by header.
    """
    selector = "[data-testid='stDataFrame'] table[role='grid']"
    expect(page.locator(selector).first).to_be_attached(timeout=PAGE_TIMEOUT_MS)
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while True:  # frames render one by one: wait until the wanted one is there (or the time is up)
        tables = page.locator(selector).evaluate_all("""(tables, wanted) => tables.map(t => {
            const heads = Array.from(t.querySelectorAll('thead th')).map(h => h.textContent.trim());
            if (!wanted.every((c, i) => heads[i] === c)) return null;
            return Array.from(t.querySelectorAll('tbody tr')).map(tr => {
                const row = {};
                tr.querySelectorAll('td').forEach((td, i) => { row[heads[i] ?? String(i)] = td.textContent.trim(); });
                return row;
            });
        }).filter(x => x !== null)""", list(columns))
        if len(tables) == 1 and tables[0] or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    assert len(tables) == 1, f"expected one data frame with columns {columns}, found {len(tables)}"
    return tables[0]


def shows_run(run_id: str) -> re.Pattern[str]:
    """What the Results run picker shows for ``run_id``: the id, then its label, group and score."""
    return re.compile(rf"^{re.escape(run_id)}( · .*)?$")


def select_option(page: Any, key: str, option: str) -> None:
    """Pick ``option`` in the ``st.selectbox`` with ``key=``."""
    page.locator(f".st-key-{key} input[role='combobox']").click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)
    expect(page.locator(f".st-key-{key} input[role='combobox']")).to_have_value(option)


def multiselect_add(page: Any, key: str, run_id: str) -> None:
    """Add the run ``run_id`` to the run picker (``st.multiselect``) with ``key=``: its option and its tag show the
    id, then the run's label, group and score."""
    page.locator(f".st-key-{key} input[role='combobox']").click()
    page.get_by_role("option", name=shows_run(run_id)).click()
    page.keyboard.press("Escape")
    settle(page)
    expect(page.locator(f".st-key-{key} [data-tag]").filter(
        has_text=re.compile(rf"^{re.escape(run_id)}( · |$)"))).to_be_visible()


def main_height(page: Any) -> int:
    return int(page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight"))


def full_shot(page: Any, path: Path) -> None:
    """Page-level screenshot of the whole app (Streamlit scrolls inside ``stMain``, so the viewport is grown)."""
    height = max(VIEWPORT["height"], min(main_height(page), 12_000))
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    try:
        page.wait_for_timeout(300)  # let Plotly / the data grids re-layout to the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(dict(VIEWPORT))


def readme_shot(page: Any, name: str, artifacts: Path) -> Path:
    """A clean 1400×900 viewport screenshot (PNG, palette-quantised above 400 kB) for the README."""
    from PIL import Image

    out_dir = artifacts / "readme"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    page.mouse.move(VIEWPORT["width"] - 4, VIEWPORT["height"] // 2)  # off every widget
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring
    style = page.add_style_tag(content=HIDE_HOVER_CHROME)
    try:
        page.screenshot(path=str(path))
    finally:
        style.evaluate("e => e.remove()")
    if path.stat().st_size > README_MAX_BYTES:
        with Image.open(path) as im:
            small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(path, optimize=True)
    with Image.open(path) as im:
        assert im.size == (VIEWPORT["width"], VIEWPORT["height"])
    if os.environ.get("IMC_UPDATE_SCREENSHOTS"):
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / name)
    return path


def scroll_main(page: Any, y: int | str) -> None:
    """Scroll Streamlit's main container to ``y`` px (or ``"bottom"``)."""
    page.evaluate("y => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                  " m.scrollTo(0, y === 'bottom' ? m.scrollHeight : y); }", y)
    page.wait_for_timeout(200)


def scroll_to(page: Any, locator: Any, offset: int = 16) -> None:
    """Scroll the main container so that ``locator``'s top sits ``offset`` px below the viewport top."""
    locator.evaluate("(e, off) => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                     " m.scrollBy(0, e.getBoundingClientRect().top - off); }", offset)
    page.wait_for_timeout(200)


# ------------------------------------------------------------------------------------------------ runs via the UI


@dataclass
class LaunchedRun:
    """A run launched from the Run page.

    Attributes:
        id: run id (folder name under the server's runs dir).
        scores: its ``scores.json``.
        saw_progress: whether a live per-stage progress bar of the pipeline was shown while it ran.
    """

    id: str
    scores: dict[str, Any]
    saw_progress: bool

    @property
    def score(self) -> float:
        return float(self.scores["score"])


def run_ids(server: Server) -> set[str]:
    return {p.name for p in server.runs.iterdir() if p.is_dir() and not p.name.startswith(".")}


def click_launch(page: Any, server: Server) -> str:
    """Click the Run page's Launch and return the id of the run folder it made."""
    before = run_ids(server)
    page.get_by_role("button", name="Launch").click()
    new: set[str] = set()
    for _ in range(200):  # the run directory is created before the job process starts
        new = run_ids(server) - before
        if new:
            break
        page.wait_for_timeout(100)
    assert len(new) == 1, f"expected one new run directory, got {sorted(new)}"
    return new.pop()


def launch_from_run_page(page: Any, server: Server, mapping: tuple[str, str] | None = None,
                         progress_shot: Path | None = None) -> LaunchedRun:
    """Run page: keep one dataset, optionally change a mapping parameter, Launch, follow the job to its score.

    Args:
        page: a page of a fresh context.
        server: the dashboard.
        mapping: ``(reconstruction key, value)`` typed into the generated parameter widget, or None.
        progress_shot: where to save a screenshot of the live progress (the first time it is seen).
    """
    open_page(page, server, "/run", lambda p: p.get_by_role("button", name="Launch"))
    page.get_by_role("button", name=f"Remove {OTHER_DATASET}").click()
    settle(page)
    expect(page.locator(".st-key-datasets [data-tag]")).to_have_count(1)
    expect(page.locator(f".st-key-datasets [data-tag] [title='{DATASET}']")).to_be_visible()
    if mapping:
        key, value = mapping
        page.get_by_text("reconstruction", exact=True).click()  # the section's expander
        field = page.get_by_role("textbox", name=key, exact=True)  # (an integer: a text field)
        field.fill(value)
        field.press("Enter")
        settle(page)
        expect(page.get_by_text(f"--set reconstruction.{key}={value}")).to_be_visible()
    else:
        expect(page.get_by_text("(none: the variant as it is)")).to_be_visible()
    run_id = click_launch(page, server)
    job = page.get_by_text(re.compile(rf"{re.escape(run_id)} · (running|done)"))
    expect(job.first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    saw_progress = False
    done = page.get_by_text(f"{run_id} · done")
    failed = page.get_by_text(re.compile(rf"{re.escape(run_id)} · (failed|stopped|cancelled)"))
    for _ in range(RUN_TIMEOUT_MS // 250):
        if done.count() or failed.count():
            break
        # a pipeline stage's bar ("synth_boxes/features: 12/29 · ETA 5 s"), not just the launcher's "starting"
        if not saw_progress and page.locator('[data-testid="stProgress"]', has_text=f"{DATASET}/").count():
            saw_progress = True
            if progress_shot is not None:
                scroll_to(page, page.get_by_role("heading", name="Jobs"))
                page.screenshot(path=str(progress_shot))
        page.wait_for_timeout(250)  # tiny poll while the live fragment refreshes every second
    assert failed.count() == 0, (server.runs / run_id / "job.log").read_text(errors="replace")[-2000:]
    expect(done).to_be_visible(timeout=5_000)
    scores = json.loads((server.runs / run_id / "scores.json").read_text())
    expect(page.get_by_text(f"score {scores['score']:.2f}")).to_be_visible()
    settle(page)
    return LaunchedRun(run_id, scores, saw_progress)


@pytest.fixture(scope="session")
def run_a(browser: Any, server: Server, artifacts: Path) -> LaunchedRun:
    """The default variant on one bundled dataset, launched and followed from the Run page."""
    ctx = browser.new_context(viewport=dict(VIEWPORT))
    try:
        page = ctx.new_page()
        run = launch_from_run_page(page, server, progress_shot=artifacts / "01_run_a_progress.png")
        full_shot(page, artifacts / "01_run_a_finished.png")
    finally:
        ctx.close()
    return run


@pytest.fixture(scope="session")
def run_b(browser: Any, server: Server, run_a: LaunchedRun, artifacts: Path) -> LaunchedRun:
    """Same variant and dataset as ``run_a`` with a changed mapping parameter (features/matches from the cache)."""
    ctx = browser.new_context(viewport=dict(VIEWPORT))
    try:
        page = ctx.new_page()
        run = launch_from_run_page(page, server, (MAPPING_KEY, MAPPING_VALUE))
        history_row = page.locator(".st-key-history td", has_text=run.id)
        expect(history_row).to_be_attached(timeout=PAGE_TIMEOUT_MS)  # the history was refreshed
        settle(page)
        page.get_by_text("reconstruction", exact=True).click()  # fold the section again for the picture
        settle(page)
        scroll_main(page, "bottom")
        readme_shot(page, "run.png", artifacts)
        full_shot(page, artifacts / "03_run_b_finished.png")
    finally:
        ctx.close()
    return run


# ------------------------------------------------------------------------------------------------ flows


def test_datasets_page_lists_bundled_data(page: Any, server: Server, artifacts: Path, tmp_path: Path) -> None:
    open_page(page, server, "/", lambda p: p.get_by_text("Thumbnails per scene"))
    rows = grid(page, "split", "dataset", "scenes")
    assert {r["dataset"] for r in rows} == {DATASET, OTHER_DATASET}
    select_option(page, "dataset", f"train/{DATASET}")
    expect(page.locator('[data-testid="stImage"]').first).to_be_visible()
    expect(page.get_by_text(re.compile(rf"^{SCENE} — \d+ images$"))).to_be_visible()
    assert_clean(page)
    scroll_to(page, page.locator('[data-testid="stMetric"]').first)
    readme_shot(page, "datasets.png", artifacts)
    full_shot(page, artifacts / "00_datasets.png")
    # typed by hand, /datasets (the page lives at /) lands on it with its query, not on "page not found", and
    # another root in that query (bound to the sidebar's picker) does not crash the redirect
    shutil.copytree(REPO / "data" / "synthetic", tmp_path / "other")
    root = quote(str(tmp_path / "other"), safe="")
    open_page(page, server, f"/datasets?root={root}&dataset=train%2F{OTHER_DATASET}",
              lambda p: p.get_by_text("Thumbnails per scene"))
    expect(page.get_by_text("Page not found")).to_have_count(0)
    assert "/datasets" not in page.url
    expect(page.get_by_text(re.compile(r"^[a-z]+ — \d+ images$")).first).to_be_visible()
    assert f"dataset=train%2F{OTHER_DATASET}" in page.url


def test_run_page_keeps_its_edits_across_pages(page: Any, server: Server) -> None:
    """Streamlit drops the state of widgets a page does not draw: a look at Datasets or Results reset every edit
    of the launch form (Launch then ran the plain variant). Only a browser shows it; AppTest keeps the state."""
    open_page(page, server, "/run", lambda p: p.get_by_role("button", name="Launch"))
    edits = {".st-key-cfg-default-reconstruction-seed input": "7", ".st-key-repeats input": "4",
             ".st-key-group input": "mygroup"}
    share = page.locator('[data-testid="stSidebar"] [data-testid="stCode"]')
    # each edit's effect is waited for before the next: on a busy machine a script run starts later than settle's
    # first look, and a page switched to before it ran had never received the edit
    effects = [lambda: expect(page.get_by_text("--set reconstruction.seed=7")).to_be_visible(timeout=PAGE_TIMEOUT_MS),
               lambda: expect(page.get_by_text("Seeds 7 … 10")).to_be_visible(timeout=PAGE_TIMEOUT_MS),
               lambda: expect(share).to_contain_text("group=mygroup", timeout=PAGE_TIMEOUT_MS)]
    for (selector, value), effect in zip(edits.items(), effects, strict=True):
        page.locator(selector).fill(value)
        page.locator(selector).press("Enter")
        effect()
        settle(page)
    for name in ("Datasets", "Results", "Run"):
        page.locator('[data-testid="stSidebarNav"] a', has_text=name).click()
        settle(page)
    expect(page.get_by_role("button", name="Launch")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    assert_clean(page)
    for selector, value in edits.items():  # (a busy machine redraws the form slowly)
        expect(page.locator(selector)).to_have_value(value, timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_text("--set reconstruction.seed=7")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def test_run_page_datasets_follow_the_sidebar_root(page: Any, server: Server, synthetic_data: Path,
                                                   tmp_path: Path) -> None:
    """Another data root picked in the sidebar on the Run page left the old root's dataset chips on screen, while
    Launch ran the new root's datasets. Only a browser shows it: the server's state was right."""
    from PIL import Image

    other = tmp_path / "other"
    (other / "train" / "lonely").mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 120, 30)).save(other / "train" / "lonely" / "a.png")
    open_page(page, server, f"/run?root={quote(str(other), safe='')}",
              lambda p: p.get_by_role("button", name="Launch"))
    expect(page.locator(".st-key-datasets [data-tag] [title='lonely']")).to_be_visible()
    select_option(page, "root", str(synthetic_data))
    expect(page.locator(f".st-key-datasets [data-tag] [title='{DATASET}']")).to_be_visible()
    expect(page.locator(".st-key-datasets [data-tag] [title='lonely']")).to_have_count(0)
    assert_clean(page)


def test_run_page_switches_variant_after_another_page(page: Any, server: Server) -> None:
    """The saved form was put back into the session before the widgets: another variant's widgets, drawn later,
    showed zeros (features.method aliked, max_keypoints 0, ...) and the first edit launched them. Their saved
    values are now the widgets' defaults."""
    from imc_core.config import resolve_config

    default = resolve_config("default")
    open_page(page, server, "/run?variant=sift_nn", lambda p: p.get_by_role("button", name="Launch"))
    page.locator(".st-key-cfg-sift_nn-reconstruction-seed input").fill("3")
    page.locator(".st-key-cfg-sift_nn-reconstruction-seed input").press("Enter")
    settle(page)
    for name in ("Results", "Run"):
        page.locator('[data-testid="stSidebarNav"] a', has_text=name).click()
        settle(page)
    expect(page.get_by_role("button", name="Launch")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    variant = page.locator(".st-key-variant input[role='combobox']")
    variant.click()
    page.get_by_role("option", name="default", exact=True).click()
    settle(page)
    assert_clean(page)
    expect(page.locator(".st-key-cfg-default-features-max_keypoints input")).to_have_value(
        str(default.features.max_keypoints))
    expect(page.locator(".st-key-cfg-default-features-method input[role='combobox']")).to_have_value(
        default.features.method)
    expect(page.get_by_text("(none: the variant as it is)")).to_be_visible()
    page.locator(".st-key-label input").fill("note")  # the first edit sent the zeros
    page.locator(".st-key-label input").press("Enter")
    settle(page)
    expect(page.get_by_text("(none: the variant as it is)")).to_be_visible()
    variant.click()  # and back: sift_nn's own edit is still there
    page.get_by_role("option", name="sift_nn", exact=True).click()
    settle(page)
    expect(page.locator(".st-key-cfg-sift_nn-reconstruction-seed input")).to_have_value("3")
    expect(page.get_by_text("--set reconstruction.seed=3")).to_be_visible()


def test_run_default_variant_to_score(run_a: LaunchedRun, run_b: LaunchedRun, page: Any, server: Server,
                                      artifacts: Path) -> None:
    """Flow 1: Launch from the Run page, live progress, the history shows the score."""
    assert run_a.saw_progress, "no live progress bar was shown while the pipeline ran"
    assert 0.0 <= run_a.score <= 100.0
    open_page(page, server, "/run", lambda p: p.get_by_role("heading", name="History"))
    rows = {r["id"]: r for r in grid(page, "id", "label", "score")}
    for run in (run_a, run_b):
        assert run.id in rows, f"{run.id} not in the history: {sorted(rows)}"
        assert rows[run.id]["status"] == "done"
        assert float(rows[run.id]["score"]) == pytest.approx(run.score, abs=1e-6)
        assert rows[run.id]["datasets"] == DATASET
    full_shot(page, artifacts / "01_run_history.png")


def open_results(page: Any, server: Server, run: LaunchedRun) -> None:
    """Results of ``run`` reached from the Run page's history (select the row)."""
    open_page(page, server, "/run", lambda p: p.get_by_role("heading", name="History"))
    ids = [r["id"] for r in grid(page, "id", "label", "score")]
    row = ids.index(run.id)
    # the grid is a canvas: click the row's selection checkbox (first column) at its cell's box
    grid_canvas = page.locator(".st-key-history [data-testid='data-grid-canvas']")
    grid_canvas.scroll_into_view_if_needed()
    box = grid_canvas.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 16, box["y"] + 35 * (row + 1.5))  # header and rows are 35 px high
    expect(page).to_have_url(re.compile(r"/results"), timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_role("tab", name="Overview")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    expect(page.locator(".st-key-run input[role='combobox']")).to_have_value(shows_run(run.id))


def test_results_of_a_running_run_fill_in_by_themselves(run_b: LaunchedRun, page: Any, server: Server,
                                                        artifacts: Path) -> None:
    """Results of a run still at work said "No scores.json" and offered an Export of half a run, and stayed so
    until reloaded by hand. It now shows the run's progress, then its score once it ends, without a reload."""
    open_page(page, server, "/run", lambda p: p.get_by_role("button", name="Launch"))
    page.get_by_role("button", name=f"Remove {OTHER_DATASET}").click()
    settle(page)
    page.locator(".st-key-use_cache label").click()  # every stage again: long enough to watch it run
    settle(page)
    expect(page.locator(".st-key-use_cache input")).not_to_be_checked()
    run_id = click_launch(page, server)
    page.goto(f"{server.url}/results?run={run_id}")
    expect(page.get_by_text("The score and the downloads appear here when the run has finished")).to_be_visible(
        timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Export bundle (.zip)")).to_have_count(0)
    url = page.url
    score = page.locator('[data-testid="stMetric"]', has_text="Score")
    expect(score).to_be_visible(timeout=RUN_TIMEOUT_MS)  # the page reloaded itself when the run ended
    assert page.url == url
    expect(page.get_by_role("button", name="Export bundle (.zip)")).to_be_visible()
    scores = json.loads((server.runs / run_id / "scores.json").read_text())
    expect(score).to_contain_text(f"{scores['score']:.2f}")
    assert_clean(page)


def test_results_headline_3d_and_images(run_a: LaunchedRun, page: Any, server: Server, artifacts: Path) -> None:
    """Flow 2: Results for the run: headline scores and charts, 3-D cameras (Plotly scene), per-image table."""
    open_results(page, server, run_a)
    assert_clean(page)
    score = page.locator('[data-testid="stMetric"]').filter(has_text="Score")
    expect(score.locator('[data-testid="stMetricValue"]')).to_have_text(f"{run_a.score:.2f}")
    expect(page.locator(".st-key-fig_scores .js-plotly-plot")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(page.locator(".st-key-fig_scenes .js-plotly-plot")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    scroll_to(page, page.locator(".st-key-run"))
    readme_shot(page, "results.png", artifacts)
    full_shot(page, artifacts / "02_results_overview.png")

    page.get_by_role("tab", name="3D").click()
    # no scene picked: one compact 3-D view per GT scene of the dataset
    n_scenes = len({line.split(",")[1] for line in (REPO / "data" / "synthetic" / "train_labels.csv").read_text()
                    .splitlines()[1:] if line.startswith(f"{DATASET},") and line.split(",")[1] != "outliers"})
    overview = page.locator("[class*='st-key-fig_3d_'] .js-plotly-plot")
    expect(overview.first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(overview).to_have_count(n_scenes)
    settle(page)
    full_shot(page, artifacts / "02_results_3d_all_scenes.png")
    # one scene picked: the full-size view
    select_option(page, "scene", SCENE)
    plot = page.locator(".st-key-fig_3d .js-plotly-plot")
    expect(plot).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    expect(plot.locator(".gl-container canvas").first).to_be_attached()
    layout = plot.evaluate("e => ({scene: e._fullLayout.scene ? e._fullLayout.scene.aspectratio : null,"
                           " traces: (e.data || []).map(t => t.type)})")
    assert layout["scene"] is not None, "the 3-D figure has no Plotly scene"
    assert "scatter3d" in layout["traces"]
    diagonal = sum(v * v for v in layout["scene"].values()) ** 0.5  # dashboard.state.fit_3d_view: fits the view
    assert diagonal == pytest.approx(3 ** 0.5, rel=1e-6)
    assert_clean(page)
    scroll_to(page, page.get_by_role("tab", name="3D"), offset=40)
    readme_shot(page, "results_3d.png", artifacts)
    full_shot(page, artifacts / "02_results_3d.png")

    select_option(page, "scene", "(all scenes)")
    page.get_by_role("tab", name="Descriptors").click()  # appearance scatter from the run's cached features
    desc = page.locator(".st-key-fig_desc .js-plotly-plot")
    expect(desc).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    names = desc.evaluate("e => (e.data || []).map(t => t.name)")
    assert SCENE in names and any(str(n).startswith("cluster") for n in names), names
    assert_clean(page)
    full_shot(page, artifacts / "02_results_descriptors.png")

    page.get_by_role("tab", name="Images").click()
    caption = page.get_by_text(re.compile(r"^\d+ of \d+ images"))
    expect(caption).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    n_images = len(list((REPO / "data" / "synthetic" / "train" / DATASET).glob("*.png")))
    shown, total = map(int, re.match(r"(\d+) of (\d+)", caption.inner_text()).groups())
    assert shown == total == n_images
    rows = grid(page, "image", "GT scene")
    assert rows and all(r["image"].endswith(".png") for r in rows)
    assert {"GT scene", "status"} <= set(rows[0])
    assert_clean(page)
    full_shot(page, artifacts / "02_results_images.png")


def test_a_click_on_the_match_graph_opens_the_pair(run_a: LaunchedRun, page: Any, server: Server,
                                                   artifacts: Path) -> None:
    """The Pairs tab says "Click an edge midpoint to open the pair": with the graph's dragmode "select", Streamlit
    turned Plotly's click selection off, and a click opened nothing."""
    open_page(page, server, f"/results?run={run_a.id}&tab=Pairs",
              lambda p: p.get_by_text("Pair (most matches first)"))
    plot = page.locator("[class*='st-key-fig_graph_'] .js-plotly-plot")
    expect(plot).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    picker = page.locator(".st-key-pair input[role='combobox']")
    before = picker.input_value()
    trace, mids = plot.evaluate("e => { const i = e.data.findIndex(t => t.name === 'edge midpoints');"
                                " return [i, e.data[i].customdata.map(c => [c[0], c[1]])]; }")
    k = next(k for k, (a, b) in enumerate(mids) if not before.startswith(f"{a} ↔ {b} ("))  # another pair
    a, b = mids[k]
    shows = re.compile(rf"^{re.escape(a)} ↔ {re.escape(b)} \(\d+\)$")

    def click_midpoint() -> None:
        from playwright.sync_api import Error as PlaywrightError

        for attempt in range(3):  # a fresh chart can replace the old one between the locate and the scroll
            expect(plot).to_have_count(1, timeout=PAGE_TIMEOUT_MS)
            settle(page)
            point = plot.locator(".scatterlayer .trace").nth(trace).locator("path.point").nth(k)
            try:
                point.scroll_into_view_if_needed()
                box = point.bounding_box()
            except PlaywrightError:  # ("Element is not attached to the DOM": failed once in a fresh-clone run)
                if attempt == 2:
                    raise
                continue
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            return

    click_midpoint()
    expect(picker).to_have_value(shows, timeout=PAGE_TIMEOUT_MS)
    settle(page)
    assert_clean(page)
    full_shot(page, artifacts / "02_results_pairs_clicked.png")
    # another pair picked by hand, then the same edge clicked again: it opens again (a second click selected the
    # point already selected, which Plotly does not report)
    picker.click()
    page.keyboard.type(before.split(" (")[0])  # (a long list is virtualised: filtered to the pair first)
    page.get_by_role("option", name=before, exact=True).click()
    expect(picker).to_have_value(before, timeout=PAGE_TIMEOUT_MS)
    settle(page)
    click_midpoint()
    expect(picker).to_have_value(shows, timeout=PAGE_TIMEOUT_MS)


def open_compare(page: Any, server: Server, runs: list[str]) -> None:
    """Compare page with ``runs`` picked in the multiselect (the first is the reference)."""
    open_page(page, server, "/compare", lambda p: p.get_by_text("Runs (the first is the reference)"))
    for run_id in runs:
        multiselect_add(page, "runs", run_id)
    expect(page.get_by_text("Config diff")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)


def test_compare_two_runs_shows_deltas(run_a: LaunchedRun, run_b: LaunchedRun, page: Any, server: Server,
                                       artifacts: Path) -> None:
    """Flow 3: a second run changing one mapping parameter reused the cached features/matches; deltas shown."""
    timings = json.loads((server.runs / run_b.id / "timings.json").read_text())
    assert timings["cache"][DATASET]["features"] == "hit" and timings["cache"][DATASET]["matching"] == "hit"
    open_compare(page, server, [run_a.id, run_b.id])
    head = {r["arm"]: r for r in grid(page, "arm", "runs")}
    assert set(head) == {run_a.id, run_b.id}
    assert float(head[run_a.id]["Δ score"]) == 0.0
    assert float(head[run_b.id]["Δ score"]) == pytest.approx(run_b.score - run_a.score, abs=1e-6)
    assert head[run_a.id]["verdict"] == "reference"
    per_ds = grid(page, "dataset", "arm")
    assert {r["dataset"] for r in per_ds} == {DATASET}
    expect(page.locator(".st-key-fig_compare .js-plotly-plot")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    diff = grid(page, "vs", "key")
    assert [r["key"] for r in diff] == [f"reconstruction.{MAPPING_KEY}"]
    assert_clean(page)
    readme_shot(page, "compare.png", artifacts)
    full_shot(page, artifacts / "03_compare.png")


def test_shared_urls_restore_the_view(run_a: LaunchedRun, run_b: LaunchedRun, page: Any, browser: Any,
                                      server: Server, artifacts: Path) -> None:
    """Flow 4: the URL of a Results view and of a Compare view opens the same state in a fresh browser context."""
    open_page(page, server, f"/results?run={run_a.id}", lambda p: p.get_by_role("tab", name="Images"))
    select_option(page, "scene", SCENE)
    page.get_by_role("tab", name="Images").click()
    expect(page.get_by_text(re.compile(r"^\d+ of \d+ images"))).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    expect(page).to_have_url(re.compile(r"tab=Images"))
    shared = page.locator('[data-testid="stSidebar"] [data-testid="stCode"]').inner_text().replace("\n", "")
    assert shared.startswith(server.url) and f"run={run_a.id}" in shared
    urls = {"address bar": page.url, "share link": shared}

    open_page(page, server, "/compare", lambda p: p.get_by_text("Runs (the first is the reference)"))
    multiselect_add(page, "runs", run_a.id)
    multiselect_add(page, "runs", run_b.id)
    expect(page.get_by_text("Config diff")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    compare_url = page.url

    ctx = browser.new_context(viewport=dict(VIEWPORT))
    try:
        fresh = ctx.new_page()
        for where, url in urls.items():
            fresh.goto(url)
            caption = fresh.get_by_text(re.compile(r"^\d+ of \d+ images"))
            expect(caption).to_be_visible(timeout=PAGE_TIMEOUT_MS)
            settle(fresh)
            assert_clean(fresh)
            expect(fresh.locator(".st-key-run input[role='combobox']")).to_have_value(shows_run(run_a.id))
            expect(fresh.locator(".st-key-dataset input[role='combobox']")).to_have_value(DATASET)
            expect(fresh.locator(".st-key-scene input[role='combobox']")).to_have_value(SCENE)
            expect(fresh.get_by_role("tab", name="Images")).to_have_attribute("aria-selected", "true")
            n_scene = sum(1 for line in (REPO / "data" / "synthetic" / "train_labels.csv").read_text().splitlines()
                          if line.startswith(f"{DATASET},{SCENE},"))
            assert caption.inner_text().startswith(f"{n_scene} of {n_scene} images"), where
            rows = grid(fresh, "image", "GT scene")
            assert rows and {r["GT scene"] for r in rows} == {SCENE}, where
            full_shot(fresh, artifacts / f"04_shared_results_{where.replace(' ', '_')}.png")

        fresh.goto(compare_url)
        expect(fresh.get_by_text("Config diff")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        settle(fresh)
        assert_clean(fresh)
        for run_id in (run_a.id, run_b.id):  # (a tag shows the id, then the run's label, group and score)
            expect(fresh.locator(".st-key-runs [data-tag]").filter(
                has_text=re.compile(rf"^{re.escape(run_id)}( · |$)"))).to_be_visible()
        assert [r["arm"] for r in grid(fresh, "arm", "runs")] == [run_a.id, run_b.id]
        full_shot(fresh, artifacts / "04_shared_compare.png")
    finally:
        ctx.close()


def test_browser_back_returns_to_the_run_shown(run_a: LaunchedRun, run_b: LaunchedRun, page: Any,
                                               server: Server) -> None:
    """Back to Results from other pages showed an empty run picker (the bound picker emptied itself on a history
    entry without ``?run=``), and a reload then opened another run."""
    open_page(page, server, f"/results?run={run_b.id}", lambda p: p.get_by_role("tab", name="Loss"))
    page.get_by_role("tab", name="Loss").click()
    settle(page)
    for name in ("Compare", "Datasets"):
        page.locator('[data-testid="stSidebarNav"] a', has_text=name).click()
        settle(page)
    for _ in range(8):  # Streamlit may leave two history entries per page switch
        page.go_back()
        settle(page)
        if "/results" in page.evaluate("location.href"):
            break
    assert "/results" in page.evaluate("location.href")
    expect(page.locator(".st-key-run input[role='combobox']")).to_have_value(shows_run(run_b.id),
                                                                             timeout=PAGE_TIMEOUT_MS)
    assert f"run={run_b.id}" in page.evaluate("location.href")
    assert_clean(page)
    page.reload()
    expect(page.locator(".st-key-run input[role='combobox']")).to_have_value(shows_run(run_b.id),
                                                                             timeout=PAGE_TIMEOUT_MS)


def test_export_bundle_and_import_it(run_a: LaunchedRun, page: Any, server: Server, artifacts: Path,
                                     tmp_path: Path) -> None:
    """Flow 5: Export bundle (download) on Results, import it through the Compare page's uploader."""
    open_page(page, server, f"/results?run={run_a.id}", lambda p: p.get_by_role("button", name="Export bundle (.zip)"))
    with page.expect_download(timeout=PAGE_TIMEOUT_MS) as info:
        page.get_by_role("button", name="Export bundle (.zip)").click()
    download = info.value
    assert download.suggested_filename == f"{run_a.id}.zip"
    bundle = tmp_path / download.suggested_filename
    download.save_as(bundle)
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        members = {n: zf.read(n) for n in names}
    assert f"{run_a.id}/run.json" in names and f"{run_a.id}/scores.json" in names
    # a teammate's run: the same results under their own run id (the very same bundle would be recognised as the
    # run already here, and nothing would be copied)
    teammate = tmp_path / "teammate.zip"
    with zipfile.ZipFile(teammate, "w") as zf:
        for n, data in members.items():
            if n == f"{run_a.id}/run.json":  # the run is named by its run.json id, not by its folder
                data = json.dumps({**json.loads(data), "id": f"{run_a.id}-teammate"}).encode()
            zf.writestr(n.replace(f"{run_a.id}/", f"{run_a.id}-teammate/", 1), data)

    open_page(page, server, "/compare", lambda p: p.get_by_text("Import a teammate's run bundle"))
    before = run_ids(server)
    page.get_by_text("Import a teammate's run bundle").click()
    page.locator(".st-key-bundle input[type='file']").set_input_files(str(teammate))
    done = page.get_by_text(re.compile(rf"Imported as {re.escape(run_a.id)}-teammate$"))
    expect(done).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    imported = done.inner_text().removeprefix("Imported as ").strip()
    assert run_ids(server) - before == {imported}
    multiselect_add(page, "runs", run_a.id)
    multiselect_add(page, "runs", imported)
    head = {r["arm"]: r for r in grid(page, "arm", "runs")}
    assert float(head[imported]["score"]) == pytest.approx(run_a.score, abs=1e-6)
    assert float(head[imported]["Δ score"]) == 0.0
    assert_clean(page)
    full_shot(page, artifacts / "05_imported_bundle.png")
