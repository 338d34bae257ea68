# Everything runs from a virtualenv built from the lock file; only Python 3.11+ must be on the machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Two CPUs on CI; tests mostly wait on sockets and servers, so a few more workers than cores pays off.
TEST_WORKERS ?= 4

.PHONY: install up test lint eval bench lock clean

install: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(INSTALLED)

up: install
	$(BIN)/mailroom up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

eval: install
	$(BIN)/python -m eval

bench: install
	$(BIN)/python -m bench

# Re-resolve every dependency (newest allowed by pyproject.toml) into the dev lock, then pick the runtime lock out
# of it: the same versions, only what the services import (the image installs that one, without the dev tools
# and the embedded servers).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^mailroom' > requirements.lock
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet -c requirements.lock .
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^mailroom' > requirements-runtime.lock
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
