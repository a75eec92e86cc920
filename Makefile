# maillab: the two commands of the README's quick start are `make run` and `make test`.
# Both set up what a fresh machine lacks first (idempotent, quick when done).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test setup system lint typecheck pytest bench clean-lab schema

run: setup
	$(BIN)/maillab

test: system setup lint typecheck pytest

# Debian packages for the mininet backend and the real tools inside hosts,
# installed (as root on a Debian-like system) when missing, then checked for
# what the project uses each for (e.g. swaks with TLS); one line per missing
# capability. Elsewhere the tests that need them skip and say why.
system:
	@sh scripts/system-setup.sh

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,notebooks,mininet]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check sim tests bench
	$(BIN)/ruff format --check sim tests bench
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m bench

schema: setup
	$(BIN)/python -m sim.topology.schema

clean-lab: setup
	$(BIN)/maillab clean
