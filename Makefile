# make dev | test | lint | format | validate | build | deploy | destroy | bench
# Only python3.11, pip, git and make are needed: every tool lives in a virtualenv made here
# (make build also needs the Lambda runtime's Python 3.12, or Docker: see deploy/build.py).

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

export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

LINT_PATHS := layers functions devstack deploy client examples tests $(wildcard bench)
FUNCTION_DIRS := $(sort $(dir $(wildcard functions/*/app.py)))

.PHONY: venv test lint mypy format validate build deploy destroy dev bench clean

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
	$(BIN)/mypy layers/core/taskqueue devstack deploy client/src/taskqueue_client client/tools examples
	for dir in $(FUNCTION_DIRS); do \
		echo "mypy $$dir"; MYPYPATH=$$dir $(BIN)/mypy $$dir; \
	done

format: venv
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

# Two parts, each test in one of them: the tests not marked `serial` on $(TEST_WORKERS) xdist
# workers (whole files to a worker, so a module's fixtures are built once; the longest files
# first, tests/conftest.py, so the order is kept), then the `serial` ones
# alone (wall-time or CPU-ratio asserts, local stacks, Chromium: tests/conftest.py). Both parts
# run even if the first fails; the target fails if either did. `pytest tests` runs all serially.
TEST_WORKERS ?= 2
test: venv lint
	status=0; \
	$(BIN)/pytest tests -m "not serial" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder || status=$$?; \
	$(BIN)/pytest tests -m serial || status=$$((status ? status : $$?)); \
	exit $$status

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_VERSION)

validate: venv $(SAM)
	$(SAM) validate --lint --template $(TEMPLATE)
	$(BIN)/python -m devstack.resources --template $(TEMPLATE) --out $(TRANSFORMED)
	$(BIN)/cfn-lint $(TRANSFORMED)
	@echo "validate: $(TEMPLATE) and $(TRANSFORMED) are clean"

# The runtime's Python from PATH, pyenv or a container; else one line on how to get it. Then the
# build's bytecode: Lambda cannot write __pycache__ into a read-only layer, so without bytecode
# shipped every cold start compiles each module it imports (docs/benchmarks.md, cold start).
build: venv $(SAM)
	$(BIN)/python -m deploy.build --sam $(SAM) --template $(TEMPLATE) --config-env $(ENV)

# The stack and region come from samconfig.toml's [$(ENV)] section; STACK=... REGION=... override
# them. deploy.parameters asks, on a first deploy, for the parameters that must be real (SES
# sender, alarm address; PARAMS='Key=Value ...' gives them without asking) and says what SES
# needs; then sam deploy (a failed first create deletes the stack: on_failure = DELETE), then
# the web page: config.js from the stack outputs, static_site/ to the site bucket, CloudFront
# invalidation (deploy/site.py).
OVERRIDES := build/parameters-$(ENV).yaml
STACK_AND_REGION = read -r stack region < <($(BIN)/python -m deploy.samconfig $(ENV)); \
	stack="$${STACK:-$$stack}"; region="$${REGION:-$$region}"

deploy: build
	$(STACK_AND_REGION); \
	$(BIN)/python -m deploy.parameters $(ENV) --stack "$$stack" --region "$$region" \
		--out $(OVERRIDES) $(PARAMS); \
	$(SAM) deploy --config-env $(ENV) --stack-name "$$stack" --region "$$region" \
		--parameter-overrides file://$(OVERRIDES); \
	$(BIN)/python -m deploy.site --stack "$$stack" --region "$$region"

# Empties the site bucket and deletes the stack (sam delete) after you type the stack's name;
# YES=1 does not ask. The table, data bucket and user pool are kept (their DeletionPolicy).
destroy: venv $(SAM)
	$(STACK_AND_REGION); \
	$(BIN)/python -m deploy.destroy --stack "$$stack" --region "$$region" --sam $(SAM) \
		$(if $(YES),--yes)

dev: venv
	$(BIN)/python -m devstack dev

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf build .aws-sam .mypy_cache .ruff_cache .pytest_cache
