"""Alert latency: from an anomalous reading produced to its webhook request received.

Runs the real pipeline pieces in this process, at the default sensor interval (30 s, the
`minimum_interval_seconds` of simulated_feed_sensor and raw_partitions_sensor), the way the
Dagster daemon would: one thread evaluates the simulated feed sensor and lands each window it
asks for; another evaluates the raw partitions sensor (half an interval out of phase) and runs
raw_sensor_readings + sensor_readings_minute + sensor_anomalies + anomaly_alerts for each
partition it asks for (the proposed raw_job). Alerts go to a local webhook receiver, which notes
when each notice arrives.

Latency of a notice = its arrival - the moment its episode became detectable: the first
anomalous reading (plus the rule's for_seconds, or its `times` readings), or for a silence the
last reading plus the allowed gap. The fleet is the default one copied --copies times with
anomaly_rate 1 (one anomaly per device and hour), so a few minutes give enough samples.

"after landing" is measured from the moment the feed run that landed the reading finished: the
share of the latency the alert path adds, apart from the feed's minute windows. In production each
run is also launched as a new process (a few seconds each, not measured here).

    .venv/bin/python benchmarks/alert_latency.py --minutes 12          # p50/p95 at the defaults
    .venv/bin/python benchmarks/alert_latency.py --minutes 8 --interval 10
"""

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from sensor_platform.definitions import build_definitions
from sensor_platform.defs.ingest import source_named
from sensor_platform.detection.rules import load_rules
from sensor_platform.notify.receiver import WebhookReceiver
from sensor_platform.settings import load_settings
from sensor_platform.simulator.fleet import DEFAULT_FLEET_FILE, load_fleet

INTERVAL = 30.0  # seconds: the sensors' minimum_interval_seconds


def scaled_fleet(copies: int, folder: Path) -> Path:
    """The default fleet, each device copied with a suffix, as a fleet file."""
    default = json.loads(DEFAULT_FLEET_FILE.read_text(encoding="utf-8"))
    devices = [
        device | {"device_id": f"{device['device_id']}-{i:02d}"}
        for i in range(copies)
        for device in default
    ]
    path = folder / "fleet.json"
    path.write_text(json.dumps(devices))
    return path


def detectable_at(episode: dict, rules, cadences: dict[str, int]) -> datetime:
    start = datetime.fromisoformat(episode["start_time"])
    rule = rules.by_name(episode["rule"])
    cadence = cadences.get(episode["device_id"], 60)
    if rule.kind == "silent":
        return start + timedelta(seconds=episode["threshold"])
    wait = max(rule.for_seconds, (rule.times - 1) * cadence)
    return start + timedelta(seconds=wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="how long to run")
    parser.add_argument("--copies", type=int, default=20, help="copies of the default fleet")
    parser.add_argument("--interval", type=float, default=INTERVAL, help="sensor interval (s)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="alert-latency-"))
    fleet_file = scaled_fleet(args.copies, folder)
    receiver = WebhookReceiver().start()
    os.environ["SENSOR_ALERT_WEBHOOK_URL"] = receiver.url("latency")  # a secret: an EnvVar
    settings = load_settings(
        {
            "SENSOR_DATA_DIR": str(folder),
            "SENSOR_FLEET_FILE": str(fleet_file),
            "SENSOR_SIMULATOR_ANOMALY_RATE": "1",
            "SENSOR_SIMULATOR_LATE_RATE": "0",
            "SENSOR_ALERT_WEBHOOK_URL": receiver.url("latency"),
        }
    )
    definitions = build_definitions(settings)
    resources = {"lake": definitions.resources["lake"]}
    feed = source_named("simulator")
    simulated_feed_sensor = definitions.resolve_sensor_def(feed.sensor)
    raw_partitions_sensor = definitions.resolve_sensor_def("raw_partitions_sensor")
    instance = dg.DagsterInstance.ephemeral()
    feed_job, raw_job = (definitions.resolve_job_def(n) for n in (feed.job, "raw_job"))
    started = datetime.now(UTC)
    deadline = time.monotonic() + args.minutes * 60
    run_seconds: dict[str, list[float]] = {"feed": [], "raw+alerts": []}
    lock = threading.Lock()  # DuckDB warehouse: one writer at a time in this process

    landed: list[tuple[datetime, datetime, datetime]] = []  # window start, end, landed at
    jitter = random.Random(0)

    def pause(tick: float) -> None:
        # The daemon evaluates a sensor at least `interval` apart, a little later each time, so
        # the phase against the feed's minute windows drifts; a few seconds of jitter does that.
        time.sleep(max(0.0, args.interval + jitter.uniform(0, 5) - (time.monotonic() - tick)))

    def feed_loop() -> None:
        cursor = json.dumps({"next": started.replace(second=0, microsecond=0).isoformat()})
        while time.monotonic() < deadline:
            tick = time.monotonic()
            context = dg.build_sensor_context(
                instance=instance,
                cursor=cursor,
                resources={"fleet": definitions.resources["fleet"]},
            )
            result = simulated_feed_sensor(context)
            for request in result.run_requests or []:
                t = time.monotonic()
                feed_job.execute_in_process(
                    run_config=request.run_config, instance=instance, tags=request.tags
                )
                run_seconds["feed"].append(time.monotonic() - t)
                window = request.run_config["ops"][feed.op]["config"]
                landed.append(
                    (
                        datetime.fromisoformat(window["start"]),
                        datetime.fromisoformat(window["end"]),
                        datetime.now(UTC),
                    )
                )
            cursor = result.cursor or cursor
            pause(tick)

    def raw_loop() -> None:
        time.sleep(args.interval / 2)
        while time.monotonic() < deadline:
            tick = time.monotonic()
            context = dg.build_sensor_context(instance=instance, resources=resources)
            result = raw_partitions_sensor(context)
            for request in result.run_requests or []:
                t = time.monotonic()
                with lock:
                    raw_job.execute_in_process(
                        instance=instance, partition_key=request.partition_key
                    )
                run_seconds["raw+alerts"].append(time.monotonic() - t)
            pause(tick)

    print(f"running {args.minutes:g} min, {args.copies * 12} devices, interval {args.interval:g} s")
    threads = [threading.Thread(target=feed_loop), threading.Thread(target=raw_loop)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    receiver.stop()

    rules, cadences = load_rules(), load_fleet(fleet_file).cadences()
    total: dict[str, list[float]] = {}
    after_landing: list[float] = []
    for received in receiver.received("latency"):
        for notice in received.payload["notices"]:
            if notice["events"][0] != "opened":
                continue
            ready = detectable_at(notice["episode"], rules, cadences)
            if ready < started + timedelta(seconds=5):
                continue  # became detectable before the benchmark began
            total.setdefault(notice["episode"]["kind"], []).append(
                (received.received_at - ready).total_seconds()
            )
            landing = next((at for s, e, at in landed if s <= ready < e), None)
            if landing is not None:
                after_landing.append((received.received_at - landing).total_seconds())
    every = sorted(s for values in total.values() for s in values)
    if not every:
        print("no alert received: run longer (--minutes) or with more devices (--copies)")
        return
    print("latency from the reading that made the episode detectable to the webhook request")
    print(f"{'kind':<22}{'alerts':>7}{'p50 s':>8}{'p95 s':>8}{'max s':>8}")
    rows = sorted(total.items()) + [("all", every), ("all, after landing", after_landing)]
    for kind, values in rows:
        print(
            f"{kind:<22}{len(values):>7}{_pct(values, 50):>8.1f}{_pct(values, 95):>8.1f}"
            f"{max(values):>8.1f}"
        )
    for stage, values in run_seconds.items():
        if values:
            print(f"{stage} runs: {len(values)}, mean {statistics.mean(values):.2f} s in process")


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


if __name__ == "__main__":
    main()
