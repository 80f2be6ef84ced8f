"""SENSOR_RUN_EXECUTOR: every job of the code location on Celery workers when asked, untouched
otherwise, the broker's URL (a secret) never part of what Dagster stores, and a worker that
refuses to start without the code location's settings."""

import subprocess
import sys

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from sensor_platform.cli import main
from sensor_platform.definitions import build_definitions
from sensor_platform.defs.executor import single_node_state
from sensor_platform.settings import load_settings

PASSWORD = "hunter2-broker"
JOBS = ("raw_job", "minute_job", "rollups_job", "simulated_feed_job", "catalog_job")


def _executors(definitions: dg.Definitions) -> dict[str, str]:
    jobs = {name: definitions.resolve_job_def(name) for name in JOBS}
    jobs["__ASSET_JOB"] = definitions.resolve_implicit_global_asset_job_def()
    return {name: job.executor_def.name for name, job in jobs.items()}


def test_local_keeps_each_jobs_own_executor():
    assert _executors(build_definitions(load_settings({}))) == {
        "raw_job": "in_process",
        "minute_job": "in_process",
        "rollups_job": "in_process",
        "simulated_feed_job": "in_process",
        "catalog_job": "multi_or_in_process_executor",
        "__ASSET_JOB": "multi_or_in_process_executor",
    }


def test_celery_runs_every_job_on_the_workers_and_never_stores_the_broker_url():
    settings = load_settings(
        {
            "SENSOR_RUN_EXECUTOR": "celery",
            "SENSOR_CELERY_BROKER_URL": f"pyamqp://sensor:{PASSWORD}@rabbit:5672//",
        }
    )
    assert "SENSOR_CELERY_BROKER_URL" in settings.secrets_set and PASSWORD not in repr(settings)
    definitions = build_definitions(settings)
    assert set(_executors(definitions).values()) == {"celery_executor"}
    repository = definitions.get_repository_def()
    for job in repository.get_all_jobs():
        assert PASSWORD not in serialize_value(job.get_job_snapshot())


def test_a_bad_executor_fails_naming_the_variable():
    with pytest.raises(ValueError, match="SENSOR_RUN_EXECUTOR"):
        load_settings({"SENSOR_RUN_EXECUTOR": "kubernetes"})


def test_a_worker_needs_the_celery_settings(monkeypatch, capsys):
    monkeypatch.delenv("SENSOR_RUN_EXECUTOR", raising=False)
    assert main(["celery-worker"]) == 2
    assert "SENSOR_RUN_EXECUTOR=celery" in capsys.readouterr().err


@pytest.mark.integration  # a fresh interpreter
def test_local_never_imports_celery():
    code = (
        "import sys\n"
        "from sensor_platform.definitions import build_definitions\n"
        "from sensor_platform.settings import load_settings\n"
        "build_definitions(load_settings({}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'dagster_celery', 'kombu')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_worker_names_what_it_would_keep_on_its_own_disk(monkeypatch):
    monkeypatch.delenv("SENSOR_WAREHOUSE_URL", raising=False)
    local = single_node_state(load_settings({"SENSOR_RUN_EXECUTOR": "celery"}))
    assert [text.split(":")[0] for text in local] == [
        "the lake is a local folder (data/lake)",
        "the warehouse is an embedded DuckDB file",
    ]
    monkeypatch.setenv("SENSOR_WAREHOUSE_URL", f"postgresql+psycopg2://u:{PASSWORD}@db/x")
    shared = load_settings({"SENSOR_LAKE_ROOT": "s3://bucket/lake"})
    assert single_node_state(shared) == []
