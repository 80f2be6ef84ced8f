"""`anomaly_alerts`: notices for new, escalated and ended anomaly episodes, once per channel, and
a schedule that re-runs the alerts while a delivery is still pending, so a channel that was down
catches up on its own. Webhook URLs reach the resource as `EnvVar`s: the UI shows names only."""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.datasets import Dataset
from sensor_platform.defs.aggregates import RECOMPUTE_ON_UPSTREAM_CHANGE
from sensor_platform.defs.metadata import OWNERS, table_schema
from sensor_platform.defs.partitions import Partitions, partition_starts
from sensor_platform.defs.resources import (
    AlertsResource,
    AnomalyRulesResource,
    LakeResource,
    WarehouseResource,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from sensor_platform.lake.store import Lake
    from sensor_platform.notify.report import AlertReport

ALERTS = "anomaly_alerts"
ALERTS_JOB = "anomaly_alerts_job"
# Planning and sending take this warehouse-wide lock: two runs never plan one notice twice (and
# an `attempting` row is always its holder's), and a run killed while sending holds it no longer.
ALERT_LOCK = "anomaly_alerts"
NO_CHANNEL = (
    "no alert channel configured: set SENSOR_DISCORD_WEBHOOK_URL, SENSOR_SLACK_WEBHOOK_URL or "
    "SENSOR_ALERT_WEBHOOK_URL"
)


def alerts_asset(anomalies: Dataset, partitions: Partitions) -> dg.AssetsDefinition:
    from sensor_platform.notify.ledger_schema import LEDGER_COLUMNS, LEDGER_TABLE_NAME

    @dg.asset(
        name=ALERTS,
        partitions_def=partitions.of(anomalies),
        deps=[anomalies.name],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
        group_name="anomalies",
        kinds={"python", "sql"},
        owners=OWNERS,
        tags={"domain": "iot", "pii": "none"},
        metadata={
            "dagster/column_schema": table_schema(LEDGER_COLUMNS),
            "dagster/table_name": LEDGER_TABLE_NAME,
            "channels": "Discord, Slack, generic JSON webhook (SENSOR_*_WEBHOOK_URL)",
        },
        check_specs=[
            dg.AssetCheckSpec(
                "alerts_delivered",
                asset=ALERTS,
                description=(
                    "Every notice due reached every configured channel; ERROR while one is "
                    "pending or a channel is misconfigured, WARN when news expired unsent or no "
                    "channel is configured."
                ),
            )
        ],
    )
    def anomaly_alerts(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        warehouse: WarehouseResource,
        alerts: AlertsResource,
    ) -> dg.MaterializeResult:
        """Webhook notices (Discord, Slack, generic JSON) for anomaly episodes that opened, became
        critical or ended, routed by severity and site, several per message. At least once per
        channel: the ledger table anomaly_alert_ledger records every step of every delivery, so
        re-runs send nothing twice that was sent, a notice a channel did not take is due again,
        and a notice that may have arrived twice is counted."""
        hours = partition_starts(anomalies, context.partition_time_window)
        episodes = recent_episodes(lake, anomalies, hours, alerts.lookback_hours)
        report = announce(context, episodes, warehouse, alerts)
        return _alert_result(context, report)

    return anomaly_alerts


def announce(
    context: dg.OpExecutionContext,
    episodes: "pa.Table",
    warehouse: WarehouseResource,
    alerts: AlertsResource,
) -> "AlertReport":
    """Plan the notices due for `episodes` against the ledger and send them, holding the alert
    lock (see ALERT_LOCK)."""
    from sensor_platform.notify.ledger import AlertLedger
    from sensor_platform.notify.messages import with_plausible_ranges
    from sensor_platform.notify.planning import send_alerts

    wh, setup = warehouse.warehouse(), alerts.channel_setup()
    episodes = with_plausible_ranges(episodes, alerts.plausible_ranges())
    with wh.exclusive(ALERT_LOCK):
        return send_alerts(
            episodes,
            AlertLedger(wh),
            setup.channels,
            now=datetime.now(UTC),
            max_age=alerts.max_age,
            notify_closed=alerts.notify_closed,
            policy=alerts.policy(),
            run_id=context.run.run_id,
            config_errors=setup.errors,
        )


def announce_batch(
    context: dg.OpExecutionContext,
    store: "Lake",
    batch: "pa.Table",
    anomaly_rules: AnomalyRulesResource,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
) -> dict[str, object]:
    """The fast path: run the rules that need no history (detection/fast.py) on the devices of a
    batch that just landed, and announce their episodes at once. Never fails the landing: what
    could not be announced here is due to the hourly alert run. Returns run metadata."""
    from sensor_platform.detection.fast import batch_episodes

    if not alerts.channel_setup().configured or batch.num_rows == 0:
        return {}
    now = datetime.now(UTC)
    since = now - alerts.max_age if alerts.max_age is not None else None
    try:
        episodes = batch_episodes(store, batch, anomaly_rules.rules(), since=since)
        if episodes.num_rows == 0:
            return {"fast_alerts": "no episode"}
        report = announce(context, episodes, warehouse, alerts)
    except Exception as exc:  # the batch is landed; the hourly alert run announces the rest
        context.log.warning(f"fast alerts not sent ({type(exc).__name__}: {exc}); the hourly "
                            "alert run will announce what is due")  # fmt: skip
        return {"fast_alerts": f"not sent: {type(exc).__name__}"}
    for problem in report.problems:
        context.log.error(f"fast alerts: {problem}")
    return {
        "fast_alerts_sent": report.sent,
        "fast_alerts_pending": report.pending,
        "fast_alert_episodes": report.episodes,
    }


def recent_episodes(
    lake: LakeResource, anomalies: Dataset, hours: list[datetime], lookback_hours: int
) -> "pa.Table":
    """The episode rows of `hours` and of the `lookback_hours` before them: what is still due."""
    store = lake.lake()
    first = hours[0] - timedelta(hours=lookback_hours - 1)
    files = anomalies.files_in(first, hours[-1] + timedelta(hours=1))
    return store.read_parquet([p for p in files if store.exists(p)], anomalies.schema)


def _alert_result(context: dg.AssetExecutionContext, report: "AlertReport") -> dg.MaterializeResult:
    per_channel = {
        r.channel: {
            "url": r.masked_url,
            "due": r.notices_due,
            "sent": r.notices_sent,
            "messages": r.messages_sent,
            "requests": r.requests,
            "pending": r.pending,
            "failed": r.failed,
            "unknown": r.unknown,
            "expired": r.expired,
            "waiting": r.waiting,
            "possible_duplicates": r.duplicates,
            "deduplicated_by_endpoint": r.deduplicated,
            "failure": r.failure,
        }
        for r in report.channels
    }
    for name, error in sorted(report.config_errors.items()):
        context.log.error(f"{name}: {error}")
    for r in report.channels:
        if r.problem:
            context.log.error(f"{r.channel} ({r.masked_url}): {r.problem.split(': ', 1)[1]}")
    if report.no_channel_configured:
        description = NO_CHANNEL
        context.log.warning(NO_CHANNEL)
    else:
        description = "; ".join(report.problems) or None
    check = dg.AssetCheckResult(
        check_name="alerts_delivered",
        passed=report.passed,
        severity=(
            dg.AssetCheckSeverity.WARN if report.severity == "warn" else dg.AssetCheckSeverity.ERROR
        ),
        description=description,
        metadata={
            "pending": report.pending,
            "expired": report.expired,
            "possible_duplicates": report.duplicates,
            "failed_channels": dg.MetadataValue.json(
                sorted({f.channel for f in report.failed_channels} | set(report.config_errors))
            ),
            "config_errors": dg.MetadataValue.json(report.config_errors),
            "channels": dg.MetadataValue.json(per_channel),
            "duplicates_total": dg.MetadataValue.json(
                {
                    channel: {"possible": d.possible, "deduplicated": d.deduplicated}
                    for channel, d in report.duplicates_total.items()
                }
            ),
        },
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.sent,
            "notices_sent": report.sent,
            "notices_pending": report.pending,
            "notices_expired": report.expired,
            "episodes_considered": report.episodes,
            "channels": dg.MetadataValue.json(
                {r.channel: r.masked_url for r in report.channels}
                or {"none": "no channel configured"}
            ),
            "deliveries": dg.MetadataValue.json(per_channel),
        },
        check_results=[check],
    )


def alerts_definitions(
    anomalies: Dataset,
    partitions: Partitions,
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.Definitions:
    """The alerts asset, its job, and the schedule that retries pending deliveries."""
    job = dg.define_asset_job(
        ALERTS_JOB,
        selection=[ALERTS],
        partitions_def=partitions.hourly,
        executor_def=executor,
    )

    @dg.schedule(
        job=job,
        cron_schedule="*/5 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every 5 minutes: re-runs the current hour's alerts while a delivery is "
        "pending (failed, unknown, left attempting, or due and never tried).",
    )
    def retry_pending_alerts(
        context: dg.ScheduleEvaluationContext,
        lake: LakeResource,
        warehouse: WarehouseResource,
        alerts: AlertsResource,
    ):
        """Re-runs the alerts of the current hour while anything is pending: a delivery that
        failed or ended unknown, one a killed run left attempting, or a notice due that no run
        tried (its run crashed first), so a channel that was down catches up on its own."""
        from sensor_platform.notify.ledger import AlertLedger
        from sensor_platform.notify.planning import pending_notices

        now = context.scheduled_execution_time.astimezone(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        pending = pending_notices(
            recent_episodes(lake, anomalies, [hour], alerts.lookback_hours),
            AlertLedger(warehouse.warehouse()).history(),
            alerts.channels(),
            now=now,
            max_age=alerts.max_age,
            notify_closed=alerts.notify_closed,
        )
        total = sum(p.total for p in pending.values())
        if not total:
            return dg.SkipReason("no delivery pending")
        context.log.info(f"{total} notices pending: {pending}")
        key = anomalies.partition_key(hour)
        return dg.RunRequest(partition_key=key, run_key=f"retry_pending_alerts/{now:%Y%m%dT%H%M}")

    return dg.Definitions(
        assets=[alerts_asset(anomalies, partitions)], jobs=[job], schedules=[retry_pending_alerts]
    )
