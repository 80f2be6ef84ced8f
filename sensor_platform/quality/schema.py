"""The quality exclusions' columns (light: read when the code location loads, for the UI)."""

import pyarrow as pa

from sensor_platform.readings.schema import UTC_MICROS

EXCLUSION_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    # name: (type, nullable, description)
    "partition_hour": (UTC_MICROS, False, "The raw hour (UTC) the readings belong to."),
    "device_id": (pa.string(), False, "Device of the series."),
    "site_id": (pa.string(), True, "Site of the device."),
    "metric": (pa.string(), False, "Metric of the series."),
    "readings": (pa.int64(), False, "Readings of the series in the hour."),
    "invalid_readings": (pa.int64(), False, "Readings left out: invalid for one reason or more."),
    "out_of_range": (pa.int64(), False, "Values outside the metric's physical range (or NaN)."),
    "unit_not_allowed": (pa.int64(), False, "Units outside the metric's allowed set."),
    "in_future": (pa.int64(), False, "Event times too far ahead of their ingest time."),
    "scope": (
        pa.string(),
        False,
        "series: the whole series left out of the hour's aggregates (too many invalid readings); "
        "readings: only the invalid readings left out.",
    ),
    "reason": (pa.string(), False, "Why, in words."),
}
EXCLUSION_SCHEMA = pa.schema(
    [pa.field(n, t, nullable=nullable) for n, (t, nullable, _) in EXCLUSION_COLUMNS.items()]
)
