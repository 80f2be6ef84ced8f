"""One DuckDB query per rule kind that marks each reading of the context: anomalous or not.

Every query reads the table `ctx` (readings of the window plus the look-back history; the stuck
query also reads `prev`, the rule's episodes still open before the window) and returns the same
columns, so episodes.py turns any of them into episodes the same way:

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
from datetime import datetime, timedelta
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
# Median and MAD come from the previous `window` readings that changed the value: a coarse
# sensor's repeats would shrink its MAD to 0, and a sensor back from being stuck would be judged
# on its stuck value (a sensor flat all along keeps its one value). The scale is also floored at
# the median size of those changes (a coarse sensor's resolution, a noisy one's usual step), so a
# step or two of a coarse sensor is no spike. `min_history` counts every previous reading.
_SPIKE_SQL = """
WITH steps AS (
    SELECT *, abs(value - lag(value) OVER w) AS step,
           count(*) OVER (w ROWS BETWEEN $window PRECEDING AND 1 PRECEDING) AS n
    FROM ctx WHERE ($metric IS NULL OR metric = $metric)
    WINDOW w AS (PARTITION BY device_id, metric ORDER BY event_time)
), changes AS (
    SELECT device_id, metric, event_time,
           median(value) OVER h AS med, mad(value) OVER h AS mad, median(step) OVER h AS usual_step
    FROM steps WHERE step IS NULL OR step > 0
    WINDOW h AS (PARTITION BY device_id, metric ORDER BY event_time
                 ROWS BETWEEN $window_before PRECEDING AND CURRENT ROW)
), scored AS (
    SELECT s.*, abs(s.value - c.med)
              / greatest(1.4826 * c.mad, $min_scale, $min_relative_scale * abs(c.med),
                         coalesce(c.usual_step, 0), 1e-9) AS z
    FROM steps s ASOF LEFT JOIN changes c
      ON c.device_id = s.device_id AND c.metric = s.metric AND c.event_time < s.event_time
)
SELECT device_id, metric, site_id, unit, event_time, value AS peak,
       CASE WHEN n >= $min_history AND z >= $score THEN $level ELSE 0 END AS level,
       coalesce(z, 0.0) AS score, 0::BIGINT AS segment, $score::DOUBLE AS threshold
FROM scored
"""

# A run is a stretch of identical consecutive values. It is stuck once it is improbable for this
# sensor: with `repeat` the share of the sensor's consecutive readings that repeat the one before
# over the look-back up to a reading (plus one of each, so never 0 or 1), a healthy sensor shows
# a run of k readings with a chance of about repeat^(k-1): a noisy sensor almost never repeats, a
# coarse one in a stable room mostly does. The run's own readings count in `repeat`, so a sensor
# flat for the whole look-back is not judged on its own flatness. Every reading is judged on the
# look-back before it alone (a run too long for its look-back is never improbable), so hour by
# hour gives what one long window gives. Once judged, the whole run is stuck, from its first
# reading; a run holding the last reading of a stuck episode still open stays stuck. The rule's
# for_seconds / times apply on top.
_STUCK_SQL = """
WITH paired AS (
    SELECT *, CASE WHEN value = lag(value) OVER w THEN 1 ELSE 0 END AS repeats,
           CASE WHEN lag(value) OVER w IS NULL THEN 0 ELSE 1 END AS pairs,
           row_number() OVER w AS position
    FROM ctx WHERE ($metric IS NULL OR metric = $metric)
    WINDOW w AS (PARTITION BY device_id, metric ORDER BY event_time)
), runs AS (
    -- k: the run's length up to this reading (counted from its first position)
    SELECT *, sum(1 - repeats) OVER r AS segment,
           position + 1 - max(CASE WHEN repeats = 0 THEN position END) OVER r AS k,
           (sum(repeats) OVER h + 1) / (sum(pairs) OVER h + 2) AS repeat
    FROM paired
    WINDOW r AS (PARTITION BY device_id, metric ORDER BY event_time ROWS UNBOUNDED PRECEDING),
           h AS (PARTITION BY device_id, metric ORDER BY event_time
                 RANGE BETWEEN $lookback PRECEDING AND CURRENT ROW)
), stuck AS (
    SELECT device_id, metric, segment, min(event_time) AS run_start, max(event_time) AS run_end,
           bool_or(k >= 2 AND (k - 1) * log10(repeat) <= log10($max_chance)) AS improbable
    FROM runs GROUP BY device_id, metric, segment HAVING count(*) >= 2
), carried AS (
    SELECT s.*, improbable OR EXISTS (
               SELECT 1 FROM prev
               WHERE prev.device_id = s.device_id AND prev.metric IS NOT DISTINCT FROM s.metric
                 AND prev.end_time BETWEEN s.run_start AND s.run_end) AS is_stuck
    FROM stuck s
)
SELECT r.device_id, r.metric, r.site_id, r.unit, r.event_time, r.value AS peak,
       CASE WHEN c.is_stuck THEN $level ELSE 0 END AS level,
       0.0::DOUBLE AS score, r.segment::BIGINT AS segment, 0.0::DOUBLE AS threshold
FROM runs r LEFT JOIN carried c USING (device_id, metric, segment)
"""


# The rate is the Theil-Sen slope (the median of the slopes between every pair of readings) of
# the last `window` minutes: one wild reading moves few pairs, so it cannot make a slope, while a
# sustained rise moves them all. It must also stand out of the series' own noise: the noise is
# estimated robustly from second differences (a steady rise leaves them alone), and the slope of
# a least-squares fit of white noise over these times has a standard error of noise / sqrt(Sxx).
# Times are minutes since the window start, so that sums of squares keep their precision.
_RATE_SQL = """
WITH series AS (
    SELECT *, (epoch_us(event_time) - epoch_us($origin)) / 60e6 AS t,
           value - 2 * lag(value) OVER o + lag(value, 2) OVER o AS d2
    FROM ctx WHERE ($metric IS NULL OR metric = $metric)
    WINDOW o AS (PARTITION BY device_id, metric ORDER BY event_time)
), windows AS (
    SELECT *, list(value) OVER r AS vs, list(t) OVER r AS ts, count(*) OVER r AS n,
           avg(t) OVER r AS t_mean,
           coalesce(1.4826 * mad(d2) OVER (PARTITION BY device_id, metric ORDER BY event_time
                                           ROWS BETWEEN $noise_window PRECEDING AND CURRENT ROW)
                    / sqrt(6), 0.0) AS noise
    FROM series
    WINDOW r AS (PARTITION BY device_id, metric ORDER BY t
                 RANGE BETWEEN $window PRECEDING AND CURRENT ROW)
), sloped AS (
    SELECT *,
           list_median(flatten([[(vs[j] - vs[i]) / (ts[j] - ts[i])
                                 FOR j IN range(i + 1, n + 1) IF ts[j] <> ts[i]]
                                FOR i IN range(1, n + 1)])) AS slope,
           sqrt(list_sum([(x - t_mean) ** 2 FOR x IN ts])) AS root_sxx
    FROM windows
), judged AS (
    SELECT *, n >= $min_readings AND abs(slope) * root_sxx >= $min_score * noise AS steady
    FROM sloped
)
SELECT device_id, metric, site_id, unit, event_time, coalesce(slope, 0.0) AS peak,
       CASE WHEN steady AND (slope >= $rise OR slope <= -$fall) THEN $level ELSE 0 END AS level,
       coalesce(abs(slope), 0.0) AS score, 0::BIGINT AS segment,
       CASE WHEN slope < 0 THEN -$fall ELSE $rise END AS threshold
FROM judged
"""


def flags_query(rule: Rule, *, origin: datetime, lookback: timedelta) -> tuple[str, dict[str, Any]]:
    """The query marking the context's readings for `rule`, and its bound parameters; `origin`
    (the window start) is where the rate rule's clock starts, `lookback` the history a stuck
    sensor's habits are judged on."""
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
            "window_before": rule.window - 1,
            "min_history": rule.min_history,
            "score": rule.score,
            "min_scale": rule.min_scale,
            "min_relative_scale": rule.min_relative_scale,
        }
    if rule.kind == "stuck":
        return _STUCK_SQL, {
            "metric": rule.metric,
            "level": level,
            "max_chance": rule.max_chance,
            "lookback": lookback,
        }
    if rule.kind == "rate":
        return _RATE_SQL, {
            "metric": rule.metric,
            "level": level,
            "origin": origin,
            "window": rule.window_seconds / 60,
            "min_readings": rule.min_readings,
            "min_score": rule.min_score,
            "noise_window": rule.noise_window,
            "rise": rule.rise_per_minute if rule.rise_per_minute is not None else math.inf,
            "fall": rule.fall_per_minute if rule.fall_per_minute is not None else math.inf,
        }
    raise ValueError(f"rule {rule.name!r}: kind {rule.kind!r} has no reading flags")
