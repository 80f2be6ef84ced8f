"""The alert ledger: one row per notification and channel each time delivery was tried.

It lives in the warehouse (table `anomaly_alert_ledger`, append-only) next to the anomalies, so
it survives restarts and re-runs: a notification with a `sent` row for a channel is never sent to
it again; one without (never tried, or only `failed` rows) is due again on the next run.
"""

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import DeliveryResult
from sensor_platform.notify.ledger_schema import LEDGER_COLUMNS, LEDGER_TABLE_NAME
from sensor_platform.notify.messages import Outgoing
from sensor_platform.warehouse.store import TableSpec, Warehouse

LEDGER_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable) for name, (typ, nullable, _) in LEDGER_COLUMNS.items()]
)
LEDGER_TABLE = TableSpec(
    name=LEDGER_TABLE_NAME,
    schema=LEDGER_SCHEMA,
    time_column="recorded_at",
    description="Every notification delivery attempt per channel: the exactly-once record.",
)


class AlertLedger:
    """The ledger in a warehouse. Rows are stamped with the wall clock, and `delivered` looks
    back `horizon` from it: notices are only planned for recent episodes, well inside it."""

    def __init__(
        self,
        warehouse: Warehouse,
        *,
        horizon: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.warehouse = warehouse
        self.horizon = horizon
        self.clock = clock
        self._lock = threading.Lock()  # channels deliver from their own threads

    def history(self) -> pa.Table:
        """Every ledger row recorded within the horizon."""
        now = self.clock()
        return self.warehouse.read(LEDGER_TABLE, now - self.horizon, now + timedelta(days=1))

    def delivered(self) -> pa.Table:
        rows = self.history()
        return rows.filter(pc.equal(rows["outcome"], "sent"))

    def record(
        self, channel: Channel, message: Outgoing, result: DeliveryResult, run_id: str | None
    ) -> None:
        rows = ledger_rows(channel, message, result, recorded_at=self.clock(), run_id=run_id)
        with self._lock:
            self.warehouse.append(LEDGER_TABLE, rows)


def ledger_rows(
    channel: Channel,
    message: Outgoing,
    result: DeliveryResult,
    *,
    recorded_at: datetime,
    run_id: str | None = None,
) -> pa.Table:
    """One row per notification the message carried, all with the message's outcome."""
    rows = [
        {
            "recorded_at": recorded_at,
            "notification_id": notification_id,
            "episode_id": notice.episode["episode_id"],
            "event": event,
            "channel": channel.name,
            "outcome": "sent" if result.ok else "failed",
            "severity": notice.episode["severity"],
            "device_id": notice.episode["device_id"],
            "site_id": notice.episode["site_id"],
            "metric": notice.episode["metric"],
            "rule": notice.episode["rule"],
            "episode_start": notice.episode["start_time"],
            "attempts": result.attempts,
            "http_status": result.http_status,
            "detail": result.detail,
            "run_id": run_id,
        }
        for notice in message.notices
        for event, notification_id in zip(notice.events, notice.notification_ids, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)


def pending_count(history: pa.Table, *, since: datetime | None = None) -> int:
    """Notifications (per channel) whose deliveries failed, recorded since `since`, and that no
    later delivery settled: what a retry run would pick up."""
    rows = history.select(["recorded_at", "notification_id", "channel", "outcome"]).to_pylist()
    sent = {(r["notification_id"], r["channel"]) for r in rows if r["outcome"] == "sent"}
    failed = {
        (r["notification_id"], r["channel"])
        for r in rows
        if r["outcome"] == "failed" and (since is None or r["recorded_at"] >= since)
    }
    return len(failed - sent)
