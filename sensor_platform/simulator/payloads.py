"""Render a device's readings as the JSON payloads real devices send (seeds 000, 002 and 004).

- fire:   {"equipment_id", "facility_id", "equipment_location", "measured_at": ISO-8601 "...Z"
           with microseconds, <one number per metric>} (+ "status_code" while faulty)
- farm:   {"device_id", "greenhouse_id", "timestamp": epoch ms, <numbers>, "error_code": "0"}
- single: one message per metric {"sensor_id", "type", "unit", "value", "timestamp": epoch s
          (float), "location"} (+ "status_code" while faulty); "location" carries the site id,
          because that is what a single sensor's location becomes in the canonical readings.
"""

import numpy as np
import orjson

from sensor_platform.simulator.fleet import Device


def render_wide(
    device: Device, event_us: np.ndarray, values: dict[str, np.ndarray], status: np.ndarray
) -> list[bytes]:
    """One fire or farm payload per tick (all arrays hold only the ticks to send)."""
    names = [spec.name for spec in device.metrics]
    columns = [values[name].tolist() for name in names]
    codes = status.tolist()
    dumps = orjson.dumps
    payloads = []
    if device.payload == "fire":
        stamps = np.datetime_as_string(event_us.astype("datetime64[us]"), unit="us").tolist()
        head = {
            "equipment_id": device.device_id,
            "facility_id": device.site_id,
            "equipment_location": device.location,
        }
        for stamp, code, *numbers in zip(stamps, codes, *columns, strict=True):
            obj = {**head, "measured_at": stamp + "Z", **dict(zip(names, numbers, strict=True))}
            if code:
                obj["status_code"] = code
            payloads.append(dumps(obj))
        return payloads
    head = {"device_id": device.device_id, "greenhouse_id": device.site_id}
    millis = (event_us // 1000).tolist()
    for stamp, code, *numbers in zip(millis, codes, *columns, strict=True):
        obj = {**head, "timestamp": stamp, **dict(zip(names, numbers, strict=True))}
        obj["error_code"] = str(code)
        payloads.append(dumps(obj))
    return payloads


def render_single(
    device: Device, metric: str, event_us: np.ndarray, values: np.ndarray, status: np.ndarray
) -> list[bytes]:
    """One single-sensor payload per tick for `metric`."""
    spec = device.metric(metric)
    assert spec is not None
    head = {"sensor_id": device.device_id, "type": metric, "unit": spec.unit}
    seconds = (event_us / 1_000_000).tolist()
    dumps = orjson.dumps
    payloads = []
    for second, code, value in zip(seconds, status.tolist(), values.tolist(), strict=True):
        obj = {**head, "value": value, "timestamp": second, "location": device.site_id}
        if code:
            obj["status_code"] = code
        payloads.append(dumps(obj))
    return payloads


# How field devices break their messages, each named by the quarantine reason it earns.
MALFORMED_KINDS = ("not_json", "missing_device_id", "bad_timestamp", "bad_value")
_ID_KEYS = ("equipment_id", "device_id", "sensor_id")
_TIME_KEYS = ("measured_at", "timestamp")


def malform(payload: bytes, kind: str, value_key: str) -> bytes:
    """`payload` broken as `kind` says: cut short, without its device id, with a timestamp that
    is no time, or with `value_key`'s value not a number."""
    if kind == "not_json":
        return payload[: len(payload) // 2]
    obj = orjson.loads(payload)
    if kind == "missing_device_id":
        for key in _ID_KEYS:
            obj.pop(key, None)
    elif kind == "bad_timestamp":
        for key in _TIME_KEYS:
            if key in obj:
                obj[key] = "half past never"
    elif kind == "bad_value":
        obj[value_key] = "n/a"
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; known: {', '.join(MALFORMED_KINDS)}")
    return orjson.dumps(obj)
