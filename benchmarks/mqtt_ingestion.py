"""Benchmark: an MQTT session to raw partitions end to end, against paho-mqtt's own ceiling.

    .venv/bin/python benchmarks/mqtt_ingestion.py [--readings 200000] [--repeat 3]
        [--max-messages 50000] [--idle-seconds 0.2] [--devices-scale 50] [--broker HOST:PORT]

Starts a private Mosquitto on a free port (no queue limit, no persistence) unless --broker is
given, and builds the simulated fleet's messages (the packaged fleet repeated --devices-scale
times) until they carry --readings readings, each on `bench/<round>/<site>/<device>`. Each round
opens two persistent MQTT 5 sessions subscribed to the round's topics, publishes every message
once at QoS 1 (the broker queues a copy for each session), then times, in alternating order:

1. ceiling: a plain paho-mqtt loop (`loop()` in the calling thread, automatic PUBACKs, Receive
   Maximum 65535) that only receives every message of its session and touches each payload;
2. end to end: what the MQTT ingestion runs do, drain after drain: `drain` (connect, subscribe,
   collect up to --max-messages, the last one ended by an --idle-seconds gap), normalize with the
   topic template, `land_batch`, `acknowledge`; then `compact_raw_hour` for every landed hour.
   Readings/s counts the rows of the raw partitions.

Both read the same messages from the same broker in the same run, so the ratio of readings/s is
ceiling time / end-to-end time. The best round of each is reported (machines are noisy).
"""

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TEMPLATE = "{site_id}/{device_id}"


def fleet_messages(readings: int, scale: int) -> tuple[list[tuple[str, str, bytes]], int]:
    """(site_id, device_id, payload) of simulated messages carrying `readings` readings."""
    from kafka_ingestion import scaled_fleet

    from sensor_platform.simulator.generate import simulate

    fleet = scaled_fleet(scale)
    sites = {d.device_id: d.site_id for d in fleet.devices}
    per_message = {
        d.device_id: 1 if d.payload == "single" else len(d.metrics) for d in fleet.devices
    }
    per_hour = sum(len(d.metrics) * 3600 // d.cadence_seconds for d in fleet.devices)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # well inside the normalizer's 30-day horizon, whole hours back from now
    start = now - timedelta(hours=-(-readings // per_hour) + 1)
    messages, counted = [], 0
    for m in simulate(fleet, start, datetime.now(UTC), seed=7, anomaly_rate=0.1):
        if counted >= readings:
            break
        device = m.key.decode()
        messages.append((sites[device], device, m.payload))
        counted += per_message[device]
    return messages, len(fleet.devices)


def ceiling(settings, expected: int) -> dict:
    """Receive every message of the session with a plain paho loop; nothing else."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    counted = {"messages": 0, "bytes": 0}

    def on_message(_client, _userdata, message):
        counted["messages"] += 1
        counted["bytes"] += len(message.payload)

    started = time.perf_counter()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,
    )
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    properties.ReceiveMaximum = 65535
    client.connect(settings.host, settings.port, clean_start=False, properties=properties)
    deadline = time.monotonic() + 600
    while counted["messages"] < expected and time.monotonic() < deadline:
        if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError("the ceiling's connection failed")
    for _ in range(5):  # let the last PUBACKs out
        client.loop(0.01)
    client.disconnect()
    return {**counted, "seconds": time.perf_counter() - started}


def pipeline(settings, expected: int, lake_root: str, max_messages: int, idle: float) -> dict:
    """Drain, normalize, land and acknowledge until every message is in; then compact."""
    from sensor_platform.lake.compaction import compact_raw_hour
    from sensor_platform.lake.landing import land_batch
    from sensor_platform.lake.store import Lake
    from sensor_platform.mqtt.drain import drain
    from sensor_platform.readings.normalize import normalize_messages

    lake = Lake(lake_root)
    phases = {"drain": 0.0, "normalize": 0.0, "land": 0.0, "acknowledge": 0.0, "compact": 0.0}
    messages = drains = quarantined = 0
    hours: set[datetime] = set()
    started = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[phase] += now - clock
        clock = now

    while messages < expected:
        with drain(settings, max_messages=max_messages, idle_seconds=idle) as batch:
            lap("drain")
            if not batch.messages:
                raise RuntimeError(f"the session ran dry after {messages} of {expected}")
            normalized = normalize_messages(batch.normalizer_messages(), batch_id=batch.batch_id)
            lap("normalize")
            report = land_batch(lake, batch.batch_id, normalized.readings, normalized.quarantine)
            hours |= set(report.hours)
            lap("land")
            batch.acknowledge()
            lap("acknowledge")
        messages += len(batch.messages)
        quarantined += normalized.quarantine.num_rows
        drains += 1
    rows = sum(compact_raw_hour(lake, hour).rows for hour in sorted(hours))
    lap("compact")
    return {
        "messages": messages,
        "rows": rows,
        "quarantined": quarantined,
        "drains": drains,
        "phases": phases,
        "seconds": time.perf_counter() - started,
    }


def one_round(host: str, port: int, messages, args, index: int) -> dict:
    from sensor_platform.mqtt.drain import drain
    from sensor_platform.mqtt.publish import publish
    from sensor_platform.mqtt.settings import MqttSettings

    root = f"bench/{uuid.uuid4().hex[:8]}"
    sessions = {
        name: MqttSettings(
            host=host,
            port=port,
            topics=(f"{root}/#",),
            client_id=f"{root.replace('/', '-')}-{name}",
            topic_template=f"{root}/{TEMPLATE}",
        )
        for name in ("ceiling", "pipeline")
    }
    for settings in sessions.values():
        with drain(settings, idle_seconds=0.1):
            pass  # the session and its subscription exist before anything is published
    started = time.perf_counter()
    sent = publish(sessions["pipeline"], ((f"{root}/{s}/{d}", p) for s, d, p in messages), qos=1)
    published = time.perf_counter() - started
    results = {}
    order = ("ceiling", "pipeline") if index % 2 == 0 else ("pipeline", "ceiling")
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-") as lake_root:
        for name in order:
            if name == "ceiling":
                results[name] = ceiling(sessions[name], sent)
            else:
                results[name] = pipeline(
                    sessions[name], sent, lake_root, args.max_messages, args.idle_seconds
                )
    results["publish"] = {"messages": sent, "seconds": published}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-messages", type=int, default=50_000)
    parser.add_argument("--idle-seconds", type=float, default=0.2)
    parser.add_argument("--devices-scale", type=int, default=50)
    parser.add_argument("--broker", help="HOST:PORT of a broker to use instead of a private one")
    args = parser.parse_args()

    messages, devices = fleet_messages(args.readings, args.devices_scale)
    readings = args.readings
    print(
        f"{readings:,} readings in {len(messages):,} messages from {devices} devices; "
        f"{args.repeat} rounds, drains of at most {args.max_messages:,} messages"
    )
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-broker-") as directory:
        if args.broker:
            host, _, port = args.broker.rpartition(":")
            broker = None
        else:
            from sensor_platform_tests.mosquitto import Mosquitto

            broker = Mosquitto(
                Path(directory),
                ["max_queued_messages 0", "persistence false", "allow_anonymous true"],
            ).start()
            host, port = "127.0.0.1", broker.port
        try:
            rounds = [one_round(host, int(port), messages, args, i) for i in range(args.repeat)]
        finally:
            if broker is not None:
                broker.stop()

    for i, r in enumerate(rounds):
        c, p = r["ceiling"], r["pipeline"]
        print(
            f"round {i + 1}: publish {r['publish']['seconds']:.2f} s, ceiling "
            f"{c['seconds']:.2f} s, end to end {p['seconds']:.2f} s ({p['drains']} drains), "
            f"ratio {c['seconds'] / p['seconds']:.2f}"
        )
    best_c = min((r["ceiling"] for r in rounds), key=lambda c: c["seconds"])
    best_p = min((r["pipeline"] for r in rounds), key=lambda p: p["seconds"])
    rows = best_p["rows"]
    print()
    print(f"{'method':<44}{'seconds':>9}{'messages/s':>13}{'readings/s':>13}")
    ceiling_rate = best_c["messages"] / best_c["seconds"] * (rows / best_p["messages"])
    print(
        f"{'ceiling (paho loop, receive only)':<44}{best_c['seconds']:>9.2f}"
        f"{best_c['messages'] / best_c['seconds']:>13,.0f}{ceiling_rate:>13,.0f}"
    )
    print(
        f"{'end to end (drain+normalize+land+ack+compact)':<44}{best_p['seconds']:>9.2f}"
        f"{best_p['messages'] / best_p['seconds']:>13,.0f}{rows / best_p['seconds']:>13,.0f}"
    )
    print(f"\nend to end / ceiling (best of each): {best_c['seconds'] / best_p['seconds']:.2f}")
    total = sum(best_p["phases"].values())
    shares = ", ".join(f"{k} {v / total:.0%}" for k, v in best_p["phases"].items())
    print(f"end-to-end time: {shares}; raw rows {rows:,}, quarantined {best_p['quarantined']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
