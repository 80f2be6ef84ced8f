"""Every source of readings (the simulator, Kafka, MQTT) as a Dagster sensor and a landing job.

One factory for all of them: the sensor asks its source (an `ingest.Source`, built by the
source's resource) for units of work, one run each, keyed by the unit's run key and tagged with
its batch id; the landing job's one op reads its unit, lands it (and announces what the fast
alarm rules find: defs/landing.py), and only then acknowledges it. The sensor also reports the
source's figures and check verdicts on its asset, and asks for one `platform_notice_job` run per
platform notice the source raises. Adding a source is one module
on the ground floor (a `Source`) and one `IngestSource` entry in SOURCES (plus its settings).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from sensor_platform.defs.landing import BATCH_ID_TAG, land_messages
from sensor_platform.defs.metadata import OWNERS
from sensor_platform.defs.notices import notice_request, platform_notice_job
from sensor_platform.defs.run_resources import INGESTION_RUN_TAGS
from sensor_platform.kafka.stuck import CHECK as NO_STUCK_RANGES
from sensor_platform.settings import Settings

FEED_TAG = "sensor_platform/feed"
# Run monitoring fails a run still going after this many seconds (then it is retried like any
# failed run): a landing run that stops making progress never holds its unit for good.
MAX_RUNTIME_TAG = "dagster/max_runtime"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
BROKER_RETRIES, BROKER_RETRY_WAIT_S = 3, 15


@dataclass(frozen=True)
class IngestSource:
    """How one source appears in Dagster: names, its resource, how often its sensor ticks."""

    name: str  # the ingest.Source's name: the runs' sensor_platform/feed tag, SENSOR_SOURCE
    job: str
    op: str
    sensor: str
    resource: str  # the resource whose .source() builds the ingest.Source in the tick and run
    interval: str  # the Settings field with the sensor's minimum interval in seconds
    description: str
    asset: dg.AssetSpec | None = None  # what the sensor observes (lag, ...), if anything
    checks: tuple[dg.AssetChecksDefinition, ...] = ()  # on `asset`, also evaluated every tick
    operator_job: dg.JobDefinition | None = None  # runs whose configs the source reads

    def run_request(self, unit) -> dg.RunRequest:
        return dg.RunRequest(
            job_name=self.job,
            run_key=unit.run_key,
            run_config={"ops": {self.op: {"config": unit.config}}},
            tags={BATCH_ID_TAG: unit.batch_id, **unit.tags},
        )


class RunLog:
    """The Dagster instance's view of one source's runs, for its ingest.Source (ingest.RunLog)."""

    def __init__(self, instance: dg.DagsterInstance, spec: IngestSource):
        self.instance, self.spec = instance, spec

    def finished(self, batch_ids, since):
        from sensor_platform.ingest import FinishedRun

        ended = {
            "job_name": self.spec.job,
            # CANCELED: ended at its maximum runtime by run monitoring, or terminated in the UI
            "statuses": [
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ],
        }
        runs = []
        if batch_ids:
            runs += self.instance.get_runs(dg.RunsFilter(**ended, tags={BATCH_ID_TAG: batch_ids}))
        if since is not None:
            runs += self.instance.get_runs(dg.RunsFilter(**ended, updated_after=since))
        return [
            FinishedRun(
                config=run.run_config.get("ops", {}).get(self.spec.op, {}).get("config", {}),
                tags=dict(run.tags),
                succeeded=run.status == dg.DagsterRunStatus.SUCCESS,
            )
            for run in runs
        ]

    def in_flight(self) -> list[dict[str, Any]]:
        runs = self.instance.get_runs(dg.RunsFilter(job_name=self.spec.job, statuses=IN_FLIGHT))
        return [
            run.run_config.get("ops", {}).get(self.spec.op, {}).get("config", {}) for run in runs
        ]

    def operator_requests(self, since) -> list[dict[str, Any]]:
        job = self.spec.operator_job
        if job is None or since is None:
            return []
        runs = self.instance.get_runs(
            dg.RunsFilter(
                job_name=job.name, statuses=[dg.DagsterRunStatus.SUCCESS], updated_after=since
            )
        )
        [op] = job.graph.node_names()
        return [run.run_config.get("ops", {}).get(op, {}).get("config", {}) for run in runs]


def landing_job(
    spec: IngestSource,
    max_runtime_seconds: int = Settings.landing_max_runtime_seconds,
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.JobDefinition:
    """One op that reads its unit, lands it, announces the fast rules' episodes, then
    acknowledges it; by default in the run's own process (no subprocess per step). Every run of
    it, retries and re-executions included, carries the job's maximum runtime."""

    @dg.op(
        name=spec.op,
        config_schema=dg.Permissive(),
        required_resource_keys={
            spec.resource, "lake", "pipeline", "anomaly_rules", "warehouse", "alerts"
        },
        tags={FEED_TAG: spec.name},
        out=dg.Out(dg.Nothing),
    )  # fmt: skip
    def land_unit(context: dg.OpExecutionContext) -> None:
        from sensor_platform.ingest import BrokerAccessDenied, BrokerUnavailable, UnitUnreadable

        source = getattr(context.resources, spec.resource).source()
        resources = context.resources
        try:
            with source.read(context.op_config) as batch:
                for text in batch.warnings():
                    context.log.warning(text)
                land_messages(
                    context,
                    batch.batch_id,
                    batch.messages,
                    lake=resources.lake,
                    pipeline=resources.pipeline,
                    anomaly_rules=resources.anomaly_rules,
                    warehouse=resources.warehouse,
                    alerts=resources.alerts,
                    extra=batch.summary(),
                )
                batch.acknowledge()  # only once landed
        except BrokerAccessDenied as exc:
            raise dg.Failure(str(exc)) from exc  # a person must fix the settings: no retry
        except BrokerUnavailable as exc:
            context.log.warning(f"{spec.name} unavailable, retrying: {exc}")
            raise dg.RetryRequested(
                max_retries=BROKER_RETRIES, seconds_to_wait=BROKER_RETRY_WAIT_S
            ) from exc
        except (UnitUnreadable, ValueError) as exc:
            raise dg.Failure(str(exc)) from exc

    land_unit.__doc__ = spec.description

    @dg.job(
        name=spec.job,
        tags={
            FEED_TAG: spec.name,
            MAX_RUNTIME_TAG: str(max_runtime_seconds),
            **INGESTION_RUN_TAGS,  # small runs on Kubernetes / ECS
        },
        executor_def=executor,
    )
    def _job():
        land_unit()

    return _job


def source_sensor(spec: IngestSource, job: dg.JobDefinition, settings: Settings):
    @dg.sensor(
        name=spec.sensor,
        jobs=[job, platform_notice_job],
        minimum_interval_seconds=getattr(settings, spec.interval),
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if settings.source == spec.name
            else dg.DefaultSensorStatus.STOPPED
        ),
        required_resource_keys={spec.resource},
        description=spec.description,
    )
    def _sensor(context: dg.SensorEvaluationContext, **_resources) -> dg.SensorResult:
        # (**_resources: calling the sensor directly, as tests do, passes its resources too)
        source = getattr(context.resources, spec.resource).source()
        plan = source.plan(context.cursor, datetime.now(UTC), RunLog(context.instance, spec))
        for level, text in plan.notes:
            getattr(context.log, level)(text)
        events = []
        if spec.asset is not None and plan.observation is not None:
            events.append(dg.AssetObservation(spec.asset.key, metadata=_figures(plan.observation)))
        if spec.asset is not None:
            events += [
                dg.AssetCheckEvaluation(spec.asset.key, v.check, **_verdict(v))
                for v in plan.verdicts
            ]
        return dg.SensorResult(
            run_requests=[spec.run_request(u) for u in plan.units]
            + [notice_request(n) for n in plan.notices],
            cursor=plan.state,
            skip_reason=plan.skip_reason if not plan.units else None,
            asset_events=events,
        )

    return _sensor


def _figures(observation: dict[str, Any]) -> dict[str, Any]:
    """Numbers stay numbers (the UI plots them over time); lists become Markdown."""
    return {
        key: dg.MetadataValue.md("\n".join(f"- {v}" for v in value)) if isinstance(value, list)
        else value
        for key, value in observation.items()
        if value not in ([], None)
    }  # fmt: skip


def _verdict(verdict) -> dict[str, Any]:
    """An ingest.Verdict as the keyword arguments of a check's result (failing: ERROR)."""
    return {
        "passed": verdict.passed,
        "severity": dg.AssetCheckSeverity.ERROR,
        "description": verdict.description,
        "metadata": {
            key: dg.MetadataValue.json(value) if isinstance(value, list | dict) else value
            for key, value in verdict.metadata.items()
        },
    }


def sensor_cursor(instance: dg.DagsterInstance, sensor_name: str) -> str | None:
    """The cursor `sensor_name` last stored (None: it never ticked)."""
    for state in instance.all_instigator_state():
        if state.name == sensor_name and state.instigator_type.value == "SENSOR":
            data = state.instigator_data
            return getattr(data, "cursor", None)
    return None


def ingest_definitions(
    settings: Settings,
    sources: list[IngestSource],
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.Definitions:
    jobs, sensors, assets, operator_jobs, checks = [], [], [], [], []
    for spec in sources:
        job = landing_job(spec, settings.landing_max_runtime_seconds, executor)
        jobs.append(job)
        sensors.append(source_sensor(spec, job, settings))
        assets += [spec.asset] if spec.asset is not None else []
        operator_jobs += [spec.operator_job] if spec.operator_job is not None else []
        checks += spec.checks
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[*jobs, *operator_jobs, platform_notice_job],
        sensors=sensors,
    )


# -- the sources -------------------------------------------------------------------------------
class SkipRange(dg.Config):
    run_key: str  # the stuck range, as kafka_topics lists it: topic/partition/start-end[@eN]
    reason: str  # why its data is given up (kept with the gap in the sensor's cursor)


@dg.op
def skip_kafka_range(context: dg.OpExecutionContext, config: SkipRange) -> None:
    """An operator gives up a stuck Kafka range: this run only records the decision, checked;
    the ingestion sensor's next tick applies it (removes the range, records it like a gap with
    the reason, commits past it). Only a stuck range is skipped."""
    from sensor_platform.kafka.attempts import parse_run_key

    attempt = parse_run_key(config.run_key)  # a malformed key fails the run, naming the problem
    if not config.reason.strip():
        raise dg.Failure("a skip needs a reason")
    context.log.info(f"skip of {attempt.range.run_key} requested: {config.reason}")


@dg.job(description="Give up a stuck Kafka range (run config: run_key and reason).")
def kafka_skip_range_job():
    skip_kafka_range()


KAFKA_TOPICS = dg.AssetSpec(
    "kafka_topics",
    description="The Kafka topics readings arrive on; observed by the ingestion sensor every "
    "tick, per topic-partition: consumer lag (offsets not yet landed in the lake), records/s "
    "arriving at the broker and landed, stuck ranges; ranges pending. Its check no_stuck_ranges "
    "fails while a range failed every attempt.",
    group_name="raw",
    kinds={"kafka"},
    owners=OWNERS,
    tags={"domain": "iot", "tier": "source", "pii": "none"},
)


@dg.asset_check(
    asset=KAFKA_TOPICS.key,
    name=NO_STUCK_RANGES,
    description="Fails (ERROR) while a Kafka range failed every attempt and waits for a person, "
    "naming each with its attempts and since when; kafka_ingest_sensor evaluates it every tick. "
    "Run here, it judges the sensor's last stored state.",
)
def no_stuck_ranges(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    from sensor_platform.kafka.cursor import IngestCursor
    from sensor_platform.kafka.stuck import stuck_ranges, stuck_verdict

    cursor = IngestCursor.parse(sensor_cursor(context.instance, "kafka_ingest_sensor"))
    return dg.AssetCheckResult(**_verdict(stuck_verdict(stuck_ranges(cursor))))


SOURCES = [
    IngestSource(
        name="simulator",
        job="simulated_feed_job",
        op="land_simulated_window",
        sensor="simulated_feed_sensor",
        resource="fleet",
        interval="feed_interval_seconds",
        description="Asks for one landing run per new window of simulated time (at most 15 "
        "minutes each); the simulator is deterministic, so a retry lands the same bytes.",
    ),
    IngestSource(
        name="kafka",
        job="kafka_ingest_job",
        op="land_kafka_range",
        sensor="kafka_ingest_sensor",
        resource="kafka",
        interval="kafka_poll_interval_seconds",
        description="Plans exact offset ranges of every matching topic-partition (one run "
        "each), re-requests failed ranges with backoff until stuck, reports lag and stuck "
        "ranges on kafka_topics, commits landed offsets to the consumer group if one is set.",
        asset=KAFKA_TOPICS,
        checks=(no_stuck_ranges,),
        operator_job=kafka_skip_range_job,
    ),
    IngestSource(
        name="mqtt",
        job="mqtt_ingest_job",
        op="land_mqtt_drain",
        sensor="mqtt_ingest_sensor",
        resource="mqtt",
        interval="mqtt_poll_interval_seconds",
        description="Asks for one drain of the MQTT session per tick (never two at once): the "
        "run lands what the broker kept, then acknowledges it.",
    ),
]


def source_named(name: str) -> IngestSource:
    return next(spec for spec in SOURCES if spec.name == name)
