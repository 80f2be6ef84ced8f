"""Anomaly episodes and webhook alerts: `sensor_anomalies` (hourly, from the raw readings) and
`anomaly_alerts` (notices for new, escalated and ended episodes, exactly once per channel).

Both run as soon as raw data lands (the automation condition below, or inside the raw run), and a
schedule re-runs the alerts while a delivery is still pending, so a channel that was down catches
up on its own. Webhook URLs reach the resource as `EnvVar`s: the UI shows the variable names only.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds

from sensor_platform import settings
from sensor_platform.defs.aggregates import RECOMPUTE_ON_UPSTREAM_CHANGE
from sensor_platform.defs.metadata import table_schema
from sensor_platform.defs.partitions import HOURLY, hour_key, hours_in
from sensor_platform.defs.raw import raw_sensor_readings
from sensor_platform.defs.resources import (
    FleetResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)
from sensor_platform.detection.episodes import detect_episodes
from sensor_platform.detection.rules import SEVERITIES, RuleSet, load_rules
from sensor_platform.detection.schema import (
    ANOMALIES,
    EPISODE_COLUMNS,
    EPISODE_SCHEMA,
    anomalies_partition_file,
)
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import RetryPolicy
from sensor_platform.notify.ledger import LEDGER_COLUMNS, LEDGER_TABLE, AlertLedger, pending_count
from sensor_platform.notify.planning import AlertReport, send_alerts
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.warehouse.store import TableSpec

ANOMALY_TABLE = TableSpec(
    name="sensor_anomalies",
    schema=EPISODE_SCHEMA,
    time_column="partition_hour",
    description="Anomaly episodes per hour (one row per episode and hour it was active in).",
)
# Each channel's settings: <PREFIX>_URL (a secret), <PREFIX>_MIN_SEVERITY, <PREFIX>_SITES.
CHANNEL_ENV = {
    "discord": "SENSOR_DISCORD_WEBHOOK",
    "slack": "SENSOR_SLACK_WEBHOOK",
    "webhook": "SENSOR_ALERT_WEBHOOK",
}


class AnomalyRulesResource(dg.ConfigurableResource):
    """The detection rules file; unset: the packaged sensor_platform/detection/rules.json."""

    rules_file: str | None = None

    def rules(self) -> RuleSet:
        return load_rules(self.rules_file)


class AlertsResource(dg.ConfigurableResource):
    """Alert channels (webhook URLs are secrets: give them as EnvVar), routing by minimum
    severity and sites (empty: all sites), delivery retries, and which news is still worth
    sending (`max_alert_age_hours`; None: any age)."""

    discord_webhook_url: str | None = None
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    discord_min_severity: str = "warning"
    slack_min_severity: str = "warning"
    webhook_min_severity: str = "warning"
    discord_sites: list[str] = []
    slack_sites: list[str] = []
    webhook_sites: list[str] = []
    notify_closed: bool = True
    max_alert_age_hours: float | None = 24.0
    lookback_hours: int = 24  # hours of episodes read each run to find what is still due
    attempts: int = 4
    timeout_seconds: float = 5.0
    max_retry_after_seconds: float = 60.0

    def channels(self) -> list[Channel]:
        configured = [
            ("discord", self.discord_webhook_url, self.discord_min_severity, self.discord_sites),
            ("slack", self.slack_webhook_url, self.slack_min_severity, self.slack_sites),
            ("webhook", self.webhook_url, self.webhook_min_severity, self.webhook_sites),
        ]
        return [
            Channel(kind, kind, url, min_severity, frozenset(sites))
            for kind, url, min_severity, sites in configured
            if url
        ]

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.attempts,
            timeout_s=self.timeout_seconds,
            max_retry_after_s=self.max_retry_after_seconds,
        )

    @property
    def max_age(self) -> timedelta | None:
        return (
            None if self.max_alert_age_hours is None else timedelta(hours=self.max_alert_age_hours)
        )


def build_alert_resources() -> dict[str, dg.ConfigurableResource]:
    """The two resources, from SENSOR_* variables; the lead adds them to build_resources()."""
    config: dict[str, object] = {}
    for kind, prefix in CHANNEL_ENV.items():
        field = "webhook_url" if kind == "webhook" else f"{kind}_webhook_url"
        if settings.is_set(f"{prefix}_URL"):
            config[field] = dg.EnvVar(f"{prefix}_URL")
        severity = settings.optional(f"{prefix}_MIN_SEVERITY")
        if severity is not None and severity not in SEVERITIES:
            raise ValueError(f"{prefix}_MIN_SEVERITY must be one of {sorted(SEVERITIES)}")
        config[f"{kind}_min_severity"] = severity or "warning"
        sites = (settings.optional(f"{prefix}_SITES") or "").split(",")
        config[f"{kind}_sites"] = [s.strip() for s in sites if s.strip()]
    max_age = settings.optional("SENSOR_ALERT_MAX_AGE_HOURS")
    if max_age is not None:
        try:
            config["max_alert_age_hours"] = None if max_age.lower() == "none" else float(max_age)
        except ValueError as exc:
            raise ValueError(
                f"SENSOR_ALERT_MAX_AGE_HOURS must be a number of hours or 'none', got {max_age!r}"
            ) from exc
    return {
        "anomaly_rules": AnomalyRulesResource(
            rules_file=settings.optional("SENSOR_ANOMALY_RULES_FILE")
        ),
        "alerts": AlertsResource(**config),
    }


def _hour_files(
    store: Lake, hours: list[datetime], path_of: Callable[[datetime], str]
) -> list[str]:
    return [p for p in (path_of(h) for h in hours) if store.exists(p)]


def _readings(store: Lake, hour: datetime, lookback: timedelta) -> pa.Table | ds.Dataset:
    """The raw partitions holding the hour and its look-back, scanned lazily by DuckDB."""
    first = (hour - lookback).replace(minute=0, second=0, microsecond=0)
    count = (hour - first) // timedelta(hours=1) + 1
    hours = [first + timedelta(hours=i) for i in range(count)]
    files = _hour_files(store, hours, layout.raw_partition_file)
    return store.dataset(files, READING_SCHEMA) if files else READING_SCHEMA.empty_table()


def _previous(store: Lake, hour: datetime) -> pa.Table | None:
    path = anomalies_partition_file(hour - timedelta(hours=1))
    return store.read_parquet([path], EPISODE_SCHEMA) if store.exists(path) else None


@dg.asset(
    partitions_def=HOURLY,
    deps=[raw_sensor_readings],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
    pool="warehouse",
    group_name="anomalies",
    kinds={"parquet", "duckdb", "sql"},
    owners=["team:data-platform"],
    tags={"domain": "iot", "tier": "silver", "pii": "none"},
    metadata={
        "dagster/column_schema": table_schema(EPISODE_COLUMNS),
        "dagster/table_name": ANOMALY_TABLE.name,
        "partition_path": f"{ANOMALIES}/date=YYYY-MM-DD/hour=HH/{layout.PART_FILE}",
    },
)
def sensor_anomalies(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    warehouse: WarehouseResource,
    fleet: FleetResource,
    pipeline: PipelineResource,
    anomaly_rules: AnomalyRulesResource,
) -> dg.MaterializeResult:
    """Anomaly episodes of the hour, one row per device, metric and rule from start to end, with
    severity, peak and reading count: thresholds, device faults, spikes (median/MAD against the
    device's own history), stuck sensors, silent devices and fast changes, under the conditions of
    detection/rules.json. An episode crossing hours keeps its id; each hour's row holds its state
    at the end of that hour."""
    started, store, rules = time.monotonic(), lake.lake(), anomaly_rules.rules()
    cadences, wh = fleet.fleet().cadences(), warehouse.warehouse()
    previous, rows, files, tally = None, 0, [], {}
    for hour in hours_in(context.partition_time_window):
        end = hour + timedelta(hours=1)
        episodes = detect_episodes(
            _readings(store, hour, rules.lookback),
            rules,
            window_start=hour,
            window_end=end,
            previous=previous if previous is not None else _previous(store, hour),
            cadences=cadences,
            memory_limit=pipeline.duckdb_memory_limit,
            threads=pipeline.duckdb_threads,
        )
        files.append(store.write_parquet(anomalies_partition_file(hour), episodes))
        rows += wh.replace_window(ANOMALY_TABLE, episodes, hour, end)
        for rule, severity, status in zip(
            *(episodes[c].to_pylist() for c in ("rule", "severity", "status")), strict=True
        ):
            key = f"{rule}/{severity}/{status}"
            tally[key] = tally.get(key, 0) + 1
        previous = episodes
    context.log.info(f"{rows} episode rows published to {wh.display_url}: {tally}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "dagster/uri": store.uri(ANOMALIES),
            "warehouse": wh.display_url,
            "episodes_by_rule": dg.MetadataValue.json(dict(sorted(tally.items()))),
            "open_episodes": sum(n for k, n in tally.items() if k.endswith("/open")),
            "bytes": sum(f.size for f in files),
            "processing_seconds": round(time.monotonic() - started, 3),
        }
    )


@dg.asset(
    partitions_def=HOURLY,
    deps=[sensor_anomalies],
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=RECOMPUTE_ON_UPSTREAM_CHANGE,
    pool="anomaly_alerts",  # one alert run at a time: two could both find a notice due
    group_name="anomalies",
    kinds={"python", "sql"},
    owners=["team:data-platform"],
    tags={"domain": "iot", "pii": "none"},
    metadata={
        "dagster/column_schema": table_schema(LEDGER_COLUMNS),
        "dagster/table_name": LEDGER_TABLE.name,
        "channels": "Discord, Slack, generic JSON webhook (SENSOR_*_WEBHOOK_URL)",
    },
    check_specs=[
        dg.AssetCheckSpec(
            "alerts_delivered",
            asset="anomaly_alerts",
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
    channel: the ledger table anomaly_alert_ledger records each delivery, so re-runs send nothing
    twice, and a notice a channel did not take is due again on the next run."""
    store, channels = lake.lake(), alerts.channels()
    hours = hours_in(context.partition_time_window)
    first = hours[0] - timedelta(hours=alerts.lookback_hours - 1)
    recent = [first + timedelta(hours=i) for i in range(alerts.lookback_hours - 1 + len(hours))]
    episodes = store.read_parquet(
        _hour_files(store, recent, anomalies_partition_file), EPISODE_SCHEMA
    )
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


def _alert_result(
    context: dg.AssetExecutionContext, report: AlertReport, channels: list[Channel]
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


anomaly_alerts_job = dg.define_asset_job(
    "anomaly_alerts_job", selection=[anomaly_alerts], partitions_def=HOURLY
)


@dg.schedule(
    job=anomaly_alerts_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def retry_pending_alerts(
    context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource, alerts: AlertsResource
):
    """Re-runs the alerts of the current hour while the ledger shows a failed delivery that no
    later delivery settled, so a channel that was down catches up without new anomalies."""
    now = context.scheduled_execution_time.astimezone(UTC)
    since = now - alerts.max_age if alerts.max_age is not None else None
    pending = pending_count(AlertLedger(warehouse.warehouse()).history(), since=since)
    if not pending:
        return dg.SkipReason("no delivery pending")
    key = hour_key(now.replace(minute=0, second=0, microsecond=0))
    return dg.RunRequest(partition_key=key, run_key=f"retry_pending_alerts/{now:%Y%m%dT%H%M}")
