"""Where a run's steps execute (SENSOR_RUN_EXECUTOR): in the run's own process (`local`), or on
Celery workers through dagster-celery (`celery`), which share out the steps of every run among
the workers listening on the broker, on this machine or any other.

Guarantees on Celery, and their limits:
- A step's task is acknowledged when the step ends, not when a worker takes it (`task_acks_late`),
  and a worker holds no task beyond the one it runs (prefetch 1). A worker that dies mid-step
  (killed, its machine lost) leaves the task unacknowledged, and the broker gives it to another
  worker, which runs the step again from its start: RabbitMQ does so as soon as the dead worker's
  connection drops; Redis only after its visibility timeout (one hour by default). Every step is
  idempotent (partitions are replaced, never appended), so a step run twice writes the same data.
- A step's process killed inside a worker that lives on (the OOM killer taking a pool child) is a
  failed step (Celery's WorkerLostError), not a redelivery: a step that kills whatever runs it
  would otherwise go round the workers for ever.
- Workers build the code location from their own environment: they need the same SENSOR_*
  variables as the code server, and nothing from its disk (the lake on S3, a PostgreSQL or MySQL
  warehouse, the PostgreSQL instance).

dagster-celery (and Celery) are imported only when selected: `local` deployments never load them.
"""

from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.settings import (
    DEFAULT_CELERY_BACKEND_URL,
    DEFAULT_CELERY_BROKER_URL,
    Settings,
    read_secret,
)

if TYPE_CHECKING:
    from celery import Celery

BROKER, BACKEND = "SENSOR_CELERY_BROKER_URL", "SENSOR_CELERY_BACKEND_URL"
# The same Celery settings on both sides: the run that sends the steps and the workers.
CELERY_CONFIG = {
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
}


def run_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """The executor of every job of the code location; None: each job keeps its local one."""
    if settings.run_executor != "celery":
        return None
    from dagster_celery import celery_executor

    def url(name: str, default: str) -> str | dict[str, str]:
        # a broker URL may carry a password: the run config names the variable, never the value
        return {"env": name} if name in settings.secrets_set else default

    return celery_executor.configured(
        {
            "broker": url(BROKER, DEFAULT_CELERY_BROKER_URL),
            "backend": url(BACKEND, DEFAULT_CELERY_BACKEND_URL),
            "config_source": CELERY_CONFIG,
        },
        name="celery_executor",
    )


def single_node_state(settings: Settings) -> list[str]:
    """What these settings keep on this machine's disk, which workers elsewhere cannot share:
    a local lake folder, an embedded DuckDB warehouse (a file with a single writer)."""
    found = []
    if not settings.lake_root.startswith("s3://"):
        found.append(
            f"the lake is a local folder ({settings.lake_root}): set SENSOR_LAKE_ROOT=s3://…"
        )
    warehouse = read_secret("SENSOR_WAREHOUSE_URL") or settings.default_warehouse_url
    if warehouse.startswith("duckdb"):  # the scheme only: the URL itself is a secret
        found.append(
            "the warehouse is an embedded DuckDB file: set SENSOR_WAREHOUSE_URL to PostgreSQL or MySQL"
        )
    return found


def celery_worker_app() -> "Celery":
    """The Celery app a worker runs (`sensor-platform celery-worker`): dagster-celery's step task
    on the broker and settings the runs send to."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    executor = CeleryExecutor.for_cli(
        broker=read_secret(BROKER) or DEFAULT_CELERY_BROKER_URL,
        backend=read_secret(BACKEND) or DEFAULT_CELERY_BACKEND_URL,
        config_source=CELERY_CONFIG,
    )
    app = make_app(executor.app_args())
    create_task(app)
    return app
