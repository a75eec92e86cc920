# maillab: the two commands of the README's quick start are `make run` and `make test`.
# Both set up what a fresh machine lacks first (idempotent, quick when done).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# configurable-http-proxy (npm), JupyterHub's proxy, for the classroom test:
# installed into the venv's own folder, never globally; skipped without npm.
CHP     = $(VENV)/node/.installed

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

setup: $(STAMP) $(CHP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,notebooks,mininet,serve,classroom]'
	touch $(STAMP)

$(CHP): $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix $(VENV)/node --no-audit --no-fund --loglevel=error \
	    configurable-http-proxy@4 && touch $(CHP); \
	else echo "setup: no npm: the JupyterHub test will skip (make system installs it)"; fi

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
