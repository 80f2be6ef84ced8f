"""The simulated fleet as a source (ingest.Source): units are windows of simulated time.

The simulator is deterministic per window, so a run regenerates exactly its window: a retry or
re-execution lands the same batch id with the same bytes, and the platform runs with no broker.
The state holds the end of the last window asked for; it starts at the current hour.
"""

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sensor_platform.ingest import Plan, Replayed, RunLog, Unit
from sensor_platform.readings.normalize import Message
from sensor_platform.simulator.fleet import Fleet

MAX_WINDOW = timedelta(minutes=15)
SOURCE = "simulator"


def feed_batch_id(start: datetime, end: datetime) -> str:
    return f"sim-{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"


def feed_windows(start: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    """Windows of at most MAX_WINDOW from `start` up to `now` floored to the minute."""
    end = now.replace(second=0, microsecond=0)
    windows = []
    while start < end:
        windows.append((start, min(start + MAX_WINDOW, end)))
        start = windows[-1][1]
    return windows


def window_unit(start: datetime, end: datetime) -> Unit:
    return Unit(
        run_key=f"sim/{start.isoformat()}/{end.isoformat()}",
        batch_id=feed_batch_id(start, end),
        config={"start": start.isoformat(), "end": end.isoformat()},
    )


@dataclass(frozen=True)
class SimulatorSource:
    fleet: Fleet
    seed: int = 42
    anomaly_rate: float = 0.1
    late_rate: float = 0.01
    malformed_rate: float = 0.0
    name: str = SOURCE

    def plan(self, state: str | None, now: datetime, runs: RunLog) -> Plan:
        cursor = json.loads(state) if state else {}
        start = (
            datetime.fromisoformat(cursor["next"])
            if "next" in cursor
            else now.replace(minute=0, second=0, microsecond=0)
        )
        windows = feed_windows(start, now)
        if not windows:
            return Plan([], None, skip_reason="no complete minute since the last window")
        return Plan(
            [window_unit(s, e) for s, e in windows],
            json.dumps({"next": windows[-1][1].isoformat()}),
        )

    @contextmanager
    def read(self, config: dict[str, Any]):
        from sensor_platform.simulator.generate import simulate

        start, end = datetime.fromisoformat(config["start"]), datetime.fromisoformat(config["end"])
        if not start < end:
            raise ValueError(
                f"feed window is empty or reversed: {config['start']} .. {config['end']}"
            )
        messages = (
            Message(m.payload, SOURCE, m.received_at)
            for m in simulate(
                self.fleet, start.astimezone(UTC), end.astimezone(UTC), seed=self.seed,
                anomaly_rate=self.anomaly_rate, late_rate=self.late_rate,
                malformed_rate=self.malformed_rate,
            )
        )  # fmt: skip
        yield Replayed(feed_batch_id(start, end), messages)
