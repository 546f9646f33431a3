# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo ui test lint venv venv-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned (with the torchvision built for it): an unpinned torch would pull the newest build
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

demo: venv
	$(BIN)/kz demo

# the Dagster UI on the demo's instance (everything `make demo` materialized), for lineage inspection
DEMO_ENV := DAGSTER_HOME=$(CURDIR)/var/dagster KZ_STAC=$(CURDIR)/var/region KZ_STORAGE=$(CURDIR)/var/storage \
	KZ_PARCELS=$(CURDIR)/var/region/parcels.parquet KZ_LABELS=$(CURDIR)/var/region/labels/inspections.parquet \
	KZ_FIELD_LABELS=$(CURDIR)/var/region/labels
UI_PORT ?= 3000
ui: venv
	@test -d var/dagster || { echo "no demo instance in var/dagster: run 'make demo' first"; exit 2; }
	@echo "Dagster UI on the demo's instance: http://127.0.0.1:$(UI_PORT)"
	$(DEMO_ENV) $(BIN)/dagster-webserver -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

test: venv-dev
	$(BIN)/ruff check kz_pipelines kz_pipelines_tests benchmarks scripts
	$(BIN)/mypy kz_pipelines
	# a scratch instance: from the repo root the CLI would load dagster.yaml (PostgreSQL, KZ_PG_* env)
	DAGSTER_HOME=$$(mktemp -d) $(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/pytest

lint: venv-dev
	$(BIN)/ruff check kz_pipelines kz_pipelines_tests benchmarks scripts
	$(BIN)/mypy kz_pipelines

clean:
	rm -rf $(VENV) var
