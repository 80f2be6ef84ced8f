"""The quality gate of the aggregates: which raw readings stay out of them, and why.

Raw partitions keep every landed reading (anomaly detection and alerts read them all, implausible
ones included: a fire pushes a sensor past its plausible range). The aggregates must not: a reading
outside its metric's physical range, with a unit not allowed for it, or timed too far ahead of its
receipt is left out, and a whole series (device and metric) of the hour is left out when more than
`max_invalid_share` of its readings are invalid (a broken sensor, a wrong unit). Every other
device's aggregates are built. The same rules file decides the raw validity check, so what the check
reports is exactly what the aggregates left out.

`judge` returns one row per series of the hour with its figures (the exclusions table); `filter`
returns the `ReadingFilter` the minute aggregation applies, as a DuckDB view over the readings.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.quality.rules import QualityRules
from sensor_platform.quality.schema import EXCLUSION_SCHEMA

if TYPE_CHECKING:
    import pyarrow.dataset as ds

# One reading's verdict, in one place for the check, the exclusions and the filter: macros over
# the reading (r) and its metric's rule (b, NULL columns for a metric without a rule: not judged).
_VERDICT_MACROS = """
CREATE OR REPLACE TEMP MACRO gate_out_of_range(ruled, value, minimum, maximum) AS
    ruled AND (value IS NULL OR isnan(value) OR value < minimum OR value > maximum);
CREATE OR REPLACE TEMP MACRO gate_unit_not_allowed(ruled, unit, units) AS
    ruled AND unit IS NOT NULL AND NOT list_contains(units, unit);
CREATE OR REPLACE TEMP MACRO gate_in_future(event_time, ingest_time, ahead) AS
    epoch(event_time) - epoch(ingest_time) > ahead;
CREATE OR REPLACE TEMP VIEW gate_verdicts AS
SELECT r.*,
       gate_out_of_range(b.metric IS NOT NULL, r.value, b.minimum, b.maximum) AS out_of_range,
       gate_unit_not_allowed(b.metric IS NOT NULL, r.unit, b.units) AS unit_not_allowed,
       gate_in_future(r.event_time, r.ingest_time, (SELECT seconds FROM gate_ahead)) AS in_future
FROM unfiltered_readings AS r LEFT JOIN gate_bounds AS b ON b.metric = r.metric;
"""

_JUDGE_SQL = """
SELECT device_id, max(site_id) AS site_id, metric, count(*) AS readings,
       count(*) FILTER (WHERE out_of_range) AS out_of_range,
       count(*) FILTER (WHERE unit_not_allowed) AS unit_not_allowed,
       count(*) FILTER (WHERE in_future) AS in_future,
       count(*) FILTER (WHERE out_of_range OR unit_not_allowed OR in_future) AS invalid
FROM gate_verdicts
GROUP BY device_id, metric
ORDER BY device_id, metric
"""

# What rollups.compute aggregates when given a filter: `raw_readings` over `unfiltered_readings`.
_FILTER_VIEW_SQL = """
CREATE OR REPLACE TEMP VIEW raw_readings AS
SELECT * EXCLUDE (out_of_range, unit_not_allowed, in_future)
FROM gate_verdicts AS v
ANTI JOIN gate_excluded AS e ON e.device_id = v.device_id AND e.metric = v.metric
WHERE NOT (out_of_range OR unit_not_allowed OR in_future)
"""


@dataclass(frozen=True)
class ReadingFilter:
    """What the minute aggregation leaves out, applied as a DuckDB view (see rollups.compute)."""

    bounds: pa.Table  # metric, minimum, maximum, units
    excluded_series: pa.Table  # device_id, metric
    max_seconds_ahead: float

    def create_view(self, con: duckdb.DuckDBPyConnection) -> None:
        """`raw_readings`: the readings of `unfiltered_readings` that stay in the aggregates."""
        _register_rules(con, self.bounds, self.max_seconds_ahead)
        con.register("gate_excluded", self.excluded_series)
        con.execute(_FILTER_VIEW_SQL)


@dataclass(frozen=True)
class Gate:
    """The rules file's ranges, units, future tolerance and share of invalid readings."""

    rules: QualityRules

    @property
    def bounds(self) -> pa.Table:
        metrics = self.rules.metrics
        return pa.table(
            {
                "metric": pa.array(list(metrics), pa.string()),
                "minimum": pa.array([r.minimum for r in metrics.values()], pa.float64()),
                "maximum": pa.array([r.maximum for r in metrics.values()], pa.float64()),
                "units": pa.array([list(r.units) for r in metrics.values()], pa.list_(pa.string())),
            }
        )

    def series(self, readings: "pa.Table | ds.Dataset") -> pa.Table:
        """Every series (device, metric) of `readings` with its count of readings and of invalid
        ones, by cause: readings, out_of_range, unit_not_allowed, in_future, invalid."""
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.register("unfiltered_readings", readings)
            _register_rules(con, self.bounds, self.rules.future_tolerance_seconds)
            return con.sql(_JUDGE_SQL).to_arrow_table()
        finally:
            con.close()

    def judge(self, readings: "pa.Table | ds.Dataset", hour: datetime) -> pa.Table:
        """Every series of the hour with an invalid reading (EXCLUSION_SCHEMA): `scope` series
        when more than max_invalid_share of its readings are invalid, else readings."""
        series = self.series(readings).to_pylist()
        rows = [self._row(hour, s) for s in series if s["invalid"]]  # clean series: not listed
        return pa.Table.from_pylist(rows, schema=EXCLUSION_SCHEMA)

    def filter(self, exclusions: pa.Table) -> ReadingFilter:
        series = exclusions.filter(pc.equal(exclusions["scope"], "series"))
        return ReadingFilter(
            bounds=self.bounds,
            excluded_series=series.select(["device_id", "metric"]),
            max_seconds_ahead=self.rules.future_tolerance_seconds,
        )

    def _row(self, hour: datetime, s: dict) -> dict:
        share = s["invalid"] / s["readings"]
        whole = share > self.rules.max_invalid_share
        causes = [
            f"{s[key]} {what}"
            for key, what in (
                ("out_of_range", "outside the physical range"),
                ("unit_not_allowed", "with a unit not allowed"),
                ("in_future", "too far ahead of receipt"),
            )
            if s[key]
        ]
        reason = f"{s['invalid']} of {s['readings']} readings ({share:.1%}) invalid: " + ", ".join(
            causes
        )
        if whole:
            reason += f"; above {self.rules.max_invalid_share:.1%}: the series is left out"
        return {
            "partition_hour": hour,
            "device_id": s["device_id"],
            "site_id": s["site_id"],
            "metric": s["metric"],
            "readings": s["readings"],
            "invalid_readings": s["invalid"],
            "out_of_range": s["out_of_range"],
            "unit_not_allowed": s["unit_not_allowed"],
            "in_future": s["in_future"],
            "scope": "series" if whole else "readings",
            "reason": reason,
        }


def _register_rules(con: duckdb.DuckDBPyConnection, bounds: pa.Table, ahead: float) -> None:
    con.register("gate_bounds", bounds)
    con.register("gate_ahead", pa.table({"seconds": pa.array([float(ahead)], pa.float64())}))
    con.execute(_VERDICT_MACROS)
