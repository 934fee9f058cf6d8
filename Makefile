# metascheduler: `make demo` runs a whole local grid, `make test` runs every test.
# Both install what they need inside the repo first (.venv, node_modules); nothing by hand.
SHELL := /bin/bash
ROOT := $(abspath .)
PY := $(ROOT)/.venv/bin/python
BIN := $(ROOT)/node_modules/.bin
export FOUNDRY_SOLC := $(ROOT)/scripts/solc
export PATH := $(BIN):$(ROOT)/.venv/bin:$(PATH)

.PHONY: all deps build test test-forge test-py lint slither snapshot demo system-deps clean

all: build

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The package carries the contracts' ABIs and bytecode (setup.py exports them from forge's out/),
# so on a fresh clone forge builds before the package installs.
.venv/.installed: pyproject.toml setup.py node_modules/.installed
	forge build
	python3 -m venv .venv
	.venv/bin/pip install -q -U pip
	.venv/bin/pip install -q -e '.[dev]'
	@touch $@

deps: node_modules/.installed .venv/.installed

build: deps
	forge build
	$(PY) scripts/export_abi.py
	$(PY) -m metascheduler.agent.backends.csupervisor

## Services the integration tests use (Debian packages; needs root): a one-node Slurm with two
## partitions, a PostgreSQL, headless Chromium for the dashboard's browser test, and the job
## sandbox's user with podman, runc and busybox-static for container jobs, and gcc, libc6-dev
## and musl-tools for the local backend's C job supervisor.
system-deps:
	mkdir -p var
	bash scripts/sandbox.sh install
	bash scripts/slurm.sh install-and-start
	bash scripts/postgres.sh install-and-start > var/postgres.url
	bash scripts/browser.sh install

test-forge: build
	forge test
	forge snapshot --check --match-contract Gas

test-py: build
	SLURM_CONF=$(ROOT)/var/slurm/slurm.conf \
	MS_TEST_POSTGRES_URL=$$(tail -1 var/postgres.url 2>/dev/null) \
	$(PY) -m pytest -q

lint: deps
	.venv/bin/ruff check src tests scripts
	.venv/bin/ruff format --check src tests scripts
	.venv/bin/mypy

## Static analysis of the contracts: fails on an untriaged high or medium finding (docs/security.md).
slither: deps
	bash scripts/slither.sh

test: deps system-deps test-forge slither lint test-py

snapshot: build
	forge snapshot --match-contract Gas

demo: deps build
	-bash scripts/slurm.sh install-and-start
	$(PY) -m metascheduler.cli devnet up

clean:
	rm -rf out cache .venv node_modules build dist src/metascheduler/chain/contracts
