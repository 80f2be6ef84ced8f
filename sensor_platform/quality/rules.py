"""Data-quality thresholds, ranges and severities: the packaged quality_rules.json, optionally
overridden by a user file, validated so a typo fails loudly instead of silently loosening a check.

An override file holds only what it changes: top-level numbers replace the defaults, `metrics`
and `severity` are merged entry by entry (a metric given there replaces that metric's rule whole).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RULES_FILE = Path(__file__).with_name("quality_rules.json")

# Every rule an expectation can carry; its severity comes from the rules file.
RULE_NAMES = (
    "partition_has_rows",
    "required_not_null",
    "value_in_range",
    "any_value_out_of_range",
    "unit_allowed",
    "any_unit_not_allowed",
    "metric_known",
    "not_in_future",
    "reading_id_unique",
    "late_share",
    "device_known",
    "site_known",
    "coverage",
    "mean_within_min_max",
    "stddev_non_negative",
    "window_key_unique",
    "level_total_matches_raw",
    "count_matches_finer_level",
    "finer_windows_present",
)
SEVERITIES = ("error", "warn")

_SHARES = ("max_invalid_share", "min_coverage", "max_late_share")
_NON_NEGATIVE = ("future_tolerance_seconds", "float_tolerance", "freshness_hours")
_TOP_KEYS = {"description", "metrics", "severity", "sample_size", *_SHARES, *_NON_NEGATIVE}
_METRIC_KEYS = {"min", "max", "units"}


@dataclass(frozen=True)
class MetricRule:
    minimum: float
    maximum: float
    units: tuple[str, ...]


@dataclass(frozen=True)
class QualityRules:
    metrics: dict[str, MetricRule]
    max_invalid_share: float  # share of a metric's readings out of range before ERROR
    future_tolerance_seconds: float  # event_time may lead ingest_time by this much
    min_coverage: float  # readings / expected readings per device, metric and hour
    max_late_share: float  # share of readings ingested after their event hour ended
    float_tolerance: float  # absolute slack for min <= mean <= max on float aggregates
    sample_size: int  # unexpected rows kept per expectation, never more
    freshness_hours: float  # raw_sensor_readings must have been updated within this
    severity: dict[str, str]  # rule name -> error | warn

    def severity_of(self, rule: str) -> str:
        return self.severity[rule]


def load_rules(path: str | Path | None = None) -> QualityRules:
    """The packaged defaults, merged with the override file at `path` when one is given."""
    document = _read(DEFAULT_RULES_FILE)
    if path is not None:
        override = _read(Path(path))
        _check_keys(override, _TOP_KEYS, str(path))
        for key in ("metrics", "severity"):
            document[key] = {**document[key], **override.pop(key, {})}
        document.update(override)
    return parse_rules(document, source=str(path or DEFAULT_RULES_FILE))


def parse_rules(document: dict[str, Any], *, source: str = "rules") -> QualityRules:
    _check_keys(document, _TOP_KEYS, source)
    metrics = {name: _metric_rule(name, spec, source) for name, spec in document["metrics"].items()}
    numbers = {key: _number(document, key, source) for key in (*_SHARES, *_NON_NEGATIVE)}
    for key in _SHARES:
        if not 0 <= numbers[key] <= 1:
            raise ValueError(f"{source}: {key} must be between 0 and 1, got {numbers[key]}")
    for key in _NON_NEGATIVE:
        if numbers[key] < 0:
            raise ValueError(f"{source}: {key} must be >= 0, got {numbers[key]}")
    sample_size = document.get("sample_size")
    if type(sample_size) is not int or not 0 <= sample_size <= 100:
        raise ValueError(f"{source}: sample_size must be an integer 0..100, got {sample_size!r}")
    severity = document.get("severity", {})
    unknown = sorted(set(severity) - set(RULE_NAMES))
    if unknown:
        raise ValueError(f"{source}: unknown rules in severity: {', '.join(unknown)}")
    missing = sorted(set(RULE_NAMES) - set(severity))
    if missing:
        raise ValueError(f"{source}: no severity for rules: {', '.join(missing)}")
    bad = {rule: level for rule, level in severity.items() if level not in SEVERITIES}
    if bad:
        raise ValueError(f"{source}: severity must be 'error' or 'warn', got {bad!r}")
    return QualityRules(metrics=metrics, sample_size=sample_size, severity=severity, **numbers)


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"quality rules {path}: not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise ValueError(f"quality rules {path}: expected a JSON object")
    return document


def _check_keys(document: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")


def _number(document: dict[str, Any], key: str, where: str) -> float:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)


def _metric_rule(name: str, spec: object, source: str) -> MetricRule:
    where = f"{source}: metric {name!r}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected an object with min, max and units")
    _check_keys(spec, _METRIC_KEYS, where)
    minimum, maximum = _number(spec, "min", where), _number(spec, "max", where)
    if minimum > maximum:
        raise ValueError(f"{where}: min {minimum} is greater than max {maximum}")
    units = spec.get("units")
    if not isinstance(units, list) or not units or not all(isinstance(u, str) for u in units):
        raise ValueError(f"{where}: units must be a non-empty list of strings")
    return MetricRule(minimum, maximum, tuple(units))


@dataclass(frozen=True)
class FleetRegistry:
    """What the fleet registry knows: devices with their cadence, and sites."""

    cadences: dict[str, int]  # device_id -> cadence_seconds
    sites: frozenset[str]

    @property
    def devices(self) -> frozenset[str]:
        return frozenset(self.cadences)
