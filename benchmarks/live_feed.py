"""What the live pipeline of `make ui` costs: the simulated feed through the real daemon.

Starts `dagster-daemon` on `make ui`'s instance (SQLite, queued runs, every run its own process)
with the platform's code location on its default settings (the feed sensor every 30 s, the raw
sensor every 30 s, automation on), lets it run for `--minutes`, and prints the runs launched per
job (and per hour of wall time), the deepest run queue seen, and the CPU seconds of the daemon's
process group (daemon, code server, run workers) per minute of simulated data landed.

Baseline, same run, same machine: the same simulated windows landed and compacted in this one
process with the ground-floor functions (simulate, normalize, land, compact the raw hours, minute
aggregates): the work itself, without Dagster's processes, runs and events.

    make benchmark-live-feed                     # 6 minutes
    .venv/bin/python benchmarks/live_feed.py --minutes 3
"""

import argparse
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform_tests.daemon import GroupCpu, running_daemon

JOBS = ("simulated_feed_job", "raw_job", "minute_job", "rollups_job", "anomaly_alerts_job")
QUEUED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]


def measure_daemon(minutes: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="live-feed-", ignore_cleanup_errors=True) as folder:
        today = datetime.now(UTC).date()
        settings = {
            "SENSOR_DATA_DIR": str(Path(folder) / "data"),
            "SENSOR_PARTITIONS_START": (today - timedelta(days=1)).isoformat(),
        }
        with running_daemon(Path(folder), settings, DEV_INSTANCE_YAML) as daemon:
            cpu = GroupCpu(daemon.process.pid).start()
            started, deepest, stop = time.monotonic(), [0], threading.Event()

            def watch_queue() -> None:
                while not stop.wait(2):
                    queued = daemon.instance.get_runs_count(dg.RunsFilter(statuses=QUEUED))
                    deepest[0] = max(deepest[0], queued)

            watcher = threading.Thread(target=watch_queue, daemon=True)
            watcher.start()
            time.sleep(minutes * 60)
            stop.set()
            watcher.join()
            wall_minutes = (time.monotonic() - started) / 60
            cpu_s = cpu.stop()
            runs = {job: daemon.runs(job) for job in JOBS}
            windows = [
                (datetime.fromisoformat(c["start"]), datetime.fromisoformat(c["end"]))
                for r in runs["simulated_feed_job"]
                if r.status == dg.DagsterRunStatus.SUCCESS
                for c in [r.run_config["ops"]["land_simulated_window"]["config"]]
            ]
            failed = sum(
                1 for rs in runs.values() for r in rs if r.status == dg.DagsterRunStatus.FAILURE
            )
    landed = sum((e - s).total_seconds() for s, e in windows) / 60
    return {
        "wall_minutes": wall_minutes,
        "runs": {job: len(rs) for job, rs in runs.items() if rs},
        "failed": failed,
        "deepest_queue": deepest[0],
        "cpu_s": cpu_s,
        "landed_minutes": landed,
        "windows": windows,
    }


def measure_baseline(windows: list[tuple[datetime, datetime]]) -> dict:
    """The same windows, landed and compacted in this process (no Dagster)."""
    from sensor_platform.lake import layout
    from sensor_platform.lake.compaction import compact_raw_hour
    from sensor_platform.lake.landing import land_batch
    from sensor_platform.lake.store import Lake
    from sensor_platform.readings.normalize import normalize_messages
    from sensor_platform.readings.schema import READING_SCHEMA
    from sensor_platform.rollups.compute import minute_aggregates
    from sensor_platform.simulator.fleet import load_fleet
    from sensor_platform.simulator.source import SimulatorSource

    fleet = load_fleet()
    source, cadences = SimulatorSource(fleet), fleet.cadences()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="live-feed-baseline-") as folder:
        lake = Lake(str(Path(folder) / "lake"))
        hours = set()
        for start, end in windows:
            with source.read({"start": start.isoformat(), "end": end.isoformat()}) as batch:
                normalized = normalize_messages(batch.messages, batch_id=batch.batch_id)
                hours |= set(land_batch(lake, batch.batch_id, normalized.readings,
                                        normalized.quarantine).hours)  # fmt: skip
            # the raw sensor follows every batch: compact its hours and their minutes
            for hour in sorted(hours):
                compact_raw_hour(lake, hour)
                raw = lake.dataset([layout.raw_partition_file(hour)], READING_SCHEMA)
                minute_aggregates(raw, cadences)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": cpu, "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="wall minutes of live feed")
    args = parser.parse_args()
    live = measure_daemon(args.minutes)
    base = measure_baseline(live["windows"])
    landed, per_hour = live["landed_minutes"], 60 / live["wall_minutes"]
    print(f"live feed through the daemon: {live['wall_minutes']:.1f} min of wall time, "
          f"{landed:.0f} min of simulated data landed in {len(live['windows'])} feed runs")  # fmt: skip
    print(f"  runs launched: {live['runs']} (failed: {live['failed']})")
    print("  per hour of wall time: "
          + ", ".join(f"{job} {n * per_hour:.0f}" for job, n in live["runs"].items()))  # fmt: skip
    print(f"  deepest run queue: {live['deepest_queue']} queued")
    if not landed:
        print("  nothing landed: no figures per landed minute")
        return
    daemon_per_minute, base_per_minute = live["cpu_s"] / landed, base["cpu_s"] / landed
    print(f"  CPU: {live['cpu_s']:.1f} s in all, {daemon_per_minute:.2f} s per landed minute")
    print(f"baseline, the same windows landed and compacted in one process: "
          f"{base['cpu_s']:.1f} s CPU, {base_per_minute:.2f} s per landed minute")  # fmt: skip
    print(f"daemon / baseline CPU per landed minute: {daemon_per_minute / base_per_minute:.1f}x")


if __name__ == "__main__":
    main()
