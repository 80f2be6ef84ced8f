"""Benchmark: a 48-hour backfill on one and on two Celery workers, same data, same run.

    make benchmark-scale-out
    .venv/bin/python benchmarks/scale_out.py [--hours 48] [--hours-per-run 6] [--devices-scale 2] [--rounds 2]

Starts what `sensor_platform_tests/celery_cluster.py` starts: a moto S3 lake, a PostgreSQL
warehouse and the production instance (dagster.yaml) in PostgreSQL roles of their own, a RabbitMQ
virtual host, and workers (`sensor-platform celery-worker`, one step at a time each) in empty
folders. The packaged fleet repeated --devices-scale times is simulated and landed once for
--hours hours (not timed). Then, --rounds times, for one worker and for two (in turn):

- the backfill: raw_job over the hours, as runs of --hours-per-run hours all launched at once
  (what a backfill of raw_job's partitions, or the raw sensor's hourly runs, asks for; 48 makes it
  the single run the assets' backfill policy gives), then rollups_job over the days. Each run is
  orchestrated by a process of this benchmark, as by a run worker (started and loaded before the
  clock starts); every step runs on the Celery workers.
- timed from the first run's start to the last run's end;
- then raw, the aggregates and the anomalies are deleted from the lake and the warehouse, so the
  next phase starts from the same state (landing files only).

The pools (`raw_sensor_readings`, `warehouse`: one step at a time, sensor_platform/defs/pools.py)
would serialize the steps whatever the number of workers: the benchmark gives each two slots, as
README's "Past one machine" says to do for more workers.

Prints, per phase, the wall time, the CPU seconds of the workers (their whole process groups) and
of moto, how busy the machine's cores were (every process, ours or not: the machine is shared) and
the steps per worker; then each round's ratio one / two workers and the ratio of the best times.
Checks that every phase wrote the same numbers of raw readings and aggregate rows.
"""

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
START = datetime(2026, 3, 1, 0, tzinfo=UTC)
POOLS = {"raw_sensor_readings": 2, "warehouse": 2}
TABLES = ("sensor_readings_minute", "sensor_readings_hourly", "sensor_readings_daily")


def land(cluster, instance, hours: int) -> float:
    """The simulated feed for `hours` hours, as landing runs of 12 hours (not timed)."""
    from sensor_platform_tests.celery_cluster import run_job
    from sensor_platform_tests.platform import feed_run_request

    started = time.monotonic()
    for first in range(0, hours, 12):
        start = START + timedelta(hours=first)
        request = feed_run_request(start, start + timedelta(hours=min(12, hours - first)))
        result = run_job(
            instance, "simulated_feed_job", run_config=request.run_config, tags=request.tags
        )
        assert result.success, "landing failed"
    return time.monotonic() - started


def _warm() -> None:
    """A run worker process, started before the clock: Dagster and the code location loaded."""
    from sensor_platform.definitions import defs

    defs()


def _orchestrate(dagster_home: str, job: str, tags: dict[str, str]) -> bool:
    """One run, orchestrated in a process of its own as a run worker does (Dagster's logging is
    not safe for two runs in one process)."""
    import dagster as dg

    from sensor_platform_tests.celery_cluster import run_job

    with dg.DagsterInstance.from_config(dagster_home) as instance:
        return run_job(instance, job, tags=tags).success


def backfill(cluster, hours: int, hours_per_run: int) -> float:
    """raw_job over `hours` hours in runs of `hours_per_run`, all at once, then rollups_job."""
    from sensor_platform_tests.celery_cluster import partition_range_tags
    from sensor_platform_tests.platform import hour_key

    ranges = [
        partition_range_tags(
            hour_key(START + timedelta(hours=first)),
            hour_key(START + timedelta(hours=min(first + hours_per_run, hours) - 1)),
        )
        for first in range(0, hours, hours_per_run)
    ]
    days = (START.date().isoformat(), (START + timedelta(hours=hours - 1)).date().isoformat())
    home = str(cluster.dagster_home)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(ranges), mp_context=spawn, initializer=_warm) as pool:
        list(pool.map(_warm_wait, range(len(ranges))))  # every run worker up and loaded
        started = time.monotonic()
        raw = list(pool.map(_orchestrate, [home] * len(ranges), ["raw_job"] * len(ranges), ranges))
        rollups = pool.submit(_orchestrate, home, "rollups_job", partition_range_tags(*days))
        succeeded = all(raw) and rollups.result()
        elapsed = time.monotonic() - started
    if not succeeded:
        raise SystemExit("a backfill run failed")
    return elapsed


def _warm_wait(_: int) -> None:
    time.sleep(1.0)  # keeps each pool process busy for a moment, so that all of them start


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every process, ours or not)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


class GroupCpu:
    """CPU seconds of the processes of some process groups (the workers and their pools),
    sampled every 0.2 s from /proc: a process that lives less than that is missed."""

    def __init__(self, groups: list[int]):
        self.groups, self.seen, self.stop = set(groups), {}, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) in self.groups:  # fields[2]: the process group
                    self.seen[stat.parent.name] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def seconds(self) -> float:
        self.stop.set()
        self.thread.join()
        return sum(self.seen.values())


def steps_per_worker(instance, since: float) -> dict[str, int]:
    """How many steps each Celery worker ran, from the runs' event logs."""
    import dagster as dg

    counts: dict[str, int] = {}
    for run in instance.get_runs(dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC))):
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            if event and "in celery worker" in (event.message or ""):
                worker = event.engine_event_data.metadata["Celery worker"].value
                counts[worker] = counts.get(worker, 0) + 1
    return dict(sorted(counts.items()))


def outputs(cluster) -> dict[str, int]:
    """Raw readings in the lake and rows of each aggregate table in the warehouse."""
    from sensor_platform.datasets import REGISTRY
    from sensor_platform.lake import layout

    lake, warehouse = cluster.lake(), cluster.warehouse()
    counts = {"raw": sum(lake.row_count(f.path) for f in lake.list_files(layout.RAW))}
    for table in TABLES:
        counts[table] = warehouse.read(REGISTRY.get(table).table_spec()).num_rows
    return counts


def reset(cluster) -> None:
    """Back to landing only: every other lake folder and every warehouse table goes."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    bucket, prefix = cluster.env["SENSOR_LAKE_ROOT"].removeprefix("s3://").split("/", 1)
    client = cluster.s3()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [
            {"Key": o["Key"]}
            for o in page.get("Contents", [])
            if not o["Key"].startswith(f"{prefix}/landing/")
        ]
        for batch in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys[batch : batch + 1000]})
    url = make_url(cluster.warehouse_url).set(drivername="postgresql")
    with psycopg2.connect(url.render_as_string(hide_password=False)) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_user")
        for (table,) in cur.fetchall():
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def phase(cluster, instance, workers: int, args, label: str) -> dict:
    started_workers = [cluster.start_worker(f"{label}-w{k}") for k in range(1, workers + 1)]
    for worker in started_workers:
        worker.wait_ready()
    since, machine, own = time.time(), machine_busy_seconds(), time.process_time()
    cpu = GroupCpu([w.process.pid for w in started_workers])
    seconds = backfill(cluster, args.hours, args.hours_per_run)
    worker_cpu, machine = cpu.seconds(), machine_busy_seconds() - machine
    own = time.process_time() - own
    for worker in started_workers:
        worker.stop()
    result = {
        "workers": workers,
        "seconds": round(seconds, 1),
        # the sampling covers the phase from its pool's start: a little more than `seconds`
        "workers_cpu_seconds": round(worker_cpu, 1),
        # this process serves the lake (moto) and samples /proc: nearly all of it is moto
        "moto_cpu_seconds": round(own, 1),
        "machine_busy_cores": round(machine / (time.time() - since), 2),
        "steps_per_worker": steps_per_worker(instance, since),
        "outputs": outputs(cluster),
    }
    print(json.dumps(result), flush=True)
    reset(cluster)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--hours-per-run", type=int, default=6)
    parser.add_argument("--devices-scale", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="each round times both, alternating")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    from sensor_platform.simulator.fleet import DEFAULT_FLEET_FILE, load_fleet
    from sensor_platform_tests.celery_cluster import celery_cluster
    from sensor_platform_tests.conftest import POSTGRES_URL, free_port

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    folder = Path(tempfile.mkdtemp(prefix="scale-out-"))
    devices = json.loads(DEFAULT_FLEET_FILE.read_text(encoding="utf-8"))
    fleet_file = folder / "fleet.json"  # the packaged fleet, --devices-scale times over
    fleet_file.write_text(
        json.dumps(
            [
                {**d, "device_id": f"{d['device_id']}-{k:03d}"}
                for k in range(args.devices_scale)
                for d in devices
            ]
        )
    )
    fleet = load_fleet(fleet_file)
    try:
        with celery_cluster(
            folder / "cluster",
            POSTGRES_URL,
            f"http://127.0.0.1:{port}",
            SENSOR_FLEET_FILE=str(fleet_file),
            SENSOR_DUCKDB_THREADS="1",  # one core per step: the workers share two
            SENSOR_LANDING_RETENTION_HOURS="1000000",  # both phases merge the same landing files
        ) as cluster:
            os.environ.update(cluster.env)  # this process orchestrates: the same settings
            os.environ.pop("DAGSTER_HOME", None)
            with cluster.instance() as instance:
                for pool, slots in POOLS.items():
                    instance.event_log_storage.set_concurrency_slots(pool, slots)
                first = cluster.start_worker("landing")
                first.wait_ready()
                landed = land(cluster, instance, args.hours)
                first.stop()
                print(
                    f"landed {args.hours} h of {len(fleet.devices)} devices in {landed:.1f} s",
                    flush=True,
                )
                rounds = []
                for number in range(args.rounds):  # 1, 2 then 2, 1 ...: the machine is shared
                    order = (1, 2) if number % 2 == 0 else (2, 1)
                    timed = {
                        n: phase(cluster, instance, n, args, f"round{number + 1}-{n}")
                        for n in order
                    }
                    rounds.append(timed)
    finally:
        moto.stop()
    same = len({json.dumps(t[n]["outputs"]) for t in rounds for n in (1, 2)}) == 1
    print(f"load average at the end: {os.getloadavg()}")
    print(
        f"\n{args.hours}-hour backfill (raw_job in runs of {args.hours_per_run} h, then "
        f"rollups_job), {rounds[0][1]['outputs']['raw']:,} readings:"
    )
    for number, timed in enumerate(rounds, 1):
        one, two = timed[1]["seconds"], timed[2]["seconds"]
        print(f"  round {number}: 1 worker {one:6.1f} s, 2 workers {two:6.1f} s: {one / two:.2f}x")
    best_one = min(t[1]["seconds"] for t in rounds)
    best_two = min(t[2]["seconds"] for t in rounds)
    print(f"  best     : 1 worker {best_one:6.1f} s, 2 workers {best_two:6.1f} s: "
          f"{best_one / best_two:.2f}x (aim 1.6x)")  # fmt: skip
    print(f"  same outputs in every phase: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
