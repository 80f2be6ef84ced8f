"""Decide what each channel is due, send it, and record every step in the ledger.

Per channel and episode (its latest row): `opened` when it was never announced there and the
channel takes its severity and site; `escalated` when it became worse than what was announced;
`closed` (optional) once it ended. An episode first announced after it ended gets one notice that
settles both. What is due is always derived again from the episodes and the ledger: notices
never tried, and notices the endpoint surely refused (`failed`), are planned afresh; notices it
may have taken (an `unknown` outcome, or `attempting` left by a killed run) go out again in the
message they went out in, under the same idempotency key, so an endpoint that honours keys takes
them once. News older than `max_age` (by the episode's last reading) is recorded as `expired` once
and never sent; so is a pending notice whose episode is no longer read and that no run tried for
longer than `max_age`. Until then it waits (`waiting`) for a run that reads its episode.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from sensor_platform.detection.rules import SEVERITIES
from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import RetryPolicy, dispatch
from sensor_platform.notify.ledger import AlertLedger
from sensor_platform.notify.messages import EVENTS, Notice, Outgoing, build_messages
from sensor_platform.notify.report import AlertReport, build_report
from sensor_platform.notify.states import (
    NoticeState,
    anomaly_rows,
    duplicate_counts,
    notice_states,
)

_LATEST_SQL = """
SELECT * FROM episodes
QUALIFY row_number() OVER (PARTITION BY episode_id ORDER BY partition_hour DESC) = 1
ORDER BY CASE severity WHEN 'critical' THEN 0 ELSE 1 END, start_time, device_id, rule
"""
TOO_OLD = "older than the alert max age: not announced"
EPISODE_GONE = "not tried for longer than the alert max age, and its episode is no longer read"
NO_LONGER_DUE = "no longer due to this channel (its routing or settings changed): not sent"


@dataclass(frozen=True)
class ChannelPlan:
    """What one run does for one channel."""

    channel: Channel
    resend: list[Outgoing]  # notices that may have arrived: as they went out, same key
    fresh: list[Outgoing]  # notices never tried, or surely refused before
    expired: list[tuple[Notice, str]]  # not sent, recorded as expired, with the reason
    waiting: int = 0  # pending, but their episodes were not read: left for a run that reads them
    retried: Counter[str] = field(default_factory=Counter)  # due again, by their last state
    uncertain: frozenset[str] = frozenset()  # notifications that may have reached it already

    @property
    def messages(self) -> list[Outgoing]:
        return self.resend + self.fresh

    @property
    def due(self) -> int:
        return sum(len(m.notification_ids) for m in self.messages)


@dataclass(frozen=True)
class Pending:
    """What a run would pick up for one channel, in notifications."""

    failed: int = 0
    unknown: int = 0
    attempting: int = 0  # left by a run that stopped mid-request
    never_attempted: int = 0
    expiring: int = 0  # would be recorded as expired, not sent
    waiting: int = 0  # pending, but of episodes not read: no run on these episodes can send them

    @property
    def total(self) -> int:
        """What a run would act on (`waiting` excluded: it would not)."""
        return self.failed + self.unknown + self.attempting + self.never_attempted + self.expiring


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


def plan_deliveries(
    episodes: pa.Table,
    history: pa.Table,
    channels: Iterable[Channel],
    *,
    now: datetime,
    max_age: timedelta | None = timedelta(hours=24),
    notify_closed: bool = True,
) -> list[ChannelPlan]:
    """Each channel's messages for this run (those that went out before first) and what expires,
    from the episodes and the ledger rows in `history`."""
    states = latest_states(episodes)
    by_id = {episode["episode_id"]: episode for episode in states}
    order = {episode_id: i for i, episode_id in enumerate(by_id)}
    ledger = notice_states(anomaly_rows(history))  # platform notices are not theirs to plan
    plans = []
    for channel in channels:
        mine = [s for s in ledger.values() if s.channel == channel.name]
        pending = [s for s in mine if s.pending]
        # Pending notices of episodes this run did not read (a backfill of other hours, say) wait
        # for a run that reads them, unless no run has tried them for longer than max_age.
        absent = [s for s in pending if s.episode_id not in by_id]
        gone = [s for s in absent if _stale(s, now, max_age)]
        expired = [(Notice(s.episode, (s.event,)), EPISODE_GONE) for s in gone]
        present = [s for s in pending if s.episode_id in by_id]
        # A notice the endpoint surely did not take is simply due again, planned afresh; one it
        # may have taken goes out again as it went out, under the same key.
        again = [s for s in present if s.uncertain]
        refused = {s.notification_id: s for s in present if not s.uncertain}
        told = _told(s for s in mine if s.notification_id not in refused)
        resend, too_old = _resend(channel, again, by_id, order, now, max_age)
        fresh, fresh_too_old = _fresh(states, told, channel, now, max_age, notify_closed)
        too_old += fresh_too_old
        expired += [(notice, TOO_OLD) for notice in too_old]
        planned = {i for notice in fresh + too_old for i in notice.notification_ids}
        expired += [
            (Notice(s.episode, (s.event,)), NO_LONGER_DUE)
            for s in refused.values()
            if s.notification_id not in planned
        ]
        messages = build_messages(channel.kind, fresh)
        going = {i for m in resend + messages for i in m.notification_ids}
        plans.append(
            ChannelPlan(
                channel=channel,
                resend=resend,
                fresh=messages,
                expired=expired,
                waiting=len(absent) - len(gone),
                retried=Counter(s.state for s in pending if s.notification_id in going),
                uncertain=frozenset(s.notification_id for s in again),
            )
        )
    return plans


def pending_notices(
    episodes: pa.Table,
    history: pa.Table,
    channels: Iterable[Channel],
    *,
    now: datetime,
    max_age: timedelta | None = timedelta(hours=24),
    notify_closed: bool = True,
) -> dict[str, Pending]:
    """Per channel, what a run would pick up now: notices that failed, ended unknown or were left
    attempting by a run that stopped, notices due but never attempted (a run that crashed before
    sending them), and notices it would record as expired. `retry_pending_alerts` runs while any
    is non-zero."""
    plans = plan_deliveries(
        episodes, history, channels, now=now, max_age=max_age, notify_closed=notify_closed
    )
    return {
        plan.channel.name: Pending(
            failed=plan.retried["failed"],
            unknown=plan.retried["unknown"],
            attempting=plan.retried["attempting"],
            never_attempted=plan.due - plan.retried.total(),
            expiring=sum(len(notice.events) for notice, _ in plan.expired),
            waiting=plan.waiting,
        )
        for plan in plans
    }


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
    config_errors: Mapping[str, str] | None = None,
) -> AlertReport:
    """Plan against the ledger, record what expired, deliver, and record each step as it
    happens. `config_errors` (channel -> error, from `build_channels`) go into the report."""
    plans = plan_deliveries(
        episodes,
        ledger.history(),
        channels,
        now=now,
        max_age=max_age,
        notify_closed=notify_closed,
    )
    for plan in plans:
        for reason in dict.fromkeys(reason for _, reason in plan.expired):
            gone = [notice for notice, why in plan.expired if why == reason]
            ledger.record_expired(plan.channel, gone, reason, run_id)
    deliveries = dispatch(
        {plan.channel: plan.messages for plan in plans},
        lambda channel, message, attempt, result: ledger.record(
            channel, message, attempt, result, run_id
        ),
        policy=policy,
        sleep=sleep,
    )
    distinct = len(set(episodes["episode_id"].to_pylist())) if episodes.num_rows else 0
    return build_report(
        plans,
        deliveries,
        episodes=distinct,
        config_errors=dict(config_errors or {}),
        duplicates_total=duplicate_counts(anomaly_rows(ledger.history())),
    )


# -- pending notices: sent again as they went out -------------------------------------------------
def _resend(
    channel: Channel,
    pending: list[NoticeState],
    episodes: dict[str, dict[str, Any]],
    order: dict[str, int],
    now: datetime,
    max_age: timedelta | None,
) -> tuple[list[Outgoing], list[Notice]]:
    """The messages that carried `pending` (notices of episodes in `episodes`), rebuilt from the
    episodes' latest state, and the notices grown too old to send."""
    groups: dict[str | None, list[NoticeState]] = {}
    too_old = []
    for state in pending:
        episode = episodes[state.episode_id]
        if _too_old(episode, now, max_age):
            too_old.append(Notice(episode, (state.event,)))
        else:
            groups.setdefault(state.message_key, []).append(state)
    messages = []
    for key, members in groups.items():
        notices = _notices(members, episodes, order)
        built = build_messages(channel.kind, notices)
        # The same key only for exactly the same notices in one message: an endpoint may refuse
        # a known key with other content, and could drop notices it never had.
        same = key is not None and len(built) == 1
        same = same and {s.notification_id for s in members} == set(members[0].message_ids)
        messages += [replace(built[0], key=key)] if same else built
    return messages, too_old


def _stale(state: NoticeState, now: datetime, max_age: timedelta | None) -> bool:
    """No run has tried it for longer than max_age: its news is older than that by now."""
    return max_age is not None and now - state.last_recorded_at > max_age


def _notices(
    members: list[NoticeState], episodes: dict[str, dict[str, Any]], order: dict[str, int]
) -> list[Notice]:
    events: dict[str, set[str]] = {}
    for state in members:
        events.setdefault(state.episode_id, set()).add(state.event)
    return [
        Notice(episodes[episode_id], tuple(e for e in EVENTS if e in events[episode_id]))
        for episode_id in sorted(events, key=order.__getitem__)
    ]


# -- notices never tried ----------------------------------------------------------------------------
def _told(states: Iterable[NoticeState]) -> dict[tuple[str, str], dict[str, str]]:
    """(channel, episode) -> event -> severity, for every event the ledger mentions."""
    told: dict[tuple[str, str], dict[str, str]] = {}
    for state in states:
        told.setdefault((state.channel, state.episode_id), {})[state.event] = state.severity
    return told


def _fresh(
    states: list[dict[str, Any]],
    told: dict[tuple[str, str], dict[str, str]],
    channel: Channel,
    now: datetime,
    max_age: timedelta | None,
    notify_closed: bool,
) -> tuple[list[Notice], list[Notice]]:
    """(due, too old) notices of `channel` that the ledger does not mention yet."""
    due, too_old = [], []
    for episode in states:
        done = told.get((channel.name, episode["episode_id"]), {})
        events = _events_due(episode, done, channel, notify_closed)
        if events:
            (too_old if _too_old(episode, now, max_age) else due).append(Notice(episode, events))
    return due, too_old


def _too_old(episode: Mapping[str, Any], now: datetime, max_age: timedelta | None) -> bool:
    last_news = episode["closed_at"] or episode["end_time"]
    return max_age is not None and now - last_news > max_age


def _events_due(
    episode: dict[str, Any], done: dict[str, str], channel: Channel, notify_closed: bool
) -> tuple[str, ...]:
    ended = episode["status"] == "closed"
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
