"""What the alert ledger says about each notification and channel: settled (`sent`, `expired`) or
pending (`failed`, `unknown`, or `attempting` left by a run that stopped mid-request), and which
notices may have arrived twice.

A notice is uncertain once any of its attempts had a request with an unknown outcome or was left
`attempting`: the endpoint may have acted on it. Sent after that, it is a possible duplicate,
unless the endpoint answered that it had processed the message's idempotency key already (then it
is known to have arrived once: deduplicated).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.notify.messages import PLATFORM_KEY_PREFIX

SETTLED = ("sent", "expired")
PENDING = ("failed", "unknown", "attempting")
# Within one attempt the rows come in this order; the last kind present is where it ended.
_ATTEMPT_ORDER = {"attempting": 0, "unknown": 1, "failed": 2, "sent": 3}


@dataclass(frozen=True)
class NoticeState:
    channel: str
    notification_id: str
    episode_id: str
    event: str
    severity: str  # the episode's severity when it was last tried
    episode: dict[str, Any]  # what the ledger knows of the episode (ids, device, site, rule...)
    state: str  # sent, expired, failed, unknown or attempting
    last_recorded_at: datetime
    message_key: str | None  # Idempotency-Key of its latest attempt (None on rows before keys)
    message_ids: frozenset[str]  # the notifications that latest attempt's message carried
    uncertain: bool  # an attempt may have reached the endpoint unseen
    replayed: bool  # sent, and the endpoint recognised the key: it had the notice already

    @property
    def pending(self) -> bool:
        return self.state in PENDING

    @property
    def possible_duplicate(self) -> bool:
        return self.state == "sent" and self.uncertain and not self.replayed

    @property
    def deduplicated(self) -> bool:
        return self.state == "sent" and self.uncertain and self.replayed


@dataclass(frozen=True)
class Duplicates:
    possible: int = 0  # sent after an unknown outcome: may have arrived twice
    deduplicated: int = 0  # sent after an unknown outcome, and the endpoint took it once


_EPISODE_FIELDS = ("episode_id", "severity", "device_id", "site_id", "metric", "rule")
_COLUMNS = [
    "recorded_at",
    "notification_id",
    "episode_id",
    "event",
    "channel",
    "outcome",
    "severity",
    "device_id",
    "site_id",
    "metric",
    "rule",
    "episode_start",
    "attempt_id",
    "message_key",
    "replayed",
]


def platform_rows(history: pa.Table) -> pa.Table:
    """The ledger rows of platform notices (messages.PlatformNotice)."""
    return history.filter(pc.starts_with(history["episode_id"], PLATFORM_KEY_PREFIX))


def anomaly_rows(history: pa.Table) -> pa.Table:
    """The ledger rows of anomaly episodes' notices: what the alert runs plan from."""
    return history.filter(pc.invert(pc.starts_with(history["episode_id"], PLATFORM_KEY_PREFIX)))


def notice_states(history: pa.Table) -> dict[tuple[str, str], NoticeState]:
    """(channel, notification id) -> its state, from ledger rows (any order)."""
    rows = sorted(
        history.select(_COLUMNS).to_pylist(),
        key=lambda r: (r["recorded_at"], _ATTEMPT_ORDER.get(r["outcome"], 4)),
    )
    # Rows written before attempt ids existed are each an attempt of their own.
    attempts: dict[tuple, list[dict]] = {}
    for index, row in enumerate(rows):
        attempt = row["attempt_id"] or f"row-{index}"
        attempts.setdefault((row["channel"], attempt), []).append(row)
    carried: dict[tuple[str, str], frozenset[str]] = {}  # the notifications of each attempt
    by_notice: dict[tuple[str, str], list[tuple[str, list[dict]]]] = {}
    for (channel, attempt), members in attempts.items():
        own: dict[str, list[dict]] = {}
        for row in members:
            own.setdefault(row["notification_id"], []).append(row)
        carried[channel, attempt] = frozenset(own)
        for nid, mine in own.items():
            by_notice.setdefault((channel, nid), []).append((attempt, mine))

    states = {}
    for (channel, nid), tries in by_notice.items():
        tries.sort(key=lambda t: t[1][0]["recorded_at"])
        every = [r for _, own in tries for r in own]
        outcomes = {r["outcome"] for r in every}
        attempt, latest = tries[-1]
        if "sent" in outcomes:
            state = "sent"
        elif "expired" in outcomes:
            state = "expired"
        else:
            state = max((r["outcome"] for r in latest), key=_ATTEMPT_ORDER.__getitem__)
        uncertain = "unknown" in outcomes or any(
            {r["outcome"] for r in own} == {"attempting"} for _, own in tries
        )
        last = every[-1]
        states[channel, nid] = NoticeState(
            channel=channel,
            notification_id=nid,
            episode_id=last["episode_id"],
            event=last["event"],
            severity=last["severity"],
            episode={k: last[k] for k in _EPISODE_FIELDS} | {"start_time": last["episode_start"]},
            state=state,
            last_recorded_at=last["recorded_at"],
            message_key=next((r["message_key"] for r in latest if r["message_key"]), None),
            message_ids=carried[channel, attempt],
            uncertain=uncertain,
            replayed=any(r["outcome"] == "sent" and r["replayed"] for r in every),
        )
    return states


def duplicate_counts(history: pa.Table) -> dict[str, Duplicates]:
    """Per channel, notices sent after an unknown outcome: possibly twice, or known once."""
    counts: dict[str, Duplicates] = {}
    for state in notice_states(history).values():
        if state.possible_duplicate or state.deduplicated:
            old = counts.get(state.channel, Duplicates())
            counts[state.channel] = Duplicates(
                old.possible + state.possible_duplicate, old.deduplicated + state.deduplicated
            )
    return counts


def pending_count(history: pa.Table, *, since: datetime | None = None) -> int:
    """Notifications (per channel) whose latest delivery attempt failed, ended unknown or was left
    attempting, tried since `since`: what a retry run would pick up from the ledger alone (see
    `planning.pending_notices` for the full count, which includes notices never attempted)."""
    return sum(
        1
        for state in notice_states(history).values()
        if state.pending and (since is None or state.last_recorded_at >= since)
    )
