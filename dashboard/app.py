"""imc-lab dashboard: the router (st.navigation) and the sidebar data-root picker.

Run with ``make run`` or ``streamlit run dashboard/app.py --server.address 127.0.0.1``. Pages live in
``dashboard/views/`` — deliberately not ``pages/``: Streamlit treats a ``pages/`` folder next to the entry script as
a v1 multipage app and, on a fresh server, runs ``pages/<name>.py`` directly (without this router, its sys.path set-up
and sidebar) when the first visitor opens a deep link such as ``/results?run=...``. Every page keeps its state in
the URL query (``root``, ``run``/``runs``, ``dataset``, ``scene``, ``tab``) so a copied link opens the same view.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402

from dashboard import state  # noqa: E402

PAGES: dict[str, tuple[str, str]] = {
    # url path: (file, title)
    "datasets": ("views/datasets.py", "Datasets"),
    "run": ("views/run.py", "Run"),
    "results": ("views/results.py", "Results"),
    "compare": ("views/compare.py", "Compare"),
}
DEFAULT_PAGE = "datasets"
ICONS = {"datasets": ":material/photo_library:", "run": ":material/play_circle:",
         "results": ":material/analytics:", "compare": ":material/compare_arrows:"}


#: session key of the ``?root=`` the picker last wrote to the URL (another value there comes from a link)
URL_ROOT = "_root_in_url"
#: session key of ``(root named by a link but missing here, root shown instead)``, said until another root is picked
LINK_ROOT_MISSING = "_link_root_missing"


def root_picker() -> None:
    """Sidebar: pick a data root (shown in ``?root=``); the Datasets page adds new ones (``data/roots.json``).

    The picker is not bound to the URL: a bound widget keeps a value set from code (the Results page following a
    run's root, the Datasets page adding one) out of the URL, and the page's next widget change puts it back on the
    URL's root. Here the picked root is written to the URL on every run, and a ``?root=`` other than the one last
    written (a shared link, a page switch or browser navigation that names another) sets the picker.
    """
    roots = state.load_roots()
    if problem := state.roots_problem():
        st.sidebar.error(f"Remembered data roots not shown: {problem}")
    wanted = state.qp_first("root")
    if wanted and wanted not in roots and Path(wanted).is_dir():
        roots.append(wanted)  # a shared link to a root this machine does not remember: show it, do not store it
    elif wanted and wanted not in roots and wanted != st.session_state.get(URL_ROOT):
        # a link to a root that is not on this machine: the picker keeps another one, which must be said (a launch
        # from a teammate's Run link would otherwise run on other data without a word)
        st.session_state[LINK_ROOT_MISSING] = (wanted, None)
    if nxt := st.session_state.pop(state.NEXT_ROOT, None):  # the Results page opened a run on another root
        if nxt not in roots:
            roots.append(nxt)
        st.session_state["root"] = nxt
    elif wanted in roots and wanted != st.session_state.get(URL_ROOT):
        st.session_state["root"] = wanted
    picked = st.session_state.get("root")
    if picked not in roots:
        if picked and Path(picked).is_dir():
            roots.append(picked)  # picked earlier in this session (e.g. a run's root), not remembered
        else:
            st.session_state["root"] = roots[0]
    st.sidebar.selectbox("Data root", roots, key="root", help="Folder in the IMC-2025 layout (train/, test/, CSVs)")
    st.query_params["root"] = st.session_state[URL_ROOT] = st.session_state["root"]
    if missing := st.session_state.get(LINK_ROOT_MISSING):
        linked, shown = missing
        if shown is None:
            st.session_state[LINK_ROOT_MISSING] = (linked, st.session_state["root"])
        elif shown != st.session_state["root"]:  # the user picked another root: said enough
            del st.session_state[LINK_ROOT_MISSING]
            missing = None
    if missing:
        st.warning(f"This link's data root {state.code(missing[0])} is not on this machine, so the page shows "
                   f"{state.code(st.session_state['root'])} instead: copy the data here and add it on the Datasets "
                   "page before you launch or compare anything from this link.", icon="⚠️")
    root = state.current_root()
    if root is not None and not root.is_dir():
        if root == state.default_root():
            st.sidebar.warning("The bundled synthetic benchmark is missing: run `make data`.")
        else:
            st.sidebar.warning(f"{root} does not exist.")
    st.sidebar.caption("Add more data roots on the Datasets page.")


#: a share link longer than this scrolls in a box of its own instead of growing the sidebar
SHARE_LINK_CHARS = 200
#: server addresses that keep the dashboard on this machine
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def network_note() -> None:
    """Say so in the sidebar when the dashboard listens beyond this machine: launched from another folder than the
    checkout, Streamlit does not read its ``.streamlit/config.toml`` and listens on every interface, where anyone
    who reaches the machine can open the pages and start runs (``make run`` binds 127.0.0.1)."""
    address = str(st.get_option("server.address") or "")
    if address in LOOPBACK:
        return
    if not address:  # (no address given: every interface, by Streamlit's default)
        st.sidebar.warning("This dashboard listens on every network interface: anyone who can reach this machine "
                           "can open it and start runs. Launch it with `make run`, or pass `--server.address "
                           "127.0.0.1`.", icon="⚠️")
    else:
        st.sidebar.caption(f"Shared on the network at {state.code(address)}: anyone who reaches it can start runs.")


def switch_keeping_query(page: st.Page, drop: tuple[str, ...] = ()) -> None:
    """``st.switch_page`` to ``page`` with the current query (all values of each key) minus the keys in ``drop``."""
    st.switch_page(page, query_params={k: st.query_params.get_all(k) for k in st.query_params if k not in drop})


#: query keys a page writes itself (bound widgets' keys are Streamlit's): another page drops them, so that the address
#: bar of Compare does not keep the run Results showed (a link copied from it named a run Compare did not draw)
PAGE_QUERY = {"results": ("run", "cluster"), "compare": ("runs", "delta_a", "delta_b", "draw_runs"),
              "run": ("set", "split", "datasets", "repeats", "group", "label", "cache")}


def drop_foreign_query(page: str) -> None:
    """Remove from the URL the keys :data:`PAGE_QUERY` gives to pages other than ``page``."""
    for name, keys in PAGE_QUERY.items():
        if name == page:
            continue
        for key in keys:
            if key in st.query_params:
                del st.query_params[key]


def follow_page_param(pages: dict[str, st.Page], current: st.Page) -> None:
    """Honour ``?page=<name>`` once per session (links that name the page in the query, not the path)."""
    if st.session_state.get("_page_param_followed"):
        return
    st.session_state["_page_param_followed"] = True
    wanted = state.qp_first("page")
    if wanted in pages and pages[wanted].title != current.title:
        switch_keeping_query(pages[wanted], drop=("page",))


def default_page_alias(name: str, page: st.Page) -> st.Page:
    """A hidden page at ``/<name>`` that sends the visitor to ``page`` (the default page lives at ``/``, so a typed
    ``/datasets`` would otherwise be "page not found"), keeping the query."""

    def go() -> None:
        switch_keeping_query(page)

    return st.Page(go, title=page.title, url_path=name, visibility="hidden")


def main() -> None:
    st.set_page_config(page_title="imc-lab", page_icon=":material/view_in_ar:", layout="wide")
    # the default page is served at / but reserves its url_path: "index", so that the alias can take /datasets
    pages = {name: st.Page(file, title=title, url_path="index" if name == DEFAULT_PAGE else name, icon=ICONS[name],
                           default=(name == DEFAULT_PAGE))
             for name, (file, title) in PAGES.items()}
    alias = default_page_alias(DEFAULT_PAGE, pages[DEFAULT_PAGE])
    current = st.navigation([*pages.values(), alias])
    if current.url_path == alias.url_path:
        # before the sidebar and the page: once they draw their widgets, switch_page may not set the keys bound to them
        switch_keeping_query(pages[DEFAULT_PAGE])
    follow_page_param(pages, current)
    root_picker()
    network_note()
    share = st.sidebar.container()
    name = next((n for n, p in pages.items() if p.title == current.title), "")
    state.register_share(name, [])
    drop_foreign_query(name)
    current.run()
    with share:
        st.caption("Share this view (copy the link):")
        link = state.share_link()
        # (a Compare link of six runs filled the sidebar: a long one scrolls in a box of five lines; the copy button
        # still copies all of it)
        st.code(link, language="text", wrap_lines=True, height="content" if len(link) <= SHARE_LINK_CHARS else 120)


main()
