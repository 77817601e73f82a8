"""Streamlit widgets for pipeline jobs, shared by the Run page (the job list) and Results (a run still going)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import jobs, state


#: stages computed at every run, never cached (besides each dataset's pair list)
UNCACHED = ("scoring",)


def render_job(job: jobs.Job, open_link: bool = True) -> None:
    """One job: status line, per-stage progress bars with counts / ETA / cache hits, Cancel or (``open_link``) an
    "Open in Results" button once it has ended."""
    with st.container(border=True):
        meta = job.meta
        head = f"**{job.id}** · {job.status}"
        if meta.get("variant"):
            head += f" · {state.md(meta['variant'])}"
        if meta.get("group"):
            head += f" · group {state.md(meta['group'])}"
        st.markdown(head)
        if job.active:
            for stage in job.stages:
                st.progress(stage.fraction, text=state.md(stage.text()))
            if job.message:  # which stage says it: with datasets reconstructed at once, the last one to speak
                st.caption(state.md(f"{job.stage} · {job.message}" if job.stage and job.stage not in job.message
                                    else job.message))
        else:
            # the pair list is made anew each run (never cached): counting it read "4 stages, 3 from cache" for a
            # run that took everything it could from the cache
            # (nor the scoring: "4 stages, 3 from cache" for a run that read every cached stage)
            cachable = [s for s in job.stages if not s.name.endswith("/pairs") and s.name not in UNCACHED]
            hits = sum(s.cached for s in cachable)
            score = (jobs.read_json(job.run_dir / "scores.json") or {}).get("score")
            bits = [f"{len(cachable)} stage{'s' * (len(cachable) != 1)}, {hits} from cache"]
            if isinstance(score, (int, float)):
                bits.insert(0, f"score {score:.2f}")
            unfinished = [s for s in job.stages if s.total > 0 and s.done < s.total and not s.cached]
            if job.status != "done" and unfinished:  # (a cancelled run's stage count read as a complete run's)
                where = unfinished[-1]
                bits.insert(0, f"{job.status} during {where.name} ({where.done}/{where.total})")
            st.caption(" · ".join(bits))
        if job.error and not job.active:
            st.error(state.md(job.error))
        if job.active:
            if job.status == "cancelling":
                st.caption("Cancel requested; the job stops at its next check (forced after "
                           f"{jobs.CANCEL_GRACE_S:.0f} s).")
            else:
                st.button("Cancel", key=f"cancel::{job.id}", on_click=jobs.cancel, args=(job.run_dir,))
        elif open_link and job.status in ("done", "failed", "cancelled"):
            st.page_link("views/results.py", label="Open in Results", icon=":material/analytics:",
                         query_params={"run": job.id})


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
