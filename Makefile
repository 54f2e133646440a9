# The two commands a new user needs: `make run` and `make test`.
# Both create .venv and install the project (pinned versions) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-unit test-integration proto evaluate bench bench-tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the service on an embedded default: local Ray, a demo model trained on first use.
run: $(STAMP)
	$(BIN)/recsys serve $(ARGS)

## The whole test suite (unit, then integration against real Ray/Serve/gRPC/HTTP).
test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(ARGS)

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(ARGS)

## Regenerate proto/recsys/v1/*_pb2*.py from the .proto files.
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

## The full offline evaluation (MovieLens 5 seeds + Online Retail): docs/evaluation/
evaluate: $(STAMP)
	$(BIN)/recsys evaluate $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/recommend_latency.py $(ARGS)

## The native load generator the throughput benchmarks use (h2load, Debian's nghttp2-client).
bench-tools:
	@command -v h2load >/dev/null || (apt-get install -y -q nghttp2-client || \
	  (apt-get update -q && apt-get install -y -q nghttp2-client))

clean:
	rm -rf $(VENV) models var .pytest_cache
