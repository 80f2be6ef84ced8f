"""Turn marked readings into episodes (gaps and islands in DuckDB) and carry them across windows.

A window (one hour in the pipeline) is read together with `rules.lookback` of history. Islands of
consecutive anomalous readings become episodes once their rule's conditions hold (for_seconds,
times). An episode still open at the end of the previous window (`previous`, that window's
output) continues when the island holding its last reading is found again in the history: it keeps
its id, start, reading count and peak. One not found again is closed by the next reading, or
carried while the device sends nothing for that metric, until `rules.stale_after`.
"""

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from sensor_platform.detection.detectors import flags_query
from sensor_platform.detection.rules import SEVERITIES, Rule, RuleSet
from sensor_platform.detection.schema import EPISODE_SCHEMA

# Every query below returns these columns as `found`; _OUTPUT_SQL then adds the id and names.
_OUTPUT_SQL = """
SELECT left(sha256(device_id || chr(31) || coalesce(metric, '') || chr(31) || $rule || chr(31)
                   || epoch_us(start_time)::VARCHAR), 32) AS episode_id,
       $partition_hour AS partition_hour, device_id, site_id, metric, unit,
       $rule AS rule, $kind AS kind,
       CASE WHEN level >= 2 THEN 'critical' ELSE 'warning' END AS severity,
       status, start_time, end_time, closed_at, reading_count, peak_value, peak_time, peak_score,
       threshold
FROM found
"""

_ISLANDS_SQL = """
WITH marked AS (
    SELECT f.*, p.end_time AS p_end,
           sum(CASE WHEN f.level > 0 THEN 0 ELSE 1 END) OVER (
               PARTITION BY f.device_id, f.metric ORDER BY f.event_time ROWS UNBOUNDED PRECEDING
           ) AS grp,
           lead(f.event_time) OVER (PARTITION BY f.device_id, f.metric ORDER BY f.event_time)
               AS next_time
    FROM flags f
    LEFT JOIN prev p ON p.device_id = f.device_id AND p.metric IS NOT DISTINCT FROM f.metric
), islands AS (
    SELECT device_id, metric,
           min(event_time) AS start_time, max(event_time) AS end_time, count(*) AS n,
           count(*) FILTER (WHERE p_end IS NULL OR event_time > p_end) AS n_after,
           max(level) AS level,
           last(site_id ORDER BY event_time) AS site_id,
           last(unit ORDER BY event_time) AS unit,
           first(peak ORDER BY score DESC, event_time) AS peak_value,
           first(event_time ORDER BY score DESC, event_time) AS peak_time,
           max(score) AS peak_score,
           first(threshold ORDER BY level DESC, score DESC, event_time) AS threshold,
           last(next_time ORDER BY event_time) AS closed_at
    FROM marked WHERE level > 0
    GROUP BY device_id, metric, grp, segment
), matched AS (
    -- the island holding the last reading of an episode still open is that episode, continued
    SELECT i.*, p.episode_id AS p_id, p.start_time AS p_start, p.reading_count AS p_n,
           p.level AS p_level, p.peak_value AS p_peak, p.peak_time AS p_peak_time,
           p.peak_score AS p_score, p.threshold AS p_threshold,
           p.site_id AS p_site, p.unit AS p_unit
    FROM islands i
    LEFT JOIN prev p ON p.device_id = i.device_id AND p.metric IS NOT DISTINCT FROM i.metric
         AND i.start_time <= p.end_time AND p.end_time <= i.end_time
), episodes AS (
    SELECT device_id, metric, coalesce(site_id, p_site) AS site_id, coalesce(unit, p_unit) AS unit,
           coalesce(p_start, start_time) AS start_time, end_time, closed_at,
           CASE WHEN closed_at IS NULL THEN 'open' ELSE 'closed' END AS status,
           CASE WHEN p_id IS NULL THEN n ELSE p_n + n_after END AS reading_count,
           greatest(level, coalesce(p_level, 0)) AS level,
           CASE WHEN p_score >= peak_score THEN p_peak ELSE peak_value END AS peak_value,
           CASE WHEN p_score >= peak_score THEN p_peak_time ELSE peak_time END AS peak_time,
           greatest(peak_score, coalesce(p_score, peak_score)) AS peak_score,
           CASE WHEN p_level > level OR (p_level = level AND p_score >= peak_score)
                THEN p_threshold ELSE threshold END AS threshold
    FROM matched
), unmatched AS (
    -- open episodes not seen again: closed by the next reading, else carried until stale
    SELECT p.*, (SELECT min(f.event_time) FROM flags f
                 WHERE f.device_id = p.device_id AND f.metric IS NOT DISTINCT FROM p.metric
                   AND f.event_time > p.end_time) AS next_reading
    FROM prev p
    WHERE NOT EXISTS (SELECT 1 FROM islands i
                      WHERE i.device_id = p.device_id AND i.metric IS NOT DISTINCT FROM p.metric
                        AND i.start_time <= p.end_time AND p.end_time <= i.end_time)
)
SELECT device_id, site_id, metric, unit, status, start_time, end_time, closed_at,
       reading_count, level, peak_value, peak_time, peak_score, threshold
FROM episodes
WHERE epoch_us(end_time) - epoch_us(start_time) >= $for_us AND reading_count >= $times
  AND (end_time >= $window_start OR closed_at >= $window_start OR closed_at IS NULL)
UNION ALL
SELECT device_id, site_id, metric, unit,
       CASE WHEN next_reading IS NULL AND end_time >= $stale_before THEN 'open' ELSE 'closed' END,
       start_time, end_time, next_reading,
       reading_count, level, peak_value, peak_time, peak_score, threshold
FROM unmatched
"""

_CARRIED_SQL = """
SELECT device_id, site_id, metric, unit, status, start_time, end_time, closed_at,
       reading_count, level, peak_value, peak_time, peak_score, threshold
FROM prev
"""

# A silence has no reading to mark: it is the gap after the last reading heard from a device.
# Open silences of the previous window add their last reading back, so they continue with the
# same start (and id) however long the device stays quiet.
_SILENT_SQL = """
WITH heard AS (
    SELECT device_id, event_time, max(site_id) AS site_id
    FROM (SELECT device_id, event_time, site_id FROM ctx
          UNION ALL SELECT device_id, start_time, site_id FROM prev)
    GROUP BY device_id, event_time
), gaps AS (
    SELECT *, lead(event_time) OVER w AS next_time,
           epoch_us(coalesce(lead(event_time) OVER w, $watermark)) - epoch_us(event_time) AS gap_us
    FROM heard WINDOW w AS (PARTITION BY device_id ORDER BY event_time)
), cadenced AS (
    SELECT g.*, coalesce(c.cadence_s * 1e6,
                         median(gap_us) FILTER (WHERE next_time IS NOT NULL)
                             OVER (PARTITION BY g.device_id)) AS cadence_us
    FROM gaps g LEFT JOIN cadences c ON c.device_id = g.device_id
), silences AS (
    SELECT device_id, site_id, NULL::VARCHAR AS metric, NULL::VARCHAR AS unit,
           event_time AS start_time, coalesce(next_time, $watermark) AS end_time,
           next_time AS closed_at,
           CASE WHEN next_time IS NULL THEN 'open' ELSE 'closed' END AS status,
           greatest(round(gap_us / cadence_us)::BIGINT - 1, 0) AS reading_count,
           $level AS level, gap_us / 1e6 AS peak_value, coalesce(next_time, $watermark) AS peak_time,
           gap_us / 1e6 AS peak_score, $cadences * cadence_us / 1e6 AS threshold
    FROM cadenced
    WHERE gap_us > $cadences * cadence_us AND (next_time IS NULL OR next_time >= $window_start)
)
SELECT device_id, site_id, metric, unit, status, start_time, end_time, closed_at,
       reading_count, level, peak_value, peak_time, peak_score, threshold
FROM silences
"""


def detect_episodes(
    readings: pa.Table | ds.Dataset,
    rules: RuleSet,
    *,
    window_start: datetime,
    window_end: datetime,
    previous: pa.Table | None = None,
    cadences: Mapping[str, float] | None = None,
    memory_limit: str = "1GB",
    threads: int = 2,
) -> pa.Table:
    """Episodes of [window_start, window_end) (EPISODE_SCHEMA), sorted by device, metric, rule
    and start. `readings` must hold the window and `rules.lookback` before it (more is ignored);
    `previous` is the output of the window before, if there is one; `cadences` maps device ids
    to seconds between readings (devices missing from it use their median interval)."""
    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("source", readings)
        con.execute(
            "CREATE TEMP TABLE ctx AS SELECT device_id, site_id, metric, value, unit, "
            "status_code, event_time FROM source "
            # raw holds finite values only (the normalizer quarantines the rest); a file written
            # by another tool might not, and one NaN must not stop every alarm of the hour
            "WHERE event_time >= $start AND event_time < $end AND isfinite(value)",
            {"start": window_start - rules.lookback, "end": window_end},
        )
        con.register(
            "previous_source", previous if previous is not None else EPISODE_SCHEMA.empty_table()
        )
        con.execute(
            "CREATE TEMP TABLE previous_open AS SELECT *, "
            "CASE severity WHEN 'critical' THEN 2 ELSE 1 END AS level "
            "FROM previous_source WHERE status = 'open'"
        )
        cadence_table = pa.table(
            {
                "device_id": pa.array(list((cadences or {}).keys()), pa.string()),
                "cadence_s": pa.array(list((cadences or {}).values()), pa.float64()),
            }
        )
        con.register("cadences", cadence_table)
        [(watermark,)] = con.execute(
            "SELECT coalesce(max(event_time) FILTER (WHERE event_time >= $start), max(event_time)) "
            "FROM ctx",
            {"start": window_start},
        ).fetchall()
        parts = [
            _episodes_of(con, rule, rules, window_start, window_end, watermark)
            for rule in rules.rules
        ]
    finally:
        con.close()
    table = pa.concat_tables([p.cast(EPISODE_SCHEMA) for p in parts])
    return table.sort_by(
        [
            ("device_id", "ascending"),
            ("metric", "ascending"),
            ("rule", "ascending"),
            ("start_time", "ascending"),
        ]
    )


def detect_hour_by_hour(
    readings: pa.Table | ds.Dataset,
    rules: RuleSet,
    *,
    start: datetime,
    hours: int,
    previous: pa.Table | None = None,
    cadences: Mapping[str, float] | None = None,
) -> Iterator[pa.Table]:
    """The episodes of each of `hours` hours from `start`, as the pipeline finds them: every hour
    continues the episodes of the hour before (`previous`: those of the hour before `start`)."""
    for h in range(hours):
        hour = start + timedelta(hours=h)
        previous = detect_episodes(
            readings,
            rules,
            window_start=hour,
            window_end=hour + timedelta(hours=1),
            previous=previous,
            cadences=cadences,
        )
        yield previous


def _episodes_of(
    con: duckdb.DuckDBPyConnection,
    rule: Rule,
    rules: RuleSet,
    window_start: datetime,
    window_end: datetime,
    watermark: datetime | None,
) -> pa.Table:
    # One open episode per device and metric at most; the latest wins should a file hold more.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE prev AS SELECT * FROM previous_open WHERE rule = $rule "
        "QUALIFY row_number() OVER (PARTITION BY device_id, metric ORDER BY end_time DESC) = 1",
        {"rule": rule.name},
    )
    if rule.kind == "silent" and watermark is None:
        # No reading at all: nothing to measure a silence against; open ones carry on.
        sql, params = _CARRIED_SQL, {}
    elif rule.kind == "silent":
        sql, params = (
            _SILENT_SQL,
            {
                "watermark": watermark,
                "cadences": rule.cadences,
                "level": SEVERITIES[rule.severity],
                "window_start": window_start,
            },
        )
    else:
        flags_sql, flag_params = flags_query(rule, origin=window_start, lookback=rules.lookback)
        con.execute("CREATE OR REPLACE TEMP TABLE flags AS " + flags_sql, flag_params)
        sql, params = (
            _ISLANDS_SQL,
            {
                "window_start": window_start,
                "for_us": round(rule.for_seconds * 1_000_000),
                "times": rule.times,
                "stale_before": window_end - rules.stale_after,
            },
        )
    con.execute("CREATE OR REPLACE TEMP TABLE found AS " + sql, params)
    output = {"rule": rule.name, "kind": rule.kind, "partition_hour": window_start}
    return con.sql(_OUTPUT_SQL, params=output).to_arrow_table()
