"""Asset jobs and what starts them without a person: the raw partitions sensor, and daily repair
schedules that re-run missing or failed partitions of the recent past.

Fresh data flows on its own (the raw sensor, then declarative automation for the rollups); the
schedules catch whatever fell through: a failed run, a daemon that was down.
"""

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg

from sensor_platform.datasets import Dataset, Registry
from sensor_platform.defs.alerts import ALERTS
from sensor_platform.defs.partitions import Partitions
from sensor_platform.defs.resources import LakeResource

REPAIR_LOOKBACK = timedelta(days=3)
MISSING_OR_FAILED = {None, dg.AssetPartitionStatus.FAILED}
# One job (and its repair schedule) per partitioning of the aggregate levels: the
# hourly-partitioned levels (minutes) and the daily-partitioned ones (hours, days).
AGGREGATE_JOBS = {
    "hourly": ("minute_job", "repair_minute_partitions"),
    "daily": ("rollups_job", "repair_rollup_partitions"),
}


def automation_definitions(
    datasets: Registry,
    partitions: Partitions,
    raw_sensor_interval_seconds: int,
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.Definitions:
    raw = datasets.raw
    finest = [d for d in datasets.aggregates if d.source == raw.name]
    # Raw, the level computed from it, anomalies and alerts run together, one run per hour, its
    # steps in the run's own process by default (a subprocess per step costs seconds each). No step waits
    # for quality: the gate keeps bad readings out of the aggregates, alarms read them all.
    raw_job = dg.define_asset_job(
        "raw_job",
        selection=[raw.name, *(d.name for d in finest), "sensor_anomalies", ALERTS],
        partitions_def=partitions.of(raw),
        executor_def=executor,
    )
    jobs, schedules = (
        [raw_job],
        [
            _repair_schedule(
                "repair_raw_partitions",
                raw_job,
                _plan_raw(raw, partitions),
                "of raw_sensor_readings whose run failed",
            )
        ],
    )
    for partitioning, (job_name, schedule_name) in AGGREGATE_JOBS.items():
        levels = [d for d in datasets.aggregates if d.partitioning == partitioning]
        job = dg.define_asset_job(
            job_name,
            selection=[d.name for d in levels],
            partitions_def=getattr(partitions, partitioning),
            executor_def=executor,
        )
        jobs.append(job)
        schedules.append(
            _repair_schedule(
                schedule_name,
                job,
                _plan_levels(datasets, levels, partitions),
                f"of {', '.join(d.name for d in levels)} that are missing or failed while "
                "their source has data",
            )
        )
    return dg.Definitions(
        jobs=jobs,
        sensors=[
            raw_partitions_sensor(raw, partitions, raw_job, raw_sensor_interval_seconds),
            automation_sensor("platform_automation_sensor"),
        ],
        schedules=schedules,
    )


def automation_sensor(name: str) -> dg.AutomationConditionSensorDefinition:
    """Declarative automation for every asset of the code location, running from the start:
    Dagster's own default sensor is off until someone turns it on, and then the hour and day
    aggregates (and the dbt models) would never be built on their own."""
    return dg.AutomationConditionSensorDefinition(
        name,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Evaluates the assets' automation conditions (recompute when upstream "
        "changes) every 30 s and launches the runs they ask for.",
    )


def raw_partitions_sensor(
    raw: Dataset, partitions: Partitions, raw_job, interval_seconds: int
) -> dg.SensorDefinition:
    hourly = partitions.of(raw)

    @dg.sensor(
        job=raw_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval_seconds} s: asks for a raw_job run for every hour with "
        "landed batches not yet merged into raw_sensor_readings, at most one queued or running "
        "per hour (batches that land meanwhile join the next run).",
    )
    def raw_partitions_sensor(
        context: dg.SensorEvaluationContext, lake: LakeResource
    ) -> dg.SensorResult:
        """Asks for a raw partition run for every hour with landed batches not yet merged, at most
        one queued or running per hour: batches that land meanwhile join the next run. The run
        key names the hour and the exact set of waiting files, so a set is requested once."""
        from sensor_platform.lake.compaction import pending_landing

        pending = pending_landing(lake.lake())
        busy = _hours_in_flight(
            context.instance, raw_job.name, [raw.partition_key(h) for h in pending]
        )
        requests, outside, waiting = [], [], []
        for hour, files in sorted(pending.items()):
            key = raw.partition_key(hour)
            if not hourly.has_partition_key(key):
                outside.append(key)
                continue
            if key in busy:
                waiting.append(key)
                continue
            digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
            requests.append(dg.RunRequest(partition_key=key, run_key=f"raw/{key}/{digest}"))
        if waiting:
            context.log.info(f"hours with a raw run queued or running, asked for later: {waiting}")
        if outside:
            context.log.warning(
                f"landed readings for hours outside the partitions ({', '.join(outside[:5])}"
                f"{' ...' if len(outside) > 5 else ''}); set SENSOR_PARTITIONS_START earlier "
                "to keep them"
            )
        if not requests:
            return dg.SensorResult(skip_reason="no landed batches waiting")
        return dg.SensorResult(run_requests=requests)

    return raw_partitions_sensor


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _hours_in_flight(instance: dg.DagsterInstance, job_name: str, keys: list[str]) -> set[str]:
    """The partition keys among `keys` that a run of the job is queued for or running."""
    if not keys:
        return set()
    runs = instance.get_runs(
        dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT, tags={"dagster/partition": keys})
    )
    return {run.tags.get("dagster/partition") for run in runs}


Plan = Callable[[dg.DagsterInstance, datetime], list[str]]


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


def _repair_schedule(name: str, job, plan: Plan, what: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule="15 2 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Daily at 02:15 UTC: re-runs the partitions of the last 3 days {what}.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        now = context.scheduled_execution_time or datetime.now(UTC)
        keys = plan(context.instance, now.astimezone(UTC))
        if not keys:
            return dg.SkipReason("nothing missing or failed in the last 3 days")
        return [dg.RunRequest(partition_key=k, run_key=f"{name}/{now:%Y-%m-%d}/{k}") for k in keys]

    return _schedule


def _plan_raw(raw: Dataset, partitions: Partitions) -> Plan:
    def plan(instance: dg.DagsterInstance, now: datetime) -> list[str]:
        # A raw partition exists only when readings landed: only failed ones are re-run here.
        hourly = partitions.of(raw)
        keys = hourly.get_partition_keys_in_time_window(dg.TimeWindow(now - REPAIR_LOOKBACK, now))
        status = instance.get_status_by_partition(dg.AssetKey(raw.name), keys, hourly) or {}
        return [k for k in keys if status.get(k) == dg.AssetPartitionStatus.FAILED]

    return plan


def _plan_levels(datasets: Registry, levels: list[Dataset], partitions: Partitions) -> Plan:
    """Partitions of `levels` that are missing or failed while their source has data inside
    them; the job builds every level of its partitioning, so the union is asked for."""

    def plan(instance: dg.DagsterInstance, now: datetime) -> list[str]:
        keys: set[str] = set()
        for level in levels:
            source = datasets.get(level.source)
            present = [
                source.partition_start(key)
                for key in instance.get_materialized_partitions(dg.AssetKey(source.name))
            ]

            def ready(key: str, level: Dataset = level, present: list = present) -> bool:
                start = level.partition_start(key)
                return any(start <= s < start + level.partition_length for s in present)

            level_key = dg.AssetKey(level.name)
            keys |= set(partitions_to_repair(instance, level_key, partitions.of(level), now, ready))
        return sorted(keys)

    return plan
