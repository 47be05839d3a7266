# Staffetta — developer commands. `make run` and `make test` are the quickstart.
SHELL := /bin/bash
VENV := .venv
BENCH_VENV := .venv-bench
UV := $(shell command -v uv 2>/dev/null || echo .tools/uv/bin/uv)
PYTEST_ARGS ?=

.PHONY: install run test unit lint format mypy bench broker test-tools dashboard rules-test clean

$(UV):
	python3 -m venv .tools/uv
	.tools/uv/bin/pip install --quiet uv

## install: create .venv with the project (editable) and its locked dependencies
install: $(UV)
	$(UV) sync --frozen
	@test -x $(VENV)/bin/staffetta

## broker: make sure a RabbitMQ answers on the configured URL (starts the local one)
broker:
	@scripts/ensure-rabbitmq.sh

## run: all four services on this machine (SMTP 2525, submission 2587, HTTP 8080-8083)
run: install broker
	$(VENV)/bin/staffetta up

## test-tools: the real tools the tests drive (postfix tools, swaks, prometheus, helm)
test-tools:
	@scripts/install-test-tools.sh
	@scripts/ensure-redis.sh

## test: the whole suite, RabbitMQ-backed tests included
test: install broker test-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## unit: the pure, fast tests only
unit: install
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

mypy: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## bench: throughput and latency against Postfix (prints a table, never fails on speed)
##   Staffetta runs on a PGO/LTO-built CPython, as in the image (scripts/bench-python.sh;
##   BENCH_PYTHON=/path/to/python chooses another), from its own environment, .venv-bench
bench: install broker test-tools
	UV_PROJECT_ENVIRONMENT=$(BENCH_VENV) $(UV) sync --frozen --quiet --python "$$(scripts/bench-python.sh)"
	$(BENCH_VENV)/bin/python -m bench $(BENCH_ARGS)

## dashboard: regenerate the Grafana dashboard JSON shipped in the chart
dashboard: install
	$(VENV)/bin/python -m deploy.observability.dashboard

## rules-test: promtool unit tests of every alert
rules-test:
	promtool check rules deploy/helm/staffetta/files/prometheus-rules.yaml
	promtool test rules deploy/observability/rules-test.yaml

clean:
	rm -rf $(VENV) $(BENCH_VENV) .tools .mypy_cache .ruff_cache .pytest_cache var
