"""The detection rules: loaded from a JSON file (packaged default: rules.json) and validated.

Every rule has a name, a kind, an optional metric (absent: every metric) and ThingsBoard-style
conditions: `for_seconds` (the condition must hold that long) and `times` (that many readings in
a row). Kinds and their own keys:

    threshold  above | below: {"warning": level, "critical": level} (value >= / <= level)
    status     the device reports a fault (status_code not 0); device-wide, not per metric
    spike      robust score |x - median| / (1.4826 * MAD) >= `score`, median and MAD of the
               device's previous `window` readings of the metric that changed its value (repeats
               say nothing of its spread); `min_history` previous readings needed; the scale is
               floored at `min_scale`, at `min_relative_scale` * |median| and at the median size
               of those changes (a coarse sensor's resolution, a noisy one's usual step), so that
               flat, coarse or just unstuck signals do not turn rounding or noise into spikes
    stuck      a run of identical values for `for_seconds` (default 300) and `times` readings
               (default 5) that is improbable for this sensor: with `repeat` the share of its
               consecutive readings over the look-back that repeat the one before, a healthy
               sensor shows a run of k readings with a chance of about repeat^(k-1), and the run
               is stuck once that is at most `max_chance` (default 1e-7, i.e. about 16 times the
               sensor's mean run length). A noisy or fine sensor is stuck after a few identical
               readings (one that never repeats: after the rule's 5 minutes at a 10 or 30 s
               cadence, after 9 minutes at 60 s), a coarse one in a stable room only when flat
               far longer than usual; the run's own readings count in
               `repeat`, so a sensor flat for the whole look-back is not judged on its flatness.
               A run judged stuck is stuck from its first reading until the value changes
    silent     no reading from the device for more than `cadences` times its cadence
    rate       the metric's rate of change per minute, judged over the last `window_seconds`
               (default 120) as a robust (Theil-Sen: median of pairwise slopes) slope of at least
               `min_readings` (default 3) readings, is >= `rise_per_minute` or <=
               -`fall_per_minute`, and at least `min_score` (default 5) times its standard error
               under the series' own noise (1.4826 * MAD of second differences / sqrt(6) over
               the previous `noise_window` readings, default 30): a noisy sensor needs a steeper,
               longer rise, and one wild reading cannot make a slope

A typo in a key or a kind is an error naming the rule, never a silently ignored setting.
"""

import json
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.json")
SEVERITIES = {"warning": 1, "critical": 2}  # name -> rank: higher is worse
KINDS = ("threshold", "status", "spike", "stuck", "silent", "rate")
DEVICE_WIDE_KINDS = {"status", "silent"}

_COMMON_KEYS = {"name", "kind", "metric", "severity", "for_seconds", "times", "description"}
_KIND_KEYS = {
    "threshold": {"above", "below"},
    "status": set(),
    "spike": {"window", "min_history", "score", "min_scale", "min_relative_scale"},
    "stuck": {"max_chance"},
    "silent": {"cadences"},
    "rate": {
        "rise_per_minute",
        "fall_per_minute",
        "window_seconds",
        "min_readings",
        "min_score",
        "noise_window",
    },
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    metric: str | None = None  # None: every metric (status and silent are device-wide)
    severity: str = "warning"  # threshold rules take theirs from the level crossed
    for_seconds: float = 0.0
    times: int = 1
    description: str = ""
    levels: dict[str, float] = field(default_factory=dict)  # threshold: severity -> level
    direction: str = "above"  # threshold: above | below
    window: int = 30
    min_history: int = 10
    score: float = 8.0
    min_scale: float = 0.0
    min_relative_scale: float = 0.0
    max_chance: float = 1e-7  # stuck
    cadences: float = 5.0
    rise_per_minute: float | None = None
    fall_per_minute: float | None = None
    window_seconds: float = 120.0  # rate
    min_readings: int = 3  # rate
    min_score: float = 5.0  # rate: slope / its standard error
    noise_window: int = 30  # rate

    @property
    def device_wide(self) -> bool:
        return self.kind in DEVICE_WIDE_KINDS

    @property
    def severity_rank(self) -> int:
        return SEVERITIES[self.severity]


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    lookback: timedelta  # history read before a window: spike windows, durations, silences
    stale_after: timedelta  # an open episode with no new reading for this long is closed

    def by_name(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load and validate a rules file (None: the packaged default)."""
    source = Path(path) if path else DEFAULT_RULES_FILE
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"rules file {source} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"rules file {source} is not valid JSON: {exc}") from exc
    return parse_rules(document, source=str(source))


def parse_rules(document: Any, *, source: str = "rules") -> RuleSet:
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise ValueError(f"{source}: expected an object with a 'rules' list")
    unknown = set(document) - {"lookback_minutes", "stale_after_hours", "rules", "description"}
    if unknown:
        raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}")
    rules = tuple(_parse_rule(item, i, source) for i, item in enumerate(document["rules"]))
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{source}: duplicate rule names {duplicates}")
    lookback = timedelta(minutes=_number(document, "lookback_minutes", 60, source, minimum=1))
    needed = max((r.for_seconds for r in rules), default=0)
    if lookback.total_seconds() < needed:
        raise ValueError(
            f"{source}: lookback_minutes ({lookback.total_seconds() / 60:g}) must cover the "
            f"longest for_seconds ({needed:g} s), or episodes crossing an hour would be missed"
        )
    slope = max((r.window_seconds for r in rules if r.kind == "rate"), default=0)
    if lookback.total_seconds() < slope:
        raise ValueError(
            f"{source}: lookback_minutes ({lookback.total_seconds() / 60:g}) must cover the "
            f"longest rate window_seconds ({slope:g} s), or the first slopes of an hour would "
            "be judged on too few readings"
        )
    stale = timedelta(hours=_number(document, "stale_after_hours", 24, source, minimum=1))
    return RuleSet(rules=rules, lookback=lookback, stale_after=stale)


def _parse_rule(item: Any, index: int, source: str) -> Rule:
    where = f"{source}: rule #{index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: 'name' must match {_NAME.pattern}, got {name!r}")
    where = f"{source}: rule {name!r}"
    kind = item.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = set(item) - _COMMON_KEYS - _KIND_KEYS[kind]
    if unknown:
        raise ValueError(f"{where}: unknown keys for a {kind} rule: {sorted(unknown)}")
    metric = item.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ValueError(f"{where}: 'metric' must be a non-empty string when given")
    if metric is not None and kind in DEVICE_WIDE_KINDS:
        raise ValueError(f"{where}: a {kind} rule is device-wide and takes no 'metric'")
    severity = item.get("severity", "warning")
    if severity not in SEVERITIES:
        raise ValueError(f"{where}: 'severity' must be one of {sorted(SEVERITIES)}")
    settings: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "metric": metric,
        "severity": severity,
        "description": str(item.get("description", "")),
        "for_seconds": _number(item, "for_seconds", 300 if kind == "stuck" else 0, where),
        "times": int(_number(item, "times", 5 if kind == "stuck" else 1, where, minimum=1)),
    }
    if kind == "threshold":
        settings |= _threshold(item, where)
    elif kind == "spike":
        settings |= {
            "window": int(_number(item, "window", 30, where, minimum=3)),
            "min_history": int(_number(item, "min_history", 10, where, minimum=3)),
            "score": _number(item, "score", 8.0, where, minimum=1),
            "min_scale": _number(item, "min_scale", 0.0, where),
            "min_relative_scale": _number(item, "min_relative_scale", 0.0, where),
        }
        if settings["min_history"] > settings["window"]:
            raise ValueError(f"{where}: 'min_history' cannot exceed 'window'")
    elif kind == "stuck":
        settings["max_chance"] = _number(item, "max_chance", 1e-7, where, minimum=1e-300)
        if settings["max_chance"] >= 1:
            raise ValueError(f"{where}: 'max_chance' must be below 1, got {item['max_chance']!r}")
    elif kind == "silent":
        settings["cadences"] = _number(item, "cadences", 5.0, where, minimum=1.5)
    elif kind == "rate":
        settings |= _rate(item, where)
    return Rule(**settings)


def _rate(item: dict, where: str) -> dict[str, Any]:
    rise = item.get("rise_per_minute")
    fall = item.get("fall_per_minute")
    if rise is None and fall is None:
        raise ValueError(f"{where}: give 'rise_per_minute' and/or 'fall_per_minute'")
    settings: dict[str, Any] = {
        key: _number(item, key, 0.0, where, minimum=1e-12)
        for key in ("rise_per_minute", "fall_per_minute")
        if key in item
    }
    settings |= {
        "window_seconds": _number(item, "window_seconds", 120.0, where, minimum=1),
        # a slope needs two readings; a robust one (a median of pairwise slopes) three
        "min_readings": int(_number(item, "min_readings", 3, where, minimum=3)),
        "min_score": _number(item, "min_score", 5.0, where),
        "noise_window": int(_number(item, "noise_window", 30, where, minimum=5)),
    }
    return settings


def _threshold(item: dict, where: str) -> dict[str, Any]:
    sides = [k for k in ("above", "below") if k in item]
    if len(sides) != 1:
        raise ValueError(f"{where}: a threshold rule needs exactly one of 'above' or 'below'")
    direction = sides[0]
    levels = item[direction]
    if not isinstance(levels, dict) or not levels or set(levels) - set(SEVERITIES):
        raise ValueError(
            f"{where}: '{direction}' must map warning and/or critical to a level, got {levels!r}"
        )
    parsed = {sev: _number(levels, sev, 0.0, where, minimum=-math.inf) for sev in levels}
    if len(parsed) == 2:
        warning, critical = parsed["warning"], parsed["critical"]
        if (direction == "above" and critical < warning) or (
            direction == "below" and critical > warning
        ):
            raise ValueError(f"{where}: the critical level must be beyond the warning level")
    if "severity" in item:
        raise ValueError(f"{where}: a threshold rule's severity comes from its levels")
    return {"direction": direction, "levels": parsed}


def _number(
    container: dict, key: str, default: float, where: str, *, minimum: float = 0.0
) -> float:
    value = container.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{where}: '{key}' must be a number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: '{key}' must be >= {minimum:g}, got {value!r}")
    return float(value)
