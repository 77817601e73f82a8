"""Every page and tab of a hostile run: names and words that are markdown must be shown as text.

A teammate's bundle or a downloaded dataset can name its datasets, scenes, images, clusters, variant, warnings and
log lines with markdown such as ``![x](b.png)``; rendered as markup, the browser fetches that address on every page
view (a beacon) or the page shows what the name hides. Earlier tests covered the places reviews found one by one;
this one walks every element of every page and tab and reads each string Streamlit renders as markdown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from dashkit import DATASET, SCENES, DashEnv, open_app, write_run

BEACON = "![x](b.png)"
#: fields of an element's message that Streamlit renders as markdown (labels, bodies, helps, captions)
MARKDOWN_FIELDS = {"body", "label", "help", "caption", "placeholder"}
#: element kinds whose strings are shown verbatim (code blocks, tables, charts, raw JSON)
VERBATIM = {"code", "arrowDataFrame", "plotlyChart", "json", "html", "arrowTable", "dataframe"}
NAMES = re.compile(r"\b(" + "|".join([DATASET, "s1", "s2", "cluster0", "cluster1", *(
    re.escape(n) for imgs in SCENES.values() for n in imgs)]) + r")\b")


def hostile(text: str) -> str:
    """Every dataset, scene, cluster and image name of the fabricated run prefixed with the beacon."""
    return NAMES.sub(lambda m: BEACON + m.group(1), text)


def make_hostile(env: DashEnv, name: str, **kw: Any) -> Path:
    """A run whose data root and tables name everything with markdown, and whose run.json and log do too."""
    run = write_run(env, name, **kw)
    for path in [*env.data_root.rglob("*"), *run.rglob("*")]:
        if path.is_file() and path.suffix in {".csv", ".json", ".txt", ".toml"}:
            path.write_text(hostile(path.read_text()))
    for path in sorted(env.data_root.rglob("*"), key=lambda p: -len(p.parts)):
        if (renamed := hostile(path.name)) != path.name:
            path.rename(path.with_name(renamed))
    meta = json.loads((run / "run.json").read_text())
    meta.update(variant=BEACON, device=BEACON, label=BEACON, group=BEACON, warnings=[BEACON, f"in {BEACON} too"])
    (run / "run.json").write_text(json.dumps(meta))
    with (run / "log.txt").open("a") as f:
        f.write(f"{BEACON} a log line\n")
    return run


def markdown_strings(node: Any) -> Iterator[tuple[str, str]]:
    """(element kind, string) for every string of the page that Streamlit renders as markdown."""
    kind = getattr(node, "type", "")
    if kind in VERBATIM:
        return
    proto = getattr(node, "proto", None)
    if proto is not None:
        yield from ((kind, s) for s in _fields(MessageToDict(proto)))
    for child in getattr(node, "children", {}).values():
        yield from markdown_strings(child)


def _fields(message: Any) -> Iterator[str]:
    if isinstance(message, dict):
        for key, value in message.items():
            if key in MARKDOWN_FIELDS and isinstance(value, str):
                yield value
            elif key not in {"value", "default", "options", "rawValues", "formattedValue", "arrowData"}:
                yield from _fields(value)
    elif isinstance(message, list):
        for value in message:
            yield from _fields(value)


def beacons(at: AppTest) -> list[tuple[str, str]]:
    """Markdown strings in which the beacon is markup: outside code spans and not escaped."""
    spans = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
    return [(kind, s) for kind, s in [*markdown_strings(at.main), *markdown_strings(at.sidebar)]
            if BEACON in spans.sub("", s)]


def shown(at: AppTest) -> int:
    """How many markdown strings carry the beacon at all (escaped or in code): the page did show the names."""
    return sum("x](b" in s.replace("\\", "") for _, s in [*markdown_strings(at.main), *markdown_strings(at.sidebar)])


@pytest.fixture()
def hostile_runs(dash_env: DashEnv) -> DashEnv:
    make_hostile(dash_env, "run-h", misplaced=("s1_2.png",))
    write_run(dash_env, "run-g", score=50.0)
    for path in (dash_env.runs / "run-g").rglob("*"):
        if path.is_file() and path.suffix in {".csv", ".json", ".txt", ".toml"}:
            path.write_text(hostile(path.read_text()))
    return dash_env


@pytest.mark.parametrize("tab", ["Overview", "Images", "3D", "Clusters", "Pairs", "Loss", "Timings", "Log",
                                 "Descriptors"])
def test_every_results_tab_shows_a_hostile_runs_names_as_text(hostile_runs: DashEnv, tab: str) -> None:
    scene = BEACON + "s1"
    at = open_app("results", run="run-h", tab=tab, dataset=BEACON + DATASET, scene=scene)
    assert not at.exception, [e.value for e in at.exception]
    assert not beacons(at), beacons(at)
    assert shown(at) >= 2  # the names were shown (as text), not dropped


@pytest.mark.parametrize("page", ["datasets", "run", "compare"])
def test_every_page_shows_a_hostile_runs_names_as_text(hostile_runs: DashEnv, page: str) -> None:
    params = {"runs": "run-h,run-g"} if page == "compare" else {"dataset": BEACON + DATASET}
    if page == "run":  # a shared Run link naming the hostile run's group: the page warns of the group's other config
        params.update(group=BEACON, label=BEACON)
    at = open_app(page, **params)
    assert not at.exception, [e.value for e in at.exception]
    assert not beacons(at), beacons(at)
    assert shown(at) >= 1
