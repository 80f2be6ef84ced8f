"""`sensor-platform ...`: the commands a user types (simulate, demo, sql, docs, broker, dbt-parse,
dashboard, init-instance, celery-worker)."""

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from sensor_platform.simulator.fleet import load_fleet
from sensor_platform.simulator.generate import anomaly_labels, simulate, write_jsonl, write_labels


def _utc(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _positive(kind):
    def parse(value: str):
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return number

    return parse


def _cmd_simulate(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.fleet)
    start = args.start or datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(
        minutes=args.minutes
    )
    end = start + timedelta(minutes=args.minutes)
    messages = simulate(
        fleet, start, end, seed=args.seed, anomaly_rate=args.anomaly_rate,
        late_rate=args.late_rate, malformed_rate=args.malformed_rate,
    )  # fmt: skip
    if args.count:
        messages = islice(messages, args.count)
    pause = args.interval or (1 / args.rate if args.rate else 0)
    if pause:
        messages = _paced(messages, pause)
    if args.labels:
        with open(args.labels, "w", encoding="utf-8") as out:
            write_labels(
                anomaly_labels(fleet, start, end, seed=args.seed, anomaly_rate=args.anomaly_rate),
                out,
            )
    if args.to == "kafka":
        from sensor_platform.kafka.client import produce
        from sensor_platform.kafka.settings import KafkaSettings

        settings = KafkaSettings(bootstrap_servers=args.bootstrap_servers, topics=(args.topic,))
        sent = produce(settings, args.topic, ((m.key, m.payload) for m in messages))
        print(
            f"published {sent} messages to {args.topic} on {args.bootstrap_servers}",
            file=sys.stderr,
        )
        return 0
    if args.to == "mqtt":
        return _publish_mqtt(args, fleet, messages)
    if args.out in (None, "-"):
        write_jsonl(messages, sys.stdout)
    else:
        with open(args.out, "w", encoding="utf-8") as out:
            write_jsonl(messages, out)
    return 0


def _publish_mqtt(args: argparse.Namespace, fleet, messages) -> int:
    from sensor_platform.mqtt.publish import publish
    from sensor_platform.mqtt.settings import MqttSettings
    from sensor_platform.mqtt.topics import TopicTemplate

    password = None
    if args.mqtt_password_file:
        with open(args.mqtt_password_file, encoding="utf-8") as secret:
            password = secret.read().strip()
    settings = MqttSettings(
        host=args.mqtt_host,
        port=args.mqtt_port,
        client_id="sensor-platform-simulator",
        username=args.mqtt_username,
        password=password,
        tls_ca_file=args.mqtt_tls_ca_file,
        protocol=args.mqtt_protocol,
    )
    template = TopicTemplate.parse(args.mqtt_topic_template)
    sites = {device.device_id: device.site_id for device in fleet.devices}

    def topics():
        for message in messages:
            device_id = message.key.decode()
            yield template.topic(site_id=sites[device_id], device_id=device_id), message.payload

    sent = publish(settings, topics(), qos=args.mqtt_qos)
    print(
        f"published {sent} messages to {args.mqtt_topic_template} on {settings.address} "
        f"(QoS {args.mqtt_qos})",
        file=sys.stderr,
    )
    return 0


def _paced(messages, pause: float):
    for i, message in enumerate(messages):
        if i:
            time.sleep(pause)
        yield message


def _cmd_demo(args: argparse.Namespace) -> int:
    from sensor_platform.demo import run_demo

    run_demo(days=args.days)
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from sensor_platform.catalog.sql_prompt import check_file, find_cli, run_builtin, run_cli
    from sensor_platform.settings import load_settings

    path = check_file(args.file or load_settings().analytics_db)
    cli = None if args.builtin else find_cli()
    if cli:
        return run_cli(cli, path, args.command)
    return run_builtin(path, args.command, sys.stdin, sys.stdout)


def _cmd_docs(args: argparse.Namespace) -> int:
    from sensor_platform.lake.store import Lake
    from sensor_platform.quality.data_docs import DOCS_PREFIX
    from sensor_platform.quality.docs_server import docs_server
    from sensor_platform.settings import load_settings

    settings = load_settings()
    # S3 keys, if any, are read by the AWS SDK itself from its usual places.
    lake = Lake(
        settings.lake_root, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
    )
    port = settings.docs_port if args.port is None else args.port
    with docs_server(lake, args.host, port) as server:
        host, port = server.server_address[:2]
        print(f"Data Docs of {lake.uri(DOCS_PREFIX)} on http://{host}:{port}/ ; Ctrl-C stops it")
        print(f"The checks link to {settings.docs_base_url}/ (SENSOR_DOCS_BASE_URL)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    from sensor_platform.kafka.broker import start_local_broker

    with start_local_broker(args.port) as broker:
        print(f"Kafka-protocol broker (Tansu, in memory) on {broker.bootstrap}; Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def _cmd_dbt_parse(args: argparse.Namespace) -> int:
    from sensor_platform.analytics.dbt_project import prepare_manifest, project_dir
    from sensor_platform.settings import load_settings

    project = project_dir(args.project_dir or load_settings().dbt_project_dir)
    parsed = prepare_manifest(project)
    print(f"dbt manifest {'written' if parsed else 'up to date'}: {project}/target/manifest.json")
    return 0


def _cmd_init_instance(args: argparse.Namespace) -> int:
    import dagster as dg

    from sensor_platform.defs.pools import create_pools

    try:
        instance = dg.DagsterInstance.get()  # $DAGSTER_HOME/dagster.yaml
    except dg.DagsterError as exc:  # DAGSTER_HOME unset or not a folder: Dagster says which
        raise RuntimeError(str(exc).splitlines()[0]) from exc
    with instance:
        limits = create_pools(instance)
    shown = ", ".join(f"{pool}={limit}" for pool, limit in limits.items())
    print(f"Dagster instance ready: pools {shown}")
    return 0


def dashboard_command(host: str, port: int) -> list[str]:
    """The `streamlit run` command line of the dashboard on host:port: headless, no usage
    statistics, no file watcher, and only the error's type on the page (details go to the log)."""
    app = Path(__file__).with_name("dashboard") / "app.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--client.showErrorDetails",
        "type",
    ]


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from sensor_platform.settings import load_settings

    settings = load_settings()
    command = dashboard_command(
        args.host or settings.dashboard_host, args.port or settings.dashboard_port
    )
    print(f"dashboard on http://{command[7]}:{command[9]}", file=sys.stderr, flush=True)
    os.execv(command[0], command)  # Streamlit takes this process: signals reach it directly


def _cmd_celery_worker(args: argparse.Namespace) -> int:
    from sensor_platform.settings import load_settings

    # The steps it runs build the code location from this environment: it must be the code
    # server's, so a worker whose settings are bad or local fails here rather than in a step.
    settings = load_settings()
    if settings.run_executor != "celery":
        raise ValueError(
            "a Celery worker needs the code location's settings: SENSOR_RUN_EXECUTOR=celery"
        )
    from sensor_platform.defs.executor import celery_worker_app, single_node_state

    for text in single_node_state(settings):  # fine on one machine, wrong across several
        print(f"sensor-platform celery-worker: warning: {text}", file=sys.stderr, flush=True)

    options = ["--concurrency", str(args.concurrency), "--loglevel", args.loglevel]
    celery_worker_app().worker_main(
        ["worker", *options, *(["--hostname", args.hostname] if args.hostname else [])]
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensor-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="emit the simulated fleet's messages as JSON lines")
    sim.add_argument("--fleet", help="fleet file (JSON); default: the packaged fleet")
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--start", type=_utc, help="first received time (UTC); default: now - minutes")
    sim.add_argument("--minutes", type=_positive(int), default=60, help="simulated minutes")
    sim.add_argument("--count", type=_positive(int), help="stop after this many messages")
    sim.add_argument("--interval", type=_positive(float), help="seconds between messages (paced)")
    sim.add_argument("--rate", type=_positive(float), help="messages per second (paced)")
    sim.add_argument("--anomaly-rate", type=float, default=0.1)
    sim.add_argument("--late-rate", type=float, default=0.0)
    sim.add_argument(
        "--malformed-rate", type=float, default=0.0, help="share sent malformed (quarantined)"
    )
    sim.add_argument("--out", help="output file; default or '-': stdout")
    sim.add_argument("--labels", help="also write ground-truth anomaly labels (JSON lines) here")
    sim.add_argument("--to", choices=["stdout", "kafka", "mqtt"], default="stdout")
    sim.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    sim.add_argument("--topic", default="sensor-readings")
    sim.add_argument("--mqtt-host", default="127.0.0.1")
    sim.add_argument("--mqtt-port", type=_positive(int), default=1883)
    sim.add_argument(
        "--mqtt-topic-template",
        default="sensors/{site_id}/{device_id}",
        help="each device's topic, from its site and device id",
    )
    sim.add_argument("--mqtt-qos", type=int, choices=[0, 1], default=1)
    sim.add_argument("--mqtt-protocol", choices=["5", "3.1.1"], default="5")
    sim.add_argument("--mqtt-username")
    sim.add_argument("--mqtt-password-file", help="a file holding the MQTT password")
    sim.add_argument("--mqtt-tls-ca-file", help="TLS on, with this CA file")
    sim.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser(
        "demo", help="simulate the last whole day(s) and run the whole graph locally"
    )
    demo.add_argument("--days", type=_positive(int), default=1)
    demo.set_defaults(func=_cmd_demo)

    sql = sub.add_parser(
        "sql", help="a read-only SQL prompt on the analysts' DuckDB file (views over the lake)"
    )
    sql.add_argument("-c", "--command", help="run this SQL and exit")
    sql.add_argument("--file", help="default: SENSOR_ANALYTICS_DB or data/analytics.duckdb")
    sql.add_argument(
        "--builtin", action="store_true", help="the built-in prompt even if the DuckDB CLI is there"
    )
    sql.set_defaults(func=_cmd_sql)

    docs = sub.add_parser(
        "docs", help="serve the lake's Data Docs over HTTP (the checks in the UI link here)"
    )
    docs.add_argument("--host", default="127.0.0.1", help="address to listen on")
    docs.add_argument("--port", type=int, help="default: SENSOR_DOCS_PORT (3030); 0: any free")
    docs.set_defaults(func=_cmd_docs)

    broker = sub.add_parser("broker", help="run a local Kafka-protocol broker (Tansu, in memory)")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(func=_cmd_broker)

    dbt_parse = sub.add_parser(
        "dbt-parse", help="write the dbt manifest the analytics code location loads (offline)"
    )
    dbt_parse.add_argument("--project-dir", help="default: SENSOR_DBT_PROJECT_DIR or dbt_project/")
    dbt_parse.set_defaults(func=_cmd_dbt_parse)

    init = sub.add_parser(
        "init-instance",
        help="create the pools the platform's steps use, with their limits, on the Dagster "
        "instance of DAGSTER_HOME (idempotent; run at every deploy, before the daemon)",
    )
    init.set_defaults(func=_cmd_init_instance)

    dashboard = sub.add_parser("dashboard", help="run the operations dashboard (Streamlit)")
    dashboard.add_argument("--host", help="default: SENSOR_DASHBOARD_HOST (127.0.0.1)")
    dashboard.add_argument("--port", type=_positive(int), help="default: SENSOR_DASHBOARD_PORT")
    dashboard.set_defaults(func=_cmd_dashboard)

    worker = sub.add_parser(
        "celery-worker",
        help="run a Celery worker that executes the platform's steps (SENSOR_RUN_EXECUTOR=celery)",
    )
    worker.add_argument("--concurrency", type=_positive(int), default=1, help="steps at once")
    worker.add_argument("--hostname", help="the worker's node name (default: celery@<host>)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=_cmd_celery_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"sensor-platform {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
