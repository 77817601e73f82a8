"""Streamlit widgets for pipeline jobs, shared by the Run page (the job list) and Results (a run still going)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import jobs, state


#: stages computed at every run, never cached (besides each dataset's pair list)
UNCACHED = ("scoring",)


#: the launcher's own progress stages, written before the pipeline process starts (:func:`jobs._prepare`)
LAUNCH_STAGES = ("queued", "starting")


def job_datasets(meta: dict) -> str:
    """The datasets a job runs, named: its own list, or (a launch of every dataset, which records none until its
    pipeline starts) those its data root holds for its split, said as every dataset (a queued card read only "every
    dataset (train)")."""
    datasets = meta.get("datasets")
    if isinstance(datasets, list) and datasets:
        return ", ".join(str(d) for d in datasets)
    split = str(meta.get("split") or "train")
    every = f"every dataset{' (' + split + ')' if meta.get('split') else ''}"
    root = meta.get("data_root")
    if not isinstance(root, str) or not root:
        return every
    from imc_core.data import DataRoot, name_list

    try:
        names = DataRoot(Path(root)).datasets(split)
    except Exception:  # noqa: BLE001 - a root gone or unreadable since the launch: said as before
        return every
    return f"{every}: {name_list(names, 8)}" if names else every


def render_job(job: jobs.Job, open_link: bool = True) -> None:
    """One job: status line (with the run's label and datasets), per-stage progress bars with counts / ETA / cache
    hits, Cancel or (``open_link``) an "Open in Results" button once it has ended.

    The card is a container keyed by the run id: when the list reorders (a run of a repeated launch ends, the queued
    one starts), each card's elements stay with their job (a Cancel meant for one job never lands on another)."""
    with st.container(border=True, key=f"job_{job.id}"):
        meta = job.meta
        head = f"**{job.id}** · {job.status}"
        if meta.get("label"):
            head += f" · “{state.md(str(meta['label']))}”"
        if meta.get("variant"):
            head += f" · {state.md(meta['variant'])}"
        if meta.get("group"):
            head += f" · group {state.md(meta['group'])}"
        st.markdown(head)
        st.caption(f"datasets: {state.md(job_datasets(meta))}")
        if job.active:
            for stage in job.stages:
                st.progress(stage.fraction, text=state.md(stage.text()))
            if job.message:  # which stage says it: with datasets reconstructed at once, the last one to speak
                st.caption(state.md(f"{job.stage} · {job.message}" if job.stage and job.stage not in job.message
                                    else job.message))
        else:
            st.caption(ended_summary(job))
        if job.error and not job.active:
            st.error(state.md(job.error))
        if job.active:
            if job.status == "cancelling":
                st.caption("Cancel requested; the job stops at its next check (forced after "
                           f"{jobs.CANCEL_GRACE_S:.0f} s).")
            else:
                st.button("Cancel", key=f"cancel::{job.id}", on_click=jobs.cancel, args=(job.run_dir,))
        elif open_link and job.status in ("done", "failed", "cancelled", "stopped"):
            st.page_link("views/results.py", label="Open in Results", icon=":material/analytics:",
                         query_params={"run": job.id})


def ended_summary(job: jobs.Job) -> str:
    """The line of an ended job: ``score 42.50 · 3 stages, 2 from cache``, where a run that did not finish stopped
    (``stopped during ETs/matching (3/10) · …``, ``stopped after ETs/features · …``: a killed run's progress.json
    names the last stage it reported), or ``failed before it started`` (no stage count: it had none)."""
    real = [s for s in job.stages if s.name not in LAUNCH_STAGES]
    if not real and job.status != "done":  # ("failed during queued (0/1) · 1 stage, 0 from cache" read as nonsense)
        return f"{job.status} before it started"
    # the pair list is made anew each run (never cached): counting it read "4 stages, 3 from cache" for a
    # run that took everything it could from the cache
    # (nor the scoring: "4 stages, 3 from cache" for a run that read every cached stage)
    cachable = [s for s in real if not s.name.endswith("/pairs") and s.name not in UNCACHED]
    hits = sum(s.cached for s in cachable)
    score = (jobs.read_json(job.run_dir / "scores.json") or {}).get("score")
    bits = [f"{len(cachable)} stage{'s' * (len(cachable) != 1)}, {hits} from cache"]
    if isinstance(score, (int, float)):
        bits.insert(0, f"score {score:.2f}")
    if job.status != "done":  # (a cancelled run's stage count read as a complete run's)
        unfinished = [s for s in real if s.total > 0 and s.done < s.total and not s.cached]
        if unfinished:
            where = unfinished[-1]
            bits.insert(0, f"{job.status} during {where.name} ({where.done}/{where.total})")
        elif job.stage and job.stage not in LAUNCH_STAGES:  # its last stage had ended: the next one never reported
            bits.insert(0, f"{job.status} after {job.stage}")
    return " · ".join(bits)


def follow(run_dir: Path) -> None:
    """Live progress of one run that is queued, running or being cancelled: a fragment re-run every second that
    reruns the whole page once the job has ended, so its results replace the progress without a reload."""

    def body() -> None:
        job = jobs.job_status(run_dir)
        jobs.enforce_cancel(job)
        if not job.active:
            st.rerun()
        render_job(job, open_link=False)

    st.fragment(body, run_every=1.0)()
