"""Compare page (two or more runs): headline / per-dataset / per-scene deltas with run-to-run noise awareness (runs of
one group aggregated to mean ± std), config diff, per-image gains and losses, 3-D views side by side, bundle import."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import state
from imc_core.errors import ImcError


def arms_of(views: list[state.RunView]) -> dict[str, list[state.RunView]]:
    """Group runs into arms: runs sharing ``group`` form one arm (``group: <name>``), others stand alone."""
    arms: dict[str, list[state.RunView]] = {}
    for rv in views:
        group = rv.meta.get("group")
        label = f"group: {group}" if group else rv.id  # run ids already name the variant
        arms.setdefault(label, []).append(rv)
    return arms


def _scores(runs: list[state.RunView], dataset: str | None = None, metric: str = "score") -> list[float]:
    out = []
    for rv in runs:
        s = rv.scores or {}
        if dataset is not None:
            s = (s.get("datasets") or {}).get(dataset) or {}
        v = s.get(metric)
        if isinstance(v, (int, float)):
            out.append(float(v))
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    ser = pd.Series(values, dtype=float)
    return (float(ser.mean()) if len(ser) else float("nan"),
            float(ser.std(ddof=1)) if len(ser) > 1 else float("nan"))


def headline_table(arms: dict[str, list[state.RunView]], dataset: str | None = None) -> pd.DataFrame:
    """Per arm: runs, mean ± std of score / mAA / clusterness, Δscore vs the first arm and the noise verdict."""
    ref = next(iter(arms.values()))
    rows = []
    for label, runs in arms.items():
        row: dict[str, object] = {"arm": label, "runs": len(runs)}
        for metric in ("score", "mAA", "clusterness"):
            mean, std = _mean_std(_scores(runs, dataset, metric))
            row[metric] = mean
            row[f"{metric} ± std"] = std
        ref_mean, _ = _mean_std(_scores(ref, dataset))
        row["Δ score"] = row["score"] - ref_mean if runs is not ref else 0.0
        row["noise"] = "reference" if runs is ref else state.noise_verdict(_scores(ref, dataset),
                                                                            _scores(runs, dataset))
        rows.append(row)
    return pd.DataFrame(rows)


def per_dataset_table(arms: dict[str, list[state.RunView]]) -> pd.DataFrame:
    """One row per (dataset, arm) with mean score, Δ vs reference and the noise verdict."""
    datasets: list[str] = []
    for runs in arms.values():
        for rv in runs:
            datasets += [d for d in ((rv.scores or {}).get("datasets") or {}) if d not in datasets]
    frames = []
    for d in datasets:
        t = headline_table(arms, d)
        t.insert(0, "dataset", d)
        frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def drop_empty_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Without the ``… ± std`` columns that have no value (no arm has repeats): a column of blanks says nothing."""
    empty = [c for c in table.columns if str(c).endswith(" ± std") and table[c].isna().all()]
    return table.drop(columns=empty)


def per_scene_table(arms: dict[str, list[state.RunView]], dataset: str) -> pd.DataFrame:
    """Scene × arm mean mAA (from scenes.csv) and the Δ of every arm vs the reference."""
    cols = {}
    for label, runs in arms.items():
        frames = [rv.scenes[rv.scenes["dataset"].astype(str) == dataset] for rv in runs if rv.scenes is not None]
        if frames:
            cat = pd.concat(frames)
            cols[label] = pd.to_numeric(cat["mAA"], errors="coerce").groupby(cat["scene"].astype(str)).mean()
    if not cols:
        return pd.DataFrame()
    table = pd.DataFrame(cols)
    ref = table.columns[0]
    for label in table.columns[1:]:
        table[f"Δ {label}"] = table[label] - table[ref]
    return table.rename_axis("scene").reset_index()


def import_panel() -> None:
    """Import a teammate's bundle (validated by imc_core.runs.import_bundle; nothing written outside its folder)."""
    with st.expander("Import a teammate's run bundle"):
        up = st.file_uploader("Bundle (.zip made by Export bundle)", type=["zip"], key="bundle")
        if up is None:
            return
        done: dict[str, str] = st.session_state.setdefault("_imported", {})
        if up.file_id in done:
            st.success(f"Imported as {done[up.file_id]}")
            return
        from imc_core.runs import import_bundle

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(up.name).name
            path.write_bytes(up.getvalue())
            try:
                dest = import_bundle(path)
            except ImcError as err:
                st.error(f"Import failed: {str(err).splitlines()[0]}")
                return
        done[up.file_id] = dest.name
        st.success(f"Imported as {dest.name}")


def _pipeline_config(config: dict[str, object]) -> dict[str, object]:
    """The config sections only (``[meta]`` records variant/overrides, which the diff already shows as values)."""
    return {k: v for k, v in config.items() if k != "meta"}


def config_diff_section(arms: dict[str, list[state.RunView]]) -> None:
    from imc_core.analysis import config_diff

    labels = list(arms)
    ref = arms[labels[0]][0]
    frames = []
    for label in labels[1:]:
        d = config_diff(_pipeline_config(ref.config), _pipeline_config(arms[label][0].config))
        d.insert(0, "vs", label)
        frames.append(d)
    diff = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    st.markdown(f"**Config diff** (reference: {labels[0]})")
    if diff.empty:
        st.caption("Identical configs.")
    else:
        st.dataframe(diff.astype(str), hide_index=True, width="stretch")


def per_image_section(views: list[state.RunView]) -> None:
    from imc_core.analysis import per_image_delta

    st.markdown("**Per-image gains and losses**")
    ids = [rv.id for rv in views]
    c1, c2, c3 = st.columns([2, 2, 1])
    a = c1.selectbox("Run A (reference)", ids, index=0, key="delta_a")
    b = c2.selectbox("Run B", ids, index=1, key="delta_b")
    only = c3.checkbox("Changed only", value=True, key="delta_changed")
    va, vb = (next(v for v in views if v.id == x) for x in (a, b))
    if va.per_image is None or vb.per_image is None:
        st.caption("Both runs need a per_image.csv.")
        return
    delta = per_image_delta(va.per_image, vb.per_image)
    counts = delta["pass_change"].value_counts()
    st.caption(" · ".join(f"{k}: {v}" for k, v in counts.items()))
    if only:
        delta = delta[(delta["pass_change"].isin(["gained", "lost"])) | (delta["registered_change"].isin(
            ["gained", "lost"])) | (delta["pass_delta"] != 0)]
    st.dataframe(delta, hide_index=True, width="stretch", key="delta_table")


def side_by_side(views: list[state.RunView]) -> None:
    st.markdown("**3-D cameras side by side**")
    datasets: list[str] = []
    for rv in views:
        datasets += [d for d in rv.datasets if d not in datasets]
    if not datasets:
        return
    if st.session_state.get("dataset") not in datasets:
        st.session_state["dataset"] = datasets[0]
    c1, c2 = st.columns(2)
    dataset = c1.selectbox("Dataset", datasets, key="dataset", bind="query-params")
    scenes: list[str] = []
    for rv in views:
        if rv.per_image is not None:
            scenes += [str(s) for s in rv.per_image.loc[rv.per_image["dataset"].astype(str) == dataset, "scene"]
                       .unique() if str(s) != "outliers" and str(s) not in scenes]
    if not scenes:
        st.caption("No GT scenes in these runs.")
        return
    if st.session_state.get("scene") not in scenes:
        st.session_state["scene"] = scenes[0]
    scene = c2.selectbox("GT scene", scenes, key="scene", bind="query-params")
    if not st.toggle("Draw the 3-D views", value=False, key="show_3d"):
        return
    shown = views[:3]
    for col, rv in zip(st.columns(len(shown)), shown, strict=True):
        with col:
            st.caption(rv.id)
            with state.error_boundary(rv.id):
                state.cameras_3d(rv, dataset, scene, key=f"fig_3d_{rv.id}", compact=True)


def main() -> None:
    st.title("Compare")
    state.register_share("compare", ["runs", "dataset", "scene"])
    with state.error_boundary("Import"):
        import_panel()
    df = state.runs_table()
    ids = [str(i) for i in df["id"]]
    chosen = st.multiselect("Runs (the first is the reference)", ids, key="runs", bind="query-params")
    views: list[state.RunView] = []
    for run_id in chosen:
        try:
            views.append(state.run_view(run_id))
        except ImcError as err:
            st.error(f"{run_id}: {str(err).splitlines()[0]}")
    if len(views) < 2:
        st.info("Pick two or more runs. Runs of the same group (repeated seeds) are aggregated to mean ± std.")
        return
    arms = arms_of(views)
    head = drop_empty_spread(headline_table(arms))
    st.dataframe(head, hide_index=True, width="stretch", key="headline",
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in head.columns
                                if c not in ("arm", "runs", "noise")})
    st.caption("noise: Welch t-test between repeated runs (groups); with repeats on one side only, "
               "|Δ| ≤ 2·std of that side counts as within noise.")
    state.show_figure("compare_bars", {k: [rv.scores for rv in v if rv.scores] for k, v in arms.items()},
                      key="fig_compare")
    per_ds = drop_empty_spread(per_dataset_table(arms))
    if not per_ds.empty:
        st.markdown("**Per dataset**")
        st.dataframe(per_ds, hide_index=True, width="stretch", key="per_dataset",
                     column_config={c: st.column_config.NumberColumn(format="%.2f") for c in per_ds.columns
                                    if c not in ("dataset", "arm", "runs", "noise")})
        dataset = st.selectbox("Per-scene mAA of dataset", list(per_ds["dataset"].unique()), key="scene_dataset")
        st.dataframe(per_scene_table(arms, dataset), hide_index=True, width="stretch", key="per_scene")
    with state.error_boundary("Config diff"):
        config_diff_section(arms)
    with state.error_boundary("Per-image delta"):
        per_image_section(views)
    with state.error_boundary("3-D views"):
        side_by_side(views)


with state.error_boundary("Compare"):
    main()
