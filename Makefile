# maillab: the two commands of the README's quick start are `make run` and `make test`.
# Both set up what a fresh machine lacks first (idempotent, quick when done).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DEBIAN_PACKAGES = mininet iptables iproute2 iputils-ping dnsutils swaks tmux openssl

.PHONY: run test setup system lint typecheck pytest bench clean-lab schema

run: setup
	$(BIN)/maillab

test: system setup lint typecheck pytest

# Debian packages for the mininet backend and the real tools inside hosts.
# Installed only when running as root on a Debian-like system and missing;
# elsewhere the mininet tests skip and say why.
system:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	else echo "not root or no apt-get: skipping Debian packages (the mininet tests will skip)"; fi

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,notebooks,mininet]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check sim tests bench
	$(BIN)/ruff format --check sim tests bench

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
