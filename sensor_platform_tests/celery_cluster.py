"""A platform spread over Celery workers on this machine, sharing only services: a (moto) S3 lake,
a PostgreSQL warehouse, the production `dagster.yaml` instance in PostgreSQL (compute logs in
S3) and a RabbitMQ virtual host of its own as the Celery broker.

Each worker is `sensor-platform celery-worker`, started in an empty folder of its own with a HOME
of its own and no DAGSTER_HOME, its environment holding only the platform's variables (what a
worker on another machine would be given), in a process group of its own so that `kill()` takes
the whole worker down at once, as a lost machine would. Runs are orchestrated by the calling
process (`run_job`), as a run worker launched by the daemon would, and their steps go to the
workers through the broker.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

from sensor_platform.defs.dbt import _environment  # os.environ set around a block
from sensor_platform.defs.pools import create_pools
from sensor_platform.lake.store import Lake
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.conftest import postgres_role

REPO = Path(__file__).resolve().parents[1]
RABBITMQ = ("127.0.0.1", 5672)
LAKE_BUCKET, LOGS_BUCKET = "sensor-lake", "dagster-compute-logs"
WORKER_START_TIMEOUT_S = 120.0


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of our own (guest may use it), deleted after: yields the broker
    URL. Tests and benchmarks never see each other's queues."""
    vhost = f"sensor-platform-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"pyamqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@dataclass
class Worker:
    """One `sensor-platform celery-worker` process (and its pool) in a process group."""

    name: str
    folder: Path  # its working directory: empty when it starts
    home: Path  # its HOME: empty when it starts
    log: Path
    process: subprocess.Popen

    @property
    def hostname(self) -> str:
        return f"{self.name}@sensor-platform-test"

    def wait_ready(self, timeout_s: float = WORKER_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log.read_text()[-3000:]}")
            if " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready in {timeout_s:g}s")

    def kill(self) -> None:
        """SIGKILL to the worker and its pool at once: nothing of it finishes or says goodbye."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    """The shared services, the environment every node gets, and the workers started so far."""

    folder: Path
    env: dict[str, str]  # the platform's variables: what the code server and every worker get
    dagster_home: Path
    s3_endpoint: str
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, name: str, concurrency: int = 1) -> Worker:
        folder, home = self.folder / name / "cwd", self.folder / name / "home"
        folder.mkdir(parents=True)
        home.mkdir(parents=True)
        log = self.folder / name / "worker.log"
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **self.env, "HOME": str(home)}
        command = [
            str(Path(sys.executable).with_name("sensor-platform")),
            "celery-worker",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}@sensor-platform-test",
        ]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        worker = Worker(name, folder, home, log, process)
        self.workers.append(worker)
        return worker

    def s3(self):
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    @property
    def warehouse_url(self) -> str:
        return self.env["SENSOR_WAREHOUSE_URL"]

    def lake(self) -> Lake:
        """The lake every node writes to, read from here."""
        env = self.env
        return Lake(
            env["SENSOR_LAKE_ROOT"],
            s3_endpoint_url=env["SENSOR_S3_ENDPOINT_URL"],
            s3_region=env["AWS_REGION"],
            s3_access_key=env["AWS_ACCESS_KEY_ID"],
            s3_secret_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_url)


def run_job(
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
) -> dg.JobExecutionResult:
    """Orchestrate one run of the platform's job `job_name` from this process (as a run worker
    does): the job is reconstructable by module, so the Celery workers rebuild it themselves."""
    job = ReconstructableRepository.for_module(
        "sensor_platform.definitions", "defs"
    ).get_reconstructable_job(job_name)
    return dg.execute_job(job, instance, run_config=run_config, tags=tags, raise_on_error=False)


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


@contextmanager
def celery_cluster(
    folder: Path, postgres_url: str, s3_endpoint: str, **settings: str
) -> Iterator[Cluster]:
    """The services of a Celery deployment, each of its own (a lake prefix, PostgreSQL roles for
    the warehouse and the instance, a RabbitMQ virtual host), torn down with every worker at
    the end. `settings` are more platform variables for every node."""
    from sqlalchemy.engine import make_url

    admin = make_url(postgres_url)
    host, port, db = admin.host or "127.0.0.1", str(admin.port or 5432), admin.database or "test"
    with ExitStack() as stack:
        broker = stack.enter_context(rabbitmq_vhost())
        warehouse_role = stack.enter_context(postgres_role(postgres_url, "sensor_wh_celery"))
        instance_role = stack.enter_context(postgres_role(postgres_url, "sensor_dagster_celery"))
        dagster_home = folder / "dagster_home"
        dagster_home.mkdir(parents=True)
        shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
        env = {
            "SENSOR_RUN_EXECUTOR": "celery",
            "SENSOR_CELERY_BROKER_URL": broker,
            "SENSOR_LAKE_ROOT": f"s3://{LAKE_BUCKET}/{uuid.uuid4().hex[:8]}",
            "SENSOR_S3_ENDPOINT_URL": s3_endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "sensor-test-key",
            "AWS_SECRET_ACCESS_KEY": "sensor-test-secret",
            "SENSOR_WAREHOUSE_URL": f"postgresql+psycopg2://{warehouse_role}@{host}:{port}/{db}",
            "SENSOR_PARTITIONS_START": "2026-03-01",
            # the production instance (dagster.yaml) reads these, on every node
            "DAGSTER_PG_HOST": host,
            "DAGSTER_PG_PORT": port,
            "DAGSTER_PG_USER": instance_role,
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_DB": db,
            "DAGSTER_COMPUTE_LOGS_BUCKET": LOGS_BUCKET,
            "DAGSTER_COMPUTE_LOGS_ENDPOINT_URL": s3_endpoint,
            **settings,
        }
        cluster = Cluster(folder, env, dagster_home, s3_endpoint)
        with _environment(env), cluster.instance() as instance:  # dagster.yaml reads DAGSTER_PG_*
            create_pools(instance)  # as a deploy does (sensor-platform init-instance)
        client = cluster.s3()
        for bucket in (LAKE_BUCKET, LOGS_BUCKET):
            try:
                client.create_bucket(Bucket=bucket)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
        try:
            yield cluster
        finally:
            for worker in cluster.workers:
                worker.kill()
