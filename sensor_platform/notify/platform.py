"""Send one platform notice (the platform's own trouble, e.g. a stuck Kafka range) to every channel.

The guarantees are the alerts' (notify/delivery.py), through the same ledger: at least once per
channel; a channel the ledger says took the notice is not sent it again, so a re-run or a second
request for the same notice sends nothing twice; one whose outcome was unknown, or that a killed
run left attempting, is sent again under the same Idempotency-Key. A platform notice goes to
every configured channel, whatever its minimum severity and sites: it is for whoever runs the
platform. Its ledger rows carry the notice's key (`platform/<kind>/<subject>`) as episode id and
`platform` as severity, so anomaly alert runs leave them alone (states.anomaly_rows).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import RetryPolicy, dispatch
from sensor_platform.notify.ledger import AlertLedger
from sensor_platform.notify.messages import PlatformNotice, platform_message
from sensor_platform.notify.states import SETTLED, notice_states, platform_rows


@dataclass(frozen=True)
class PlatformDelivery:
    """What one run did with one notice, per channel name: `sent` now, `already` (the ledger says
    it was sent or settled before), or not delivered, with why (never the webhook URL)."""

    sent: list[str]
    already: list[str]
    undelivered: dict[str, str]

    @property
    def delivered(self) -> bool:
        return not self.undelivered


def send_platform_notice(
    notice: PlatformNotice,
    ledger: AlertLedger,
    channels: list[Channel],
    *,
    policy: RetryPolicy | None = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PlatformDelivery:
    """Send `notice` to each channel that has not taken it yet, recording every step."""
    states = notice_states(platform_rows(ledger.history()))
    [notification] = notice.notice.notification_ids
    settled = {
        c.name
        for c in channels
        if (s := states.get((c.name, notification))) is not None and s.state in SETTLED
    }
    due = [c for c in channels if c.name not in settled]
    deliveries = dispatch(
        {channel: [platform_message(channel.kind, notice)] for channel in due},
        lambda channel, message, attempt, result: ledger.record(
            channel, message, attempt, result, run_id
        ),
        policy=policy,
        sleep=sleep,
    )
    sent, undelivered = [], {}
    for delivery in deliveries:
        name = delivery.channel.name
        results = [result for _, result in delivery.results]
        if results and results[-1].ok:
            sent.append(name)
        else:
            detail = results[-1].detail if results else delivery.failure
            outcome = results[-1].outcome if results else "not tried"
            undelivered[name] = f"{outcome}: {detail}"
    return PlatformDelivery(sorted(sent), sorted(settled), undelivered)
