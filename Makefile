# Sensor Platform: `make demo` runs the demo on embedded defaults, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SENSOR_DATA_DIR ?= $(CURDIR)/data
DBT_MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -path dbt_project/target -prune -o -type f -print 2>/dev/null)

.PHONY: install demo ui dashboard sql docs test test-fast test-celery lint format broker benchmark \
	benchmark-kafka benchmark-mqtt benchmark-load benchmark-alerts benchmark-live-feed \
	benchmark-dashboard benchmark-scale-out clean

install: $(VENV)/.installed $(DBT_MANIFEST)

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

# The analytics code location loads dbt's manifest; it is written here, never at load time.
$(DBT_MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	$(BIN)/sensor-platform dbt-parse
	@touch $@

demo: install
	$(BIN)/sensor-platform demo

# The UI, and beside it the Data Docs server that the checks' links open (see `make docs`);
# dev_instance() writes the local instance's dagster.yaml and creates its pools first.
ui: install
	$(BIN)/python -c 'from sensor_platform.demo import dev_instance; dev_instance()'
	$(BIN)/sensor-platform docs & docs=$$!; trap 'kill $$docs 2>/dev/null' EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

# The operations dashboard on http://127.0.0.1:8501 (SENSOR_DASHBOARD_PORT / _HOST to move it).
dashboard: install
	$(BIN)/sensor-platform dashboard

# The lake's Data Docs over HTTP on 127.0.0.1:$SENSOR_DOCS_PORT (3030).
docs: install
	$(BIN)/sensor-platform docs

# A read-only SQL prompt on the analysts' file (data/analytics.duckdb), with the DuckDB CLI.
sql: install
	$(BIN)/sensor-platform sql

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not integration"

# The pipeline on two Celery workers (RabbitMQ, PostgreSQL, moto S3; part of `make test` too).
test-celery: install
	$(BIN)/pytest sensor_platform_tests/test_celery_workers.py sensor_platform_tests/test_executor.py

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

benchmark-mqtt: install
	$(BIN)/python benchmarks/mqtt_ingestion.py

benchmark-load: install
	$(BIN)/python benchmarks/load_time.py

benchmark-alerts: install
	$(BIN)/python benchmarks/alert_latency.py

benchmark-live-feed: install
	$(BIN)/python benchmarks/live_feed.py

benchmark-dashboard: install
	$(BIN)/python benchmarks/dashboard.py

# A 48-hour backfill on one and on two Celery workers (RabbitMQ, PostgreSQL, moto S3).
benchmark-scale-out: install
	$(BIN)/python benchmarks/scale_out.py

clean:
	rm -rf data .dagster_home
