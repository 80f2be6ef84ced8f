"""A code location for test_instance_pools: a sensor that asks for several runs at once on its
first tick, each run holding a step in every pool of the platform (defs/pools.py)."""

import time

import dagster as dg

from sensor_platform.defs.pools import POOL_LIMITS

RUNS = 3


def _hold(pool: str) -> dg.OpDefinition:
    @dg.op(name=f"hold_{pool}", pool=pool)
    def hold() -> None:
        time.sleep(1)  # the other runs' steps ask for the pool's slot meanwhile

    return hold


@dg.job(executor_def=dg.in_process_executor)
def pool_probe_job():
    for pool in POOL_LIMITS:
        _hold(pool)()


@dg.sensor(
    job=pool_probe_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING
)
def pool_probe_sensor(context: dg.SensorEvaluationContext):
    if context.cursor:
        return dg.SkipReason("the runs were asked for")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"probe-{i}") for i in range(RUNS)], cursor="asked"
    )


defs = dg.Definitions(jobs=[pool_probe_job], sensors=[pool_probe_sensor])
