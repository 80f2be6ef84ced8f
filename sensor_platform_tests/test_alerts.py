"""Dagster-level: sensor_anomalies and anomaly_alerts materialized against a real lake, a real
DuckDB warehouse and a real webhook receiver: episodes across hours, exactly-once delivery over
re-materialization, run re-execution and a channel that is down, and secrets kept out of logs."""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from sensor_platform.datasets import REGISTRY
from sensor_platform.defs.alerts import alerts_asset, alerts_definitions
from sensor_platform.defs.anomalies import anomalies_asset
from sensor_platform.defs.partitions import Partitions
from sensor_platform.defs.raw import raw_asset
from sensor_platform.defs.resources import (
    AlertsResource,
    AnomalyRulesResource,
    FleetResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
    build_resources,
)
from sensor_platform.detection.schema import anomalies_partition_file
from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake
from sensor_platform.notify.ledger import LEDGER_TABLE
from sensor_platform.notify.receiver import Reply, WebhookReceiver, notices_in
from sensor_platform.settings import load_settings
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.conftest import free_port
from sensor_platform_tests.platform import hour_key
from sensor_platform_tests.readings_factory import hour, readings_table

pytestmark = pytest.mark.integration  # Dagster runs

PARTITIONS = Partitions.starting("2026-01-01")
HOURLY = PARTITIONS.hourly
ANOMALIES = REGISTRY.get("sensor_anomalies")
ANOMALY_TABLE = ANOMALIES.table_spec()
raw_sensor_readings = raw_asset(REGISTRY.raw, PARTITIONS)
sensor_anomalies = anomalies_asset(ANOMALIES, REGISTRY.raw, PARTITIONS)
anomaly_alerts = alerts_asset(ANOMALIES, PARTITIONS)
[retry_pending_alerts] = alerts_definitions(ANOMALIES, PARTITIONS).schedules

H10, H11 = hour(10), hour(11)
TOKEN = "s3cr3t-Token-0123456789abcdef"
PATHS = {
    "discord": f"api/webhooks/42/{TOKEN}",
    "slack": f"services/T1/B1/{TOKEN}",
    "webhook": f"hooks/{TOKEN}",
}


def _rows():
    rows = []
    for i in range(240):  # FIRE-A every 30 s, 10:00-12:00; 65 °C from 10:50 to 11:10
        t = H10 + timedelta(seconds=30 * i)
        hot = 100 <= i < 140
        value = 65.0 if hot else round(22 + 0.3 * ((i * 7) % 5), 3)
        rows.append(_reading("FIRE-A", "FAC-001", "temperature", t, value, 0))
    for i in range(120):  # GH-B every 60 s; a fault from 10:20 to 10:25
        t = H10 + timedelta(seconds=60 * i)
        status = 1 if 20 <= i < 25 else 0
        rows.append(_reading("GH-B", "GH1", "humidity", t, 60 + (i % 3) * 0.5, status))
    return rows


def _reading(device, site, metric, t, value, status):
    return {
        "event_time": t,
        "device_id": device,
        "site_id": site,
        "metric": metric,
        "value": value,
        "status_code": status,
    }


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def env(tmp_path, receiver):
    lake = Lake(str(tmp_path / "lake"))
    rows = _rows()
    for h in (H10, H11):
        part = [r for r in rows if h <= r["event_time"] < h + timedelta(hours=1)]
        lake.write_parquet(layout.raw_partition_file(h), readings_table(part))
    url = f"duckdb:///{tmp_path}/warehouse.duckdb"
    return {
        "lake": lake,
        "warehouse_url": url,
        "instance": dg.DagsterInstance.ephemeral(),
        "resources": resources(tmp_path, url, {k: receiver.url(p) for k, p in PATHS.items()}),
    }


def resources(tmp_path, warehouse_url, urls, **alert_settings):
    return {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "warehouse": WarehouseResource(url=warehouse_url),
        "fleet": FleetResource(),
        "pipeline": PipelineResource(),
        "anomaly_rules": AnomalyRulesResource(),
        "alerts": AlertsResource(
            discord_webhook_url=urls["discord"],
            slack_webhook_url=urls["slack"],
            webhook_url=urls["webhook"],
            max_alert_age_hours=None,  # the test data lives in March 2026
            timeout_seconds=0.5,
            attempts=2,
            **alert_settings,
        ),
    }


def materialize(env, h, resources=None):
    result = dg.materialize(
        [sensor_anomalies, anomaly_alerts],
        partition_key=hour_key(h),
        resources=resources or env["resources"],
        instance=env["instance"],
    )
    assert result.success
    return result


def delivered(receiver, kind):
    return [n for r in receiver.received(PATHS[kind]) for n in notices_in(r)]


def check_of(result):
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_asset_graph_shape():
    assert sensor_anomalies.key == dg.AssetKey("sensor_anomalies")
    assert {d.asset_key for d in sensor_anomalies.specs_by_key[sensor_anomalies.key].deps} == {
        dg.AssetKey("raw_sensor_readings")
    }
    spec = anomaly_alerts.specs_by_key[anomaly_alerts.key]
    assert {d.asset_key for d in spec.deps} == {sensor_anomalies.key}
    assert sensor_anomalies.partitions_def == HOURLY == anomaly_alerts.partitions_def
    assert [c.name for c in anomaly_alerts.check_specs] == ["alerts_delivered"]
    for asset in (sensor_anomalies, anomaly_alerts):
        assert asset.automation_conditions_by_key[asset.key] is not None
        assert "dagster/column_schema" in asset.metadata_by_key[asset.key]
    assert anomaly_alerts.metadata_by_key[anomaly_alerts.key]["dagster/table_name"] == (
        "anomaly_alert_ledger"
    )


def test_automation_runs_anomalies_and_alerts_as_soon_as_raw_lands(env):
    definitions = dg.Definitions(
        assets=[raw_sensor_readings, sensor_anomalies, anomaly_alerts],
        resources=env["resources"],
    )
    instance, key = env["instance"], hour_key(datetime.now(UTC).replace(minute=0))
    first = dg.evaluate_automation_conditions(defs=definitions, instance=instance)
    assert first.total_requested == 0
    instance.report_runless_asset_event(
        dg.AssetMaterialization("raw_sensor_readings", partition=key)
    )
    second = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, cursor=first.cursor
    )
    requested = {
        r.key.to_user_string(): r.true_subset.expensively_compute_partition_keys()
        for r in second.results
        if r.true_subset.size
    }
    assert requested == {"sensor_anomalies": {key}, "anomaly_alerts": {key}}  # one tick, one run


def test_episodes_cross_the_hour_in_lake_and_warehouse(env):
    first = materialize(env, H10)
    materialize(env, H11)
    meta = first.asset_materializations_for_node("sensor_anomalies")[0].metadata
    assert meta["dagster/row_count"].value >= 2
    warehouse = Warehouse(env["warehouse_url"])
    rows = warehouse.read(ANOMALY_TABLE).to_pylist()
    hot = [r for r in rows if r["rule"] == "temperature_high"]
    assert [(r["partition_hour"], r["status"]) for r in hot] == [(H10, "open"), (H11, "closed")]
    assert hot[0]["episode_id"] == hot[1]["episode_id"]
    assert hot[1]["start_time"] == H10 + timedelta(minutes=50)
    assert hot[1]["reading_count"] == 40 and hot[1]["severity"] == "critical"
    fault = [r for r in rows if r["rule"] == "device_fault"]
    assert [(r["device_id"], r["reading_count"], r["status"]) for r in fault] == [
        ("GH-B", 5, "closed")
    ]
    for h in (H10, H11):
        assert env["lake"].exists(anomalies_partition_file(h))


def test_alerts_are_sent_once_across_rematerialization(env, receiver):
    first = materialize(env, H10)
    assert check_of(first).passed
    opened = {kind: delivered(receiver, kind) for kind in PATHS}
    assert len(opened["discord"]) >= 2 and opened["discord"] == opened["webhook"]
    assert sorted(opened["slack"]) == sorted(opened["discord"])
    materialize(env, H10)  # re-materialize: nothing new is due
    assert {kind: delivered(receiver, kind) for kind in PATHS} == opened
    materialize(env, H11)
    materialize(env, H11)
    later = delivered(receiver, "webhook")[len(opened["webhook"]) :]
    hot = next(e for e, events in opened["webhook"] if events == "opened")
    assert (hot, "closed") in later
    for kind in PATHS:
        notices = delivered(receiver, kind)
        assert len(notices) == len(set(notices)), kind
    ledger = Warehouse(env["warehouse_url"]).read(LEDGER_TABLE)
    sent = ledger.filter(pc.equal(ledger["outcome"], "sent"))
    assert sent.num_rows == 3 * len(delivered(receiver, "webhook")) + sum(
        events.count("+") * 3 for _, events in delivered(receiver, "webhook")
    )
    # every sent row follows an `attempting` row of the same attempt, written before the request
    attempting = ledger.filter(pc.equal(ledger["outcome"], "attempting"))
    assert set(sent["attempt_id"].to_pylist()) == set(attempting["attempt_id"].to_pylist())


def test_a_channel_that_is_down_fails_the_check_then_catches_up(env, receiver, tmp_path):
    port = free_port()
    urls = {k: receiver.url(p) for k, p in PATHS.items()} | {
        "slack": f"http://127.0.0.1:{port}/services/T1/B1/{TOKEN}"
    }
    down = resources(tmp_path, env["warehouse_url"], urls)
    result = materialize(env, H10, down)
    check = check_of(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["failed_channels"].value == ["slack"]
    assert TOKEN not in json.dumps({k: str(v.value) for k, v in check.metadata.items()})
    assert TOKEN not in (check.description or "")
    sent = len(delivered(receiver, "discord"))
    assert sent >= 2

    # The schedule, as it ticks half an hour later: the hour's run would pick the notices up.
    context = dg.build_schedule_context(
        instance=env["instance"],
        resources=down,
        scheduled_execution_time=H10 + timedelta(minutes=30),
    )
    request = retry_pending_alerts(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == hour_key(H10)
    with WebhookReceiver(port=port) as revived:
        job = dg.define_asset_job("alerts", selection=[anomaly_alerts], partitions_def=HOURLY)
        definitions = dg.Definitions(
            assets=[sensor_anomalies, anomaly_alerts], jobs=[job], resources=down
        )
        retry = definitions.resolve_job_def("alerts").execute_in_process(
            instance=env["instance"], partition_key=request.partition_key
        )
        assert check_of(retry).passed
        late = [n for r in revived.received() for n in notices_in(r)]
        assert sorted(late) == sorted(delivered(receiver, "discord"))
    assert len(delivered(receiver, "discord")) == sent  # the others got nothing twice
    assert isinstance(retry_pending_alerts(context), dg.SkipReason)


def build_alert_resources(env: dict[str, str]) -> dict:
    return build_resources(load_settings(env))


def test_webhook_secrets_stay_out_of_metadata_and_logs(env, receiver, monkeypatch):
    receiver.script(PATHS["slack"], Reply(404, body={"message": f"no webhook {TOKEN}"}))
    # The URLs are secrets: the resource holds EnvVars, resolved from the process when it runs.
    urls = {
        "SENSOR_DISCORD_WEBHOOK_URL": receiver.url(PATHS["discord"]),
        "SENSOR_SLACK_WEBHOOK_URL": receiver.url(PATHS["slack"]),
    }
    for name, value in urls.items():
        monkeypatch.setenv(name, value)
    settings = {**urls, "SENSOR_SLACK_WEBHOOK_MIN_SEVERITY": "critical"}
    alerts = build_alert_resources({**settings, "SENSOR_ALERT_MAX_AGE_HOURS": "none"})["alerts"]
    assert isinstance(alerts.discord_webhook_url, dg.EnvVar) and not alerts.webhook_url
    result = materialize(env, H10, env["resources"] | {"alerts": alerts})
    assert delivered(receiver, "discord") and not delivered(receiver, "slack")
    assert receiver.attempts(PATHS["slack"]) == 1  # only critical episodes go there
    assert not check_of(result).passed
    logs = env["instance"].all_logs(result.run_id)
    text = "\n".join(str(entry) for entry in logs)
    assert "slack (http://127.0.0.1:" in text and "HTTP 404" in text  # the failure shows ...
    assert TOKEN not in text  # ... without the secret, even when the server echoes it
    with pytest.raises(ValueError, match="SENSOR_ALERT_MAX_AGE_HOURS"):
        build_alert_resources({**settings, "SENSOR_ALERT_MAX_AGE_HOURS": "soon"})
    alerts = build_alert_resources(
        {
            **settings,
            "SENSOR_ALERT_MAX_AGE_HOURS": "6",
            "SENSOR_DISCORD_WEBHOOK_SITES": "FAC-001, GH1",
        }
    )["alerts"]
    assert (alerts.max_alert_age_hours, alerts.discord_sites) == (6.0, ["FAC-001", "GH1"])
    # a typo stops its own channel only, with an error naming the variable
    typo = build_alert_resources({**settings, "SENSOR_SLACK_WEBHOOK_MIN_SEVERITY": "urgent"})
    setup = typo["alerts"].process_config_and_initialize().channel_setup()
    assert [c.name for c in setup.channels] == ["discord"]
    assert "SENSOR_SLACK_WEBHOOK_MIN_SEVERITY" in setup.errors["slack"]


def test_a_malformed_url_fails_its_channel_only_and_no_channel_warns(env, receiver, monkeypatch):
    monkeypatch.setenv("SENSOR_DISCORD_WEBHOOK_URL", receiver.url(PATHS["discord"]))
    monkeypatch.setenv("SENSOR_SLACK_WEBHOOK_URL", f"not a url {TOKEN}")
    settings = {
        "SENSOR_DISCORD_WEBHOOK_URL": "set",
        "SENSOR_SLACK_WEBHOOK_URL": "set",
        "SENSOR_ALERT_MAX_AGE_HOURS": "none",
    }
    alerts = build_alert_resources(settings)["alerts"]
    result = materialize(env, H10, env["resources"] | {"alerts": alerts})
    check = check_of(result)
    assert delivered(receiver, "discord")  # the good channel delivered
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["failed_channels"].value == ["slack"]
    assert "SENSOR_SLACK_WEBHOOK_URL is not an http(s) URL" in check.description
    assert TOKEN not in check.description and "not a url" not in check.description

    nothing = build_alert_resources({"SENSOR_ALERT_MAX_AGE_HOURS": "none"})["alerts"]
    quiet = check_of(materialize(env, H11, env["resources"] | {"alerts": nothing}))
    assert not quiet.passed and quiet.severity == dg.AssetCheckSeverity.WARN
    assert "no alert channel configured" in quiet.description


# -- run re-execution (what Dagster's run retries do) ------------------------------------------
def tripwire_job():
    """A job whose last step fails until a file exists: the run fails after alerts were sent."""
    folder = os.environ["ALERTS_TEST_DIR"]

    @dg.asset(deps=[anomaly_alerts], partitions_def=HOURLY)
    def after_alerts() -> None:
        if not os.path.exists(f"{folder}/fixed"):
            raise RuntimeError("downstream step failed")

    urls = json.loads(os.environ["ALERTS_TEST_URLS"])
    job = dg.define_asset_job(
        "alerts_then_tripwire",
        selection=[sensor_anomalies, anomaly_alerts, after_alerts],
        partitions_def=HOURLY,
        executor_def=dg.in_process_executor,
    )
    definitions = dg.Definitions(
        assets=[sensor_anomalies, anomaly_alerts, after_alerts],
        jobs=[job],
        resources=resources(Path(folder), os.environ["ALERTS_TEST_WAREHOUSE"], urls),
    )
    return definitions.resolve_job_def("alerts_then_tripwire")


def test_run_reexecution_sends_nothing_twice(env, receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("ALERTS_TEST_DIR", str(tmp_path))
    monkeypatch.setenv("ALERTS_TEST_WAREHOUSE", env["warehouse_url"])
    monkeypatch.setenv(
        "ALERTS_TEST_URLS", json.dumps({k: receiver.url(p) for k, p in PATHS.items()})
    )
    with dg.instance_for_test() as instance:
        tags = {"dagster/partition": hour_key(H10)}
        failed = dg.execute_job(dg.reconstructable(tripwire_job), instance=instance, tags=tags)
        assert not failed.success
        sent = {kind: delivered(receiver, kind) for kind in PATHS}
        assert sent["discord"]
        (tmp_path / "fixed").touch()
        retried = dg.execute_job(  # all steps again, as a run retry of the whole run would
            dg.reconstructable(tripwire_job),
            instance=instance,
            tags=tags,  # the run retry daemon copies the parent's tags
            reexecution_options=dg.ReexecutionOptions(parent_run_id=failed.run_id),
        )
        assert retried.success
        assert {kind: delivered(receiver, kind) for kind in PATHS} == sent
