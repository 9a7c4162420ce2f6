PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOOPER_HOME ?= ./.looper
export LOOPER_HOME
export DO_NOT_TRACK := 1
export DAGSTER_HOME := $(abspath $(LOOPER_HOME))/dagster

.PHONY: venv demo test lint bench ui clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(wildcard looper_pipelines/*/*.c)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(VENV)/bin/looper demo

test: venv
	$(VENV)/bin/ruff check looper_pipelines assets_tests bench
	$(PY) -m pytest -n 2 --dist loadfile

ui: venv
	mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml

lint: venv
	$(VENV)/bin/ruff check looper_pipelines assets_tests bench

bench: venv
	for b in bench/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(LOOPER_HOME)
