"""Alarms do not wait for quality, and quality keeps bad readings out of the aggregates on every
path. A fire pushes 5 % of one device's temperature readings to 1200 °C (above the plausible
1000 °C) in one hour, on a real Kafka-protocol broker and a real webhook receiver:

- the landing run of the batch announces the critical alarm at once (the fast path);
- raw's validity check fails with ERROR, naming the device's temperature series;
- the series is kept out of the minute, hour and day aggregates, whichever path builds them (the
  raw run, a backfill or repair of the minute job, the rollups job, materializing the asset alone
  as the UI does), while every other series is built;
- the hourly detection finds the same episode and announces nothing twice.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import orjson
import pytest

from sensor_platform.datasets import REGISTRY
from sensor_platform.kafka.client import ensure_topic, produce
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform.notify.receiver import WebhookReceiver
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.platform import definitions_for, hour_key

pytestmark = pytest.mark.integration  # Dagster runs, a broker and an HTTP receiver

TOPIC = "alarm.path"
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
FIRE, CALM = "FIRE-EQ-001", "FIRE-EQ-002"  # devices of the packaged fleet


def messages() -> list[bytes]:
    """An hour every 10 s from two fire devices; FIRE burns from minute 40: 18 of its 360
    temperatures (5 %) at 1200 °C."""
    out = []
    for i in range(360):
        at = HOUR + timedelta(seconds=10 * i)
        burning = 240 <= i < 258
        for device, temperature in ((FIRE, 1200.0 if burning else 24.0), (CALM, 23.0)):
            out.append(
                orjson.dumps(
                    {"equipment_id": device, "facility_id": "FAC-001",
                     "measured_at": at.isoformat(), "temperature": temperature, "humidity": 40.0}
                )
            )  # fmt: skip
    return out


@pytest.fixture
def platform(kafka_broker, tmp_path, monkeypatch):
    receiver = WebhookReceiver().start()
    monkeypatch.setenv("SENSOR_ALERT_WEBHOOK_URL", receiver.url("alarms"))  # a secret: EnvVar
    settings = KafkaSettings(kafka_broker.bootstrap, topics=(TOPIC,))
    ensure_topic(settings, TOPIC, 1)
    produce(settings, TOPIC, [(None, m) for m in messages()], partition=0)
    definitions = definitions_for(
        tmp_path / "data",
        SENSOR_KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
        SENSOR_KAFKA_TOPICS=TOPIC,
        SENSOR_KAFKA_MAX_RECORDS_PER_RUN="100000",
        SENSOR_ALERT_WEBHOOK_URL="set",
    )
    yield {
        "definitions": definitions,
        "instance": dg.DagsterInstance.ephemeral(),
        "receiver": receiver,
        "warehouse": Warehouse(f"duckdb:///{tmp_path / 'data' / 'warehouse.duckdb'}"),
    }
    receiver.stop()


def notices(receiver: WebhookReceiver) -> list[tuple[str, str, str, tuple]]:
    return [
        (n["episode"]["device_id"], n["episode"]["rule"], n["episode"]["severity"],
         tuple(n["events"]))
        for r in receiver.received("alarms")
        for n in r.payload["notices"]
    ]  # fmt: skip


def series_in(warehouse: Warehouse, level: str) -> set[tuple[str, str]]:
    rows = warehouse.read(REGISTRY.get(level).table_spec()).to_pylist()
    return {(r["device_id"], r["metric"]) for r in rows}


def run(definitions, instance, job: str, **kwargs) -> dg.ExecuteInProcessResult:
    result = definitions.resolve_job_def(job).execute_in_process(instance=instance, **kwargs)
    assert result.success
    return result


def test_a_fire_is_announced_at_landing_and_kept_out_of_every_aggregate(platform):
    definitions, instance = platform["definitions"], platform["instance"]
    receiver, warehouse = platform["receiver"], platform["warehouse"]
    sensor = definitions.resolve_sensor_def("kafka_ingest_sensor")
    resources = {"kafka": definitions.resources["kafka"]}
    [request] = sensor(dg.build_sensor_context(instance=instance, resources=resources)).run_requests
    landing = run(
        definitions, instance, "kafka_ingest_job", run_config=request.run_config, tags=request.tags
    )

    # the landing run announced the critical episode before any raw or alert run
    fire = [n for n in notices(receiver) if n[0] == FIRE and n[1] == "temperature_high"]
    assert fire == [(FIRE, "temperature_high", "critical", ("opened", "closed"))]
    [summary] = [
        n["summary"]
        for r in receiver.received("alarms")
        for n in r.payload["notices"]
        if n["episode"]["device_id"] == FIRE and n["episode"]["rule"] == "temperature_high"
    ]
    assert "1200 °C" in summary and "beyond what the sensor can measure" in summary
    [output] = [e for e in landing.all_node_events if e.is_successful_output]
    assert output.step_output_data.metadata["fast_alerts_sent"].value >= 1

    # raw's validity fails with ERROR for that series; the run goes on (nothing blocks)
    key = hour_key(HOUR)
    raw_run = run(definitions, instance, "raw_job", partition_key=key)
    checks = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in raw_run.get_asset_check_evaluations()
    }
    validity = checks[("raw_sensor_readings", "validity")]
    assert not validity.passed and validity.severity == dg.AssetCheckSeverity.ERROR
    failures = json.loads(json.dumps(validity.metadata["failures"].value))
    [failure] = [f for f in failures if f["rule"] == "value_in_range"]
    assert [(s["device_id"], s["metric"]) for s in failure["unexpected_sample"]] == [
        (FIRE, "temperature")
    ]
    # the hourly detection found the same episode: nothing announced twice
    assert [n for n in notices(receiver) if n[0] == FIRE and n[1] == "temperature_high"] == fire
    episodes = warehouse.read(REGISTRY.get("sensor_anomalies").table_spec()).to_pylist()
    assert {e["rule"] for e in episodes if e["device_id"] == FIRE} >= {"temperature_high"}

    out, kept = (
        (FIRE, "temperature"),
        {(FIRE, "humidity"), (CALM, "temperature"), (CALM, "humidity")},
    )
    assert out not in series_in(warehouse, "sensor_readings_minute")
    assert kept <= series_in(warehouse, "sensor_readings_minute")
    [excluded] = warehouse.read(REGISTRY.get("quality_exclusions").table_spec()).to_pylist()
    assert (excluded["device_id"], excluded["metric"], excluded["scope"]) == (*out, "series")
    assert (excluded["readings"], excluded["invalid_readings"]) == (360, 18)

    # every other path that builds the aggregates: a backfill or repair run of the minute job,
    # the asset alone (the UI's "materialize"), and the rollups of the day
    run(definitions, instance, "minute_job", partition_key=key)
    definitions.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        partition_key=key,
        asset_selection=[dg.AssetKey("sensor_readings_minute")],
    )
    run(definitions, instance, "rollups_job", partition_key=HOUR.strftime("%Y-%m-%d"))
    for level in ("sensor_readings_minute", "sensor_readings_hourly", "sensor_readings_daily"):
        assert out not in series_in(warehouse, level), level
        assert kept <= series_in(warehouse, level), level
    assert len(notices(receiver)) == len(set(notices(receiver)))  # nothing sent twice
