"""Alert latency through the real daemon: from a reading produced to Kafka to its webhook request.

Starts, per setting, what `SENSOR_SOURCE=kafka make ui` runs: `dagster-daemon` on the local
instance (`make ui`'s dagster.yaml: queued runs, every run its own process), the platform's code
location, a local Kafka-protocol broker (Tansu) and a local HTTP receiver standing in for the
webhook. A producer thread sends a fleet's normal readings every second, and every `--every`
seconds one reading of 75 °C from a device never seen before (a new episode of the critical
`temperature_high` rule). Latency = the receiver's arrival time of that episode's "opened" notice
- the time the reading was produced. The landing run of its Kafka range announces it (the fast
alarm path); raw partitions and the hourly detection run meanwhile as they do in production.

Each latency is split at the landing run that sent it: waiting for the Kafka sensor's tick (the
produce time to the run's creation), the run queue (creation to launch), starting the run's
process (launch to the run's start: a new Python process importing the code location) and the
run itself (start to the request: reading the range, landing, detection, the request).

CPU: user+system seconds of the daemon's process group (daemon, code server, run workers; sampled
every 0.5 s from /proc, so a process that lives less than that is missed), per minute of wall time.
The broker, the receiver and the producer (this process) are not counted.

    make benchmark-alerts                                   # both settings, 5 minutes each
    .venv/bin/python benchmarks/alert_latency.py --minutes 2 --settings low-latency
"""

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from dagster import DagsterEventType

from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform.kafka.broker import start_local_broker
from sensor_platform.kafka.client import ensure_topic, produce
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform.notify.receiver import WebhookReceiver
from sensor_platform_tests.daemon import GroupCpu, running_daemon

PATH = "hooks/latency"
SETTINGS = {
    # the platform's defaults: the Kafka sensor polls every 30 s, raw partitions every 30 s
    "default": {},
    # the documented low-latency setting (README, Anomalies and alerts)
    "low-latency": {"SENSOR_KAFKA_POLL_INTERVAL_SECONDS": "2"},
}
AIMS_P95_S = {"default": 45.0, "low-latency": 15.0}
FIRE_C = 75.0  # above temperature_high's critical threshold


def reading(device: str, at: datetime, temperature: float) -> bytes:
    return orjson.dumps(
        {"equipment_id": device, "facility_id": "FAC-BENCH", "measured_at": at.isoformat(),
         "temperature": temperature, "humidity": 40.0}
    )  # fmt: skip


def measure(name: str, minutes: float, every_s: float, devices: int, broker) -> dict:
    topic = f"bench.alerts.{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(broker.bootstrap, topics=(topic,))
    ensure_topic(kafka, topic, 1)
    receiver = WebhookReceiver().start()
    produced: dict[str, datetime] = {}  # fire device -> produce time
    with tempfile.TemporaryDirectory(prefix="alert-latency-", ignore_cleanup_errors=True) as folder:
        today = datetime.now(UTC).date()
        settings = {
            "SENSOR_SOURCE": "kafka",
            "SENSOR_DATA_DIR": str(Path(folder) / "data"),
            "SENSOR_PARTITIONS_START": (today - timedelta(days=1)).isoformat(),
            "SENSOR_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "SENSOR_KAFKA_TOPICS": topic,
            "SENSOR_ALERT_WEBHOOK_URL": receiver.url(PATH),
            **SETTINGS[name],
        }
        with running_daemon(Path(folder), settings, DEV_INSTANCE_YAML) as daemon:
            cpu = GroupCpu(daemon.process.pid).start()
            started = time.monotonic()
            deadline = started + minutes * 60
            next_fire, fires = started + 10, 0
            while time.monotonic() < deadline:
                now = datetime.now(UTC)
                batch = [
                    (None, reading(f"BENCH-D{i:03d}", now, 22.0 + (i % 5) / 10))
                    for i in range(devices)
                    if int(now.timestamp()) % 10 == i % 10  # every device every 10 s
                ]
                fire = None
                if time.monotonic() >= next_fire:
                    fires += 1
                    fire = f"BENCH-FIRE-{fires:04d}"
                    batch.append((None, reading(fire, now, FIRE_C)))
                    next_fire += every_s
                produce(kafka, topic, batch)
                if fire:
                    produced[fire] = datetime.now(UTC)
                time.sleep(max(0.0, 1 - (datetime.now(UTC) - now).total_seconds()))
            # the last fires: wait for their notices (at most 2 minutes)
            settle = time.monotonic() + 120
            while time.monotonic() < settle and len(_arrivals(receiver)) < len(produced):
                time.sleep(1)
            wall_minutes = (time.monotonic() - started) / 60
            cpu_s = cpu.stop()
            runs = [
                daemon.instance.get_run_record_by_id(r.run_id)
                for r in daemon.runs("kafka_ingest_job")
            ]
            phases = {r.dagster_run.run_id: _phases(daemon.instance, r.dagster_run.run_id)
                      for r in runs}  # fmt: skip
            launched = {job: len(daemon.runs(job)) for job in ("kafka_ingest_job", "raw_job")}
    receiver.stop()
    arrivals = _arrivals(receiver)
    samples = []
    for device, at in produced.items():
        if device not in arrivals:
            continue
        arrived = arrivals[device]
        run = _sending_run(runs, arrived)
        split = None
        if run is not None:
            created = run.create_timestamp.astimezone(UTC)
            launched_at, started_at = phases[run.dagster_run.run_id]
            split = (
                (created - at).total_seconds(),
                (launched_at - created).total_seconds(),
                (started_at - launched_at).total_seconds(),
                (arrived - started_at).total_seconds(),
            )
        samples.append(((arrived - at).total_seconds(), split))
    return {
        "name": name,
        "fires": len(produced),
        "samples": samples,
        "missing": sorted(set(produced) - set(arrivals)),
        "cpu_s_per_min": cpu_s / wall_minutes,
        "launched": launched,
        "wall_minutes": wall_minutes,
    }


def _arrivals(receiver: WebhookReceiver) -> dict[str, datetime]:
    """Fire device -> arrival of its episode's first "opened" notice."""
    arrivals: dict[str, datetime] = {}
    for request in receiver.received(PATH):
        for notice in request.payload["notices"]:
            device = notice["episode"]["device_id"]
            if device.startswith("BENCH-FIRE-") and notice["events"][0] == "opened":
                arrivals.setdefault(device, request.received_at)
    return arrivals


def _phases(instance, run_id: str) -> tuple[datetime, datetime]:
    """When the run queue launched the run, and when its process began executing it."""
    at = {}
    for entry in instance.all_logs(run_id):
        kind = entry.dagster_event_type
        if kind in (DagsterEventType.RUN_STARTING, DagsterEventType.RUN_START):
            at.setdefault(kind, datetime.fromtimestamp(entry.timestamp, UTC))
    return at.get(DagsterEventType.RUN_STARTING), at.get(DagsterEventType.RUN_START)


def _sending_run(runs, arrived: datetime):
    """The landing run that was running when the request arrived."""
    for run in runs:
        if run.start_time is None or run.end_time is None:
            continue
        start = datetime.fromtimestamp(run.start_time, UTC)
        end = datetime.fromtimestamp(run.end_time, UTC)
        if start <= arrived <= end:
            return run
    return None


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def report(result: dict) -> None:
    name, samples = result["name"], result["samples"]
    print(f"\n{name}: {result['fires']} fire readings, {len(samples)} notices received, "
          f"{result['wall_minutes']:.1f} min, runs launched {result['launched']}")  # fmt: skip
    if result["missing"]:
        print(f"  NO NOTICE for {len(result['missing'])}: {', '.join(result['missing'])}")
    if not samples:
        return
    total = [s for s, _ in samples]
    print(f"  {'seconds':<34}{'p50':>7}{'p95':>7}{'max':>7}")
    print(f"  {'produced -> webhook request':<34}"
          f"{pct(total, 50):>7.1f}{pct(total, 95):>7.1f}{max(total):>7.1f}")  # fmt: skip
    splits = [s for _, s in samples if s is not None]
    parts = ("  waiting for the sensor's tick", "  in the run queue",
             "  starting the run's process", "  in the run (read, land, send)")  # fmt: skip
    for index, part in enumerate(parts):
        values = [s[index] for s in splits]
        if values:
            print(f"  {part:<34}{pct(values, 50):>7.1f}{pct(values, 95):>7.1f}{max(values):>7.1f}")
    aim = AIMS_P95_S[name]
    print(f"  p95 / aim ({aim:g} s): {pct(total, 95) / aim:.2f}    "
          f"CPU: {result['cpu_s_per_min']:.1f} s per minute")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="per setting")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between fire readings")
    parser.add_argument("--devices", type=int, default=100, help="normal devices, every 10 s")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    with start_local_broker() as broker:
        results = [
            measure(name, args.minutes, args.every, args.devices, broker) for name in args.settings
        ]
    for result in results:
        report(result)
    if len(results) == 2 and all(r["samples"] for r in results):
        default, fast = (pct([s for s, _ in r["samples"]], 95) for r in results)
        cost = results[1]["cpu_s_per_min"] / results[0]["cpu_s_per_min"]
        print(f"\nlow-latency vs default: p95 {fast / default:.2f}x, CPU {cost:.2f}x")


if __name__ == "__main__":
    main()
