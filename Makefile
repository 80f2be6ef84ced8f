# Sensor Platform: `make demo` runs the demo on embedded defaults, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SENSOR_DATA_DIR ?= $(CURDIR)/data

.PHONY: install demo ui test lint format broker benchmark benchmark-kafka clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

demo: install
	$(BIN)/sensor-platform demo

ui: install
	$(BIN)/python -c 'from sensor_platform.demo import dev_instance; dev_instance()'
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

broker: install
	$(BIN)/sensor-platform broker --port 9092

benchmark: install
	$(BIN)/python benchmarks/minute_aggregation.py

benchmark-kafka: install
	$(BIN)/python benchmarks/kafka_ingestion.py

clean:
	rm -rf data .dagster_home
