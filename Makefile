# Every target creates what it needs: the virtual environment, and for the tests the
# Debian servers (Mosquitto, InfluxDB 1.x, VictoriaMetrics) they start on loopback.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-peers bench-sustained proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cellmon demo

test: $(STAMP)
	bash scripts/ensure-servers.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	bash scripts/ensure-servers.sh
	$(BIN)/python -m benchmarks.pipeline

# Node-RED 4.1, cellmon (paho and mqtt5 clients) and two bare subscribers, drained and at
# paced rates; npm installs Node-RED into var/bench-peers/ on the first run. Options:
# make bench-peers ARGS="--mode paced --rates 400,2000 --seconds 30 --write-docs"
bench-peers: $(STAMP)
	bash scripts/ensure-servers.sh
	$(BIN)/python -m benchmarks.peers $(ARGS)

# 16,000 samples/s for five minutes into two shards; the gateways are mosquitto_pub (C).
bench-sustained: $(STAMP)
	bash scripts/ensure-servers.sh
	command -v mosquitto_pub >/dev/null || apt-get install -y mosquitto-clients
	$(BIN)/python -m benchmarks.sustained

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .import_linter_cache

# The Sparkplug B payload module, from its .proto; protoc comes from grpcio-tools in a
# throwaway environment (only needed when the .proto changes, never to build or run).
SPARKPLUG := collector/source/sparkplug
proto:
	$(PYTHON) -m venv /tmp/cellmon-protoc
	/tmp/cellmon-protoc/bin/pip install --quiet grpcio-tools
	cd $(SPARKPLUG) && /tmp/cellmon-protoc/bin/python -m grpc_tools.protoc -I. \
		--python_out=. --pyi_out=. sparkplug_b.proto
