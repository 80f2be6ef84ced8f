"""The alert ledger: append-only rows, one per notification and channel for each step of a
delivery (`attempting`, `unknown`, `sent`, `failed`) and for notices too old to send (`expired`).

It lives in the warehouse (table `anomaly_alert_ledger`) next to the anomalies, so it survives
restarts and re-runs; `notify.states` reads it back into what each notice's state is. Rows of one
message's attempt share an `attempt_id`, so an `attempting` row without a later row of its attempt
is a request a killed worker may or may not have made. Columns added since the first version are
nullable: the warehouse adds them to an existing table, and older rows read them as NULL.
"""

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import DeliveryResult
from sensor_platform.notify.ledger_schema import LEDGER_COLUMNS, LEDGER_TABLE_NAME, OUTCOMES
from sensor_platform.notify.messages import Notice, Outgoing
from sensor_platform.notify.states import pending_count
from sensor_platform.warehouse.store import TableSpec, Warehouse

__all__ = [
    "LEDGER_COLUMNS",
    "LEDGER_TABLE",
    "OUTCOMES",
    "AlertLedger",
    "ledger_rows",
    "pending_count",
]

LEDGER_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable) for name, (typ, nullable, _) in LEDGER_COLUMNS.items()]
)
LEDGER_TABLE = TableSpec(
    name=LEDGER_TABLE_NAME,
    schema=LEDGER_SCHEMA,
    time_column="recorded_at",
    description="Every step of every notification's delivery per channel (at least once).",
)


class AlertLedger:
    """The ledger in a warehouse. Rows are stamped with the wall clock, and `history` looks back
    `horizon` from it: notices are only planned for recent episodes, well inside it."""

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
        self,
        channel: Channel,
        message: Outgoing,
        attempt_id: str,
        result: DeliveryResult,
        run_id: str | None = None,
    ) -> None:
        """One step of a message's attempt, written before the caller goes on."""
        rows = ledger_rows(
            channel,
            message.notices,
            outcome=result.outcome,
            recorded_at=self.clock(),
            attempts=result.attempts,
            http_status=result.http_status,
            detail=result.detail,
            run_id=run_id,
            attempt_id=attempt_id,
            message_key=message.idempotency_key,
            replayed=result.replayed if result.outcome == "sent" else None,
        )
        self._append(rows)

    def record_expired(
        self, channel: Channel, notices: list[Notice], detail: str, run_id: str | None = None
    ) -> None:
        """Notices that will not be sent: too old, recorded once so they are never due again."""
        if notices:
            self._append(
                ledger_rows(
                    channel,
                    notices,
                    outcome="expired",
                    recorded_at=self.clock(),
                    detail=detail,
                    run_id=run_id,
                )
            )

    def _append(self, rows: pa.Table) -> None:
        with self._lock:
            self.warehouse.append(LEDGER_TABLE, rows)


def ledger_rows(
    channel: Channel,
    notices: Iterable[Notice],
    *,
    outcome: str,
    recorded_at: datetime,
    attempts: int = 0,
    http_status: int | None = None,
    detail: str | None = None,
    run_id: str | None = None,
    attempt_id: str | None = None,
    message_key: str | None = None,
    replayed: bool | None = None,
) -> pa.Table:
    """One row per notification the notices carry, all with the same outcome."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    rows = [
        {
            "recorded_at": recorded_at,
            "notification_id": notification_id,
            "episode_id": notice.episode["episode_id"],
            "event": event,
            "channel": channel.name,
            "outcome": outcome,
            "severity": notice.episode["severity"],
            "device_id": notice.episode["device_id"],
            "site_id": notice.episode["site_id"],
            "metric": notice.episode["metric"],
            "rule": notice.episode["rule"],
            "episode_start": notice.episode["start_time"],
            "attempts": attempts,
            "http_status": http_status,
            "detail": detail,
            "run_id": run_id,
            "attempt_id": attempt_id,
            "message_key": message_key,
            "replayed": replayed,
        }
        for notice in notices
        for event, notification_id in zip(notice.events, notice.notification_ids, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
