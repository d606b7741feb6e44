# make dev | test | lint | format | validate | build | deploy | bench
# Only python3.11, pip, git and make are needed: every tool lives in a virtualenv made here.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# aws-sam-cli pins old boto3/pydantic: it gets its own virtualenv, never .venv.
SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION ?= 1.170.0
TEMPLATE := template.yaml
TRANSFORMED := build/transformed.json
ENV ?= dev
# sam build needs python3.12 (the Lambda runtime); pyenv keeps one here on the dev machines.
PY312_DIR ?= /root/.pyenv/versions/3.12.1/bin

export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

LINT_PATHS := layers functions devstack deploy tests $(wildcard bench)
FUNCTION_DIRS := $(sort $(dir $(wildcard functions/*/app.py)))

.PHONY: venv test lint mypy format validate build deploy dev bench clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt layers/core/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(MAKE) --no-print-directory mypy

# The functions are all app.py: one mypy run per function directory avoids a duplicate
# module, and lets a function import its sibling modules the way Lambda does.
mypy: venv
	$(BIN)/mypy layers/core/taskqueue devstack deploy
	for dir in $(FUNCTION_DIRS); do \
		echo "mypy $$dir"; MYPYPATH=$$dir $(BIN)/mypy $$dir; \
	done

format: venv
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

test: venv lint
	$(BIN)/pytest tests

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_VERSION)

validate: venv $(SAM)
	$(SAM) validate --lint --template $(TEMPLATE)
	$(BIN)/python -m devstack.resources --template $(TEMPLATE) --out $(TRANSFORMED)
	$(BIN)/cfn-lint $(TRANSFORMED)
	@echo "validate: $(TEMPLATE) and $(TRANSFORMED) are clean"

# Lambda cannot write __pycache__ into a read-only layer: without bytecode shipped, every cold
# start compiles each module it imports (docs/benchmarks.md, cold start). unchecked-hash: the
# bytecode is used as it is, never compared with the source's time (a zip keeps times inexactly).
build: $(SAM)
	if ! python3.12 --version >/dev/null 2>&1; then export PATH="$(PY312_DIR):$$PATH"; fi; \
	$(SAM) build --template $(TEMPLATE) --config-env $(ENV); \
	python3.12 -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

# sam deploy, then the web page: config.js from the stack outputs, static_site/ to the site
# bucket, CloudFront invalidation (deploy/site.py). Stack and region come from samconfig.toml's
# [$(ENV)] section; STACK=... REGION=... override them.
deploy: venv build
	$(SAM) deploy --config-env $(ENV)
	read -r stack region < <($(BIN)/python -m deploy.samconfig $(ENV)); \
	$(BIN)/python -m deploy.site --stack "$${STACK:-$$stack}" --region "$${REGION:-$$region}"

dev: venv
	$(BIN)/python -m devstack dev

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf build .aws-sam .mypy_cache .ruff_cache .pytest_cache
