"""What an alert run did, per channel, and whether it passes: the figures behind `alerts_delivered`.

Counts are notifications (one episode's event for one channel). The run passes when every
notification due went out and none expired; a channel that is misconfigured, or one that failed,
ended unknown or let news expire, says so in `problems`. No channel configured at all is not a
failure but deserves a warning: `no_channel_configured`.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sensor_platform.notify.delivery import ChannelDelivery
from sensor_platform.notify.states import Duplicates

if TYPE_CHECKING:  # planning imports this module
    from sensor_platform.notify.planning import ChannelPlan


@dataclass(frozen=True)
class ChannelReport:
    channel: str
    kind: str
    masked_url: str
    notices_due: int  # to send this run: pending ones again and new ones
    notices_sent: int
    messages_sent: int
    requests: int
    failure: str | None  # why the channel stopped, when it did
    retried: int = 0  # of those due, tried before (failed, unknown or left attempting)
    failed: int = 0  # refused this run: due again next run
    unknown: int = 0  # outcome unknown at the end of the run: sent again, same key, next run
    expired: int = 0  # too old: recorded as expired this run, never sent
    waiting: int = 0  # pending, of episodes this run did not read: left for a run that does
    duplicates: int = 0  # sent this run after an unknown outcome: may have arrived twice
    deduplicated: int = 0  # the same, but the endpoint recognised the key: arrived once

    @property
    def pending(self) -> int:
        """Still to send after this run: failed, unknown, and not tried after a failure."""
        return self.notices_due - self.notices_sent

    @property
    def problem(self) -> str | None:
        parts = []
        if self.pending:
            parts.append(f"{self.pending} pending ({self.failed} failed, {self.unknown} unknown)")
        if self.expired:
            parts.append(f"{self.expired} expired unsent")
        if not parts:
            return None
        reason = f": {self.failure}" if self.failure else ""
        return f"{self.channel}: {', '.join(parts)}{reason}"


@dataclass(frozen=True)
class AlertReport:
    episodes: int  # distinct episodes considered
    channels: list[ChannelReport]
    config_errors: dict[str, str] = field(default_factory=dict)  # channel -> error (no secrets)
    duplicates_total: dict[str, Duplicates] = field(default_factory=dict)  # whole ledger horizon

    @property
    def planned(self) -> dict[str, int]:
        return {r.channel: r.notices_due for r in self.channels}

    @property
    def sent(self) -> int:
        return sum(r.notices_sent for r in self.channels)

    @property
    def pending(self) -> int:
        return sum(r.pending for r in self.channels)

    @property
    def expired(self) -> int:
        return sum(r.expired for r in self.channels)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.channels)

    @property
    def failed_channels(self) -> list[ChannelReport]:
        return [r for r in self.channels if r.failure is not None]

    @property
    def no_channel_configured(self) -> bool:
        return not self.channels and not self.config_errors

    @property
    def problems(self) -> list[str]:
        """One line per channel that did not deliver everything, or is misconfigured."""
        found = [f"{name}: {error}" for name, error in sorted(self.config_errors.items())]
        return found + [p for p in (r.problem for r in self.channels) if p]

    @property
    def passed(self) -> bool:
        return not self.problems and not self.no_channel_configured

    @property
    def severity(self) -> str | None:
        """None when passed; "warn" when only news expired or no channel is configured; "error"
        when a notice is still pending or a channel is misconfigured."""
        if self.passed:
            return None
        if self.config_errors or self.pending:
            return "error"
        return "warn"


def build_report(
    plans: "list[ChannelPlan]",
    deliveries: list[ChannelDelivery],
    *,
    episodes: int,
    config_errors: dict[str, str],
    duplicates_total: dict[str, Duplicates],
) -> AlertReport:
    by_channel = {d.channel.name: d for d in deliveries}
    reports = []
    for plan in plans:
        delivery = by_channel.get(plan.channel.name)
        counts = dict.fromkeys(("sent", "failed", "unknown", "duplicates", "deduplicated"), 0)
        messages = requests = 0
        for message, result in delivery.results if delivery else []:
            ids = message.notification_ids
            if result.outcome in counts:
                counts[result.outcome] += len(ids)
            if result.ok:
                messages += 1
                doubtful = sum(1 for i in ids if result.uncertain or i in plan.uncertain)
                counts["deduplicated" if result.replayed else "duplicates"] += doubtful
        requests = delivery.requests if delivery else 0
        reports.append(
            ChannelReport(
                channel=plan.channel.name,
                kind=plan.channel.kind,
                masked_url=plan.channel.masked_url,
                notices_due=plan.due,
                notices_sent=counts["sent"],
                messages_sent=messages,
                requests=requests,
                failure=delivery.failure if delivery else None,
                retried=plan.retried.total(),
                failed=counts["failed"],
                unknown=counts["unknown"],
                expired=sum(len(notice.events) for notice, _ in plan.expired),
                waiting=plan.waiting,
                duplicates=counts["duplicates"],
                deduplicated=counts["deduplicated"],
            )
        )
    return AlertReport(episodes, reports, config_errors, duplicates_total)
