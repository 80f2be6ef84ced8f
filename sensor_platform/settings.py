"""Every environment variable the platform reads, in one place, with its default.

Only `defs/resources.py` and `defs/partitions.py` call these, when the code location loads; the
ground floor receives plain values. Secrets (passwords inside URLs, keys, webhook URLs) are never
read here: they reach resources as Dagster `EnvVar`s, so the UI shows the variable's name only.
"""

import os
from datetime import date

DEFAULT_DATA_DIR = "data"


def data_dir() -> str:
    return os.environ.get("SENSOR_DATA_DIR", DEFAULT_DATA_DIR)


def lake_root() -> str:
    return os.environ.get("SENSOR_LAKE_ROOT", f"{data_dir()}/lake")


def default_warehouse_url() -> str:
    return f"duckdb:///{data_dir()}/warehouse.duckdb"


def is_set(name: str) -> bool:
    return bool(os.environ.get(name))


def partitions_start() -> str:
    """First partition (UTC date). Validated here so a typo fails loudly at load time."""
    value = os.environ.get("SENSOR_PARTITIONS_START", "2026-01-01")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"SENSOR_PARTITIONS_START must be YYYY-MM-DD, got {value!r}") from exc
    return value


def ingest_source() -> str:
    """Which feed runs by default: `simulator` (no broker needed) or `kafka`."""
    value = os.environ.get("SENSOR_SOURCE", "simulator")
    if value not in {"simulator", "kafka"}:
        raise ValueError(f"SENSOR_SOURCE must be 'simulator' or 'kafka', got {value!r}")
    return value


def optional(name: str) -> str | None:
    return os.environ.get(name) or None


def kafka_bootstrap_servers() -> str:
    return os.environ.get("SENSOR_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def kafka_topics() -> list[str]:
    raw = os.environ.get("SENSOR_KAFKA_TOPICS", "sensor-readings")
    return [t.strip() for t in raw.split(",") if t.strip()]


def kafka_max_records_per_run() -> int:
    value = os.environ.get("SENSOR_KAFKA_MAX_RECORDS_PER_RUN", "50000")
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(
            f"SENSOR_KAFKA_MAX_RECORDS_PER_RUN must be a positive integer, got {value!r}"
        )
    return int(value)


def kafka_on_gap() -> str:
    """What the Kafka sensor does when the broker lost or truncated data."""
    value = os.environ.get("SENSOR_KAFKA_ON_GAP", "fail")
    if value not in {"fail", "earliest", "latest"}:
        raise ValueError(f"SENSOR_KAFKA_ON_GAP must be fail, earliest or latest, got {value!r}")
    return value


def quality_rules_file() -> str | None:
    """An override of the data-quality thresholds (JSON; only what changes)."""
    return optional("SENSOR_QUALITY_RULES_FILE")


def analytics_db_path() -> str:
    """The analysts' DuckDB file of views over the lake, refreshed by the catalog."""
    return os.environ.get("SENSOR_ANALYTICS_DB", f"{data_dir()}/analytics.duckdb")


def kafka_poll_interval_seconds() -> int:
    """How often the Kafka sensor polls (the sensor's minimum interval)."""
    value = os.environ.get("SENSOR_KAFKA_POLL_INTERVAL_SECONDS", "30")
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(
            f"SENSOR_KAFKA_POLL_INTERVAL_SECONDS must be a positive integer, got {value!r}"
        )
    return int(value)
