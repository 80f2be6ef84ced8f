"""One DuckDB query per rule kind that marks each reading of the context: anomalous or not.

Every query reads the view `ctx` (readings of the window plus the look-back history) and returns
the same columns, so episodes.py turns any of them into episodes the same way:

    device_id, metric (NULL for device-wide rules), site_id, unit, event_time,
    peak       the value to report if this reading is an episode's worst
    level      0 normal, 1 warning, 2 critical
    score      how bad the reading is (the worst reading of an episode has the highest score)
    segment    readings of one episode share a segment (stuck: one run of identical values)
    threshold  the limit the reading was judged against

The SQL is fixed text; every setting of a rule is a bound parameter. Silent devices are found from
the gaps between readings instead (see episodes.py), as a silence has no reading to mark.
"""

import math
from typing import Any

from sensor_platform.detection.rules import SEVERITIES, Rule

# Sign trick: `value * sign >= level * sign` is `value >= level` above and `value <= level` below.
_THRESHOLD_SQL = """
SELECT device_id, metric, site_id, unit, event_time, value AS peak,
       CASE WHEN value * $sign >= $critical THEN 2 WHEN value * $sign >= $warning THEN 1 ELSE 0
       END AS level,
       value * $sign AS score,
       0::BIGINT AS segment,
       CASE WHEN value * $sign >= $critical THEN $critical ELSE $warning END * $sign AS threshold
FROM ctx WHERE ($metric IS NULL OR metric = $metric)
"""

# Faults are device-wide: one row per device and instant, worst code of the message's readings.
_STATUS_SQL = """
SELECT device_id, NULL::VARCHAR AS metric, site_id, NULL::VARCHAR AS unit, event_time,
       code::DOUBLE AS peak, CASE WHEN code <> 0 THEN $level ELSE 0 END AS level,
       abs(code)::DOUBLE AS score, 0::BIGINT AS segment, 0.0::DOUBLE AS threshold
FROM (
    SELECT device_id, event_time, max(site_id) AS site_id,
           coalesce(max(status_code) FILTER (WHERE status_code <> 0), 0) AS code
    FROM ctx GROUP BY device_id, event_time
)
"""

# The score compares a reading with the device's own previous readings (never with itself), so a
# spike cannot hide in its own history; median and MAD resist the spikes already in the window.
_SPIKE_SQL = """
WITH history AS (
    SELECT *, median(value) OVER w AS med, mad(value) OVER w AS mad, count(*) OVER w AS n
    FROM ctx WHERE ($metric IS NULL OR metric = $metric)
    WINDOW w AS (PARTITION BY device_id, metric ORDER BY event_time
                 ROWS BETWEEN $window PRECEDING AND 1 PRECEDING)
), scored AS (
    SELECT *, abs(value - med)
              / greatest(1.4826 * mad, $min_scale, $min_relative_scale * abs(med), 1e-9) AS z
    FROM history
)
SELECT device_id, metric, site_id, unit, event_time, value AS peak,
       CASE WHEN n >= $min_history AND z >= $score THEN $level ELSE 0 END AS level,
       coalesce(z, 0.0) AS score, 0::BIGINT AS segment, $score::DOUBLE AS threshold
FROM scored
"""

# A run is a stretch of identical consecutive values; runs of two readings or more are
# candidates, and the rule's for_seconds / times decide which of them are stuck sensors.
_STUCK_SQL = """
WITH changes AS (
    SELECT *, CASE WHEN value IS DISTINCT FROM lag(value) OVER w THEN 1 ELSE 0 END AS change
    FROM ctx WHERE ($metric IS NULL OR metric = $metric)
    WINDOW w AS (PARTITION BY device_id, metric ORDER BY event_time)
), runs AS (
    SELECT *, sum(change) OVER (PARTITION BY device_id, metric ORDER BY event_time
                                ROWS UNBOUNDED PRECEDING) AS segment
    FROM changes
)
SELECT device_id, metric, site_id, unit, event_time, value AS peak,
       CASE WHEN count(*) OVER (PARTITION BY device_id, metric, segment) >= 2 THEN $level ELSE 0
       END AS level,
       0.0::DOUBLE AS score, segment::BIGINT AS segment, 0.0::DOUBLE AS threshold
FROM runs
"""

_RATE_SQL = """
WITH deltas AS (
    SELECT *, (value - lag(value) OVER w)
              / ((epoch_us(event_time) - epoch_us(lag(event_time) OVER w)) / 60e6) AS per_minute
    FROM ctx WHERE ($metric IS NULL OR metric = $metric)
    WINDOW w AS (PARTITION BY device_id, metric ORDER BY event_time)
)
SELECT device_id, metric, site_id, unit, event_time, per_minute AS peak,
       CASE WHEN per_minute >= $rise OR per_minute <= -$fall THEN $level ELSE 0 END AS level,
       coalesce(abs(per_minute), 0.0) AS score, 0::BIGINT AS segment,
       CASE WHEN per_minute < 0 THEN -$fall ELSE $rise END AS threshold
FROM deltas
"""


def flags_query(rule: Rule) -> tuple[str, dict[str, Any]]:
    """The query marking the context's readings for `rule`, and its bound parameters."""
    level = SEVERITIES[rule.severity]
    if rule.kind == "threshold":
        sign = 1.0 if rule.direction == "above" else -1.0
        critical = rule.levels.get("critical")
        warning = rule.levels.get("warning", critical)
        return _THRESHOLD_SQL, {
            "metric": rule.metric,
            "sign": sign,
            "warning": warning * sign,
            "critical": critical * sign if critical is not None else math.inf,
        }
    if rule.kind == "status":
        return _STATUS_SQL, {"level": level}
    if rule.kind == "spike":
        return _SPIKE_SQL, {
            "metric": rule.metric,
            "level": level,
            "window": rule.window,
            "min_history": rule.min_history,
            "score": rule.score,
            "min_scale": rule.min_scale,
            "min_relative_scale": rule.min_relative_scale,
        }
    if rule.kind == "stuck":
        return _STUCK_SQL, {"metric": rule.metric, "level": level}
    if rule.kind == "rate":
        return _RATE_SQL, {
            "metric": rule.metric,
            "level": level,
            "rise": rule.rise_per_minute if rule.rise_per_minute is not None else math.inf,
            "fall": rule.fall_per_minute if rule.fall_per_minute is not None else math.inf,
        }
    raise ValueError(f"rule {rule.name!r}: kind {rule.kind!r} has no reading flags")
