"""Decide which notices each channel is due, send them, and record every outcome in the ledger.

Per channel and episode (its latest row): `opened` when it was never announced there and the
channel takes its severity and site; `escalated` when it became worse than what was announced;
`closed` (optional) once it ended. An episode first announced after it ended gets one notice that
settles both. What is due is always derived again from the episodes and the ledger's `sent` rows,
so a failed delivery is simply due again next run, and a re-run finds nothing new to send.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from sensor_platform.detection.rules import SEVERITIES
from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import ChannelReport, RetryPolicy, dispatch
from sensor_platform.notify.ledger import AlertLedger
from sensor_platform.notify.messages import Notice

_LATEST_SQL = """
SELECT * FROM episodes
QUALIFY row_number() OVER (PARTITION BY episode_id ORDER BY partition_hour DESC) = 1
ORDER BY CASE severity WHEN 'critical' THEN 0 ELSE 1 END, start_time, device_id, rule
"""


@dataclass(frozen=True)
class AlertReport:
    episodes: int  # distinct episodes considered
    planned: dict[str, int]  # channel -> notices due this run
    channels: list[ChannelReport]

    @property
    def sent(self) -> int:
        return sum(r.notices_sent for r in self.channels)

    @property
    def pending(self) -> int:
        return sum(r.pending for r in self.channels)

    @property
    def failed_channels(self) -> list[ChannelReport]:
        return [r for r in self.channels if r.failure is not None]


def latest_states(episodes: pa.Table) -> list[dict[str, Any]]:
    """The latest row of each episode (an episode crossing hours has one row per hour), worst
    severity first, then by start."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("episodes", episodes)
        return con.sql(_LATEST_SQL).to_arrow_table().cast(episodes.schema).to_pylist()
    finally:
        con.close()


def plan_notices(
    episodes: pa.Table,
    delivered: pa.Table,
    channels: Iterable[Channel],
    *,
    now: datetime,
    max_age: timedelta | None = timedelta(hours=24),
    notify_closed: bool = True,
) -> dict[Channel, list[Notice]]:
    """The notices each channel is due. `delivered` holds the ledger's `sent` rows; news older
    than `max_age` (by the episode's last reading) is not announced at all (None: no limit)."""
    announced: dict[tuple[str, str], dict[str, str]] = {}
    for row in delivered.select(["channel", "episode_id", "event", "severity"]).to_pylist():
        announced.setdefault((row["channel"], row["episode_id"]), {})[row["event"]] = row[
            "severity"
        ]
    states = latest_states(episodes)
    plan: dict[Channel, list[Notice]] = {}
    for channel in channels:
        notices = []
        for episode in states:
            done = announced.get((channel.name, episode["episode_id"]), {})
            events = _events_due(episode, done, channel, now, max_age, notify_closed)
            if events:
                notices.append(Notice(episode, events))
        plan[channel] = notices
    return plan


def _events_due(
    episode: dict[str, Any],
    done: dict[str, str],
    channel: Channel,
    now: datetime,
    max_age: timedelta | None,
    notify_closed: bool,
) -> tuple[str, ...]:
    ended = episode["status"] == "closed"
    last_news = episode["closed_at"] or episode["end_time"]
    if max_age is not None and now - last_news > max_age:
        return ()
    if "opened" not in done:
        if not channel.accepts(episode["severity"], episode["site_id"]):
            return ()
        return ("opened", "closed") if ended and notify_closed else ("opened",)
    events = []
    told = max(SEVERITIES[severity] for severity in done.values())
    if SEVERITIES[episode["severity"]] > told and "escalated" not in done:
        events.append("escalated")
    if ended and notify_closed and "closed" not in done:
        events.append("closed")
    return tuple(events)


def send_alerts(
    episodes: pa.Table,
    ledger: AlertLedger,
    channels: list[Channel],
    *,
    now: datetime,
    max_age: timedelta | None = timedelta(hours=24),
    notify_closed: bool = True,
    policy: RetryPolicy | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> AlertReport:
    """Plan against the ledger, deliver, and record each message's outcome as it happens."""
    plan = plan_notices(
        episodes,
        ledger.delivered(),
        channels,
        now=now,
        max_age=max_age,
        notify_closed=notify_closed,
    )
    reports = dispatch(
        plan,
        lambda channel, message, result: ledger.record(channel, message, result, run_id),
        policy=policy,
        sleep=sleep,
    )
    distinct = len(set(episodes["episode_id"].to_pylist())) if episodes.num_rows else 0
    return AlertReport(
        episodes=distinct,
        planned={channel.name: len(notices) for channel, notices in plan.items()},
        channels=reports,
    )
