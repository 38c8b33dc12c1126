# ChatPro privacy service. `make run` and `make test` set everything up by themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUF    := node_modules/.bin/buf
ADDRESS ?= 127.0.0.1:50051

.PHONY: install proto proto-check proto-release migrate run test lint bench clean

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

# The generated chatpro.privacy.v1 modules are committed; they are remade only when a proto or
# the generator changes, so that building and testing never rewrite tracked files. The venv is
# order-only: reinstalling packages is no reason to regenerate.
PROTOS    := $(wildcard protos/chatpro/privacy/v1/*.proto)
GEN_DIR   := clients/python/src/chatpro/privacy/v1
GENERATED := $(foreach suffix,_pb2.py _pb2.pyi _pb2_grpc.py _pb2_grpc.pyi,\
	$(patsubst protos/chatpro/privacy/v1/%.proto,$(GEN_DIR)/%$(suffix),$(PROTOS)))

$(GENERATED) &: $(PROTOS) scripts/gen_protos.sh | $(STAMP)
	PY=$(PY) scripts/gen_protos.sh

## proto: regenerate the chatpro.privacy.v1 modules and their type stubs, changed or not
proto: $(STAMP)
	PY=$(PY) scripts/gen_protos.sh

## proto-check: the committed generated code matches the protos
proto-check: proto
	git diff --exit-code -- clients/python/src/chatpro

## proto-release: store the protos as released (RELEASE=v1.1): buf image in protos/releases/,
## which `make lint` checks every later change against (buf breaking, FILE rules)
PROTO_RELEASE = $(shell ls -v protos/releases/*.binpb 2>/dev/null | tail -n 1)
proto-release: $(BUF)
	test -n "$(RELEASE)" || { echo "usage: make proto-release RELEASE=v1.1" >&2; exit 2; }
	test ! -e protos/releases/$(RELEASE).binpb || { echo "$(RELEASE) exists" >&2; exit 2; }
	$(BUF) breaking --against $(PROTO_RELEASE)
	$(BUF) build --exclude-source-info -o protos/releases/$(RELEASE).binpb

## migrate: apply database migrations (DATABASE_URL, default a SQLite file in ./data)
migrate: $(STAMP) $(GENERATED)
	$(VENV)/bin/chatpro-privacy migrate

## run: serve on $(ADDRESS) with the embedded SQLite default
run: migrate
	$(VENV)/bin/chatpro-privacy serve --address $(ADDRESS)

## test: the whole suite (set DATABASE_URL=postgresql://... to run it on PostgreSQL)
test: $(STAMP) $(GENERATED)
	$(PY) -m pytest -q $(PYTEST_ARGS)

## lint: buf lint on the protos, ruff (rules and formatting) and mypy on the code
LINTED := server tests bench clients/python/src/chatpro_privacy_client clients/python/tests plugins
lint: $(STAMP) $(GENERATED) $(BUF)
	$(BUF) lint
	$(BUF) breaking --against $(PROTO_RELEASE)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy clients/python/tests

## bench: throughput ratios against a no-op call in the same run -> bench-results.json
bench: $(STAMP) $(GENERATED)
	$(PY) bench/run.py --output bench-results.json $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache data bench-results.json
