# Lifecycle Warehouse — every target creates or reuses .venv and installs from the pinned files.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LW := $(BIN)/lw
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

# Simulation and pipeline window (make demo / make sources / make pipeline).
START ?= 2026-09-01
DAYS ?= 60
CUSTOMERS ?= 3000
SEED ?= 42
FROM ?= $(START)
TO ?= $(shell $(PYTHON) -c "import datetime as d; print(d.date.fromisoformat('$(START)') + d.timedelta(days=$(DAYS) - 1))")
PYTEST_ARGS ?=
# make test's pytest-xdist workers (the end-to-end groups run side by side; tests/conftest.py)
TEST_WORKERS ?= 2
# Extra options of `lw sources` (make sources SOURCES_ARGS="--shop-ids uuid").
SOURCES_ARGS ?=
# Size of `make bench`: small (a few minutes), medium or large (hours; docs/benchmark.md); more options of
# `lw bench` in BENCH_ARGS (make bench BENCH_ARGS="--parts loads --customers 2000").
PROFILE ?= small
BENCH_ARGS ?=
# make clv: the as-of date of the fit (default: the demo's last day); CLV_ARGS="--json".
AS_OF ?= $(TO)
CLV_ARGS ?=

.PHONY: help install up stop urls psql sources pipeline summary clv bi demo airflow test test-fast docs lint generate quality-report bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned dependencies into $(VENV) (first time ~1 min) …"
	@$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)
	@echo "✓ $(VENV) ready"

install: $(STAMP) ## create .venv and install the pinned dependencies

$(BENCH_STAMP): $(STAMP)
	@$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

up: $(STAMP) ## start the embedded PostgreSQL (unix socket), create schemas, migrate Airflow
	@$(LW) up

stop: $(STAMP) ## stop Superset (make bi), the local Airflow (make airflow), then the embedded PostgreSQL
	@$(LW) stop

urls: $(STAMP) ## print WAREHOUSE_URL and SHOP_DB_URL
	@$(LW) urls

psql: up ## open psql on the warehouse
	@$(LW) psql

sources: up ## simulate sources: make sources DAYS=60 CUSTOMERS=3000 SEED=42 [START=2026-09-01] [SOURCES_ARGS=--shop-ids=uuid]
	@$(LW) sources --start $(START) --days $(DAYS) --customers $(CUSTOMERS) --seed $(SEED) $(SOURCES_ARGS)

pipeline: up ## run the DAGs over what is in the landing zone and shop: make pipeline FROM=… TO=…
	@$(LW) pipeline --from $(FROM) --to $(TO)

summary: up ## print what was loaded and quarantined between FROM and TO
	@$(LW) summary --from $(FROM) --to $(TO)

clv: up ## fit the CLV models on the warehouse's orders up to AS_OF, print parameters (writes nothing): make clv AS_OF=…
	@$(LW) clv fit --as-of $(AS_OF) $(CLV_ARGS)

demo: up ## everything: fresh warehouse, simulate 60 days, run the pipeline, print the summary
	@$(LW) reset
	@$(LW) sources --start $(START) --days $(DAYS) --customers $(CUSTOMERS) --seed $(SEED) $(SOURCES_ARGS)
	@$(LW) pipeline --from $(FROM) --to $(TO)

bi: up ## Apache Superset with the Customer lifecycle dashboard on 127.0.0.1 (BI_PORT=8088); make stop stops it
	@$(LW) bi start

airflow: up ## a real local Airflow in the background (UI http://127.0.0.1:8080, AIRFLOW_PORT=…); make stop stops it
	@$(LW) local-airflow start

test: $(STAMP) ## run the whole test suite (unit, integration, end-to-end) on TEST_WORKERS=2 workers
	@$(BIN)/pytest -n $(TEST_WORKERS) --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP) ## the tests that need no Airflow run
	@$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

docs: up ## build the dbt docs site (models, columns, lineage) and print its path
	@$(LW) dbt docs generate --quiet
	@echo "✓ dbt docs: $(CURDIR)/dbt_project/target/index.html (or serve it: .venv/bin/lw dbt docs serve)"

quality-report: $(STAMP) ## print (and open, where a browser is set up) the Great Expectations Data Docs
	@$(BIN)/python -m lifecycle_warehouse.quality report --open

bench: $(BENCH_STAMP) ## measure loads, gates, the DAGs and history growth on its own server: bench/results.md [PROFILE=small|medium|large]
	@$(LW) bench --profile $(PROFILE) $(BENCH_ARGS)

generate: $(STAMP) ## rewrite the files generated from the KPI registry and the quality suites
	@$(BIN)/python -m lifecycle_warehouse.generate

lint: $(STAMP) ## ruff (pyflakes' checks) on the Python code, sqlfluff on the dbt models
	@$(BIN)/ruff check --select F plugins dags tests
	@$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests

clean: stop ## stop the server and delete generated data (.warehouse, .airflow, data/)
	rm -rf .warehouse .airflow data
