"""Datasets page: data roots, datasets and scenes with counts, thumbnails grouped by GT scene."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import state
from imc_core.data import name_list
from imc_core.errors import ImcError


def _add_root() -> None:
    """Form callback (runs before the script, so it may still set the sidebar's ``root`` widget)."""
    new = str(st.session_state.get("new_root") or "").strip()
    if not new:
        return
    try:
        known = set(state.load_roots())
        st.session_state["root"] = state.add_root(new)
        st.session_state["_root_msg"] = ("success", f"Added data root {st.session_state['root']}") if (
            st.session_state["root"] not in known) else ("info", f"{st.session_state['root']} is already a data root")
    except ImcError as err:
        st.session_state["_root_msg"] = ("error", f"Add data root: {str(err).splitlines()[0]}")


#: session key of the roots forgotten in this session that Undo can bring back, the latest last:
#: ``[(path, the list it was forgotten from, whether it was the active one)]`` (one entry only: a second Forget lost
#: the first)
FORGOTTEN = "_forgot"
#: how many forgotten roots keep their Undo
MAX_UNDO = 5


def _forget_root(path: str) -> None:
    """Button callback: forget a remembered root; when it was the active one, the sidebar falls back to the first
    remembered root that exists (the default one only when none does: it fell back to a missing default)."""
    order = state.load_roots()
    try:
        state.remove_root(path)
    except ImcError as err:
        st.session_state["_root_msg"] = ("error", f"Forget data root: {str(err).splitlines()[0]}")
        return
    was_active = st.session_state.get("root") == path
    if was_active:
        st.session_state["root"] = next((r for r in state.load_roots() if Path(r).is_dir()),
                                        str(state.default_root()))
    undo = [e for e in st.session_state.get(FORGOTTEN) or [] if e[0] != path]
    st.session_state[FORGOTTEN] = [*undo, (path, order, was_active)][-MAX_UNDO:]
    st.session_state["_root_msg"] = ("forgot", path)


def _undo_forget(path: str) -> None:
    """Button callback: remember a root forgotten in this session again, where it was (active again if it was)."""
    entries = st.session_state.get(FORGOTTEN) or []
    order, was_active = next(((o, a) for p, o, a in entries if p == path), ([path], False))
    # back before the first root that followed it then (two undone in any order keep the list's order)
    later = set(order[order.index(path) + 1:]) if path in order else set()
    current = state.load_roots()
    index = next((k for k, r in enumerate(current) if r in later), len(current))
    try:
        state.restore_root(path, index)
    except ImcError as err:
        st.session_state["_root_msg"] = ("error", f"Undo: {str(err).splitlines()[0]}")
        return
    st.session_state[FORGOTTEN] = [e for e in entries if e[0] != path]
    if was_active:
        st.session_state["root"] = path
    st.session_state["_root_msg"] = ("success", f"Data root {path} is back")


def roots_panel() -> None:
    """Known data roots: add one (validated, remembered in data/roots.json) or forget a remembered one."""
    root = state.current_root()
    kind, text = st.session_state.pop("_root_msg", (None, ""))
    # (open while it says what was just done: it closed as the active root came to exist, over "Added ..." and
    # "... is back")
    with st.expander("Data roots", expanded=root is None or not root.is_dir() or kind is not None):
        with st.form("add_root", clear_on_submit=True, border=False):
            c1, c2 = st.columns([6, 1], vertical_alignment="bottom")
            c1.text_input("Add a data root (folder in the IMC-2025 layout)", key="new_root",
                          placeholder="/path/to/image-matching-challenge-2025")
            c2.form_submit_button("Add", on_click=_add_root)
        if kind == "error":
            st.error(text)
        elif kind == "success":
            st.success(text)
        elif kind == "info":
            st.info(text)
        if kind in ("forgot", "success"):  # each root forgotten in this session keeps its Undo, latest first
            for path, _, _ in reversed(st.session_state.get(FORGOTTEN) or []):
                c1, c2 = st.columns([6, 1], vertical_alignment="center")
                c1.info(f"Forgot data root `{path}` (nothing on disk was touched).")
                c2.button("Undo", key=f"forget_undo::{path}", on_click=_undo_forget, args=(path,))
        for r in state.load_roots():
            c1, c2 = st.columns([6, 1])
            exists = "" if Path(r).is_dir() else " — missing"
            c1.write(f"`{r}`{exists}")
            if r != str(state.default_root()):
                c2.button("Forget", key=f"forget::{r}", on_click=_forget_root, args=(r,))
        st.caption(f"Extra roots are remembered in `{state.roots_file()}`; pick the active one in the sidebar.")


def dataset_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (split, dataset): scenes, images, missing."""
    if summary.empty:
        return pd.DataFrame(columns=["split", "dataset", "scenes", "images", "missing"])
    g = summary.groupby(["split", "dataset"], sort=False)
    out = g.agg(images=("images", "sum"), missing=("missing", "sum")).reset_index()
    scenes = g["scene"].apply(lambda s: int(sum(1 for x in s if x and x != "outliers"))).reset_index(drop=True)
    out.insert(2, "scenes", scenes)
    return out


def problem_counts(scenes: dict[str, list[str]], problems: dict[str, str]) -> pd.DataFrame:
    """Per GT scene: how many of its images are missing and how many are unreadable (:func:`state.image_problems`)."""
    rows = []
    for scene, images in scenes.items():
        why = [problems.get(n, "") for n in images]
        rows.append({"scene": scene, "missing on disk": sum(w == "missing" for w in why),
                     "unreadable": sum(w.startswith("unreadable") for w in why)})
    return pd.DataFrame(rows, columns=["scene", "missing on disk", "unreadable"])


def scenes_table(scenes: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """The summary rows of one dataset plus the ``unreadable`` count per scene (blank cells, not None)."""
    out = scenes.drop(columns=["split"]).copy()
    out["scene"] = out["scene"].fillna("").astype(str)
    by_scene = dict(zip(counts["scene"].astype(str), counts["unreadable"], strict=True))
    if len(out) == 1 and len(counts) == 1:  # no labels: one row for the whole dataset, whatever its name
        by_scene = {out["scene"].iloc[0]: int(counts["unreadable"].iloc[0])}
    out.insert(out.columns.get_loc("missing") + 1, "unreadable",
               [int(by_scene.get(s, 0)) for s in out["scene"]])
    return out


def thumbnails(root: Path, dataset: str, split: str) -> None:
    """Thumbnail grid grouped by GT scene (or one group without labels)."""
    image_dir, scenes = state.dataset_scenes(root, dataset, split)
    per_scene = st.slider("Thumbnails per scene", 4, 60, 12, step=4, key="thumbs_per_scene")
    for scene, images in scenes.items():
        st.markdown(f"**{state.md(scene)}** — {len(images)} images")
        shown = images[:per_scene]
        state.image_grid([(image_dir / n, n) for n in shown], columns=6)
        if len(images) > len(shown):
            st.caption(f"… and {len(images) - len(shown)} more")


def main() -> None:
    st.title("Datasets")
    state.register_share("datasets", ["dataset"])
    roots_panel()
    root = state.current_root()
    if root is None or not root.is_dir():
        st.query_params.pop("dataset", None)  # (another root's dataset stayed in the share link)
        st.info("Pick an existing data root in the sidebar (the bundled one is made by `make data`).")
        return
    summary = state.root_summary(root)
    for problem in summary.attrs.get("problems", []):
        st.warning(f"{state.md(problem)} (test datasets are listed from test/ instead; train work does not need "
                   "this file)")
    for note in summary.attrs.get("notes", []):  # (the CLI's run said it; the page showed "missing 0")
        st.info(state.md(note))
    if summary.empty:
        st.warning(f"No datasets under {root} (expected train/<dataset>/ or test/<dataset>/).")
        return
    table = dataset_table(summary)
    c1, c2, c3 = st.columns(3)
    c1.metric("Datasets", len(table))
    c2.metric("Scenes", int(table["scenes"].sum()))
    # (image files: a test dataset read from train/ is the same files; strecha_mix read "Images 172" for its 86)
    borrowed = summary[(summary["split"] == "test") & summary["dataset"].isin(summary.attrs.get("borrowed", []))]
    c3.metric("Images", int(table["images"].sum()) - int(borrowed["images"].sum()),
              help="Image files under the root: a test dataset read from train/ (no test/ folder) counts once"
              if len(borrowed) else None)
    st.dataframe(table, hide_index=True, placeholder=state.NO_VALUE, width="stretch")
    names = [f"{r.split}/{r.dataset}" for r in table.itertuples(index=False)]
    choice = st.selectbox("Dataset", names, key="dataset", bind="query-params")
    if not choice:
        return
    split, dataset = choice.split("/", 1)
    scenes = summary[(summary["split"] == split) & (summary["dataset"] == dataset)]
    image_dir, by_scene = state.dataset_scenes(root, dataset, split)
    problems = state.image_problems(image_dir, [n for names in by_scene.values() for n in names])
    table = scenes_table(scenes, problem_counts(by_scene, problems))
    st.dataframe(table, hide_index=True, placeholder=state.NO_VALUE, width="stretch",
                 column_config={"thresholds": st.column_config.TextColumn(width="large")})
    if split == "train" and (refused := state.scoring_problem(root, dataset)):
        st.warning(f"A run of this dataset is refused until this is fixed: {state.md(refused)}")
    if int(scenes["missing"].sum()):
        n = int(scenes["missing"].sum())
        gone = [name for name, why in problems.items() if why == "missing"]  # (named: the thumbnails alone did)
        st.warning(f"{n} labelled image{' is' if n == 1 else 's are'} missing on disk"
                   + (f" ({state.md(name_list(gone, 10))})" if gone else "")
                   + ": a run of this dataset stops on the first one "
                   "(the labels file names its row).")
    unreadable = {n: why for n, why in problems.items() if why.startswith("unreadable")}
    if unreadable:
        listed = "; ".join(f"{n} ({why.removeprefix('unreadable: ')})" for n, why in list(unreadable.items())[:10])
        more = f" … and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
        st.warning(f"{len(unreadable)} image{'s' if len(unreadable) > 1 else ''} cannot be decoded (a run leaves "
                   f"{'them' if len(unreadable) > 1 else 'it'} out, as unregistered): {state.md(listed)}{more}")
    with state.error_boundary(f"Thumbnails of {dataset}"):
        thumbnails(root, dataset, split)


with state.error_boundary("Datasets"):
    main()
