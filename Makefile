# Two commands a newcomer needs: `make drill` (the sandbox rollback drill) and `make test`.
# Both create the virtualenv on first use, so they work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: drill test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

drill: $(STAMP)
	$(VENV)/bin/mlrollback drill --stack dev --sandbox

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@# Byte-compile the project once: the suite starts many CLI processes, and with
	@# PYTHONDONTWRITEBYTECODE set each would compile every module it imports again.
	$(PY) -m compileall -q rollback infra policy > /dev/null
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
