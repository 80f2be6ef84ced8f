"""A backfill is not starved by the live feed, on the real daemon with the production instance's run
limits (dagster.yaml: at most 10 runs at once, per-feed and backfill tag limits): while the
simulated feed lands a window every few seconds and the raw sensor follows it, a backfill of two
past days launched as the UI launches it (the webserver's GraphQL mutation) starts within minutes
and finishes, and the live feed keeps landing meanwhile."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.execution.backfill import BulkActionStatus  # not public in 1.13
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform_tests.daemon import running_daemon
from sensor_platform_tests.test_backfills import LAUNCH

pytestmark = pytest.mark.integration  # a daemon and code servers

ROOT = Path(__file__).parents[1]
FEED_JOB = "simulated_feed_job"


def production_limits_on_sqlite() -> str:
    """make ui's instance (SQLite, run monitoring) with dagster.yaml's run limits."""
    instance = yaml.safe_load(DEV_INSTANCE_YAML)
    production = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    instance["concurrency"]["runs"] = production["concurrency"]["runs"]
    return yaml.safe_dump(instance)


def test_a_backfill_starts_within_minutes_while_the_live_feed_runs(tmp_path, monkeypatch):
    today = datetime.now(UTC).date()
    days = [f"{today - timedelta(days=n):%Y-%m-%d}" for n in (3, 2)]
    settings = {
        "SENSOR_DATA_DIR": str(tmp_path / "data"),
        "SENSOR_PARTITIONS_START": days[0],
        "SENSOR_FEED_INTERVAL_SECONDS": "5",
        "SENSOR_RAW_SENSOR_INTERVAL_SECONDS": "5",
    }
    for name, value in settings.items():  # the GraphQL context's code server reads them too
        monkeypatch.setenv(name, value)
    with running_daemon(tmp_path, settings, production_limits_on_sqlite()) as daemon:
        daemon.wait_for("two live feed runs", lambda: len(daemon.runs(FEED_JOB)) >= 2, 180)
        with define_out_of_process_context(
            str(tmp_path / "workspace.yaml"), None, daemon.instance
        ) as context:
            result = execute_dagster_graphql(
                context,
                LAUNCH,
                {
                    "params": {
                        "assetSelection": [{"path": ["sensor_readings_hourly"]}],
                        "partitionNames": days,
                    }
                },
            )
        launched = result.data["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        asked_at, feed_before = time.monotonic(), len(daemon.runs(FEED_JOB))

        def backfill_runs(statuses=None):
            return daemon.instance.get_runs(
                dg.RunsFilter(tags={"dagster/backfill": backfill_id}, statuses=statuses or [])
            )

        daemon.wait_for(
            "the backfill's first run to start",
            lambda: backfill_runs([dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS]),
            240,
        )
        started_after = time.monotonic() - asked_at
        done = daemon.wait_for(
            "the backfill to finish",
            lambda: (
                (b := daemon.instance.get_backfill(backfill_id)).status
                != BulkActionStatus.REQUESTED
                and b
            ),
            300,
        )
        print(f"backfill started {started_after:.0f} s after it was asked for")
        assert done.status == BulkActionStatus.COMPLETED_SUCCESS, daemon.tail()
        runs = backfill_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        # one run for the whole range (single-run backfill policy), not one per day
        assert len(runs) == 1
        # and the live feed goes on (it lands whole minutes: its next window may come after)
        daemon.wait_for(
            "the live feed's next run", lambda: len(daemon.runs(FEED_JOB)) > feed_before, 120
        )
