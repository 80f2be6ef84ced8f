"""Build canonical reading tables for tests without going through the normalizer, and the
messages a device sends."""

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa

from sensor_platform.readings.schema import READING_SCHEMA


def readings_table(rows: list[dict]) -> pa.Table:
    """Rows need event_time, device_id, metric, value; the rest is filled in deterministically."""
    full = []
    for row in rows:
        event = row["event_time"]
        full.append(
            {
                "event_time": event,
                "device_id": row["device_id"],
                "site_id": row.get("site_id"),
                "metric": row["metric"],
                "value": float(row["value"]),
                "unit": row.get("unit"),
                "status_code": row.get("status_code"),
                "ingest_time": row.get("ingest_time", event + timedelta(seconds=1)),
                "source": row.get("source", "test"),
                "reading_id": row.get(
                    "reading_id", f"{row['device_id']}|{row['metric']}|{event.isoformat()}"
                ),
            }
        )
    return pa.Table.from_pylist(full, schema=READING_SCHEMA)


def hour(h: int, day: int = 1) -> datetime:
    return datetime(2026, 3, day, h, tzinfo=UTC)


def fire_equipment_message(device: str, at: datetime, temperature: float) -> bytes:
    """A fire-monitoring equipment's message: two readings (temperature, humidity 40 %)."""
    return orjson.dumps(
        {"equipment_id": device, "facility_id": "FAC-001", "measured_at": at.isoformat(),
         "temperature": temperature, "humidity": 40.0}
    )  # fmt: skip
