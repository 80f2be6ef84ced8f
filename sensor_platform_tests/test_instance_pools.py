"""Pools created at deploy time on a fresh PostgreSQL instance (the repository's dagster.yaml on a
new database): `sensor-platform init-instance` creates every pool with its limit and is harmless
to repeat, and several runs started at once by the real daemon, each with steps in every pool,
all succeed and never hold a pool's slot together beyond its limit."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from sensor_platform.defs.pools import POOL_LIMITS
from sensor_platform_tests.daemon import running_daemon
from sensor_platform_tests.pool_probe import RUNS

pytestmark = pytest.mark.integration  # a daemon and PostgreSQL


def init_instance(home: Path) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("sensor-platform")), "init-instance"],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def pools(instance: dg.DagsterInstance) -> dict[str, tuple[int, bool, int]]:
    """pool -> (limit, whether it is Dagster's default, slots allocated)."""
    storage = instance.event_log_storage
    return {
        p.name: (p.limit, p.from_default, storage.get_concurrency_info(p.name).slot_count)
        for p in storage.get_pool_limits()
    }


def test_init_creates_the_pools_and_runs_started_at_once_share_them(production_instance, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(production_instance)
    expected = {pool: (limit, False, limit) for pool, limit in POOL_LIMITS.items()}
    assert "raw_sensor_readings=1, warehouse=1" in init_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert pools(instance) == expected
    init_instance(home)  # every deploy runs it again
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert pools(instance) == expected

    with running_daemon(
        tmp_path, {}, production_instance, modules=("sensor_platform_tests.pool_probe",)
    ) as daemon:
        done = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
        daemon.wait_for(
            f"{RUNS} finished runs",
            lambda: len(daemon.runs("pool_probe_job", done)) == RUNS,
            timeout_s=180,
        )
        runs = daemon.runs("pool_probe_job")
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * RUNS
        for pool, limit in POOL_LIMITS.items():
            held = sorted(_step_spans(daemon.instance, runs, f"hold_{pool}"))
            assert len(held) == RUNS
            # limit 1: each step started after the previous holder of the slot had finished
            assert limit == 1
            for (_, ended), (started, _) in zip(held, held[1:], strict=False):
                assert started >= ended, (pool, held)
        assert pools(daemon.instance) == expected  # no slot left claimed, none added


def _step_spans(instance: dg.DagsterInstance, runs: list, step: str) -> list[tuple[float, float]]:
    spans = []
    for run in runs:
        times = {
            entry.dagster_event_type: entry.timestamp
            for entry in instance.all_logs(run.run_id)
            if entry.is_dagster_event and entry.step_key == step
        }
        spans.append(
            (times[dg.DagsterEventType.STEP_START], times[dg.DagsterEventType.STEP_SUCCESS])
        )
    return spans
