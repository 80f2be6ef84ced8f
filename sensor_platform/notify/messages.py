"""Alert notices and the messages that carry them, within each service's limits; and platform
notices (the platform's own trouble, e.g. a stuck Kafka range), one per message.

Several notices share one message where the service allows it, so a storm of anomalies is a few
requests, not hundreds: Discord takes up to 10 embeds and 6,000 characters per message (content at
most 2,000, counted in the 6,000 too, to be safe), Slack up to 50 blocks, the generic webhook a
JSON list. Device ids, sites and metrics are data: they are truncated to each field's limit and can
never ping anyone (Discord `allowed_mentions` is empty; Slack control characters are escaped).
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

EVENTS = ("opened", "escalated", "closed")
DISCORD_MAX_EMBEDS = 10
DISCORD_MAX_TOTAL = 6000
DISCORD_MAX_CONTENT = 2000
SLACK_MAX_NOTICES = 20  # two blocks each stay far below Slack's 50 blocks
WEBHOOK_MAX_NOTICES = 50

_COLORS = {"critical": 0xE74C3C, "warning": 0xF39C12, "closed": 0x2ECC71, "platform": 0x3498DB}
_ICONS = {"critical": "🔴", "warning": "🟠", "closed": "✅", "platform": "🛠"}
PLATFORM = (
    "platform"  # a platform notice's severity: it goes to every channel, whatever its routing
)
PLATFORM_KEY_PREFIX = "platform/"  # its ledger key: platform/<kind>/<subject>


def notification_id(episode_id: str, event: str) -> str:
    return hashlib.sha256(f"{episode_id}\x1f{event}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Notice:
    """One message item about one episode. `events` is ("opened", "closed") when an episode is
    first announced after it already ended: one notice then settles both."""

    episode: Mapping[str, Any]  # the episode's latest row (EPISODE_SCHEMA)
    events: tuple[str, ...]

    @property
    def headline(self) -> str:
        return self.events[0]

    @property
    def notification_ids(self) -> tuple[str, ...]:
        return tuple(notification_id(self.episode["episode_id"], e) for e in self.events)


@dataclass(frozen=True)
class Outgoing:
    """One request's payload and the notices it carries. Its idempotency key follows from the
    notices; a message sent again after an unknown outcome keeps the key it went out with."""

    payload: dict[str, Any]
    notices: tuple[Notice, ...]
    key: str | None = None

    @property
    def notification_ids(self) -> tuple[str, ...]:
        return tuple(i for n in self.notices for i in n.notification_ids)

    @property
    def idempotency_key(self) -> str:
        if self.key is not None:
            return self.key
        return hashlib.sha256("\n".join(self.notification_ids).encode()).hexdigest()[:32]


def build_messages(kind: str, notices: list[Notice]) -> list[Outgoing]:
    if kind == "discord":
        return discord_messages(notices)
    if kind == "slack":
        return slack_messages(notices)
    if kind == "webhook":
        return webhook_messages(notices)
    raise ValueError(f"unknown channel kind {kind!r}")


# -- text -------------------------------------------------------------------------------------
def describe(episode: Mapping[str, Any]) -> str:
    """What happened, in one line: 'temperature reached 63.2 °C (≥ 60, critical)', and whether
    the peak lies beyond what the sensor can measure (see with_plausible_ranges)."""
    return _what(episode) + _implausible(episode)


def with_plausible_ranges(
    episodes: "pa.Table", ranges: Mapping[str, tuple[float, float]]
) -> "pa.Table":
    """`episodes` with each metric's physically plausible range (the quality rules' ranges) as
    `plausible_min` / `plausible_max`, for the notices to say when a peak lies beyond it: the
    reading is then a sensor fault, or a sensor a fire has damaged, and worth a notice either
    way (the aggregates leave such readings out; alarms never do)."""
    import pyarrow as pa

    metrics = episodes["metric"].to_pylist()
    lows = [ranges[m][0] if m in ranges else None for m in metrics]
    highs = [ranges[m][1] if m in ranges else None for m in metrics]
    return episodes.append_column("plausible_min", pa.array(lows, pa.float64())).append_column(
        "plausible_max", pa.array(highs, pa.float64())
    )


def _implausible(episode: Mapping[str, Any]) -> str:
    low, high, peak = (episode.get(k) for k in ("plausible_min", "plausible_max", "peak_value"))
    if low is None or high is None or peak is None or episode["kind"] == "rate":
        return ""
    if low <= peak <= high:
        return ""
    unit = f" {episode['unit']}" if episode.get("unit") else ""
    return (
        f"; beyond what the sensor can measure ({_num(low)} to {_num(high)}{unit}): "
        "a faulty or damaged sensor"
    )


def _what(episode: Mapping[str, Any]) -> str:
    kind, metric = episode["kind"], episode["metric"] or "device"
    peak, limit, unit = episode["peak_value"], episode["threshold"], episode["unit"] or ""
    unit = f" {unit}" if unit else ""
    count = episode["reading_count"]
    if kind == "threshold":
        sign = "≥" if peak >= limit else "≤"
        return f"{metric} reached {_num(peak)}{unit} ({sign} {_num(limit)}, {episode['severity']})"
    if kind == "spike":
        return f"{metric} spiked to {_num(peak)}{unit} (robust score {episode['peak_score']:.1f})"
    if kind == "stuck":
        span = _seconds_between(episode["start_time"], episode["end_time"])
        return f"{metric} stuck at {_num(peak)}{unit} for {_duration(span)} ({count} readings)"
    if kind == "silent":
        return f"no reading for {_duration(peak)} (limit {_duration(limit)})"
    if kind == "status":
        return f"device reports error code {_num(peak)} ({count} readings)"
    if kind == "rate":
        trend = "rising" if peak > 0 else "falling"
        return f"{metric} {trend} {_num(abs(peak))}{unit}/min (limit {_num(abs(limit))})"
    return f"{metric}: {_num(peak)}{unit}"


def timeline(episode: Mapping[str, Any]) -> str:
    start = _clock(episode["start_time"])
    if episode["status"] == "open":
        return f"since {start} (ongoing)"
    if episode["closed_at"] is None:
        return f"{start} → {_clock(episode['end_time'])}, no data since"
    return (
        f"{start} → {_clock(episode['end_time'])}, back to normal at {_clock(episode['closed_at'])}"
    )


def summary(notices: list[Notice] | tuple[Notice, ...]) -> str:
    opened = [n for n in notices if n.headline == "opened"]
    critical = sum(1 for n in opened if n.episode["severity"] == "critical")
    parts = []
    if opened:
        parts.append(f"{len(opened)} new anomal{'y' if len(opened) == 1 else 'ies'}")
        if critical:
            parts[-1] += f" ({critical} critical)"
    escalated = sum(1 for n in notices if n.headline == "escalated")
    if escalated:
        parts.append(f"{escalated} escalated to critical")
    closed = sum(1 for n in notices if n.headline == "closed")
    if closed:
        parts.append(f"{closed} ended")
    return "Sensor Platform: " + ", ".join(parts)


# -- Discord ----------------------------------------------------------------------------------
def discord_messages(notices: list[Notice]) -> list[Outgoing]:
    messages, batch, size = [], [], 0
    budget = DISCORD_MAX_TOTAL - 200  # room for the content line
    for notice in notices:
        embed = _discord_embed(notice)
        embed_size = _embed_size(embed)
        if batch and (len(batch) == DISCORD_MAX_EMBEDS or size + embed_size > budget):
            messages.append(_discord_message(batch))
            batch, size = [], 0
        batch.append((notice, embed))
        size += embed_size
    if batch:
        messages.append(_discord_message(batch))
    return messages


def _discord_message(batch: list[tuple[Notice, dict]]) -> Outgoing:
    notices = tuple(n for n, _ in batch)
    payload = {
        "content": _cut(summary(notices), 180),
        "embeds": [e for _, e in batch],
        "allowed_mentions": {"parse": []},
    }
    return Outgoing(payload, notices)


def _discord_embed(notice: Notice) -> dict[str, Any]:
    ep = notice.episode
    tone = "closed" if notice.headline == "closed" else ep["severity"]
    label = {"opened": ep["severity"].upper(), "escalated": "ESCALATED", "closed": "ENDED"}
    title = f"{_ICONS[tone]} {label[notice.headline]} · {ep['rule']} · {ep['device_id']}"
    fields = [
        ("Site", ep["site_id"] or "—"),
        ("Metric", ep["metric"] or "whole device"),
        ("Readings", str(ep["reading_count"])),
    ]
    return {
        "title": _cut(title, 256),
        "description": _cut(f"{describe(ep)}\n{timeline(ep)}", 1024),
        "color": _COLORS[tone],
        "fields": [
            {"name": name, "value": _cut(value, 256), "inline": True} for name, value in fields
        ],
        "footer": {"text": f"episode {ep['episode_id']} · {'+'.join(notice.events)}"},
        "timestamp": _iso(ep["start_time"]),
    }


def _embed_size(embed: dict[str, Any]) -> int:
    fields = sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    return len(embed["title"]) + len(embed["description"]) + fields + len(embed["footer"]["text"])


def discord_payload_size(payload: dict[str, Any]) -> int:
    """Characters Discord counts against its 6,000 limit (plus the content, to be safe)."""
    return len(payload.get("content", "")) + sum(_embed_size(e) for e in payload["embeds"])


# -- Slack and the generic webhook -------------------------------------------------------------
def slack_messages(notices: list[Notice]) -> list[Outgoing]:
    messages = []
    for i in range(0, len(notices), SLACK_MAX_NOTICES):
        batch = tuple(notices[i : i + SLACK_MAX_NOTICES])
        blocks: list[dict[str, Any]] = [_slack_section(f"*{_slack(summary(batch))}*")]
        for notice in batch:
            ep = notice.episode
            tone = "closed" if notice.headline == "closed" else ep["severity"]
            head = f"{_ICONS[tone]} *{notice.headline.upper()}* · `{_slack(ep['rule'])}` · "
            head += f"*{_slack(ep['device_id'])}* @ {_slack(ep['site_id'] or '—')}"
            tail = f"{timeline(ep)} · episode `{ep['episode_id']}` · {'+'.join(notice.events)}"
            blocks.append(_slack_section(f"{head}\n{_slack(describe(ep))}\n{tail}"))
        messages.append(Outgoing({"text": summary(batch), "blocks": blocks}, batch))
    return messages


def _slack_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, 3000)}}


def _slack(text: str) -> str:
    # Slack's three control characters; escaping them also defuses <!channel> in a device id.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_messages(notices: list[Notice]) -> list[Outgoing]:
    messages = []
    for i in range(0, len(notices), WEBHOOK_MAX_NOTICES):
        batch = tuple(notices[i : i + WEBHOOK_MAX_NOTICES])
        items = [
            {
                "events": list(n.events),
                "notification_ids": list(n.notification_ids),
                "summary": describe(n.episode),
                "timeline": timeline(n.episode),
                "episode": {k: _json_value(v) for k, v in n.episode.items()},
            }
            for n in batch
        ]
        payload = {"source": "sensor-platform", "summary": summary(batch), "notices": items}
        messages.append(Outgoing(payload, batch))
    return messages


# -- platform notices ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlatformNotice:
    """News about the platform itself, not about a device: sent once to every channel, recorded
    in the alert ledger under `key` (its episode id there), with severity `platform`."""

    kind: str  # what kind of trouble: kafka-stuck
    subject: str  # what it is about, e.g. the stuck range `topic/partition/start-end`
    title: str
    text: str
    since: datetime
    facts: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{PLATFORM_KEY_PREFIX}{self.kind}/{self.subject}"

    @property
    def notice(self) -> Notice:
        """The notice as the ledger records it: one `opened` notification under `key`."""
        episode = {"episode_id": self.key, "severity": PLATFORM, "device_id": self.subject,
                   "site_id": None, "metric": None, "rule": self.kind, "start_time": self.since}  # fmt: skip
        return Notice(episode, ("opened",))

    def config(self) -> dict[str, Any]:
        """As JSON values (run config)."""
        return {"kind": self.kind, "subject": self.subject, "title": self.title,
                "text": self.text, "since": _iso(self.since), "facts": dict(self.facts)}  # fmt: skip

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PlatformNotice":
        since = datetime.fromisoformat(config["since"].replace("Z", "+00:00"))
        facts = tuple((str(k), str(v)) for k, v in config.get("facts", {}).items())
        return cls(config["kind"], config["subject"], config["title"], config["text"], since, facts)


def platform_message(kind: str, notice: PlatformNotice) -> Outgoing:
    """The one message that carries a platform notice to a channel of `kind`."""
    headline = f"Sensor Platform: {notice.title}"
    if kind == "discord":
        embed = {
            "title": _cut(f"{_ICONS[PLATFORM]} PLATFORM · {notice.title}", 256),
            "description": _cut(notice.text, 4000),
            "color": _COLORS[PLATFORM],
            "fields": [
                {"name": _cut(k, 256), "value": _cut(v, 1024), "inline": True}
                for k, v in notice.facts[:25]
            ],  # fmt: skip
            "footer": {"text": _cut(notice.key, 2048)},
            "timestamp": _iso(notice.since),
        }
        payload = {"content": _cut(headline, 180), "embeds": [embed],
                   "allowed_mentions": {"parse": []}}  # fmt: skip
    elif kind == "slack":
        facts = "\n".join(f"*{_slack(k)}*: {_slack(v)}" for k, v in notice.facts)
        head = f"{_ICONS[PLATFORM]} *PLATFORM* · *{_slack(notice.title)}*\n{_slack(notice.text)}"
        blocks = [_slack_section(head)] + ([_slack_section(facts)] if facts else [])
        blocks.append(_slack_section(f"`{_slack(notice.key)}`"))
        payload = {"text": headline, "blocks": blocks}
    elif kind == "webhook":
        payload = {"source": "sensor-platform", "severity": PLATFORM, "summary": headline,
                   "platform_notice": {"key": notice.key, **notice.config(),
                                       "notification_ids": list(notice.notice.notification_ids)}}  # fmt: skip
    else:
        raise ValueError(f"unknown channel kind {kind!r}")
    return Outgoing(payload, (notice.notice,))


# -- small formatting ---------------------------------------------------------------------------
def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: float) -> str:
    return f"{value:.6g}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _seconds_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def _clock(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    return _iso(value) if isinstance(value, datetime) else value
