# make report | make test | make data | make bench | make starter   (each creates .venv from requirements.txt when missing)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Reports and tests write their data cache inside the project unless the user chose one.
export FACEGAN_CACHE ?= $(CURDIR)/.cache/facegan

.PHONY: report test lint data bench quality clean

# PyTorch from PyPI brings its CUDA libraries: a new .venv takes about 6.1 GiB. Checking the room
# first turns a disk that would fill mid-install into one clear sentence.
VENV_GIB ?= 7
define ROOM_CHECK
import os, shutil, sys
where = os.path.dirname(os.path.abspath("$(VENV)"))
free = shutil.disk_usage(where).free / 2**30
if free < $(VENV_GIB):
    sys.exit(
        f"make: a new $(VENV) needs about $(VENV_GIB) GiB free in {where} (PyTorch brings its "
        f"CUDA libraries), but {free:.1f} GiB is free there. Free some space, or set VENV to "
        "a folder on a roomier disk, and run make again."
    )
endef
export ROOM_CHECK

$(VENV)/installed: requirements.txt
	test -x $(PY) || { $(PYTHON) -c "$$ROOM_CHECK" && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The report trains afresh in runs/report: its folder is replaced on every run.
report: $(VENV)/installed
	rm -rf runs/report
	$(PY) -m facegan report -p OUT runs/report

test: $(VENV)/installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

# CelebA into data/, where --data celeba looks; an interrupted download resumes.
data: $(VENV)/installed
	$(PY) -m facegan data download celeba

bench: $(VENV)/installed
	$(PY) -m benchmarks.synthfaces
	$(PY) -m benchmarks.throughput
	$(PY) -m benchmarks.endtoend
	$(PY) -m benchmarks.memory
	$(PY) -m benchmarks.freeze
	$(PY) -m benchmarks.reliability

# The learner's notebook, generated from the solution notebook: each solution region becomes
# its stub. tests/test_starter.py checks that the committed file is what this writes.
.PHONY: starter
starter: $(VENV)/installed
	$(PY) -m facegan.starter

# The figures in README.md and docs/ from benchmarks/results/*.json; prose stays as written.
.PHONY: docs
docs: $(VENV)/installed
	$(PY) -m benchmarks.docs

# The recipe study (about 40 minutes on 2 cores); REAL=path/to/faces.zip adds real faces.
quality: $(VENV)/installed
	$(PY) -m benchmarks.quality $(if $(REAL),--real $(REAL))

clean:
	rm -rf runs/report reports .cache
