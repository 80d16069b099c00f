# make report | make test | make data | make bench   (each creates .venv from requirements.txt when missing)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Reports and tests write their data cache inside the project unless the user chose one.
export FACEGAN_CACHE ?= $(CURDIR)/.cache/facegan

.PHONY: report test lint data bench quality clean

$(VENV)/installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The report trains afresh in runs/report: its folder is replaced on every run.
report: $(VENV)/installed
	rm -rf runs/report
	$(PY) -m facegan report -p RUN_DIR runs/report

test: $(VENV)/installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

# CelebA into data/, where --data celeba looks; an interrupted download resumes.
data: $(VENV)/installed
	$(PY) -m facegan data download celeba

bench: $(VENV)/installed
	$(PY) benchmarks/synthfaces.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/reliability.py

# The recipe study (about 40 minutes on 2 cores); REAL=path/to/faces.zip adds real faces.
quality: $(VENV)/installed
	$(PY) benchmarks/quality.py $(if $(REAL),--real $(REAL))

clean:
	rm -rf runs/report reports .cache
