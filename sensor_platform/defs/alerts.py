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
from sensor_platform.defs.resources import AlertsResource, LakeResource, WarehouseResource

if TYPE_CHECKING:
    from sensor_platform.notify.channels import Channel
    from sensor_platform.notify.planning import AlertReport

ALERTS = "anomaly_alerts"
ALERTS_JOB = "anomaly_alerts_job"


def alerts_asset(anomalies: Dataset, partitions: Partitions) -> dg.AssetsDefinition:
    from sensor_platform.notify.ledger_schema import LEDGER_COLUMNS, LEDGER_TABLE_NAME

    @dg.asset(
        name=ALERTS,
        partitions_def=partitions.of(anomalies),
        deps=[anomalies.name],
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
        pool="anomaly_alerts",  # one alert run at a time: two could both find a notice due
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
                description="Every notice due was delivered to every configured channel.",
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
        critical or ended, routed by severity and site, several per message. Exactly once per
        channel: the ledger table anomaly_alert_ledger records each delivery, so re-runs send
        nothing twice, and a notice a channel did not take is due again on the next run."""
        from sensor_platform.notify.ledger import AlertLedger
        from sensor_platform.notify.planning import send_alerts

        store, channels = lake.lake(), alerts.channels()
        hours = partition_starts(anomalies, context.partition_time_window)
        first = hours[0] - timedelta(hours=alerts.lookback_hours - 1)
        recent = anomalies.files_in(first, hours[-1] + timedelta(hours=1))
        episodes = store.read_parquet([p for p in recent if store.exists(p)], anomalies.schema)
        if not channels:
            context.log.warning(
                "no alert channel configured: set SENSOR_DISCORD_WEBHOOK_URL, "
                "SENSOR_SLACK_WEBHOOK_URL or SENSOR_ALERT_WEBHOOK_URL"
            )
        report = send_alerts(
            episodes,
            AlertLedger(warehouse.warehouse()),
            channels,
            now=datetime.now(UTC),
            max_age=alerts.max_age,
            notify_closed=alerts.notify_closed,
            policy=alerts.policy(),
            run_id=context.run.run_id,
        )
        return _alert_result(context, report, channels)

    return anomaly_alerts


def _alert_result(
    context: dg.AssetExecutionContext, report: "AlertReport", channels: list["Channel"]
) -> dg.MaterializeResult:
    per_channel = {
        r.channel: {
            "url": r.masked_url,
            "due": r.notices_due,
            "sent": r.notices_sent,
            "messages": r.messages_sent,
            "requests": r.requests,
            "pending": r.pending,
            "failure": r.failure,
        }
        for r in report.channels
    }
    failures = report.failed_channels
    for failed in failures:
        context.log.error(
            f"{failed.channel} ({failed.masked_url}): {failed.pending} notices pending: "
            f"{failed.failure}"
        )
    check = dg.AssetCheckResult(
        check_name="alerts_delivered",
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "; ".join(f"{f.channel}: {f.failure} ({f.pending} pending)" for f in failures) or None
        ),
        metadata={
            "pending": report.pending,
            "failed_channels": dg.MetadataValue.json([f.channel for f in failures]),
            "channels": dg.MetadataValue.json(per_channel),
        },
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.sent,
            "notices_sent": report.sent,
            "notices_pending": report.pending,
            "episodes_considered": report.episodes,
            "channels": dg.MetadataValue.json(
                {c.name: c.masked_url for c in channels} or {"none": "no channel configured"}
            ),
            "deliveries": dg.MetadataValue.json(per_channel),
        },
        check_results=[check],
    )


def alerts_definitions(anomalies: Dataset, partitions: Partitions) -> dg.Definitions:
    """The alerts asset, its job, and the schedule that retries pending deliveries."""
    job = dg.define_asset_job(ALERTS_JOB, selection=[ALERTS], partitions_def=partitions.hourly)

    @dg.schedule(
        job=job,
        cron_schedule="*/5 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def retry_pending_alerts(
        context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource, alerts: AlertsResource
    ):
        """Re-runs the alerts of the current hour while the ledger shows a failed delivery that
        no later delivery settled, so a channel that was down catches up without new anomalies."""
        from sensor_platform.notify.ledger import AlertLedger, pending_count

        now = context.scheduled_execution_time.astimezone(UTC)
        since = now - alerts.max_age if alerts.max_age is not None else None
        pending = pending_count(AlertLedger(warehouse.warehouse()).history(), since=since)
        if not pending:
            return dg.SkipReason("no delivery pending")
        key = anomalies.partition_key(now.replace(minute=0, second=0, microsecond=0))
        return dg.RunRequest(partition_key=key, run_key=f"retry_pending_alerts/{now:%Y%m%dT%H%M}")

    return dg.Definitions(
        assets=[alerts_asset(anomalies, partitions)], jobs=[job], schedules=[retry_pending_alerts]
    )
