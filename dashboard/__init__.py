"""imc-lab Streamlit dashboard (pages in ``dashboard/pages``, helpers in :mod:`dashboard.state` and
:mod:`dashboard.jobs`). Start it with ``make run``."""
