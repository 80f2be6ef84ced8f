"""Benchmark: Kafka topic to raw partitions end to end, against the Kafka client's own ceiling.

    .venv/bin/python benchmarks/kafka_ingestion.py [--readings 1000000] [--partitions 4]
        [--max-records-per-run 50000] [--workers 1] [--repeat 2] [--devices-scale 50]
        [--bootstrap-servers HOST:PORT] [--profile FILE]

Starts a local Kafka-protocol broker (Tansu, in memory) unless --bootstrap-servers is given, and
publishes the simulated fleet (the packaged fleet repeated --devices-scale times, so 12 x 50 = 600
devices by default) until the topic holds --readings readings. Then, each in child processes
whose peak RSS (ru_maxrss from os.wait4) is their own, and timed from a common start signal so
that interpreter start-up and imports are not counted:

1. ceiling: a kafka-python loop that only consumes every message of the topic, partition by
   partition (assign + seek, the consumer settings of sensor_platform.kafka.client, fetch sizes
   included), and touches each value;
2. end to end: what the ingestion runs do, range by range: plan_ranges, then read_messages +
   normalize_messages + land_batch per range; then compact_raw_hour for every landed hour (what
   the raw partition runs do). Readings/s counts the rows of the raw partitions.

Both run in the same environment, so both check CRC-32C with the same implementation: the
`crc32c` package (C) when installed, which the report names, else kafka-python's pure-Python one.
Both consume the same messages, so the ratio of readings/s equals ceiling time / end-to-end time.
--workers N splits both the same way over N processes (partitions for the ceiling; ranges, then
hours, for the pipeline), as N concurrent Dagster runs would. --repeat R runs R interleaved
rounds of both and keeps the best of each (machines are noisy). --profile writes a cProfile of
the pipeline's ingest child (workers=1) to FILE; profiling slows it, so its ratio means nothing.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TOPIC = "bench.readings"


def scaled_fleet(scale: int):
    from sensor_platform.simulator.fleet import DEFAULT_FLEET_FILE, parse_fleet

    devices = json.loads(DEFAULT_FLEET_FILE.read_text(encoding="utf-8"))
    return parse_fleet(
        [{**d, "device_id": f"{d['device_id']}-{k:03d}"} for k in range(scale) for d in devices]
    )


def publish(settings, readings: int, scale: int) -> dict:
    """Publish simulated messages of the last hours until they carry `readings` readings."""
    from sensor_platform.kafka.client import produce
    from sensor_platform.simulator.generate import simulate

    fleet = scaled_fleet(scale)
    per_message = {
        d.device_id: 1 if d.payload == "single" else len(d.metrics) for d in fleet.devices
    }
    per_hour = sum(len(d.metrics) * 3600 // d.cadence_seconds for d in fleet.devices)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=-(-readings // per_hour) + 1)
    counted = {"messages": 0, "readings": 0}

    def messages():
        for m in simulate(fleet, start, datetime.now(UTC), seed=7, anomaly_rate=0.1):
            if counted["readings"] >= readings:
                return
            counted["messages"] += 1
            counted["readings"] += per_message[m.key.decode()]
            yield m.key, m.payload

    started = time.perf_counter()
    produce(settings, TOPIC, messages())
    return {**counted, "seconds": time.perf_counter() - started, "devices": len(fleet.devices)}


def consume_ceiling(settings, partitions: list[int]) -> dict:
    """Consume every message of `partitions` with a plain kafka-python loop; nothing else.

    One partition at a time: kafka-python is about 10 % faster so than with every partition
    assigned at once, so this is the stricter ceiling (and the pipeline also reads one partition
    per range)."""
    from kafka import KafkaConsumer, TopicPartition

    from sensor_platform.kafka.client import partition_states, read_consumer_config

    states = partition_states(settings, [(TOPIC, p) for p in partitions])
    started = time.perf_counter()
    messages = payload_bytes = 0
    for state in states:
        # A consumer per partition, as read_messages: a reused one would first sit out the
        # broker's wait on the finished partition's last fetch.
        consumer = KafkaConsumer(**read_consumer_config(settings))  # the pipeline's settings
        tp = TopicPartition(TOPIC, state.partition)
        consumer.assign([tp])
        consumer.seek(tp, state.earliest)
        while consumer.position(tp) < state.end:
            for records in consumer.poll(timeout_ms=100).values():
                messages += len(records)
                payload_bytes += sum(len(r.value) for r in records)
        consumer.close()
    return {"messages": messages, "bytes": payload_bytes, "started": started}


def ingest_ranges(settings, lake_root: str, ranges: list[list]) -> dict:
    """What kafka_ingest_job does for each range: read, normalize, land."""
    from sensor_platform.kafka.client import read_messages
    from sensor_platform.kafka.offsets import OffsetRange
    from sensor_platform.lake.landing import land_batch
    from sensor_platform.lake.store import Lake
    from sensor_platform.readings.normalize import normalize_messages

    lake = Lake(lake_root)
    phases = {"read": 0.0, "normalize": 0.0, "land": 0.0}
    messages = quarantined = 0
    started = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[phase] += now - clock
        clock = now

    for topic, partition, start, end in ranges:
        rng = OffsetRange(topic, partition, start, end)
        batch = read_messages(settings, rng)
        lap("read")
        normalized = normalize_messages(batch, batch_id=rng.batch_id)
        lap("normalize")
        land_batch(lake, rng.batch_id, normalized.readings, normalized.quarantine)
        lap("land")
        messages += len(batch)
        quarantined += normalized.quarantine.num_rows
    return {"messages": messages, "quarantined": quarantined, "phases": phases, "started": started}


def compact_hours(lake_root: str, hours: list[str]) -> dict:
    """What the raw partition runs do for each landed hour: merge it into its raw file."""
    from sensor_platform.lake.compaction import compact_raw_hour
    from sensor_platform.lake.store import Lake

    lake = Lake(lake_root)
    started = time.perf_counter()
    rows = sum(compact_raw_hour(lake, datetime.fromisoformat(h)).rows for h in hours)
    return {"rows": rows, "phases": {"compact": time.perf_counter() - started}, "started": started}


def child_main(args: argparse.Namespace) -> None:
    from sensor_platform.kafka.settings import KafkaSettings

    work = json.loads(sys.stdin.readline())
    settings = KafkaSettings(args.bootstrap_servers, topics=(TOPIC,), request_timeout_ms=30_000)
    phase = {
        "publish": lambda: publish(settings, args.readings, args.devices_scale),
        "ceiling": lambda: consume_ceiling(settings, work["partitions"]),
        "ingest": lambda: ingest_ranges(settings, work["lake"], work["ranges"]),
        "compact": lambda: compact_hours(work["lake"], work["hours"]),
    }[args.child]
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal: imports and connections are not timed
    started = time.perf_counter()
    if args.profile and args.child == "ingest":
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(phase)
        profiler.dump_stats(args.profile)
    else:
        result = phase()
    result["finished"] = time.perf_counter()
    result.setdefault("started", started)
    print(json.dumps(result), flush=True)


def run_children(phase: str, works: list[dict], args: argparse.Namespace) -> dict:
    """Run one child per work item, start them together; wall time, results and peak RSS."""
    command = [sys.executable, __file__, "--child", phase, "--bootstrap-servers",
               args.bootstrap_servers, "--readings", str(args.readings),
               "--devices-scale", str(args.devices_scale)]  # fmt: skip
    if args.profile:
        command += ["--profile", args.profile]
    children = []
    for work in works:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        child.stdin.write(json.dumps(work) + "\n")
        child.stdin.flush()
        children.append(child)
    for child in children:
        if child.stdout.readline().strip() != "ready":
            raise SystemExit(f"{phase} child did not start")
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    results, peak_mb = [], 0.0
    for child in children:
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{phase} child failed")
        results.append(json.loads(output.strip().splitlines()[-1]))
        peak_mb = max(peak_mb, usage.ru_maxrss / 1024)  # Linux reports kilobytes
    # perf_counter is CLOCK_MONOTONIC on Linux: comparable across processes of one machine.
    wall = max(r["finished"] for r in results) - min(r["started"] for r in results)
    return {"seconds": wall, "results": results, "peak_rss_mb": peak_mb}


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topic")
    parser.add_argument("--max-records-per-run", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=1, help="processes, like concurrent runs")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best of each counts")
    parser.add_argument("--devices-scale", type=int, default=50, help="copies of the fleet")
    parser.add_argument("--bootstrap-servers", help="an existing broker (default: start Tansu)")
    parser.add_argument("--profile", help="write a cProfile of the pipeline (workers=1) here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    from sensor_platform.kafka.broker import start_local_broker
    from sensor_platform.kafka.client import ensure_topic, list_partitions, partition_states
    from sensor_platform.kafka.offsets import plan_ranges
    from sensor_platform.kafka.settings import KafkaSettings

    broker = None if args.bootstrap_servers else start_local_broker()
    args.bootstrap_servers = args.bootstrap_servers or broker.bootstrap
    settings = KafkaSettings(args.bootstrap_servers, topics=(TOPIC,), request_timeout_ms=30_000)
    try:
        if not ensure_topic(settings, TOPIC, args.partitions):
            raise SystemExit(f"topic {TOPIC} exists already: use an empty broker")
        published = run_children("publish", [{}], args)["results"][0]
        print(f"published {published['messages']:,} messages ({published['readings']:,} "
              f"readings, {published['devices']} devices) to {args.partitions} partitions "
              f"in {published['seconds']:.1f} s", flush=True)  # fmt: skip
        states = partition_states(settings, list_partitions(settings))
        plan = plan_ranges({}, states, max_records_per_run=args.max_records_per_run, on_gap="fail")
        ranges = [[r.topic, r.partition, r.start, r.end] for r in plan.ranges]
        partitions = [s.partition for s in states]
        best: dict[str, dict] = {}
        # Rounds interleave the two paths, so a busy machine slows both alike; the best counts.
        for _ in range(args.repeat):
            ceiling = run_children(
                "ceiling", [{"partitions": p} for p in split(partitions, args.workers)], args
            )
            pipeline = run_pipeline(ranges, args)
            for name, result in (("ceiling", ceiling), ("pipeline", pipeline)):
                if name not in best or result["seconds"] < best[name]["seconds"]:
                    best[name] = result
        report(args, published, best["ceiling"], best["pipeline"], len(ranges))
    finally:
        if broker is not None:
            broker.stop()


def run_pipeline(ranges: list[list], args: argparse.Namespace) -> dict:
    """Land every range, then compact every landed hour, into a fresh lake."""
    from sensor_platform.lake.compaction import landing_hours
    from sensor_platform.lake.store import Lake

    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        lake_root = f"{tmp}/lake"
        works = [{"lake": lake_root, "ranges": part} for part in split(ranges, args.workers)]
        ingest = run_children("ingest", works, args)
        hours = [h.isoformat() for h in landing_hours(Lake(lake_root))]
        works = [{"lake": lake_root, "hours": part} for part in split(hours, args.workers)]
        compact = run_children("compact", works, args)
    phases: dict[str, float] = {}
    for r in ingest["results"] + compact["results"]:
        for name, seconds in r["phases"].items():
            phases[name] = phases.get(name, 0.0) + seconds
    return {
        "seconds": ingest["seconds"] + compact["seconds"],
        "messages": sum(r["messages"] for r in ingest["results"]),
        "quarantined": sum(r["quarantined"] for r in ingest["results"]),
        "readings": sum(r["rows"] for r in compact["results"]),
        "hours": len(hours),
        "phases": phases,
        "peak_rss_mb": {"ingest": ingest["peak_rss_mb"], "compact": compact["peak_rss_mb"]},
    }


def report(args, published: dict, ceiling: dict, pipeline: dict, ranges: int) -> None:
    messages = sum(r["messages"] for r in ceiling["results"])
    readings = pipeline["readings"]
    if not messages == pipeline["messages"] == published["messages"]:
        raise SystemExit(f"message counts differ: published {published['messages']}, "
                         f"ceiling {messages}, pipeline {pipeline['messages']}")  # fmt: skip
    print(f"\n{messages:,} messages, {readings:,} readings in the raw partitions "
          f"({pipeline['quarantined']:,} messages quarantined), {ranges} ranges of <= "
          f"{args.max_records_per_run:,} records, {pipeline['hours']} hours, "
          f"workers={args.workers}, best of {args.repeat}")  # fmt: skip
    print(f"{'path':<44}{'seconds':>9}{'messages/s':>12}{'readings/s':>12}{'peak RSS':>11}")
    rows = [
        ("ceiling: kafka-python consume loop", ceiling["seconds"], ceiling["peak_rss_mb"]),
        ("end to end: read+normalize+land+compact", pipeline["seconds"],
         max(pipeline["peak_rss_mb"].values())),
    ]  # fmt: skip
    for label, seconds, peak in rows:
        print(f"{label:<44}{seconds:>9.2f}{messages / seconds:>12,.0f}"
              f"{readings / seconds:>12,.0f}{peak:>8,.0f} MB")  # fmt: skip
    from kafka.record.util import crc32c_c

    crc = "crc32c package (C)" if crc32c_c is not None else "pure Python (crc32c not installed)"
    print(f"CRC-32C check of fetched batches, both paths: {crc}")
    ratio = ceiling["seconds"] / pipeline["seconds"]
    print(f"\nend to end / ceiling: {ratio:.2f} (aim >= 0.70)")
    total = sum(pipeline["phases"].values())
    print("where the pipeline's time goes (process seconds, summed over workers):")
    for name, seconds in pipeline["phases"].items():
        print(f"  {name:<10}{seconds:>8.2f} s {100 * seconds / total:>5.1f} %")
    peaks = ", ".join(f"{k} {v:,.0f} MB" for k, v in pipeline["peak_rss_mb"].items())
    print(f"peak RSS of one process: {peaks}")


if __name__ == "__main__":
    main()
