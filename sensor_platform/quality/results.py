"""What a check reports: suite outcomes of one or many partitions merged into one summary (a
backfill's check describes its whole range), and the rows of the `data_quality_results` history
table, one per expectation, partition and run."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from sensor_platform.quality.gx_validate import SEVERITY_RANK, ExpectationOutcome, SuiteOutcome
from sensor_platform.readings.schema import UTC_MICROS
from sensor_platform.warehouse.store import TableSpec

RESULTS_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "checked_at": (UTC_MICROS, False, "When the check ran (UTC)."),
    "run_id": (pa.string(), False, "Dagster run that ran the check."),
    "asset": (pa.string(), False, "Asset checked."),
    "partition": (pa.string(), False, "Partition checked (one row per partition of a backfill)."),
    "check_name": (pa.string(), False, "Dagster asset check: the quality dimension."),
    "check_passed": (pa.bool_(), False, "Whether every expectation of the check passed here."),
    "rule": (pa.string(), False, "Quality rule (its severity is set in the rules file)."),
    "subject": (pa.string(), False, "Metric or column the rule is about."),
    "expectation": (pa.string(), False, "Great Expectations expectation type."),
    "severity": (pa.string(), False, "error (blocks raw data from flowing on) or warn."),
    "success": (pa.bool_(), False, "Whether this expectation passed."),
    "rows_validated": (pa.int64(), False, "Rows of the frame the suite validated."),
    "element_count": (pa.int64(), True, "Values the expectation looked at."),
    "unexpected_count": (pa.int64(), True, "Values that failed the expectation."),
    "unexpected_percent": (pa.float64(), True, "unexpected_count as a percent of element_count."),
    "observed_value": (pa.string(), True, "Observed value (JSON) for aggregate expectations."),
    "unexpected_sample": (pa.string(), True, "A few unexpected rows (JSON), never the data."),
    "error": (pa.string(), True, "Why the expectation could not be evaluated, if it could not."),
    "description": (pa.string(), False, "What the expectation asserts."),
    "docs_page": (pa.string(), True, "The validation's page in the Data Docs site."),
}
RESULTS_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable) for name, (typ, nullable, _) in RESULTS_COLUMNS.items()]
)
RESULTS_TABLE = TableSpec(
    name="data_quality_results",
    schema=RESULTS_SCHEMA,
    time_column="checked_at",
    description="Every data-quality expectation evaluated, per asset, partition and run.",
)


@dataclass(frozen=True)
class MergedExpectation:
    """One expectation over every partition validated: counts summed, samples bounded."""

    rule: str
    subject: str
    expectation: str
    description: str
    severity: str
    success: bool
    element_count: int
    unexpected_count: int
    failed_partitions: tuple[str, ...]
    observed_value: object
    sample: tuple[dict, ...]
    error: str | None

    @property
    def unexpected_percent(self) -> float | None:
        if not self.element_count:
            return None
        return round(100.0 * self.unexpected_count / self.element_count, 6)

    def report(self, max_partitions: int) -> dict[str, object]:
        """What a reviewer needs to see about a failure, JSON-ready and bounded."""
        return {
            "rule": self.rule,
            "subject": self.subject,
            "severity": self.severity,
            "description": self.description,
            "expectation": self.expectation,
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "observed_value": self.observed_value,
            "unexpected_sample": list(self.sample),
            "failed_partitions": list(self.failed_partitions[:max_partitions]),
            "error": self.error,
        }


@dataclass(frozen=True)
class CheckSummary:
    suite: str
    partitions: tuple[str, ...]
    rows: int
    expectations: tuple[MergedExpectation, ...]
    counts: str = "rows"  # what the expectations count: readings, series, windows, partitions

    @property
    def success(self) -> bool:
        return all(e.success for e in self.expectations)

    @property
    def failed(self) -> list[MergedExpectation]:
        return [e for e in self.expectations if not e.success]

    @property
    def failed_partitions(self) -> list[str]:
        failed = {p for e in self.failed for p in e.failed_partitions}
        return [p for p in self.partitions if p in failed]

    @property
    def severity(self) -> str | None:
        return max((e.severity for e in self.failed), key=SEVERITY_RANK.get, default=None)

    def describe(self, listed: int = 5) -> str:
        """One line for the UI: what failed, by how much (in what it counts: readings, series
        ...), where."""
        where = self.partition_label
        if self.success:
            return f"{len(self.expectations)} expectations passed on {where}."
        parts = [
            f"{e.description} — could not be evaluated ({e.error})"
            if e.error is not None
            else f"{e.description} — observed {e.observed_value}"
            if e.element_count == 0  # a table-level expectation (row count)
            else f"{e.description} — {e.unexpected_count:,} of {e.element_count:,} {self.counts} "
            f"unexpected ({e.unexpected_percent or 0:.3g}%)"
            for e in self.failed[:listed]
        ]
        more = f" (+{len(self.failed) - listed} more)" if len(self.failed) > listed else ""
        return f"{self.severity.upper()} on {where}: " + "; ".join(parts) + more

    @property
    def partition_label(self) -> str:
        if len(self.partitions) == 1:
            return self.partitions[0]
        return f"{self.partitions[0]} … {self.partitions[-1]} ({len(self.partitions)} partitions)"


def summarize(outcomes: list[SuiteOutcome], sample_size: int) -> CheckSummary:
    """Merge one suite's outcomes over partitions (in order) into one summary."""
    if not outcomes:
        raise ValueError("nothing to summarize: no partition was validated")
    groups: dict[tuple[str, str, str], list[tuple[str, ExpectationOutcome]]] = {}
    for outcome in outcomes:
        for e in outcome.expectations:
            groups.setdefault((e.rule, e.subject, e.expectation), []).append((outcome.partition, e))
    several = len(outcomes) > 1
    return CheckSummary(
        suite=outcomes[0].suite,
        partitions=tuple(o.partition for o in outcomes),
        rows=sum(o.rows for o in outcomes),
        expectations=tuple(_merge(items, sample_size, several) for items in groups.values()),
        counts=outcomes[0].counts,
    )


def _merge(
    items: list[tuple[str, ExpectationOutcome]], sample_size: int, several: bool
) -> MergedExpectation:
    first = items[0][1]
    failed = [(p, e) for p, e in items if not e.success]
    # Show the observed value and error of the worst partition: the one that failed, if any.
    worst = max(failed or items, key=lambda pe: pe[1].unexpected_count or 0)[1]
    sample: list[dict] = []
    for partition, e in failed or items:
        for row in e.sample:
            if len(sample) < sample_size:
                sample.append({"partition": partition, **row} if several else dict(row))
    return MergedExpectation(
        rule=first.rule,
        subject=first.subject,
        expectation=first.expectation,
        description=first.description,
        severity=first.severity,
        success=not failed,
        element_count=sum(e.element_count or 0 for _, e in items),
        unexpected_count=sum(e.unexpected_count or 0 for _, e in items),
        failed_partitions=tuple(p for p, _ in failed),
        observed_value=worst.observed_value,
        sample=tuple(sample),
        error=worst.error,
    )


def results_table(
    outcomes: list[SuiteOutcome],
    *,
    run_id: str,
    checked_at: datetime,
    check_name: Callable[[SuiteOutcome], str] = lambda o: o.dimension,
) -> pa.Table:
    """The history rows of these outcomes: one per expectation and partition."""
    rows = [
        {
            "checked_at": checked_at,
            "run_id": run_id,
            "asset": o.asset,
            "partition": o.partition,
            "check_name": check_name(o),
            "check_passed": o.success,
            "rule": e.rule,
            "subject": e.subject,
            "expectation": e.expectation,
            "severity": e.severity,
            "success": e.success,
            "rows_validated": o.rows,
            "element_count": e.element_count,
            "unexpected_count": e.unexpected_count,
            "unexpected_percent": e.unexpected_percent,
            "observed_value": _json(e.observed_value),
            "unexpected_sample": _json(list(e.sample)) if e.sample else None,
            "error": e.error,
            "description": e.description,
            "docs_page": o.docs_page,
        }
        for o in outcomes
        for e in o.expectations
    ]
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)
