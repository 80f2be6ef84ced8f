"""The simulated fleet: devices, their sites, cadences and metrics, loaded from a JSON file.

The file is a list of devices (the packaged default is fleet.json next to this module):

    {"device_id": "FIRE-EQ-001", "site_id": "FAC-001", "location": "Building A, Floor 1",
     "kind": "fire" | "farm" | "building", "payload": "fire" | "farm" | "single",
     "cadence_seconds": 30,
     "metrics": {"temperature": {"unit": "°C", "min": 18, "max": 30,
                                 "daily_amplitude": 3, "noise": 0.3}, ...}}

`min`/`max` are the normal range; values follow a daily cycle of `daily_amplitude` around its
middle plus bounded noise of at most `noise`, and never leave the range outside anomalies.
Optional metric keys make the hard cases real sensors present (all default to 0, i.e. absent):

    noise_sd     Gaussian noise of this standard deviation, unbounded (a noisy sensor)
    drift        a slow wander of up to this much around the cycle (periods of 5 and 13 hours,
                 phases per device): a sensor drifting with its surroundings or its calibration
    resolution   readings are multiples of this step (a coarse sensor: 0.5 °C, 1 %);
                 min and max must be multiples of it
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FLEET_FILE = Path(__file__).with_name("fleet.json")
DEVICE_KINDS = ("fire", "farm", "building")
PAYLOADS = ("fire", "farm", "single")
# The wide payload shapes carry these metrics by name (seed 000 fire equipment, seed 004 farms).
REQUIRED_METRICS = {
    "fire": ("temperature", "humidity", "smoke_density", "co_level", "gas_level"),
    "farm": ("temperature", "humidity", "co2"),
    "single": (),
}
# Anomaly episodes are placed inside one hour and a dropout spans at least 10 cadences, so a
# cadence beyond 5 minutes could not hold one.
MAX_CADENCE_SECONDS = 300

_DEVICE_KEYS = ("device_id", "site_id", "location", "kind", "payload", "cadence_seconds", "metrics")
_METRIC_KEYS = ("unit", "min", "max", "daily_amplitude", "noise")
_OPTIONAL_METRIC_KEYS = ("noise_sd", "drift", "resolution")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    min: float
    max: float
    daily_amplitude: float
    noise: float
    noise_sd: float = 0.0
    drift: float = 0.0
    resolution: float = 0.0  # 0: continuous (published with 3 decimals)


@dataclass(frozen=True)
class Device:
    device_id: str
    site_id: str
    location: str
    kind: str  # fire | farm | building
    payload: str  # fire | farm | single
    cadence_seconds: int
    metrics: tuple[MetricSpec, ...]

    def metric(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)


@dataclass(frozen=True)
class Fleet:
    devices: list[Device]

    def cadences(self) -> dict[str, int]:
        """device_id -> cadence_seconds."""
        return {d.device_id: d.cadence_seconds for d in self.devices}

    def device(self, device_id: str) -> Device:
        for device in self.devices:
            if device.device_id == device_id:
                return device
        raise KeyError(device_id)


def load_fleet(path: str | Path | None = None) -> Fleet:
    """The fleet in `path` (None: the packaged default); ValueError says what is wrong with it."""
    source = Path(path) if path is not None else DEFAULT_FLEET_FILE
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"fleet file {source}: not valid JSON: {err}") from None
    return parse_fleet(document, source=str(source))


def parse_fleet(document: object, *, source: str = "fleet") -> Fleet:
    """A Fleet from an already decoded JSON document (a list of device objects)."""
    if not isinstance(document, list) or not document:
        raise ValueError(f"{source}: expected a non-empty JSON list of devices")
    devices, seen = [], set()
    for index, item in enumerate(document):
        device = _device(item, f"{source}: device {index}")
        if device.device_id in seen:
            raise ValueError(f"{source}: duplicate device_id {device.device_id!r}")
        seen.add(device.device_id)
        devices.append(device)
    return Fleet(devices)


def _device(item: object, where: str) -> Device:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    missing = [key for key in _DEVICE_KEYS if key not in item]
    if missing:
        raise ValueError(f"{where}: missing keys {', '.join(missing)}")
    unknown = sorted(set(item) - set(_DEVICE_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")
    for key in ("device_id", "site_id", "location"):
        if not isinstance(item[key], str) or not item[key].strip():
            raise ValueError(f"{where}: {key} must be a non-empty string")
    where = f"{where} ({item['device_id']})"
    if item["kind"] not in DEVICE_KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(DEVICE_KINDS)}")
    if item["payload"] not in PAYLOADS:
        raise ValueError(f"{where}: payload must be one of {', '.join(PAYLOADS)}")
    cadence = item["cadence_seconds"]
    if type(cadence) is not int or not 0 < cadence <= MAX_CADENCE_SECONDS:
        raise ValueError(
            f"{where}: cadence_seconds must be a whole number of seconds in 1..{MAX_CADENCE_SECONDS}"
            f", got {cadence!r}"
        )
    metrics = item["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"{where}: metrics must be a non-empty object")
    specs = tuple(_metric(name, spec, where) for name, spec in metrics.items())
    absent = [m for m in REQUIRED_METRICS[item["payload"]] if m not in metrics]
    if absent:
        raise ValueError(f"{where}: a {item['payload']} payload needs metrics {', '.join(absent)}")
    return Device(
        device_id=item["device_id"],
        site_id=item["site_id"],
        location=item["location"],
        kind=item["kind"],
        payload=item["payload"],
        cadence_seconds=cadence,
        metrics=specs,
    )


def _metric(name: object, spec: object, where: str) -> MetricSpec:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: metric names must be non-empty strings")
    where = f"{where} metric {name!r}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected an object")
    missing = [key for key in _METRIC_KEYS if key not in spec]
    if missing:
        raise ValueError(f"{where}: missing keys {', '.join(missing)}")
    unknown = sorted(set(spec) - set(_METRIC_KEYS) - set(_OPTIONAL_METRIC_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")
    if not isinstance(spec["unit"], str):
        raise ValueError(f"{where}: unit must be a string")
    numbers = {}
    for key in (*_METRIC_KEYS[1:], *(k for k in _OPTIONAL_METRIC_KEYS if k in spec)):
        value = spec[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
        numbers[key] = float(value)
    if numbers["min"] > numbers["max"]:
        raise ValueError(f"{where}: min {numbers['min']} is greater than max {numbers['max']}")
    for key in ("daily_amplitude", "noise", "noise_sd", "drift", "resolution"):
        if numbers.get(key, 0.0) < 0:
            raise ValueError(f"{where}: {key} must be >= 0, got {numbers[key]}")
    step = numbers.get("resolution", 0.0)
    for key in ("min", "max"):
        if step and abs(numbers[key] / step - round(numbers[key] / step)) > 1e-9:
            raise ValueError(
                f"{where}: {key} {numbers[key]} is not a multiple of resolution {step}"
            )
    return MetricSpec(name=name, unit=spec["unit"], **numbers)
