"""The aggregate schema shared by the minute, hourly and daily tables."""

import pyarrow as pa

from sensor_platform.readings.schema import UTC_MICROS

AGGREGATE_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    # name: (type, nullable, description)
    "window_start": (UTC_MICROS, False, "Start of the UTC minute, hour or day aggregated."),
    "device_id": (pa.string(), False, "Device / equipment / sensor identifier, stored as given."),
    "site_id": (
        pa.string(),
        True,
        "Site of the device; readings without one form their own group.",
    ),
    "metric": (pa.string(), False, "What was measured (temperature, humidity, co2, ...)."),
    "unit": (
        pa.string(),
        True,
        "Unit of the first reading in the window (by event_time, reading_id).",
    ),
    "reading_count": (pa.int64(), False, "Number of readings in the window."),
    "min_value": (pa.float64(), False, "Smallest value in the window."),
    "max_value": (pa.float64(), False, "Largest value in the window."),
    "mean_value": (pa.float64(), False, "Arithmetic mean of the values in the window."),
    "stddev_value": (
        pa.float64(),
        True,
        "Sample standard deviation; NULL when fewer than 2 readings.",
    ),
    "m2": (
        pa.float64(),
        False,
        "Sum of squared deviations from the mean: the mergeable partial behind stddev_value.",
    ),
    "first_value": (pa.float64(), False, "Value of the first reading (by event_time, reading_id)."),
    "first_event_time": (UTC_MICROS, False, "Event time of the first reading."),
    "last_value": (pa.float64(), False, "Value of the last reading (by event_time, reading_id)."),
    "last_event_time": (UTC_MICROS, False, "Event time of the last reading."),
    "expected_count": (
        pa.float64(),
        True,
        "Readings the window should hold at the device's cadence; NULL when the cadence is unknown.",
    ),
    "coverage": (
        pa.float64(),
        True,
        "reading_count / expected_count (above 1 when a device reports faster than its cadence).",
    ),
}

AGGREGATE_SCHEMA = pa.schema(
    [
        pa.field(name, typ, nullable=nullable)
        for name, (typ, nullable, _) in AGGREGATE_COLUMNS.items()
    ]
)


def empty_aggregates() -> pa.Table:
    return AGGREGATE_SCHEMA.empty_table()
