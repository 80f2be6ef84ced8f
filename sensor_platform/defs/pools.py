"""The Dagster pools the platform's steps run in, with their limits, and the deploy-time step that
creates them on an instance.

A pool's row is created at deploy time (`sensor-platform init-instance`, the image's entrypoint
before the daemon starts, `make ui` / `make demo`), never by the first step that uses it: on a
fresh PostgreSQL instance two steps creating the same pool at once collide (`UniqueViolation` on
`concurrency_limits`), failing runs or leaving one STARTED. An existing row, set here, is never
initialized again. Running the step again sets the same limits: a limit changed by hand
(`dagster instance concurrency set`) is reset to the one below.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

# One raw compaction per hour at a time: a raw partition is rebuilt from the previous raw file.
RAW_POOL = "raw_sensor_readings"
# Every warehouse writer (aggregates, anomalies, dbt): a DuckDB file has a single writer.
WAREHOUSE_POOL = "warehouse"

POOL_LIMITS: dict[str, int] = {RAW_POOL: 1, WAREHOUSE_POOL: 1}


def create_pools(instance: "dg.DagsterInstance") -> dict[str, int]:
    """Create (or reset) every pool of POOL_LIMITS on `instance` with its limit; idempotent.
    Returns the limits as the instance now holds them."""
    from sqlalchemy.exc import IntegrityError

    storage = instance.event_log_storage
    for pool, limit in POOL_LIMITS.items():
        try:
            storage.set_concurrency_slots(pool, limit)
        except IntegrityError:  # another init created the row meanwhile: now it is an update
            storage.set_concurrency_slots(pool, limit)
    held = {p.name: p.limit for p in storage.get_pool_limits()}
    return {pool: held[pool] for pool in POOL_LIMITS}
