"""Run page: pick datasets and a variant, edit parameters (widgets generated from the typed configs), launch
background jobs (optionally repeated over seeds), follow their progress live, cancel them, browse the run history."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from dashboard import jobs, jobview, state

if TYPE_CHECKING:
    import pandas as pd

SEED_KEY = "reconstruction.seed"
DETERMINISTIC_KEY = "reconstruction.deterministic"
#: Session key of the dataset picker per split.
DATASETS_KEYS = {"train": "datasets", "test": "datasets_test"}
#: Most runs one launch may repeat.
MAX_REPEATS = 50
#: The smallest seed the reconstruction takes (its config refuses a negative one; the largest is a C int's)
SEED_MIN = 0
#: Seconds between two looks of the Jobs panel while a job is active, and while none is (a run launched from another
#: tab, the CLI or a teammate shows by itself; an idle look is one stat of the runs folder)
POLL_ACTIVE_S = 1.0
POLL_IDLE_S = 5.0
#: what tells runs apart and how they scored first: at 1,280 px only about 870 px of table show, and the id already
#: says when the run was made (``created`` adds the time zone, last)
HISTORY_COLS = ["id", "label", "score", "mAA", "clusterness", "status", "group", "seed", "variant", "datasets",
                "data root", "seconds", "created"]


#: Session key holding the launch form's values while another page shows: Streamlit drops the state of widgets a
#: page does not draw, so without it a visit to Results reset every edit (and Launch ran the plain variant).
FORM_KEY = "_run_form"
#: Launch-form widgets kept across pages (besides every config widget, ``cfg.*``); the variant lives in the URL.
FORM_WIDGETS = ("split", "datasets", "datasets_test", "repeats", "group", "label", "use_cache")


def remember_form() -> None:
    """Keep the launch form's values (after its widgets are drawn) for :func:`initial`: the values of the widgets
    drawn now replace their saved ones; those of widgets not drawn now (another variant's, the other split's) stay.
    """
    saved = dict(st.session_state.get(FORM_KEY) or {})
    saved.update({k: st.session_state[k] for k in list(st.session_state)
                  if isinstance(k, str) and (k.startswith("cfg.") or k in FORM_WIDGETS)})
    st.session_state[FORM_KEY] = saved


def initial(key: str, name: str, value: Any, saved: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """The default argument of a widget: ``{}`` while the session holds its value (passing both makes Streamlit
    warn on the page, and the session's value wins anyway); else the value :func:`remember_form` saved before a
    visit to another page or a switch of variant/split (through ``saved``, e.g. an option → its index; None =
    unusable), else ``{name: value}``.

    The saved value goes in as the widget's default, never into ``st.session_state`` ahead of the widget: a widget
    that first appears in a later run with a key set that way is drawn with its type's zero (0, unticked, first
    option) while the server keeps the other value, until the first edit sends the zeros.
    """
    if key in st.session_state:
        return {}
    form = st.session_state.get(FORM_KEY) or {}
    if key in form:
        restored = form[key] if saved is None else saved(form[key])
        if restored is not None:
            return {name: restored}
    return {name: value}


#: Launch-form fields a Run-page link carries (besides ``variant`` and ``set``), each only when not its default.
LINK_FORM = ("split", "datasets", "repeats", "group", "label", "cache")
CACHE_WORDS = {"off": False, "false": False, "0": False, "on": True, "true": True, "1": True}


#: session key: the form's fields as this session last wrote them to the address bar (:func:`mirror_form`)
URL_FORM = "_run_form_in_url"
#: the address bar's keys that carry the launch form (``variant`` is bound to its widget)
URL_FORM_KEYS = ("set", *LINK_FORM)


def form_from_url() -> bool:
    """Whether the address bar's form fields are to be applied as a link: only at the session's first drawing of
    the form. A link, a reload or a new tab comes with a new session; later, the address bar holds what
    :func:`mirror_form` wrote, or an older entry the browser's Back went to, which silently undid edits made since
    (repeats back to 1 after Back and a page switch) when it was applied as a link."""
    return URL_FORM not in st.session_state


def mirror_form(values: dict[str, Any]) -> None:
    """Write the launch form's fields (``set`` and :data:`LINK_FORM`, as the share link has them; None or empty =
    the default, left out) to the address bar, so that a reload (a new session) gets the form back: it lost every
    edit (repeats, label, parameters). Only the keys that changed, the new values in one step: each change of the
    address bar is an entry of the browser's history."""
    want = {k: [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])] for k, v in values.items()
            if k in URL_FORM_KEYS and v not in (None, "", [])}
    if changed := {k: v for k, v in want.items() if st.query_params.get_all(k) != v}:
        st.query_params.update(changed)
    for k in URL_FORM_KEYS:
        if k not in want and k in st.query_params:
            del st.query_params[k]
    st.session_state[URL_FORM] = want


def apply_link_form(splits: list[str], names_of: Callable[[str], list[str]]) -> list[str]:
    """A shared Run link's launch fields (``?split=test&datasets=a&datasets=b&repeats=4&group=..&label=..&cache=off``)
    become the form's values, once per session (:func:`form_from_url`; the page then keeps the address bar in step
    with the form, :func:`mirror_form`, so a reload applies them again). A link that carries any Run-page value (these or ``set``)
    describes the whole form, so the fields it does not name take their defaults (train split, every dataset, one
    run, no group or label, cache on). Values that do not fit this data root or the widget (an unknown dataset,
    repeats 0) are left out and returned (one line each).

    Args:
        splits: the splits this data root has, the default first.
        names_of: split → its dataset names.
    """
    keys = [k for k in LINK_FORM if k in st.query_params]
    if not keys and "set" not in st.query_params:
        return []
    got = {k: st.query_params.get_all(k) for k in keys}  # (left in the address bar: mirror_form sets it right)
    form = dict(st.session_state.get(FORM_KEY) or {})
    for k in FORM_WIDGETS:  # (drawn below with the default :func:`initial` gives)
        st.session_state.pop(k, None)
        form.pop(k, None)
    refused: list[str] = []
    split = splits[0]
    if "split" in got:
        if got["split"][0] in splits:
            split = form["split"] = got["split"][0]
        else:
            refused.append(f"split “{got['split'][0]}” (this data root has {', '.join(splits)})")
    if "datasets" in got:
        names = names_of(split)
        if unknown := [n for n in got["datasets"] if n not in names]:
            refused.append(f"dataset(s) {', '.join(f'“{n}”' for n in unknown)} (not in this data root's {split} "
                           "split)")
        if known := [n for n in got["datasets"] if n in names]:
            form[DATASETS_KEYS[split]] = known
    if "repeats" in got:
        text = got["repeats"][0]
        if text.isdigit() and 1 <= int(text) <= MAX_REPEATS:
            form["repeats"] = int(text)
        else:
            refused.append(f"repeats “{text}” (a whole number from 1 to {MAX_REPEATS})")
    for k in ("group", "label"):
        if k in got:
            form[k] = got[k][0]
    if "cache" in got:
        if got["cache"][0].lower() in CACHE_WORDS:
            form["use_cache"] = CACHE_WORDS[got["cache"][0].lower()]
        else:
            refused.append(f"cache “{got['cache'][0]}” (on or off)")
    st.session_state[FORM_KEY] = form
    return refused


def link_form_values(split: str, default_split: str, chosen: list[str], repeats: int, group: str, label: str,
                     use_cache: bool) -> dict[str, Any]:
    """What a Run link carries of the launch form (None = the default, left out of the link): see
    :func:`apply_link_form`. ``chosen`` is the dataset selection ([] = every dataset)."""
    return {"split": split if split != default_split else None, "datasets": chosen or None,
            "repeats": str(repeats) if repeats > 1 else None, "group": group.strip() or None,
            "label": label.strip() or None, "cache": None if use_cache else "off"}


def apply_link_overrides(variant: str, base: dict[str, dict[str, Any]]) -> list[str]:
    """A shared link's ``?set=section.key=value`` (repeatable, as the share link writes them) become the variant's
    parameter values: the keys it names take its values, every other key the variant's own (a link reproduces the
    config it was made from), once per session (:func:`form_from_url`); :func:`mirror_form` then writes the form's
    own values back. A value the config refuses is left out and returned (why, one line each); the others are
    applied."""
    from imc_core.config import resolve_config
    from imc_core.errors import ImcError

    wanted = st.query_params.get_all("set")
    if not wanted:
        return []

    def problem(items: list[str]) -> str | None:
        try:
            resolve_config(variant, items)
        except ImcError as err:
            return str(err).splitlines()[0]
        return None

    alone = {item: problem([item]) for item in wanted}
    refused = [p for p in alone.values() if p]
    wanted = [item for item, p in alone.items() if not p]
    if together := problem(wanted):  # each value passes alone, not with the others
        refused, wanted = [together], []
    cfg = resolve_config(variant, wanted)
    specs = {s.key: s for s in state.config_fields(base)}
    named = {item.split("=", 1)[0].strip() for item in wanted}
    form = dict(st.session_state.get(FORM_KEY) or {})
    for key, spec in specs.items():
        wkey = widget_key(variant, key)
        st.session_state.pop(wkey, None)  # (drawn below with the default :func:`initial` gives)
        form.pop(wkey, None)
        if key in named:
            value = getattr(getattr(cfg, spec.section), spec.name)
            form[wkey] = ", ".join(str(v) for v in value) if spec.kind == "list" else value
    st.session_state[FORM_KEY] = form
    return refused


def _index(options: list[str], value: Any) -> int | None:
    return options.index(value) if value in options else None


def widget_key(variant: str, key: str) -> str:
    """Session key of a config widget (per variant, so switching variant shows that variant's values)."""
    return f"cfg.{variant}.{key}"


def config_widget(spec: state.FieldSpec, variant: str) -> Any:
    """One widget for one config key; returns its current value (typed like the config field)."""
    key = widget_key(variant, spec.key)
    label = spec.name
    help_ = spec.help or None
    if spec.kind == "bool":
        return st.checkbox(label, **initial(key, "value", bool(spec.default)), key=key, help=help_)
    if spec.kind == "int":
        # a text field: Streamlit's integer input read a typed "1e4" as 1 and an emptied one as 0, without a word,
        # and the launch ran with that (a tester); here the config validation names the key of a bad value
        text = st.text_input(label, **initial(key, "value", str(int(spec.default)), str), key=key,
                             help=(help_ or "") + " (a whole number: 8192, 8_192 and 1e4 are read)")
        return state.parse_int_text(text)
    if spec.kind == "float":
        return float(st.number_input(label, **initial(key, "value", float(spec.default)), format="%.6g", key=key,
                                     help=help_))
    if spec.kind == "choice":
        options = list(spec.choices)
        index = options.index(str(spec.default)) if str(spec.default) in options else None
        value = st.selectbox(label, options, **initial(key, "index", index, lambda v: _index(options, v)), key=key,
                             help=help_, accept_new_options=not spec.closed)
        return spec.default if value is None else value
    if spec.kind == "list":
        text = st.text_input(label, **initial(key, "value", ", ".join(str(v) for v in (spec.default or []))),
                             key=key, help=(help_ or "") + " (comma-separated)")
        item = state.list_item_type(spec.section, spec.name)
        try:
            return state.parse_list_text(text, item)
        except ValueError:
            return text  # left to the config validation, which names the key and the bad value
    return st.text_input(label, **initial(key, "value", str(spec.default)), key=key, help=help_)


def parameter_widgets(variant: str, base: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Seed / determinism on top, then one expander per config section; returns ``{"section.key": value}``."""
    specs = {s.key: s for s in state.config_fields(base)}
    values: dict[str, Any] = {}
    c1, c2 = st.columns(2)
    with c1:
        values[SEED_KEY] = config_widget(specs[SEED_KEY], variant)
    with c2:
        st.write("")
        values[DETERMINISTIC_KEY] = config_widget(specs[DETERMINISTIC_KEY], variant)
    sections: dict[str, list[state.FieldSpec]] = {}
    for spec in specs.values():
        if spec.key not in (SEED_KEY, DETERMINISTIC_KEY):
            sections.setdefault(spec.section, []).append(spec)
    for section, fields in sections.items():
        with st.expander(section):
            cols = st.columns(2)
            for i, spec in enumerate(fields):
                with cols[i % 2]:
                    values[spec.key] = config_widget(spec, variant)
            # (COLMAP's SIFT showed ALIKED's model beside its own keys, all alike: what a change there would not do)
            for line in state.unread_in_section(base, values, section):
                st.caption(f"Not read with these settings: {line}.")
    return values


def launch_panel(root: Path) -> None:
    """Dataset/variant pickers, generated parameter widgets, the ``--set`` preview and the Launch button."""
    from imc_core.config import list_variants
    from imc_core.data import DataRoot

    dr = DataRoot(root)
    splits = [s for s, have in (("train", dr.train_datasets()), ("test", dr.test_datasets(strict=False))) if have]
    if not splits:
        st.warning(f"No datasets under {root}.")
        return
    linked = form_from_url()  # (later, the address bar holds this session's own fields, or an older entry)
    refused = apply_link_form(splits, dr.datasets) if linked else []
    split = splits[0]
    if len(splits) > 1:  # a Kaggle download: train/ with labels and test/ without
        split = st.radio("Split", splits, horizontal=True, key="split",
                         **initial("split", "index", 0, lambda v: _index(splits, v)),
                         help="train: datasets with ground truth (scored); test: images only (a submission, no "
                              "score)")
    names = dr.datasets(split)
    # one picker per split (a widget of its own, so the browser never shows the other split's choice)
    key = DATASETS_KEYS[split]
    if not set(st.session_state.get(key) or []) <= set(names):
        # another data root was picked in the sidebar: start from all of this one's. Set, not dropped: the widget
        # is on screen, and without its state the browser kept the old root's chips (the launch ran the new one's)
        st.session_state[key] = list(names)
    datasets = st.multiselect(f"Datasets ({split})", names, key=key, **initial(
        key, "default", names, lambda v: [n for n in v if n in names] or None))  # (another root's names: all)
    variants = list_variants()
    default_index = variants.index("default") if "default" in variants else 0
    variant = st.selectbox("Variant", variants, index=default_index, key="variant", bind="query-params")
    description, missing, base = state.variant_info(variant)
    st.caption(description)
    if missing:
        st.warning("This variant cannot run here: " + "; ".join(missing))
    refused += apply_link_overrides(variant, base) if linked else []
    if refused:
        st.warning("Left out of the link's parameters: " + "; ".join(refused))
    values = parameter_widgets(variant, base)
    overrides = state.overrides_from_values(base, values)
    st.session_state["run_overrides"] = overrides
    c1, c2, c3, c4 = st.columns([1, 2, 2, 1])
    # (no min/max on the widget: out of range, Streamlit kept the last value in range without a word, and a typed
    # 1000 launched one run; a tester. The range is checked below, with the other parameters)
    repeats = int(c1.number_input("Repeat N times", **initial("repeats", "value", 1), step=1, key="repeats",
                                  help=f"N runs with seeds s … s+N−1 sharing one group (run-to-run noise); 1 to "
                                       f"{MAX_REPEATS}"))
    group = c2.text_input("Group", key="group", placeholder="auto when N > 1", **initial("group", "value", ""),
                          help="Runs of one group are aggregated (mean ± std) on the Compare page")
    label = c3.text_input("Label", key="label", placeholder="optional note", **initial("label", "value", ""))
    use_cache = c4.checkbox("Use cache", **initial("use_cache", "value", True), key="use_cache",
                            help="Reuse features, matches, verified databases and mapped models computed before "
                            "with the same "
                            "settings; unchecked, every stage is recomputed (and replaces its cached artifact). "
                            + state.cache_summary())
    chosen = list(datasets) if len(datasets) < len(names) else []  # [] = every dataset of the root
    # the link carries the edits and the launch fields, so that a teammate opens the same launch
    form = {"set": overrides, **link_form_values(split, splits[0], chosen, repeats, group, label, use_cache)}
    state.register_share("run", ["variant", "set", *LINK_FORM], values=form)
    mirror_form(form)  # (and in the address bar, so that a reload keeps the form)
    st.markdown("**Overrides** (`--set`, only values that differ from the variant)")
    # quoted for a shell: the preview is meant to be pasted after `python -m imc_core run` (a list's ", " split it)
    st.code(" ".join(f"--set {shlex.quote(o)}" for o in overrides) or "(none: the variant as it is)",
            language="bash")
    seed = values[SEED_KEY]
    # every run's seed, not the first alone (seed 2147483646 × 3 launched a third run that failed on its seed); said
    # here with the range the seed really has (the config's own message names the range of any integer setting)
    problem = ((f"Repeat N times must be from 1 to {MAX_REPEATS}, got {repeats}"
                if not 1 <= repeats <= MAX_REPEATS else None)
               or (seed_problem(seed, repeats) if isinstance(seed, int) else None)
               or state.validate_config(variant, overrides))  # (what the CLI exits 2 with)
    if problem:
        st.error(f"Invalid parameters, nothing launched: {problem}")
    elif conflict := state.group_conflict(group, variant, overrides, root):
        other, keys = conflict
        if keys == ["data_root"]:
            st.warning(f"Group **{state.md(group.strip())}** already holds runs on another data root "
                       f"({state.md(other)}): Compare would average them as seeds of one experiment, on the datasets "
                       "they share. Name a new group, unless that is what you mean.", icon="⚠️")
        else:
            config_keys = [k for k in keys if k != "data_root"]
            st.warning(f"Group **{state.md(group.strip())}** already holds runs of another config "
                       f"({state.md(other)} differs in "
                       f"{', '.join(f'`{k}`' for k in config_keys[:4])}{' …' if len(config_keys) > 4 else ''})"
                       f"{', and runs on another data root' if 'data_root' in keys else ''}: Compare would "
                       "average them as seeds of one experiment. Name a new group, unless that is what you mean.",
                       icon="⚠️")
    if repeats > 1 and not problem:  # (the seeds past the range were listed under the error that refused them)
        st.caption(f"Seeds {seed} … {seed + repeats - 1}"
                   + ("" if values[DETERMINISTIC_KEY] else " (non-deterministic: mapper noise is sampled too)"))
    busy = jobs.started_jobs()
    if busy:
        st.caption(f":material/schedule: {len(busy)} job(s) running: runs launched now wait for them (queued), so "
                   "that their timings stay comparable.")
    # (this script run validated the config just above: the button cannot start a doomed job)
    launch_col, why_col = st.columns([1, 5], vertical_alignment="center")
    if not datasets:  # (the other reasons are said above: the variant's missing parts, the invalid parameters)
        why_col.caption("Pick at least one dataset to launch.")
    if launch_col.button("Launch", type="primary", disabled=not datasets or bool(missing) or bool(problem),
                         key="launch"):
        # the data as the pipeline checks it before any run folder: a refused launch leaves no failed run behind
        if bad := state.data_problem(root, chosen, split):
            st.error(f"Nothing launched: {bad}")
            return
        spec = jobs.LaunchSpec(root, chosen, variant, list(overrides), group.strip() or None, label.strip() or None,
                               use_cache, split)
        dirs = jobs.launch_repeats(spec, repeats, seed if repeats > 1 else None, wait=bool(busy))
        st.session_state.setdefault("launched", [])
        st.session_state["launched"] = [str(d) for d in dirs] + st.session_state["launched"]
        st.toast(f"Started {len(dirs)} run(s): {', '.join(d.name for d in dirs)}")


def seed_problem(seed: int, repeats: int) -> str | None:
    """Why the seeds ``seed … seed + repeats - 1`` of a launch cannot all run (None when they can)."""
    from imc_core.config import INT32_MAX

    low, high = SEED_MIN, INT32_MAX
    last = seed + repeats - 1
    if low <= seed and last <= high:
        return None
    if repeats == 1:
        return f"{SEED_KEY} must be between {low} and {high}, got {seed}"
    return (f"{SEED_KEY} must be between {low} and {high}: the {repeats} runs would take seeds {seed} … {last}"
            + (f" (start at {high - repeats + 1} at most)" if last > high and high - repeats + 1 >= low else ""))


def jobs_body() -> None:
    """Active jobs (all of them, found from run dirs), then the jobs this session launched that have finished and
    those launched from any dashboard that ended in the last :data:`jobs.RECENT_S` seconds.

    A change in the active jobs (one ended, a queued one started, one was launched elsewhere) redraws the cards in
    this run of the fragment, which ends at once (Streamlit clears a card's leftovers at the end of a run), and the
    whole page at the next look (the History, the busy note, the pace of the looks): a page rerun at once left the
    moved cards with the other job's progress bars and Cancel for the 1–3 s the page took."""
    if st.session_state.pop("_jobs_rerun", False):
        st.rerun()
    active, recent = _look()
    for job in active:
        jobs.enforce_cancel(job)
        jobview.render_job(job)
    active_ids = {j.id for j in active}
    finished = [jobs.job_status(Path(p)) for p in st.session_state.get("launched", [])
                if Path(p).name not in active_ids and Path(p).is_dir()]
    # (a reload forgets what the session launched: the jobs that ended lately come back from their folders)
    shown = {j.id for j in finished}
    finished += [j for j in recent if j.id not in shown and j.id not in active_ids]
    for job in finished[:6]:
        jobview.render_job(job)
    if not active and not finished:
        st.caption("No job running.")
    before = set(st.session_state.get("_jobs_active", []))
    now = _job_states(active)
    st.session_state["_jobs_active"] = sorted(now)
    if before != now:
        st.session_state["_jobs_rerun"] = True


#: Seconds an idle Jobs panel trusts its last full look while the runs folder is unchanged (a run ageing out of the
#: recent ones, a stopped one found stopped)
FULL_LOOK_S = 60.0


def _look() -> tuple[list[jobs.Job], list[jobs.Job]]:
    """The active jobs and those that ended lately. While none is active and the runs folder has not changed since
    the last full look (a launch from anywhere makes a folder in it), the last look's ended jobs are read again and
    the folder is not scanned: an idle page looks every few seconds."""
    import time

    from imc_core.runs import runs_root

    try:
        stamp = runs_root().stat().st_mtime_ns
    except OSError:
        stamp = None
    last = st.session_state.get("_jobs_look")
    now = time.time()
    if (last and not st.session_state.get("_jobs_active") and stamp is not None and last["stamp"] == stamp
            and now - last["at"] < FULL_LOOK_S):
        return [], [jobs.job_status(Path(d)) for d in last["recent"] if Path(d).is_dir()]
    active, recent = jobs.active_jobs(), jobs.recent_jobs()
    st.session_state["_jobs_look"] = {"stamp": stamp, "at": now, "recent": [str(j.run_dir) for j in recent]}
    return active, recent


def _job_states(active: list[jobs.Job]) -> set[str]:
    """``id:status`` of the active jobs: a queued run that starts changes it as much as a run that ends."""
    return {f"{j.id}:{j.status}" for j in active}


def jobs_panel() -> None:
    """Live job panel: a fragment re-run every second while a job is active and every few seconds while none is
    (a run launched from another tab, the CLI or a teammate shows by itself), so the page never blocks."""
    st.subheader("Jobs")
    active = jobs.active_jobs()
    st.session_state["_jobs_active"] = sorted(_job_states(active))
    st.session_state.pop("_jobs_rerun", None)  # (this run draws the whole page)
    st.session_state.pop("_jobs_look", None)
    st.fragment(jobs_body, run_every=POLL_ACTIVE_S if active else POLL_IDLE_S)()


def history_panel() -> None:
    """All runs with scores; selecting a row opens it in Results."""
    st.subheader("History")
    df = state.runs_table()
    if df.empty:
        st.caption("No runs yet.")
        return
    # which data the run was made on: runs of every data root are listed, and ETs · default · 71.60 on a copy of
    # the data read the same as on the original
    df = df.assign(**{"data root": df["data_root"].map(state.short_root) if "data_root" in df else ""})
    shown = state.history_frame(df, HISTORY_COLS)
    text, number = st.column_config.TextColumn, st.column_config.NumberColumn
    # pixel widths: a run id whole ("…-submission-9979"), the rest as narrow as their values allow; a narrow window
    # scrolls the table sideways
    event = st.dataframe(shown, hide_index=True, placeholder=state.NO_VALUE, width="stretch", on_select="rerun",
                         selection_mode="single-row", key="history",
                         column_config={"id": text(width=225), "created": text(width=130), "status": text(width=70),
                                        "variant": text(width=88), "datasets": text(width=110),
                                        "data root": text(width=120, help="the data root's last two folders"),
                                        "score": number(format="%.2f", width=64),
                                        "mAA": number(format="%.2f", width=60),
                                        "clusterness": number("clust.", format="%.2f", width=66, help="clusterness"),
                                        "label": text(width=110), "group": text(width=70),
                                        "seed": number(width=45),
                                        "seconds": number("s", format="%.1f", width=50, help="wall time (seconds)")})
    rows = event.selection.rows if event is not None else []
    if rows:
        run_id = str(shown.iloc[rows[0]]["id"])
        # (root is a bound query parameter: it follows the session by itself and cannot be passed here)
        st.switch_page("views/results.py", query_params={"run": run_id})
    st.caption("Select a row to open the run in Results.")
    remove_panel(df)


def remove_panel(df: pd.DataFrame) -> None:
    """Delete runs from the history (their folders; cache artifacts stay). Live runs are never offered."""
    from imc_core.runs import LIVE_STATUSES

    with st.expander("Remove runs"):
        dead = df[~df["status"].astype(str).isin((*LIVE_STATUSES, "cancelling"))]
        ids = [str(i) for i in dead["id"]]
        ended = [str(i) for i in dead.loc[dead["status"].astype(str).isin(("failed", "cancelled", "stopped")), "id"]]
        # (no "Select all": one click would mark every finished run of the history for deletion)
        chosen = st.multiselect("Runs to remove", ids, key="remove_runs", format_func=state.run_choice(dead),
                                select_all=False,
                                help="Running and queued runs are not listed: cancel them first. Each run shows "
                                "its label, group and score (or status), as the other run pickers do")
        if ended:
            st.button(f"Select the {len(ended)} failed / cancelled / stopped run(s)", key="remove_ended",
                      on_click=_select_runs, args=(ended,))
        sure = st.checkbox("I understand the folders are deleted for good", key="remove_sure")
        st.button(f"Remove {len(chosen)} run(s)", disabled=not (chosen and sure), key="remove_go",
                  on_click=_remove_runs, args=(list(chosen),))
        if st.session_state.get("_removed"):
            message = st.session_state.pop("_removed")
            (st.error if message.startswith("Nothing removed") else st.success)(message)


def _select_runs(ids: list[str]) -> None:
    st.session_state["remove_runs"] = sorted(set(st.session_state.get("remove_runs") or []) | set(ids))


def _remove_runs(ids: list[str]) -> None:
    from imc_core.errors import ImcError
    from imc_core.runs import remove_runs

    try:
        # not forced: a run listed as ended whose process runs after all (the list is as of the page's last full
        # run) is refused with the reason, never stopped and deleted; a stopped run needs no force
        gone = remove_runs(ids)
    except ImcError as err:  # (a callback runs outside the page's error boundary)
        st.session_state["_removed"] = f"Nothing removed: {str(err).splitlines()[0]}"
        return
    st.session_state["remove_runs"] = []
    st.session_state["remove_sure"] = False
    st.session_state["_removed"] = (f"Removed {len(gone)} run(s). Their cache artifacts stay until "
                                    "`python -m imc_core cache prune --unused`.")


def main() -> None:
    st.title("Run")
    state.register_share("run", ["variant"])
    root = state.current_root()
    if root is None or not root.is_dir():
        st.info("Pick an existing data root in the sidebar (the bundled one is made by `make data`).")
    else:
        with state.error_boundary("Run setup"):
            launch_panel(root)
            remember_form()
    with state.error_boundary("Jobs"):
        jobs_panel()
    with state.error_boundary("History"):
        history_panel()


main()
