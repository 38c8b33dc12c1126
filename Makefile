# ChatPro privacy service. `make run` and `make test` set everything up by themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUF    := node_modules/.bin/buf
ADDRESS ?= 127.0.0.1:50051

.PHONY: install proto proto-check migrate run test lint bench clean

PLUGIN_PACKAGES := $(wildcard plugins/*/pyproject.toml)

$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt $(PLUGIN_PACKAGES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt \
		-e clients/python -e '.[dev]' $(patsubst %/pyproject.toml,-e %,$(PLUGIN_PACKAGES))
	touch $@

install: $(STAMP)

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	touch $@

## proto: regenerate the chatpro.privacy.v1 modules and their type stubs
proto: $(STAMP)
	PY=$(PY) scripts/gen_protos.sh

## proto-check: the committed generated code matches the protos
proto-check: proto
	git diff --exit-code -- clients/python/src/chatpro

## migrate: apply database migrations (DATABASE_URL, default a SQLite file in ./data)
migrate: proto
	$(VENV)/bin/chatpro-privacy migrate

## run: serve on $(ADDRESS) with the embedded SQLite default
run: migrate
	$(VENV)/bin/chatpro-privacy serve --address $(ADDRESS)

## test: the whole suite (set DATABASE_URL=postgresql://... to run it on PostgreSQL)
test: proto
	$(PY) -m pytest -q $(PYTEST_ARGS)

## lint: buf lint on the protos, ruff and mypy on the code
lint: proto $(BUF)
	$(BUF) lint
	$(VENV)/bin/ruff check server tests bench clients/python/src/chatpro_privacy_client plugins
	$(VENV)/bin/mypy

## bench: throughput ratios against a no-op call in the same run -> bench-results.json
bench: proto
	$(PY) bench/run.py --output bench-results.json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache data bench-results.json
