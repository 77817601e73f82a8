"""Compare page (two or more runs): headline / per-dataset / per-scene deltas with run-to-run noise awareness (runs of
one group aggregated to mean ± std), config diff, per-image gains and losses, 3-D views side by side, bundle import.

Only comparable numbers are compared: runs without scores (failed, cancelled, running) are listed with their status
but left out of every aggregate and never made the reference; a dataset counts as shared when every scored run has a
score for it under the same data root, and the headline, the overall bar and the noise verdict are computed over the
shared datasets only (a warning names the data roots and datasets that differ; nothing shared → no deltas). The
decisions are pure functions of :mod:`imc_core.analysis` (``compare_scope``, ``overall_on``, ``group_config_spread``,
``default_pair``); this module lays them out."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from dashboard import state
from imc_core.errors import ImcError
from imc_core.runs import describe_code

if TYPE_CHECKING:
    from imc_core.analysis import CompareScope, RepeatComparison


def arms_of(views: list[state.RunView]) -> dict[str, list[state.RunView]]:
    """Group runs into arms: runs sharing ``group`` form one arm (``group: <name>``), others stand alone, named by
    their run id (which names the variant), after their label when they have one (``label (run id)``: a chart
    legend of bare ids of outside submissions says nothing)."""
    arms: dict[str, list[state.RunView]] = {}
    for rv in views:
        group, text = rv.meta.get("group"), str(rv.meta.get("label") or "").strip()
        label = f"group: {group}" if group else f"{text} ({rv.id})" if text else rv.id
        arms.setdefault(label, []).append(rv)
    return arms


def _arm_names_run(arm: str, run_id: str) -> bool:
    """Whether an arm's label already names this run (a lone run: its id, or "label (id)"); a group's does not."""
    return arm == run_id or arm.endswith(f"({run_id})")


def repeated_seeds(arms: dict[str, list[state.RunView]], usable: Callable[[state.RunView], bool] = lambda rv: True,
                   ) -> tuple[dict[str, list[state.RunView]], list[tuple[str, int, list[str]]]]:
    """Each group with one run per seed: runs of a group with the same seed and the same config under a
    deterministic mapper give the same poses (a second launch of a seed, often all from the cache), so a second
    one is not a second measurement; counting it made the group look larger and its spread smaller. The first
    picked is kept. Runs that are not ``usable`` (no scores: stopped, failed) are nobody's twin: a stopped run
    that kept its seed's place dropped the finished run of that seed, and the group lost a measurement.

    Returns:
        The arms without those runs, and ``(arm, seed, [kept id, dropped ids…])`` for each seed run twice.
    """
    from imc_core.runs import meta_seed

    out: dict[str, list[state.RunView]] = {}
    dropped: dict[tuple[str, int, str], list[str]] = {}  # (arm, seed, kept id) → ids counted once with it
    for label, runs in arms.items():
        kept: list[state.RunView] = []
        by_seed: dict[int, list[state.RunView]] = {}
        for rv in runs:
            seed = meta_seed(rv.meta)
            twin = None
            if not usable(rv):
                kept.append(rv)  # (left out of the scores later, and said so)
                continue
            if seed is not None and not rv.outside and rv.meta.get("deterministic", True):
                twin = next((k for k in by_seed.get(seed, []) if k.config == rv.config and k.meta.get(
                    "deterministic", True) and describe_code(k.meta) == describe_code(rv.meta)), None)
            if twin is None:
                kept.append(rv)
                if seed is not None:
                    by_seed.setdefault(seed, []).append(rv)
            else:
                dropped.setdefault((label, seed, twin.id), []).append(rv.id)
        out[label] = kept
    return out, [(label, seed, [kept_id, *ids]) for (label, seed, kept_id), ids in dropped.items()]


METRICS = ("score", "mAA", "clusterness")


def raw_root(rv: state.RunView) -> str:
    """The run's data root as an absolute, normalised path (runs record what they were given, maybe relative)."""
    return os.path.normpath(str(rv.data_root.resolve()))


def run_root(rv: state.RunView) -> str:
    """The run's data root for comparisons: :func:`raw_root`, or the root of an earlier run that holds the same
    ground truth (:func:`same_data_aliases`, e.g. a teammate's copy of the data)."""
    raw = raw_root(rv)
    return st.session_state.get(ALIASES_KEY, {}).get(raw, raw)


#: session key of this render's {data root: canonical data root}
ALIASES_KEY = "_compare_same_data"


def same_data_aliases(views: list[state.RunView]) -> dict[str, str]:
    """``{raw root: canonical root}`` over the runs compared (:func:`imc_core.analysis.same_data_roots`), stored
    for :func:`run_root`; the roots that were merged are named on the page."""
    from imc_core.analysis import same_data_roots

    aliases = same_data_roots([(raw_root(rv), state.gt_hashes(rv)) for rv in views])
    st.session_state[ALIASES_KEY] = aliases
    merged = {k: v for k, v in aliases.items() if k != v}
    if merged:
        st.caption("Same ground truth in another folder (e.g. a teammate's copy), compared as one data root: "
                   + "; ".join(f"{state.code(k)} = {state.code(v)}" for k, v in merged.items()) + ".")
    return aliases


def code_note(views: list[state.RunView]) -> None:
    """Say so when the runs were made by different imc-lab code: a default or a stage that changed moves scores
    that the config diff cannot explain (runs of one variant from before and after an upgrade)."""
    by_code: dict[str, list[str]] = {}
    for rv in views:
        by_code.setdefault(describe_code(rv.meta) or "not recorded (an imc-lab from before runs said)", []).append(
            rv.id)
    if len(by_code) > 1:
        st.info("These runs were made by different imc-lab code, so their differences can come from the code as "
                "well as from their configs (a seed repeated across code versions counts twice): "
                + "; ".join(f"{state.md(code)}: {state.md(', '.join(ids))}" for code, ids in by_code.items()) + ".")


def unscored_reason(rv: state.RunView) -> str | None:
    """Why a run stays out of the aggregates (``status failed``, ``no scores``), None when it enters them."""
    from imc_core.analysis import unscored_reason as reason

    return reason(rv.status, rv.scores)


def scored_datasets(rv: state.RunView) -> list[str]:
    return [str(d) for d in ((rv.scores or {}).get("datasets") or {})]


def runs_overview(arms: dict[str, list[state.RunView]], left_out: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per chosen run: side (arm), its label, status, score, whether it enters the aggregates, datasets and
    data root (``left_out``: run id → why not, beside :func:`unscored_reason`)."""
    rows = []
    for label, runs in arms.items():
        for rv in runs:
            unscored = unscored_reason(rv)
            reason = unscored or (left_out or {}).get(rv.id)
            score = (rv.scores or {}).get("score") if unscored is None else None  # (a seed again has its score)
            # (score and whether it counts before the long paths: at 1,366 px they were past the right edge)
            rows.append({"run": rv.id, "side": label, "label": str(rv.meta.get("label") or ""), "status": rv.status,
                         "score": float(score) if isinstance(score, (int, float)) else None,
                         "aggregated": "yes" if reason is None else f"no ({reason})",
                         "datasets": ", ".join(scored_datasets(rv) or [str(d) for d in rv.datasets]),
                         "data root": raw_root(rv)})
    return pd.DataFrame(rows)


def _scored(runs: list[state.RunView], dataset: str | None = None, metric: str = "score",
            shared: list[str] | None = None) -> list[tuple[float, int | None]]:
    """``(metric, mapper seed)`` of each run that has the value: of ``dataset``, else the overall over the
    ``shared`` datasets (mean over datasets, as the metric aggregates), else the run's own overall. Runs without
    that value are skipped."""
    from imc_core.analysis import overall_on

    out = []
    for rv in runs:
        s = rv.scores or {}
        if dataset is None and shared is not None:
            v: object = overall_on(s, shared, metric)
        else:
            if dataset is not None:
                s = (s.get("datasets") or {}).get(dataset) or {}
            v = s.get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out.append((float(v), _seed(rv)))
    return out


def _seed(rv: state.RunView) -> int | None:
    """The run's mapper seed, for pairing runs of two arms; None for a submission made outside imc-lab."""
    from imc_core.runs import meta_seed

    return None if rv.outside else meta_seed(rv.meta)


def _compare(ref: list[tuple[float, int | None]], other: list[tuple[float, int | None]]) -> RepeatComparison:
    """:func:`imc_core.analysis.compare_repeats` of two arms' ``(value, seed)`` lists (:func:`_scored`)."""
    from imc_core.analysis import compare_repeats

    return compare_repeats([v for v, _ in ref], [v for v, _ in other], [s for _, s in ref], [s for _, s in other])


def _scores(runs: list[state.RunView], dataset: str | None = None, metric: str = "score",
            shared: list[str] | None = None) -> list[float]:
    """The values of :func:`_scored`."""
    return [v for v, _ in _scored(runs, dataset, metric, shared)]


def _mean_std(values: list[float]) -> tuple[float, float]:
    ser = pd.Series(values, dtype=float)
    return (float(ser.mean()) if len(ser) else float("nan"),
            float(ser.std(ddof=1)) if len(ser) > 1 else float("nan"))


def _arm_row(label: str, runs: list[state.RunView], dataset: str | None,
             shared: list[str] | None) -> dict[str, object]:
    """``runs`` counts the runs whose score entered the means (a run without this dataset's score is left out)."""
    row: dict[str, object] = {"arm": label, "runs": len(_scores(runs, dataset, "score", shared))}
    for metric in METRICS:
        mean, std = _mean_std(_scores(runs, dataset, metric, shared))
        row[metric] = mean
        row[f"{metric} ± std"] = std
    return row


def _interval(low: float | None, high: float | None) -> str | None:
    return None if low is None or high is None else f"{low:+.2f} … {high:+.2f}"


def _test_label(c: RepeatComparison) -> str | None:
    """The test column: the test, for a paired one with its seeds and the runs the other arm had no seed for."""
    if c.test != "paired t":
        return c.test or None
    extra = f" ({c.unpaired} unpaired run{'s' if c.unpaired != 1 else ''} left out)" if c.unpaired else ""
    return f"paired t, {c.n_a} seeds{extra}"


def headline_table(arms: dict[str, list[state.RunView]], dataset: str | None = None,
                   shared: list[str] | None = None, deltas: bool = True) -> pd.DataFrame:
    """Per arm: runs, mean ± std of score / mAA / clusterness, and against the first arm: Δ score, the verdict of
    :func:`imc_core.analysis.compare_repeats` (paired by seed when both arms ran the same seeds), its p, the 95 %
    interval of Δ and the test used.

    ``arms`` hold scored runs only, reference first. Without ``dataset`` the overall values are taken over the
    ``shared`` datasets (the ones every run scored) when given; ``deltas=False`` leaves out Δ and the verdict (runs
    that share no dataset cannot be compared).
    """
    ref = next(iter(arms.values()))
    ref_values = _scored(ref, dataset, "score", shared)
    rows = []
    for label, runs in arms.items():
        row = _arm_row(label, runs, dataset, shared)
        if deltas:
            if runs is ref:
                row.update({"Δ score": 0.0, "verdict": "reference", "p": float("nan"), "95% CI of Δ": None,
                            "test": None})
            else:
                values = _scored(runs, dataset, "score", shared)
                c = _compare(ref_values, values)
                row.update({"Δ score": c.delta, "verdict": c.verdict, "p": c.p if c.p is not None else float("nan"),
                            "95% CI of Δ": _interval(c.low, c.high),
                            "test": _test_label(c)})
        rows.append(row)
    return pd.DataFrame(rows)


def per_dataset_table(arms: dict[str, list[state.RunView]], scope: CompareScope) -> pd.DataFrame:
    """One row per (dataset, arm): mean score, Δ vs reference and the verdict on the datasets every run
    scored; the datasets only some runs have follow with their values but no Δ (``verdict``: not in every run)."""
    frames = []
    for d in scope.shared_datasets:
        t = headline_table(arms, d)
        t.insert(0, "dataset", d)
        frames.append(t)
    rows = []
    for (root, d), have in scope.left_out.items():
        for label in have:
            runs = [rv for rv in arms[label] if run_root(rv) == root and d in scored_datasets(rv)]
            row = {"dataset": d, **_arm_row(label, runs, d, None), "Δ score": float("nan"),
                   "verdict": "not in every run"}
            rows.append(row)
    if rows:
        frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def drop_empty_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Without the ``… ± std`` and p-value columns that have no value (no arm has repeats): a column of blanks says
    nothing."""
    empty = [c for c in table.columns if (str(c).endswith(" ± std") or c in ("p", "95% CI of Δ", "test"))
             and table[c].isna().all()]
    return table.drop(columns=empty)


def per_scene_table(arms: dict[str, list[state.RunView]], dataset: str) -> pd.DataFrame:
    """Scene × arm mean mAA (from scenes.csv), and for every arm against the reference its Δ and, when an arm has
    repeats, the verdict of :func:`imc_core.analysis.compare_repeats` on that scene's mAA (paired by seed when both
    arms ran the same seeds): which scene moved, and whether that is more than noise."""
    from imc_core.analysis import NEEDS_REPEATS

    values: dict[str, dict[str, list[tuple[float, int | None]]]] = {}  # arm → scene → (mAA, seed) per run
    for label, runs in arms.items():
        for rv in runs:
            if rv.scenes is None:
                continue
            rows = rv.scenes[rv.scenes["dataset"].astype(str) == dataset]
            for scene, maa in zip(rows["scene"].astype(str), pd.to_numeric(rows["mAA"], errors="coerce"),
                                  strict=True):
                if math.isfinite(maa):
                    values.setdefault(label, {}).setdefault(scene, []).append((float(maa), _seed(rv)))
    if not values:
        return pd.DataFrame()
    table = pd.DataFrame({label: {scene: sum(v for v, _ in vs) / len(vs) for scene, vs in by_scene.items()}
                          for label, by_scene in values.items()})
    ref = table.columns[0]
    for label in table.columns[1:]:
        table[f"Δ {label}"] = table[label] - table[ref]
        verdicts = {}
        for scene in table.index:
            a, b = values[ref].get(scene, []), values[label].get(scene, [])
            verdicts[scene] = _compare(a, b).verdict
        if set(verdicts.values()) != {NEEDS_REPEATS}:
            table[f"verdict {label}"] = pd.Series(verdicts)
    return table.rename_axis("scene").reset_index()


def per_scene_columns(scenes: pd.DataFrame) -> dict[str, object]:
    """Column settings of :func:`per_scene_table`: its headers are arm labels ("label (run id)"), cut to "ets 512kp
    (20261128-0257…" at 70 px, so each column is as wide as its header, up to 260 px (the verdicts as text)."""
    out: dict[str, object] = {}
    for c in scenes.columns:
        width = min(260, max(70, 7 * len(str(c)) + 24))
        if c == "scene":
            continue
        # (cut at 260 px, a long arm's header keeps its whole name in the column's tooltip)
        out[c] = (st.column_config.TextColumn(width=width, help=str(c)) if str(c).startswith("verdict ")
                  else st.column_config.NumberColumn(format="%.2f", width=width, help=str(c)))
    return out


def submission_panel() -> None:
    """Score a submission made outside imc-lab (:func:`imc_core.ingest.submission_run`) against the sidebar's data
    root and keep it as a run, so it reads and compares like imc-lab's own."""
    root = state.current_root()
    with st.expander("Score a submission made outside imc-lab (a Kaggle notebook, another pipeline)"):
        if root is None or not root.is_dir():
            st.info("Pick an existing data root in the sidebar: its labels score the submission.")
            return
        from imc_core.data import DataRoot

        if not DataRoot(root).has_labels:
            st.info(f"The sidebar's data root ({root}) has no labels (train_labels.csv) to score a submission "
                    "against: pick one that has.")
            return
        st.caption(f"Scored against the labels of the sidebar's data root ({root}) and kept as a run: Results and "
                   "this page then show it like any other. Its pose convention is checked on the way: a file "
                   "written camera→world, with transposed rotations or with t's sign flipped is named.")
        c1, c2 = st.columns(2)
        label = c1.text_input("Label", key="outside_label", placeholder="default: the file's name")
        group = c2.text_input("Group", key="outside_group", placeholder="optional",
                              help="Runs of one group are aggregated (mean ± std) on this page")
        up = st.file_uploader("submission.csv", type=["csv"], key="outside_submission")
        if up is None:
            return
        done: dict[str, tuple[str, bool]] = st.session_state.setdefault("_scored_outside", {})  # upload → run
        if up.file_id not in done:
            from imc_core.ingest import submission_run

            # (a perturbed full IMC-2025 submission takes 20–45 s on 2 cores: the page greyed out without a word)
            with tempfile.TemporaryDirectory() as tmp, st.spinner(
                    f"Scoring {up.name} against {root} (the whole metric, then the pose-convention check: a "
                    "large submission can take a minute)…", show_time=True):
                path = Path(tmp) / Path(up.name).name
                path.write_bytes(up.getvalue())
                try:
                    run_dir, new = submission_run(path, root, label=label.strip() or None,
                                                  group=group.strip() or None, name=up.name)
                except ImcError as err:  # it names the temporary copy: name the upload instead
                    st.error(f"Not scored: {state.md(str(err).splitlines()[0].replace(str(path), up.name))}")
                    return
            done[up.file_id] = (run_dir.name, new)
        run_id, new = done[up.file_id]
        rv = state.run_view(run_id)
        scores = rv.scores or {}
        numbers = (f"score {scores.get('score', float('nan')):.2f} · mAA {scores.get('mAA', float('nan')):.2f} · "
                   f"clusterness {scores.get('clusterness', float('nan')):.2f}")
        if new:
            st.success(f"Scored as {rv.id}: {numbers}")
        else:  # the same bytes again would count as a second seed of one submission
            st.info(f"Not added again: this file was already scored on this data root as {rv.id} ({numbers}).")
        for warning in rv.meta.get("warnings") or []:
            st.warning(state.md(warning))
        st.page_link("views/results.py", label="Open in Results", icon=":material/analytics:",
                     query_params={"run": rv.id})


def import_panel() -> None:
    """Import a teammate's bundle (validated by imc_core.runs.import_run; nothing written outside its folder)."""
    with st.expander("Import a teammate's run bundle"):
        up = st.file_uploader("Bundle (.zip made by Export bundle)", type=["zip"], key="bundle")
        if up is None:
            return
        done: dict[str, tuple[str, str]] = st.session_state.setdefault("_imported", {})  # upload → (kind, text)
        if up.file_id in done:
            kind, text = done[up.file_id]
            (st.info if kind == "info" else st.success)(text)
            return
        from imc_core.runs import import_run

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(up.name).name
            path.write_bytes(up.getvalue())
            try:
                dest, new = import_run(path)
            except ImcError as err:  # it names the temporary copy: name the upload instead
                st.error(f"Import failed: {state.md(str(err).splitlines()[0].replace(str(path), up.name))}")
                return
        done[up.file_id] = (("success", f"Imported as {dest.name}") if new
                            else ("info", f"Not imported: this bundle's run is already here as {dest.name}"))
        absent, kept = st.session_state.get("_compare_absent") or ([], [])
        if dest.name in absent:  # a run the link named: compared now, as the link asked (it was left to be found)
            st.session_state["runs"] = list(dict.fromkeys([*(st.session_state.get("runs") or []), dest.name]))
            st.session_state["_compare_absent"] = ([r for r in absent if r != dest.name], [*kept, dest.name])
            done[up.file_id] = (done[up.file_id][0], f"{done[up.file_id][1]}, and added to the runs compared, as "
                                                     "the link named it")
        kind, text = done[up.file_id]
        (st.info if kind == "info" else st.success)(text)


def _pipeline_config(config: dict[str, object]) -> dict[str, object]:
    """The config sections only (``[meta]`` records variant/overrides, which the diff already shows as values)."""
    return {k: v for k, v in config.items() if k != "meta"}


def group_spreads(arms: dict[str, list[state.RunView]]) -> dict[str, pd.DataFrame]:
    """Groups whose runs differ in config beyond the seed → the differing keys (one column per run)."""
    from imc_core.analysis import group_config_spread

    out = {}
    for label, runs in arms.items():
        if len(runs) > 1:
            spread = group_config_spread({rv.id: rv.config for rv in runs})
            if not spread.empty:
                out[label] = spread
    return out


def config_diff_section(arms: dict[str, list[state.RunView]], spreads: dict[str, pd.DataFrame]) -> None:
    from imc_core.analysis import SEED_KEYS, config_diff

    labels = list(arms)
    unreadable = [rv.id for rv in (arms[label][0] for label in labels) if rv.unreadable("config.toml")]
    # a submission made outside imc-lab has no pipeline config: its diff would list every key as removed
    outside = [rv.id for rv in (arms[label][0] for label in labels) if rv.outside]
    compared = {label: runs for label, runs in arms.items() if runs[0].id not in unreadable + outside}
    # the reference is the first run with a config (a submission picked first left every other run undiffed)
    ref_label = next(iter(compared), None)
    st.markdown("**Config diff**" + (f" (reference: {state.md(ref_label)})" if ref_label is not None else ""))
    if unreadable:  # an unreadable config would read as every key removed
        st.warning(f"Config diff leaves out {', '.join(unreadable)}: its config.toml cannot be read.")
    if outside:
        st.caption(f"Config diff leaves out {', '.join(outside)}: scored from a submission made outside imc-lab, "
                   "so no config of imc-lab's made it.")
    frames = []
    if ref_label is not None:
        ref = compared[ref_label][0]
        for label in list(compared)[1:]:
            d = config_diff(_pipeline_config(ref.config), _pipeline_config(compared[label][0].config))
            if len(compared[ref_label]) > 1 or len(compared[label]) > 1:  # a group repeats over seeds: its seed
                d = d[~d["key"].isin(SEED_KEYS)]  # says nothing
            d.insert(0, "vs", label)
            frames.append(d)
    diff = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    used = [(runs[0].id if label == runs[0].id else f"{state.md(label)}: {runs[0].id}")
            + (f" (first of {len(runs)} runs)" if len(runs) > 1 else "") for label, runs in compared.items()]
    if used:
        st.caption("Configs compared: " + "; ".join(used) + "."
                   + (" The seed is left out: a group repeats over seeds." if any(len(r) > 1 for r in compared.values())
                      else ""))
    if len(compared) < 2:
        st.caption("Only one imc-lab config: nothing to diff.")
    elif diff.empty:
        st.caption("Identical configs.")
    else:
        st.dataframe(_as_text(diff), hide_index=True, width="stretch", key="config_diff")
        if diff["change"].isin(["added", "removed"]).any():  # (every run writes its whole config)
            st.caption("A key only one side's config holds (added, removed) comes from another version of imc-lab: "
                       "the other run's imc-lab had no such setting, so it ran that version's behaviour, not a "
                       "value that was left out.")
    for label, spread in spreads.items():
        st.markdown(f"**{state.md(label)}: configs differ inside the group** (the seed aside)")
        st.dataframe(_as_text(spread), hide_index=True, width="stretch", key=f"spread_{label}")


def _as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Config values as text, a missing one as "—" (``astype(str)`` wrote "None", read as a value)."""
    return table.map(lambda v: state.NO_VALUE if v is None or (isinstance(v, float) and v != v) else str(v))


def per_image_section(arms: dict[str, list[state.RunView]]) -> None:
    """Gains and losses between two scored runs, one of each side by default, over the datasets both scored."""
    from imc_core.analysis import compare_scope, default_pair, per_image_delta

    st.markdown("**Per-image gains and losses**")
    arm_of = {rv.id: label for label, runs in arms.items() for rv in runs if rv.per_image is not None}
    views = {rv.id: rv for runs in arms.values() for rv in runs if rv.per_image is not None}
    pair = default_pair({label: [rv.id for rv in runs if rv.id in views] for label, runs in arms.items()})
    if pair is None:
        st.caption("Needs two scored runs with a per_image.csv.")
        return
    ids = list(views)
    # the pair: the one a shared link names, else one run of the reference side and one of the other. Re-chosen
    # whenever the runs compared change (the pickers kept the pair made among the first runs added: two seeds of
    # one group, while the groups compared were others)
    linked = (state.qp_first("delta_a"), state.qp_first("delta_b"))
    if list(linked) == st.session_state.get(DELTA_IN_URL):  # what the page wrote, not a link
        linked = (None, None)
    first = linked if linked[0] in ids and linked[1] in ids and linked[0] != linked[1] else pair
    signature = "\n".join(ids)
    if (st.session_state.get(DELTA_RUNS) != signature
            or not {st.session_state.get("delta_a"), st.session_state.get("delta_b")} <= set(ids)):
        st.session_state[DELTA_RUNS] = signature
        if "delta_a" in st.session_state:  # on screen: set, since a dropped state leaves the browser's pick
            st.session_state["delta_a"], st.session_state["delta_b"] = first
    c1, c2, c3 = st.columns([2, 2, 1])

    def name(run_id: str) -> str:
        arm = arm_of[run_id]
        return arm if _arm_names_run(arm, run_id) else f"{run_id} ({arm})"

    drawn = "delta_a" in st.session_state  # (a value set before a widget first shows is drawn as its first option)
    a = c1.selectbox("Run A (reference)", ids, key="delta_a", format_func=name,
                     **({} if drawn else {"index": ids.index(first[0])}))
    b = c2.selectbox("Run B", ids, key="delta_b", format_func=name,
                     **({} if drawn else {"index": ids.index(first[1])}))
    only = c3.checkbox("Changed only", value=True, key="delta_changed", bind="query-params")
    # (the address bar holds the pair on screen: a reload showed the pair of the link it was opened from)
    st.query_params["delta_a"], st.query_params["delta_b"] = a, b
    st.session_state[DELTA_IN_URL] = [a, b]
    state.share_also("delta_a", "delta_b", "delta_changed")
    va, vb = views[a], views[b]
    scope = compare_scope({a: [(run_root(va), scored_datasets(va))], b: [(run_root(vb), scored_datasets(vb))]})
    if not scope.shared:
        # (the why, e.g. other data roots, is in the warning at the top of the page: not said twice)
        st.info(f"{a} and {b} share no scored dataset: no per-image gains or losses.")
        return
    if not scope.complete:
        st.caption(f"Images of {', '.join(scope.shared_datasets)} only (the datasets both runs scored). "
                   + " ".join(scope.messages()))
    delta = per_image_delta(va.per_image, vb.per_image, datasets=scope.shared_datasets)
    st.caption(delta_summary(delta))
    if only:
        delta = delta[(delta["pass_change"].isin(["gained", "lost"])) | (delta["registered_change"].isin(
            ["gained", "lost"])) | (delta["pass_delta"] != 0)]
    st.dataframe(delta[[c for c in DELTA_ORDER if c in delta] + [c for c in delta if c not in DELTA_ORDER]],
                 hide_index=True, width="stretch", key="delta_table", placeholder=state.NO_VALUE,
                 column_config=DELTA_COLUMNS)


#: the per-image table's columns, what changed first: at 1,280 px three checkbox columns (registered in A, in B,
#: change) took the place of the passes and errors, which were off screen
DELTA_ORDER = ("dataset", "scene", "image", "status_a", "status_b", "passes_a", "passes_b", "pass_delta", "error_a",
               "error_b", "error_delta", "pass_change", "registered_change", "registered_a", "registered_b")
_HELP_ERROR = "camera centre error under the alignment of the largest threshold, metres"
_HELP_PASSES = "scored thresholds passed in run {} (the metric scores all but the first two: t2…t5 of six)"
DELTA_COLUMNS = {
    "status_a": st.column_config.TextColumn("status A"), "status_b": st.column_config.TextColumn("status B"),
    "passes_a": st.column_config.NumberColumn("passes A", width=70, help=_HELP_PASSES.format("A")),
    "passes_b": st.column_config.NumberColumn("passes B", width=70, help=_HELP_PASSES.format("B")),
    "pass_delta": st.column_config.NumberColumn("Δ passes", format="%+d", width=70),
    "error_a": st.column_config.NumberColumn("error A (m)", format="%.4f", help=_HELP_ERROR),
    "error_b": st.column_config.NumberColumn("error B (m)", format="%.4f", help=_HELP_ERROR),
    "error_delta": st.column_config.NumberColumn("Δ error (m)", format="%+.4f", help="B − A"),
    "pass_change": st.column_config.TextColumn(
        "passes any", help="passing at least one threshold: gained (only in B), lost (only in A), both, neither"),
    "registered_change": st.column_config.TextColumn("registered", help="gained, lost, both or neither"),
    "registered_a": st.column_config.CheckboxColumn("reg. A", width=55),
    "registered_b": st.column_config.CheckboxColumn("reg. B", width=55),
}


def delta_summary(delta: pd.DataFrame) -> str:
    """One line over :func:`imc_core.analysis.per_image_delta`: images passing at least one threshold in both runs,
    in neither, gained, lost; then how many pass more or fewer thresholds (a camera going from 3 passes to 1 is
    "both" above, and the table below lists it)."""
    counts = delta["pass_change"].value_counts()
    order = [k for k in ("gained", "lost", "both", "neither") if k in counts]
    more, fewer = int((delta["pass_delta"] > 0).sum()), int((delta["pass_delta"] < 0).sum())
    return ("images passing some threshold: " + " · ".join(f"{k}: {counts[k]}" for k in order)
            + f"; thresholds passed: more for {more}, fewer for {fewer}")


#: session key of the runs the per-image pair was chosen among
DELTA_RUNS = "_delta_runs"
#: the pair of runs and the runs drawn in 3-D as the page last wrote them in the URL (another value is a link's)
DELTA_IN_URL, DRAW_IN_URL = "_delta_in_url", "_draw_runs_in_url"

#: 3-D views in one row of the side-by-side section
VIEWS_PER_ROW = 3
#: session key of the per-scene table's dataset as the 3-D views last followed it
TABLE_SEEN = "_compare_table_dataset_seen"


def side_by_side(arms: dict[str, list[state.RunView]]) -> None:
    """GT vs aligned cameras of one scene for the runs picked in "Runs to draw" (by default the first run of each
    arm, up to :data:`VIEWS_PER_ROW`: the first three runs were often three seeds of the reference group, and the
    run compared with them was not drawn), :data:`VIEWS_PER_ROW` to a row."""
    st.markdown("**3-D cameras side by side**")
    views = [rv for runs in arms.values() for rv in runs]
    arm_of = {rv.id: label for label, runs in arms.items() for rv in runs}
    datasets: list[str] = []
    for rv in views:
        datasets += [d for d in rv.datasets if d not in datasets]
    if not datasets:
        return
    table = st.session_state.get("scene_dataset")
    seen = st.session_state.get(TABLE_SEEN, table)  # (first drawn: a link's own 3-D dataset stays)
    if st.session_state.get("dataset") not in datasets or (table in datasets and table != seen):
        # the per-scene table's dataset when these runs have it, at first and whenever the table moves to another
        # (the two pickers started on different datasets, and parted when the table's changed)
        st.session_state["dataset"] = table if table in datasets else datasets[0]
    st.session_state[TABLE_SEEN] = table
    c1, c2 = st.columns(2)
    dataset = c1.selectbox("Dataset", datasets, key="dataset", bind="query-params")
    state.share_also("dataset", "scene", "show_3d")
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
    if not st.toggle("Draw the 3-D views", value=False, key="show_3d", bind="query-params"):
        st.query_params.pop("draw_runs", None)  # (none drawn: a link must not say otherwise)
        return
    ids = [rv.id for rv in views]
    linked = [str(r) for r in st.query_params.get_all("draw_runs")]
    if linked and linked != st.session_state.get(DRAW_IN_URL):  # a link naming the runs it drew
        st.session_state["draw_runs"] = [r for r in linked if r in ids]
    picked = [i for i in st.session_state.get("draw_runs", []) if i in ids]
    if "draw_runs" not in st.session_state or picked != st.session_state["draw_runs"]:
        first_of_each = [runs[0].id for runs in arms.values() if runs]
        st.session_state["draw_runs"] = picked or first_of_each[:VIEWS_PER_ROW]  # runs no longer chosen drop out
    drawn = st.multiselect("Runs to draw", ids, key="draw_runs",
                           help=f"Any number; {VIEWS_PER_ROW} views per row (each is a full 3-D figure).")
    st.query_params["draw_runs"] = drawn
    st.session_state[DRAW_IN_URL] = list(drawn)
    state.share_also("draw_runs")
    shown = [rv for rv in views if rv.id in drawn]
    if shown:
        st.caption("Cameras coloured by the thresholds each passes, as the metric counts them (the Results page's "
                   "3-D tab also colours by error).")
    # (one row of fewer views than a row holds fills the width: two runs drew in two thirds of it, axis titles cut)
    per_row = VIEWS_PER_ROW if len(shown) > VIEWS_PER_ROW else max(len(shown), 1)
    for start in range(0, len(shown), per_row):
        row = shown[start:start + per_row]
        for col, rv in zip(st.columns(per_row), row, strict=False):
            with col:
                arm = arm_of[rv.id]
                st.caption(rv.id if _arm_names_run(arm, rv.id) else f"{rv.id} ({state.md(arm)})")
                with state.error_boundary(rv.id):
                    state.cameras_3d(rv, dataset, scene, key=f"fig_3d_{rv.id}", compact=True, by_passes=True)


def _numbers(table: pd.DataFrame, text: tuple[str, ...]) -> dict[str, object]:
    """Column settings: numbers compact (two decimals, p in 3 digits), the verdict wide enough for its words
    ("≈ within noise" was cut at 1,400 px)."""
    words = {*text, "verdict", "95% CI of Δ", "test"}
    out: dict[str, object] = {c: st.column_config.NumberColumn(format="%.3g" if c == "p" else "%.2f",
                                                               width=80 if "±" in c or c == "p" else 70)
                              for c in table.columns if c not in words}
    longest = int(table["verdict"].astype(str).str.len().max()) if "verdict" in table and len(table) else 0
    # (as wide as its longest verdict, within reason: "differs; noise unknown (repeats all equal)" was cut)
    for col, width in (("verdict", max(190, min(360, 7 * longest + 24))), ("95% CI of Δ", 120), ("test", 130)):
        if col in table:
            out[col] = st.column_config.TextColumn(width=width)
    if "runs" in table:
        out["runs"] = st.column_config.NumberColumn(width=45)
    return out


def verdict_first(table: pd.DataFrame) -> pd.DataFrame:
    """The columns that answer "did it help?" first (score, Δ score, verdict, p, interval), then the spreads and the other
    metrics: at 1,400 px the verdict sat past the right edge."""
    first = [c for c in ("dataset", "arm", "runs", "score", "Δ score", "verdict", "p", "95% CI of Δ", "test")
             if c in table]
    return table[first + [c for c in table.columns if c not in first]]


def absent_from_link(chosen: list[str], ids: list[str]) -> None:
    """Say which runs a link named that this runs folder does not have (a teammate's link before their bundle is
    imported), until the user picks other runs or imports them."""
    from imc_core.runs import runs_root

    absent, kept = st.session_state.get("_compare_absent") or ([], [])
    still = [r for r in absent if r not in ids]
    if not still or list(chosen) != kept:
        st.session_state.pop("_compare_absent", None)
        return
    st.warning(f"The link names {len(still)} run(s) that {state.code(runs_root())} does not hold: "
               f"{state.md(', '.join(still))}. Import "
               "their bundles (\"Import a teammate's run bundle\" above), then pick them.")


#: session key of ``(runs a link named more than once, the runs it chose)``, said until the pick changes
LINK_TWICE = "_compare_link_twice"


def twice_in_link(chosen: list[str]) -> None:
    """Say which runs a link named more than once (a hand-made link repeating a seed to weigh it): each is
    compared once, as the picker holds it."""
    twice, kept = st.session_state.get(LINK_TWICE) or ([], [])
    if not twice or list(chosen) != kept:
        st.session_state.pop(LINK_TWICE, None)
        return
    st.caption(f"The link names {state.md(', '.join(twice))} more than once: each run is compared once.")


def group_runs(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Group name → its runs' ids in seed order (then oldest first: added so, the pickers and the per-image pair
    start at seed 0, not at the newest run), for groups of two or more runs."""
    if runs.empty or "group" not in runs:
        return {}
    named = runs[runs["group"].notna() & (runs["group"].astype(str).str.strip() != "")]
    if "seed" in named:
        seed = pd.to_numeric(named["seed"], errors="coerce")
        named = named.assign(_seed=seed).iloc[::-1].sort_values("_seed", kind="stable", na_position="last")
    out = {str(g): [str(i) for i in frame["id"]] for g, frame in named.groupby(named["group"].astype(str), sort=True)}
    return {g: ids for g, ids in out.items() if len(ids) > 1}


def _add_group(members: list[str]) -> None:
    chosen = list(st.session_state.get("runs") or [])
    st.session_state["runs"] = chosen + [r for r in members if r not in chosen]
    st.session_state["add_group"] = None  # (left picked, with Add still on, it read as not added yet)


def group_adder(runs: pd.DataFrame) -> None:
    """A picker of the groups (seeds of one experiment) whose button adds all their runs at once: the run picker
    finds one run at a time, and picking a group's seeds one by one needed the History beside."""
    groups = group_runs(runs)
    if not groups:
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    group = c1.selectbox("Add every run of a group", list(groups), index=None, key="add_group",
                         placeholder="a group (repeated seeds)",
                         format_func=lambda g: f"{g} ({len(groups[g])} runs)")
    c2.button("Add", key="add_group_go", disabled=group is None, on_click=_add_group,
              args=(groups.get(group or "", []),))


#: the runs the URL held when the page last wrote it (a different URL is a link or Back/Forward), and the runs
#: compared last (what the page shows when it is opened again from another page)
URL_RUNS, LAST_RUNS = "_runs_in_url", "_compare_runs_last"


def main() -> None:
    from imc_core.analysis import compare_scope, scores_on

    st.title("Compare")
    # (the pair of runs per image and the runs drawn in 3-D join the link where their sections draw them)
    # (the sections add theirs where they draw them: a dataset left by the Results page was in an empty view's link)
    state.register_share("compare", ["runs"])
    with state.error_boundary("Import"):
        import_panel()
    with state.error_boundary("Score a submission"):
        submission_panel()
    df = state.runs_table()
    ids = [str(i) for i in df["id"]]
    raw = [str(r) for r in st.query_params.get_all("runs")]
    if raw and raw != st.session_state.get(URL_RUNS):  # a link, a page switch or Back/Forward naming runs
        # a hand-written link may list the runs with commas (the page writes runs=a&runs=b)
        named = [p.strip() for r in raw for p in r.split(",") if p.strip()]
        asked = list(dict.fromkeys(named))
        if twice := sorted({r for r in named if named.count(r) > 1 and r in ids}):  # (a run counts once)
            st.session_state[LINK_TWICE] = (twice, [r for r in asked if r in ids])
        st.session_state["runs"] = [r for r in asked if r in ids]
        if absent := [r for r in asked if r not in ids]:  # (the URL is rewritten without them below)
            st.session_state["_compare_absent"] = (absent, [r for r in asked if r in ids])
    elif "runs" not in st.session_state:  # a first visit, or back from a page that dropped the picker's state
        st.session_state["runs"] = [r for r in st.session_state.get(LAST_RUNS, []) if r in ids]
    # (not bound to the URL: a bound picker writes its options as shown, and the link must hold the ids; the
    # label, group and score after each id find a run among hundreds)
    chosen = st.multiselect("Runs (the first is the reference)", ids, key="runs", format_func=state.run_choice(df),
                            placeholder="runs (type an id, a label or a group)")
    st.query_params["runs"] = chosen
    st.session_state[URL_RUNS] = st.session_state[LAST_RUNS] = [str(r) for r in chosen]
    group_adder(df)
    absent_from_link(chosen, ids)
    twice_in_link(chosen)
    views: list[state.RunView] = []
    for run_id in chosen:
        try:
            views.append(state.run_view(run_id))
        except ImcError as err:
            st.error(f"{run_id}: {str(err).splitlines()[0]}")
    for rv in views:
        if rv.problems:  # Results names them too; here they explain blanks and left-out runs
            st.warning(f"{rv.id}: file(s) that cannot be read: " + "; ".join(state.md(p) for p in rv.problems))
        if rv.outside:  # what is wrong with the file (a convention slip, rows of NaN) explains a large Δ at a glance
            for warning in rv.meta.get("warnings") or []:
                st.warning(f"{rv.id}: {state.md(warning)}")
    code_note(views)
    if len(views) < 2:
        st.info("Pick two or more runs. Runs of the same group (repeated seeds) are aggregated to mean ± std.")
        for key in ("delta_a", "delta_b", "draw_runs"):  # (no pair and no 3-D view: the address bar kept the last)
            st.query_params.pop(key, None)
        return
    same_data_aliases(views)
    grouped = arms_of(views)
    all_arms, twice = repeated_seeds(grouped, lambda rv: unscored_reason(rv) is None)
    for label, seed, (kept, *dropped) in twice:
        st.warning(f"{state.md(label)}: seed {seed} was run {1 + len(dropped)} times with one config and a "
                   f"deterministic mapper ({kept}, {', '.join(dropped)}): the same measurement, counted once "
                   f"({kept}).")
    again = {d: f"seed {seed} again, as {kept}" for _, seed, (kept, *dropped) in twice for d in dropped}
    st.dataframe(runs_overview(grouped, again), hide_index=True, width="stretch", key="runs_status",
                 placeholder=state.NO_VALUE,
                 column_config={"score": st.column_config.NumberColumn(format="%.2f")})
    excluded = [(rv.id, r) for rv in views if (r := unscored_reason(rv)) is not None]
    arms = {k: kept for k, v in all_arms.items() if (kept := [rv for rv in v if unscored_reason(rv) is None])}
    if excluded:
        st.info("Left out of every score, delta and noise verdict (no usable scores): "
                + ", ".join(f"{i} ({r})" for i, r in excluded) + ".")
    if not arms:  # (test-split runs have none: what set them apart is still worth reading before a submission)
        st.warning("None of these runs has scores: no score, delta or noise verdict to compare; their configs are "
                   "compared below.")
        with state.error_boundary("Config diff"):
            config_diff_section(all_arms, group_spreads(all_arms))
        return
    first, reference = next(iter(all_arms)), next(iter(arms))
    if first != reference:
        st.info(f"The first pick, {first}, has no scores: the reference is {reference}.")
    scope = compare_scope({label: [(run_root(rv), scored_datasets(rv)) for rv in runs]
                           for label, runs in arms.items()})
    shared = scope.shared_datasets
    notes = [state.md(n) for n in scope.messages()]  # (arm names, roots and datasets come from the runs)
    if not shared:
        st.warning("\n\n".join([*notes, "**No dataset is scored by every run: these runs cannot be compared**, "
                                           "so no deltas or noise verdicts are shown."]))
    elif notes:
        st.warning("\n\n".join([*notes, f"Headline, overall bar and noise verdict use only the datasets every "
                                           f"run scored: **{', '.join(shared)}**."]))
    spreads = group_spreads(arms)
    for label, spread in spreads.items():
        keys = list(spread["key"])
        st.warning(f"{state.md(label)}: its runs differ in config beyond the seed ({state.md(', '.join(keys[:5]))}"
                   f"{', …' if len(keys) > 5 else ''}), so its mean ± std mixes different experiments. "
                   "See the config diff below; compare those runs separately.")
    head = verdict_first(drop_empty_spread(headline_table(arms, shared=shared or None, deltas=bool(shared))))
    st.dataframe(head, hide_index=True, width="stretch", key="headline", placeholder=state.NO_VALUE,
                 column_config=_numbers(head, ("arm", "runs")))
    if not shared:
        st.caption("Each arm's overall over its own datasets: not comparable.")
    else:
        over = "" if scope.complete else f" Overall = mean over {', '.join(shared)}, as the metric averages datasets."
        st.caption("verdict: against the reference, significant when p ≤ 0.05. Arms that ran the same seeds are "
                   "compared seed by seed (paired t-test: with features and matches from the cache, one seed's runs "
                   "move together, so pairing sees smaller changes; a seed only one arm ran is left out, and the "
                   "test column says so); other repeats by Welch's t-test; one run "
                   "against repeats by the repeats' prediction interval. \"not significant\" is not \"the same\": "
                   "the 95% CI of Δ says how large a change these runs cannot rule out. Every row is its own test, "
                   "so about one row in twenty reads significant by chance. Repeats that all scored the same measure "
                   "no noise (seeds often agree on small datasets): add seeds." + over)
        bars = {k: [scores_on(rv.scores, shared) for rv in v] for k, v in arms.items()}
        state.show_figure("compare_bars", bars, key="fig_compare",
                          title=None if scope.complete else f"score on the shared datasets ({', '.join(shared)})")
    per_ds = verdict_first(drop_empty_spread(per_dataset_table(arms, scope)))
    if not per_ds.empty and per_ds["Δ score"].isna().all():
        per_ds = per_ds.drop(columns="Δ score")  # nothing shared: a column of blanks says nothing
    if not per_ds.empty:
        st.markdown("**Per dataset**")
        st.dataframe(per_ds, hide_index=True, width="stretch", key="per_dataset", placeholder=state.NO_VALUE,
                     column_config=_numbers(per_ds, ("dataset", "arm", "runs")))
    if shared:
        if st.session_state.get("scene_dataset") not in shared and st.session_state.get("dataset") in shared:
            # (the dataset a link or the Results page carried over: the 3-D views start on it too)
            st.session_state["scene_dataset"] = st.session_state["dataset"]
        dataset = st.selectbox("Per-scene mAA of dataset", shared, key="scene_dataset", bind="query-params")
        state.share_also("scene_dataset")
        scenes = per_scene_table(arms, dataset)
        st.dataframe(scenes, hide_index=True, width="stretch", key="per_scene", placeholder=state.NO_VALUE,
                     column_config=per_scene_columns(scenes))
    with state.error_boundary("Config diff"):  # (every run picked: one without scores still ran a config)
        config_diff_section(all_arms, group_spreads(all_arms))
    with state.error_boundary("Per-image delta"):
        per_image_section(arms)
    with state.error_boundary("3-D views"):
        side_by_side(arms)


with state.error_boundary("Compare"):
    main()
