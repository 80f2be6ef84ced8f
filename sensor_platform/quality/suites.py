"""The expectation suites, as code: one per asset and quality dimension, built from the rules.

Each suite names the frame it validates (see frames.py), the columns that identify an unexpected
row in its sample, and a builder of Great Expectations expectations. Great Expectations takes
seconds to import, so it is imported inside the builders, only when a check actually runs.
Every expectation carries `meta.rule` (its severity in the rules file) and `meta.subject` (the
metric or column it is about), which the results, the history table and the UI are keyed by.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensor_platform.datasets import Dataset, Registry
from sensor_platform.quality.rules import FleetRegistry, QualityRules
from sensor_platform.readings.schema import READING_COLUMNS

GX_SEVERITY = {"error": "critical", "warn": "warning"}
WINDOW_KEY = ["window_start", "device_id", "site_id", "metric"]
REQUIRED_READING_COLUMNS = [
    name for name, (_, nullable, _) in READING_COLUMNS.items() if not nullable
]

Builder = Callable[[QualityRules, FleetRegistry], list[Any]]


# What one row of each frame is: the unit of an expectation's unexpected and element counts.
FRAME_ROWS = {
    "readings": "readings",
    "series": "series (device and metric)",
    "level": "windows",
    "coverage": "series (device and metric)",
    "totals": "partitions",
    "presence": "windows",
}


@dataclass(frozen=True)
class SuiteDefinition:
    asset: str
    dimension: str  # completeness | validity | consistency | timeliness | uniqueness | integrity
    frame: str  # which frame of the partition the suite validates
    description: str
    sample_columns: tuple[str, ...]  # what identifies an unexpected row to a reviewer
    build: Builder

    @property
    def name(self) -> str:
        return f"{self.asset}.{self.dimension}"

    @property
    def counts(self) -> str:
        """What its expectations count: readings, series, windows or partitions."""
        return FRAME_ROWS[self.frame]

    def expectations(self, rules: QualityRules, registry: FleetRegistry) -> list[Any]:
        return self.build(rules, registry)


def _gx():
    import great_expectations as gx  # slow import: only when a check runs

    return gx.expectations


def _expect(rules: QualityRules, kind: str, rule: str, subject: str, text: str, **kwargs):
    # The rule's name leads the description, so Data Docs and Dagster name a rule alike.
    return getattr(_gx(), kind)(
        severity=GX_SEVERITY[rules.severity_of(rule)],
        meta={"rule": rule, "subject": subject},
        description=f"{rule}: {text}",
        **kwargs,
    )


def _metric_condition(metric: str) -> dict[str, str]:
    # The metric name comes from the rules file; repr() quotes it safely for pandas' query().
    return {"row_condition": f"metric == {metric!r}", "condition_parser": "pandas"}


# -- raw_sensor_readings ---------------------------------------------------------------------
def raw_completeness(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    # An empty partition (a backfill where nothing arrived) is reported, never a quiet green.
    return [
        _expect(rules, "ExpectTableRowCountToBeBetween", "partition_has_rows", "partition",
                "the partition has readings (none: nothing arrived for it upstream)",
                min_value=1),
        *(
            _expect(rules, "ExpectColumnValuesToNotBeNull", "required_not_null", column,
                    f"`{column}` is never null", column=column)
            for column in REQUIRED_READING_COLUMNS
        ),
    ]  # fmt: skip


def raw_validity(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    """Per series (device and metric) of the hour, as the quality gate judges it: an ERROR names
    the series the aggregates left out (more than max_invalid_share invalid), a WARN the series
    whose few invalid readings alone were left out."""
    share = f"{rules.max_invalid_share:.1%}"
    found = []
    for metric, rule in rules.metrics.items():
        where = _metric_condition(metric)
        span, allowed = f"[{rule.minimum:g}, {rule.maximum:g}]", ", ".join(rule.units)
        found += [
            _expect(rules, "ExpectColumnValuesToBeBetween", "value_in_range", metric,
                    f"at most {share} of a device's {metric} values outside {span} (else its "
                    "series is left out of the hour's aggregates)",
                    column="out_of_range_share", max_value=rules.max_invalid_share, **where),
            _expect(rules, "ExpectColumnValuesToBeBetween", "any_value_out_of_range", metric,
                    f"every {metric} value inside {span} (values outside are left out)",
                    column="out_of_range", max_value=0, **where),
            _expect(rules, "ExpectColumnValuesToBeBetween", "unit_allowed", metric,
                    f"at most {share} of a device's {metric} units outside {{{allowed}}} (else "
                    "its series is left out)",
                    column="unit_not_allowed_share", max_value=rules.max_invalid_share, **where),
            _expect(rules, "ExpectColumnValuesToBeBetween", "any_unit_not_allowed", metric,
                    f"every {metric} unit in {{{allowed}}} (other units are left out)",
                    column="unit_not_allowed", max_value=0, **where),
        ]  # fmt: skip
    tolerance = rules.future_tolerance_seconds
    return found + [
        _expect(rules, "ExpectColumnValuesToBeInSet", "metric_known", "metric",
                "every metric has a rule in the quality rules", column="metric",
                value_set=sorted(rules.metrics)),
        _expect(rules, "ExpectColumnValuesToBeBetween", "not_in_future", "event_time",
                f"at most {share} of a series' event times more than {tolerance:g} s after their "
                "ingest_time (later ones are left out)",
                column="in_future_share", max_value=rules.max_invalid_share),
    ]  # fmt: skip


def raw_uniqueness(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return [
        _expect(rules, "ExpectColumnValuesToBeUnique", "reading_id_unique", "reading_id",
                "reading_id is unique within the hour", column="reading_id"),
    ]  # fmt: skip


def raw_integrity(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return [
        _expect(rules, "ExpectColumnValuesToBeInSet", "device_known", "device_id",
                "every device is in the fleet registry", column="device_id",
                value_set=sorted(registry.devices)),
        _expect(rules, "ExpectColumnValuesToBeInSet", "site_known", "site_id",
                "every site is in the fleet registry", column="site_id",
                value_set=sorted(registry.sites)),
    ]  # fmt: skip


def raw_timeliness(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    # Per reading, with `mostly`: the unexpected count is the late readings themselves.
    return [
        _expect(rules, "ExpectColumnValuesToBeBetween", "late_share", "ingest_time",
                f"at most {rules.max_late_share:.1%} of readings ingested after their hour ended",
                column="ingested_late", max_value=0, mostly=1.0 - rules.max_late_share),
    ]  # fmt: skip


# -- aggregates ------------------------------------------------------------------------------
def aggregate_consistency(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return [
        _expect(rules, "ExpectColumnValuesToBeBetween", "mean_within_min_max", "mean_value",
                f"min_value <= mean_value <= max_value (tolerance {rules.float_tolerance:g})",
                column="mean_outside_min_max", max_value=rules.float_tolerance),
        _expect(rules, "ExpectColumnValuesToBeBetween", "stddev_non_negative", "stddev_value",
                "stddev_value >= 0", column="stddev_value", min_value=0),
    ]  # fmt: skip


def rollup_consistency(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return aggregate_consistency(rules, registry) + [
        _expect(rules, "ExpectColumnPairValuesToBeEqual", "count_matches_finer_level",
                "reading_count", "reading_count equals the sum of the level below",
                column_A="reading_count", column_B="finer_count"),
    ]  # fmt: skip


def aggregate_uniqueness(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return [
        _expect(rules, "ExpectCompoundColumnsToBeUnique", "window_key_unique", "window_key",
                "one row per (window_start, device_id, site_id, metric)",
                column_list=WINDOW_KEY),
    ]  # fmt: skip


def cadence_coverage(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return [
        _expect(rules, "ExpectColumnValuesToBeBetween", "coverage", "coverage",
                f"each device and metric delivers >= {rules.min_coverage:.0%} of its cadence",
                column="coverage", min_value=rules.min_coverage),
    ]  # fmt: skip


def level_integrity(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return [
        _expect(rules, "ExpectColumnValuesToBeBetween", "partition_has_rows", "reading_count",
                "the partition has readings (none: nothing arrived for it upstream)",
                column="level_total", min_value=1),
        _expect(rules, "ExpectColumnPairValuesToBeEqual", "level_total_matches_raw",
                "reading_count", "the reading counts add up to the raw rows of the partition "
                "that the quality gate kept", column_A="raw_rows_kept", column_B="level_total"),
    ]  # fmt: skip


def finer_windows_present(rules: QualityRules, registry: FleetRegistry) -> list[Any]:
    return [
        _expect(rules, "ExpectColumnValuesToBeNull", "finer_windows_present", "window_start",
                "every ended window of the level below has rows", column="missing_window"),
    ]  # fmt: skip


READING_SAMPLE = ("device_id", "site_id", "metric", "value", "unit", "event_time", "reading_id")
SERIES_SAMPLE = (
    "device_id", "site_id", "metric", "readings", "out_of_range", "unit_not_allowed", "in_future",
    "out_of_range_share", "unit_not_allowed_share", "in_future_share",
)  # fmt: skip
LEVEL_SAMPLE = (*WINDOW_KEY, "reading_count", "min_value", "mean_value", "max_value")


def suites_for(dataset: Dataset, datasets: Registry) -> list[SuiteDefinition]:
    """The suites of `dataset`, one per quality dimension the registry lists for it."""
    if not dataset.is_aggregate:
        by_dimension = {suite.dimension: suite for suite in _raw_suites(dataset.name)}
    else:
        by_dimension = _level_suites(dataset, datasets.get(dataset.source))
    unknown = [d for d in dataset.quality if d not in by_dimension]
    if unknown:
        raise ValueError(f"{dataset.name}: no quality suite for dimensions {unknown}")
    return [by_dimension[d] for d in dataset.quality]


def _raw_suites(asset: str) -> list[SuiteDefinition]:
    return [
        SuiteDefinition(
            asset, "completeness", "readings", "Required reading columns are never null.",
            READING_SAMPLE + ("source",), raw_completeness,
        ),
        SuiteDefinition(
            asset, "validity", "series",
            "Per device and metric: values inside the physical range, units from the allowed "
            "set, event times not after ingest_time plus the tolerance. Invalid readings stay out "
            "of the aggregates; a series with too many stays out whole (quality_exclusions).",
            SERIES_SAMPLE, raw_validity,
        ),
        SuiteDefinition(
            asset, "uniqueness", "readings", "reading_id is unique.",
            ("reading_id", "device_id", "metric", "event_time", "source"), raw_uniqueness,
        ),
        SuiteDefinition(
            asset, "integrity", "readings", "Every device and site is known to the fleet registry.",
            ("device_id", "site_id", "metric", "event_time"), raw_integrity,
        ),
        SuiteDefinition(
            asset, "timeliness", "readings",
            "Share of readings ingested after the end of their event hour.",
            ("device_id", "site_id", "metric", "event_time", "ingest_time", "source"),
            raw_timeliness,
        ),
    ]  # fmt: skip


def _level_suites(level: Dataset, source: Dataset) -> dict[str, SuiteDefinition]:
    """An aggregate level's suites; what completeness and integrity mean depends on whether it is
    computed from raw readings or merged from the level below."""
    asset, from_raw = level.name, not source.is_aggregate
    suites = {
        "consistency": SuiteDefinition(
            asset, "consistency", "level",
            "Aggregates agree with themselves and with what they come from: min <= mean <= max, "
            "stddev >= 0" + ("." if from_raw else
                             ", and each window's count equals the sum of its finer windows."),
            (*LEVEL_SAMPLE, "stddev_value") + (() if from_raw else ("finer_count",)),
            aggregate_consistency if from_raw else rollup_consistency,
        ),
        "uniqueness": SuiteDefinition(
            asset, "uniqueness", "level",
            "One row per window, device, site and metric.", LEVEL_SAMPLE, aggregate_uniqueness,
        ),
    }  # fmt: skip
    if from_raw:
        suites["completeness"] = SuiteDefinition(
            asset, "completeness", "coverage",
            "Readings per device and metric over the partition against the device's cadence.",
            ("device_id", "site_id", "metric", "reading_count", "expected_count", "coverage"),
            cadence_coverage,
        )  # fmt: skip
        suites["integrity"] = SuiteDefinition(
            asset, "integrity", "totals",
            f"The aggregates cover exactly the {source.name} partitions they come from.",
            ("partition_start", "raw_rows", "left_out_by_gate", "raw_rows_kept", "level_total"),
            level_integrity,
        )  # fmt: skip
    else:
        suites["completeness"] = SuiteDefinition(
            asset, "completeness", "presence",
            f"No window missing inside the partition: every ended window has rows in {source.name}.",
            ("window_start", "missing_window"), finer_windows_present,
        )  # fmt: skip
    return suites
