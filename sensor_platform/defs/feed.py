"""The simulated feed: a sensor that asks for time windows, and a job that lands each window.

The simulator is deterministic per window, so a run regenerates exactly its window: a retry or
re-execution lands the same batch id with the same bytes, and the platform runs with no broker.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from sensor_platform.defs.landing import BATCH_ID_TAG, land_messages
from sensor_platform.defs.resources import (
    AlertsResource,
    AnomalyRulesResource,
    FleetResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)
from sensor_platform.settings import Settings

MAX_WINDOW = timedelta(minutes=15)
FEED_SOURCE = "simulator"
FEED_TAGS = {"sensor_platform/feed": "simulator"}


class FeedWindow(dg.Config):
    start: str  # ISO-8601 UTC, inclusive
    end: str  # ISO-8601 UTC, exclusive


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


@dg.op(out=dg.Out(dg.Nothing))
def land_simulated_window(
    context: dg.OpExecutionContext,
    config: FeedWindow,
    lake: LakeResource,
    fleet: FleetResource,
    pipeline: PipelineResource,
    anomaly_rules: AnomalyRulesResource,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
) -> None:
    """Generate the simulated fleet's messages received in the window and land them."""
    from sensor_platform.readings.normalize import Message
    from sensor_platform.simulator.generate import simulate

    start, end = datetime.fromisoformat(config.start), datetime.fromisoformat(config.end)
    if not start < end:
        raise dg.Failure(f"feed window is empty or reversed: {config.start} .. {config.end}")
    messages = (
        Message(m.payload, FEED_SOURCE, m.received_at)
        for m in simulate(
            fleet.fleet(),
            start,
            end,
            seed=fleet.seed,
            anomaly_rate=fleet.anomaly_rate,
            late_rate=fleet.late_rate,
        )
    )
    land_messages(
        context,
        feed_batch_id(start, end),
        messages,
        lake=lake,
        pipeline=pipeline,
        anomaly_rules=anomaly_rules,
        warehouse=warehouse,
        alerts=alerts,
    )


# A landing is one short step: run it in the run's own process (no subprocess per step).
@dg.job(tags=FEED_TAGS, executor_def=dg.in_process_executor)
def simulated_feed_job():
    land_simulated_window()


def feed_run_request(start: datetime, end: datetime) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"sim/{start.isoformat()}/{end.isoformat()}",
        run_config={
            "ops": {
                "land_simulated_window": {
                    "config": {"start": start.isoformat(), "end": end.isoformat()}
                }
            }
        },
        tags={BATCH_ID_TAG: feed_batch_id(start, end)},
    )


def feed_definitions(settings: Settings) -> dg.Definitions:
    """The simulated feed's job and sensor (running by default when SENSOR_SOURCE=simulator)."""

    @dg.sensor(
        job=simulated_feed_job,
        minimum_interval_seconds=settings.feed_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if settings.source == FEED_SOURCE
            else dg.DefaultSensorStatus.STOPPED
        ),
    )
    def simulated_feed_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Asks for one landing run per new window of simulated time (≤ 15 minutes each). The
        cursor holds the end of the last window requested; it starts at the current hour."""
        now = datetime.now(UTC)
        cursor = json.loads(context.cursor) if context.cursor else {}
        start = (
            datetime.fromisoformat(cursor["next"])
            if "next" in cursor
            else now.replace(minute=0, second=0, microsecond=0)
        )
        windows = feed_windows(start, now)
        if not windows:
            return dg.SensorResult(skip_reason="no complete minute since the last window")
        return dg.SensorResult(
            run_requests=[feed_run_request(s, e) for s, e in windows],
            cursor=json.dumps({"next": windows[-1][1].isoformat()}),
        )

    return dg.Definitions(jobs=[simulated_feed_job], sensors=[simulated_feed_sensor])
