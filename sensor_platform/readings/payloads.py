"""Read one decoded JSON object (wide, single-sensor or canonical payload) into metric values.

Two payload families are recognised:

- narrow: the object has a "metric" or "value" key (canonical payloads, and single-sensor payloads
  whose metric is named by "type"); it yields exactly one value, and an explicit "unit" wins over
  the metric's default unit, in its canonical spelling (units.py: "C" -> "°C", °F converted).
- wide: anything else with a device id (fire-monitoring equipment, smart-farm devices). Every
  numeric field (int, float or numeric string; never bool) that is not a metadata key becomes a
  metric, so new metric names flow through with no code change. Non-numeric strings in unknown
  fields are metadata and ignored; a known metric with a non-numeric, NaN or infinite value is
  reported as a bad field while the good fields are kept.
"""

import math
import re
from typing import NamedTuple

from sensor_platform.readings.timestamps import NUMERIC_STRING, timestamp_micros
from sensor_platform.readings.units import DEFAULT_UNITS, normalize_unit

DEVICE_KEYS = ("device_id", "equipment_id", "sensor_id", "deviceId")
# First present wins: a facility id is a better site than a free-text equipment location.
SITE_KEYS = (
    "site_id",
    "siteId",
    "facility_id",
    "greenhouse_id",
    "farm_id",
    "location",
    "equipment_location",
)
TIME_KEYS = ("event_time", "measured_at", "timestamp", "ts", "time")
STATUS_KEYS = ("status_code", "error_code")

# Known metrics are checked strictly (a non-numeric value is an error, not metadata); add a name
# to units.DEFAULT_UNITS with its default unit when a new device family's unit is certain.
KNOWN_METRICS = frozenset(DEFAULT_UNITS)

# Keys of a wide payload that describe the reading rather than measure something.
METADATA_KEYS = frozenset(
    (*DEVICE_KEYS, *SITE_KEYS, *TIME_KEYS, *STATUS_KEYS)
    + ("metric", "type", "value", "unit", "id", "message_id", "seq", "sequence")
    + ("lat", "latitude", "lon", "lng", "longitude", "firmware", "firmware_version", "version")
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INTEGER_STRING = re.compile(r"[+-]?[0-9]+")


class PayloadError(ValueError):
    """The object cannot become readings; `reason` is a quarantine reason code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ObjectReadings(NamedTuple):
    device_id: str
    site_id: str | None
    event_us: int
    status_code: int | None
    metrics: list[str]  # parallel lists, one entry per reading
    values: list[float]
    units: list[str | None]
    bad_fields: list[str]  # wide payloads: known metrics whose value was unusable
    long_fields: list[str]  # wide payloads: numeric fields whose name exceeds max_id_length


def read_object(
    obj: dict,
    *,
    max_id_length: int,
    earliest_us: int,
    latest_us: int,
    default_device_id: str | None = None,
    default_site_id: str | None = None,
) -> ObjectReadings:
    """The readings of one JSON object; raises PayloadError when none of it is usable.

    `earliest_us` / `latest_us` bound the accepted event time (microseconds since the epoch).
    `default_device_id` / `default_site_id` (ids the transport carried, e.g. an MQTT topic's
    levels) stand in when the object has no device id / no site of its own.
    """
    device_id = _device_id(obj, max_id_length, default_device_id)
    site_id = _site_id(obj, max_id_length, default_site_id)
    event_us = _event_us(obj, earliest_us, latest_us)
    status_code = _status_code(obj)
    if "metric" in obj or "value" in obj:
        metric, value, unit = _narrow_value(obj, max_id_length)
        return ObjectReadings(
            device_id, site_id, event_us, status_code, [metric], [value], [unit], [], []
        )
    metrics, values, bad_fields, long_fields = _wide_values(obj, max_id_length)
    if not metrics and not bad_fields and not long_fields:
        raise PayloadError("no_values", "no numeric metric field")
    units = [DEFAULT_UNITS.get(metric) for metric in metrics]
    return ObjectReadings(
        device_id, site_id, event_us, status_code, metrics, values, units, bad_fields, long_fields
    )


def numeric_string(text: str) -> float | None:
    """The float of a numeric string ("400", " -1.5e3 "), None when it is not one."""
    stripped = text.strip()
    return float(stripped) if NUMERIC_STRING.fullmatch(stripped) else None


def field_names(keys: list[str], limit: int = 10) -> str:
    """A short, printable list of field names for a quarantine detail."""
    shown = ", ".join(repr(k if len(k) <= 40 else k[:40] + "...") for k in keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _device_id(obj: dict, max_id_length: int, default: str | None) -> str:
    for key in DEVICE_KEYS:
        raw = obj.get(key)
        if raw is None:
            continue
        device_id = _id_text(raw)
        if not device_id:
            raise PayloadError("missing_device_id", f"{key} is not a non-empty string or integer")
        if len(device_id) > max_id_length:
            raise PayloadError(
                "id_too_long", f"{key} has {len(device_id)} characters (limit {max_id_length})"
            )
        return device_id
    if default:
        return _carried_id("device id", default, max_id_length)
    raise PayloadError("missing_device_id", "none of " + ", ".join(DEVICE_KEYS))


def _site_id(obj: dict, max_id_length: int, default: str | None) -> str | None:
    for key in SITE_KEYS:
        raw = obj.get(key)
        site_id = None if raw is None else _id_text(raw)
        if site_id:
            if len(site_id) > max_id_length:
                raise PayloadError(
                    "id_too_long", f"{key} has {len(site_id)} characters (limit {max_id_length})"
                )
            return site_id
    return _carried_id("site id", default, max_id_length) if default else None


def _carried_id(what: str, value: str, max_id_length: int) -> str:
    if len(value) > max_id_length:
        raise PayloadError(
            "id_too_long",
            f"the transport's {what} has {len(value)} characters (limit {max_id_length})",
        )
    return value


def _id_text(raw: object) -> str | None:
    # Ids are data and stored exactly as given; integer ids are kept as their decimal text.
    if type(raw) is str:
        return raw
    if type(raw) is int:
        return str(raw)
    return None


def _event_us(obj: dict, earliest_us: int, latest_us: int) -> int:
    for key in TIME_KEYS:
        raw = obj.get(key)
        if raw is None:
            continue
        try:
            event_us = timestamp_micros(raw)
        except ValueError as err:
            raise PayloadError("bad_timestamp", f"{key}: {err}") from None
        if event_us > latest_us:
            ahead = (event_us - latest_us) / 1e6
            raise PayloadError(
                "future_timestamp",
                f"{key} is {ahead:.0f} s later than received_at + future_tolerance",
            )
        if event_us < earliest_us:
            behind = (earliest_us - event_us) / 1e6
            raise PayloadError(
                "too_old", f"{key} is {behind:.0f} s earlier than received_at - past_horizon"
            )
        return event_us
    raise PayloadError("missing_timestamp", "none of " + ", ".join(TIME_KEYS))


def _status_code(obj: dict) -> int | None:
    for key in STATUS_KEYS:
        raw = obj.get(key)
        if raw is None:
            continue
        code: int | None = None
        if type(raw) is int:
            code = raw
        elif type(raw) is float and raw.is_integer():
            code = int(raw)
        elif type(raw) is str and INTEGER_STRING.fullmatch(raw.strip()):
            code = int(raw)
        if code is None or not INT32_MIN <= code <= INT32_MAX:
            raise PayloadError("bad_status_code", f"{key} is not a 32-bit integer: {raw!r:.40}")
        return code
    return None


def _narrow_value(obj: dict, max_id_length: int) -> tuple[str, float, str | None]:
    metric = obj.get("metric")
    if metric is None:
        metric = obj.get("type")
    if type(metric) is not str or not metric:
        raise PayloadError("no_values", "a value without a metric (or type) name")
    if len(metric) > max_id_length:
        raise PayloadError(
            "id_too_long", f"metric has {len(metric)} characters (limit {max_id_length})"
        )
    value = _number(obj.get("value"))
    if value is None or not math.isfinite(value):
        raise PayloadError("bad_value", f"value of {field_names([metric])} is not a finite number")
    unit = obj.get("unit")
    if type(unit) is not str or not unit:
        return metric, value, DEFAULT_UNITS.get(metric)
    value, unit = normalize_unit(metric, value, unit)
    return metric, value, unit


def _wide_values(
    obj: dict, max_id_length: int
) -> tuple[list[str], list[float], list[str], list[str]]:
    metrics: list[str] = []
    values: list[float] = []
    bad_fields: list[str] = []
    long_fields: list[str] = []
    for key, raw in obj.items():
        if key in METADATA_KEYS:
            continue
        # Inlined float case of _number: this loop runs once per field of every message.
        value = raw if type(raw) is float else _number(raw)
        if value is None:
            # Non-numeric text in an unknown field is metadata; in a known metric it is an error.
            if key in KNOWN_METRICS:
                bad_fields.append(key)
            continue
        if not math.isfinite(value) or not key:
            bad_fields.append(key)
        elif len(key) > max_id_length:
            long_fields.append(key)
        else:
            metrics.append(key)
            values.append(value)
    return metrics, values, bad_fields, long_fields


def _number(raw: object) -> float | None:
    """float for JSON numbers and numeric strings (possibly non-finite), None for anything else."""
    if isinstance(raw, float):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        try:
            return float(raw)
        except OverflowError:  # integers beyond float range (stdlib-json fallback)
            return math.inf
    if isinstance(raw, str):
        return numeric_string(raw)
    return None
