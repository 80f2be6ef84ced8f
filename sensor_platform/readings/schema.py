"""The canonical reading and quarantine schemas: the public contract analysts query."""

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")

READING_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    # name: (type, nullable, description)
    "event_time": (UTC_MICROS, False, "When the device measured the value (UTC, microseconds)."),
    "device_id": (pa.string(), False, "Device / equipment / sensor identifier, stored as given."),
    "site_id": (pa.string(), True, "Facility, greenhouse or location of the device, if known."),
    "metric": (pa.string(), False, "What was measured (temperature, humidity, co2, ...)."),
    "value": (pa.float64(), False, "The measured value, finite float64."),
    "unit": (pa.string(), True, "Unit of the value (°C, %, ppm, ...), if known."),
    "status_code": (pa.int32(), True, "Device-reported error code; 0 means healthy."),
    "ingest_time": (UTC_MICROS, False, "When the platform received the message (UTC)."),
    "source": (pa.string(), False, "Origin: kafka:topic/partition/offset or the feed name."),
    "reading_id": (pa.string(), False, "Deterministic id of device+metric+event_time (dedup key)."),
}

READING_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable) for name, (typ, nullable, _) in READING_COLUMNS.items()]
)

QUARANTINE_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "received_at": (UTC_MICROS, False, "When the platform received the message (UTC)."),
    "source": (pa.string(), False, "Origin of the message: kafka:topic/partition/offset or feed."),
    "reason": (pa.string(), False, "Reason code (see README: Quarantine reason codes)."),
    "detail": (pa.string(), True, "Human-readable detail of what was wrong."),
    "raw": (pa.binary(), False, "The message bytes exactly as received."),
    "batch_id": (pa.string(), False, "Landing batch the message belonged to."),
}

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(name, typ, nullable=nullable)
        for name, (typ, nullable, _) in QUARANTINE_COLUMNS.items()
    ]
)


def empty_readings() -> pa.Table:
    return READING_SCHEMA.empty_table()


def empty_quarantine() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()
