"""Asset jobs and what starts them without a person: the raw partitions sensor, and daily repair
schedules that re-run missing or failed partitions of the recent past.

Fresh data flows on its own (the raw sensor, then declarative automation for the rollups); the
schedules catch whatever fell through: a failed run, a daemon that was down.
"""

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg

from sensor_platform.defs.aggregates import (
    sensor_readings_daily,
    sensor_readings_hourly,
    sensor_readings_minute,
)
from sensor_platform.defs.alerts import anomaly_alerts, sensor_anomalies
from sensor_platform.defs.partitions import DAILY, HOURLY, hour_key
from sensor_platform.defs.raw import raw_sensor_readings
from sensor_platform.defs.resources import LakeResource
from sensor_platform.lake.compaction import pending_landing

REPAIR_LOOKBACK = timedelta(days=3)

# Raw, its minute aggregates, anomalies and alerts run together: a blocking check on raw stops bad
# data right there, and a reading that breaks a rule is announced in the run that lands it.
raw_job = dg.define_asset_job(
    "raw_job",
    selection=[raw_sensor_readings, sensor_readings_minute, sensor_anomalies, anomaly_alerts],
    partitions_def=HOURLY,
)
minute_job = dg.define_asset_job(
    "minute_job", selection=[sensor_readings_minute], partitions_def=HOURLY
)
rollups_job = dg.define_asset_job(
    "rollups_job", selection=[sensor_readings_hourly, sensor_readings_daily], partitions_def=DAILY
)


@dg.sensor(job=raw_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def raw_partitions_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> dg.SensorResult:
    """Asks for a raw partition run for every hour with landed batches not yet merged. The run
    key names the hour and the exact set of waiting files, so a set is requested once."""
    requests, outside = [], []
    for hour, files in sorted(pending_landing(lake.lake()).items()):
        key = hour_key(hour)
        if not HOURLY.has_partition_key(key):
            outside.append(key)
            continue
        digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
        requests.append(dg.RunRequest(partition_key=key, run_key=f"raw/{key}/{digest}"))
    if outside:
        context.log.warning(
            f"landed readings for hours outside the partitions ({', '.join(outside[:5])}"
            f"{' ...' if len(outside) > 5 else ''}); set SENSOR_PARTITIONS_START earlier to keep them"
        )
    if not requests:
        return dg.SensorResult(skip_reason="no landed batches waiting")
    return dg.SensorResult(run_requests=requests)


MISSING_OR_FAILED = {None, dg.AssetPartitionStatus.FAILED}


def partitions_to_repair(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    now: datetime,
    upstream_ready: Callable[[str], bool],
) -> list[str]:
    """Recent partitions that are missing or failed while what they are built from is there."""
    window = dg.TimeWindow(now - REPAIR_LOOKBACK, now)
    keys = partitions_def.get_partition_keys_in_time_window(window)
    status = instance.get_status_by_partition(asset_key, keys, partitions_def) or {}
    return [k for k in keys if status.get(k) in MISSING_OR_FAILED and upstream_ready(k)]


def _materialized(instance: dg.DagsterInstance, asset: dg.AssetsDefinition) -> set[str]:
    return set(instance.get_materialized_partitions(asset.key))


def _repair_schedule(name: str, job, plan: Callable[[dg.DagsterInstance, datetime], list[str]]):
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule="15 2 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        now = context.scheduled_execution_time or datetime.now(UTC)
        keys = plan(context.instance, now.astimezone(UTC))
        if not keys:
            return dg.SkipReason("nothing missing or failed in the last 3 days")
        return [dg.RunRequest(partition_key=k, run_key=f"{name}/{now:%Y-%m-%d}/{k}") for k in keys]

    return _schedule


def _plan_raw(instance, now):
    # A raw partition exists only when readings landed: only failed ones are re-run here.
    window = dg.TimeWindow(now - REPAIR_LOOKBACK, now)
    keys = HOURLY.get_partition_keys_in_time_window(window)
    status = instance.get_status_by_partition(raw_sensor_readings.key, keys, HOURLY) or {}
    return [k for k in keys if status.get(k) == dg.AssetPartitionStatus.FAILED]


def _plan_minute(instance, now):
    raw = _materialized(instance, raw_sensor_readings)
    return partitions_to_repair(instance, sensor_readings_minute.key, HOURLY, now, raw.__contains__)


def _plan_rollups(instance, now):
    minute_days = {k[:10] for k in _materialized(instance, sensor_readings_minute)}
    return partitions_to_repair(
        instance, sensor_readings_daily.key, DAILY, now, minute_days.__contains__
    )


repair_raw_partitions = _repair_schedule("repair_raw_partitions", raw_job, _plan_raw)
repair_minute_partitions = _repair_schedule("repair_minute_partitions", minute_job, _plan_minute)
repair_rollup_partitions = _repair_schedule("repair_rollup_partitions", rollups_job, _plan_rollups)
