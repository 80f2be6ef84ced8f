"""The production setup as files: docker-compose.yml, dagster.yaml, workspace.yaml, the Dockerfile
and .env.example must agree with each other and with the code. No Docker engine runs here, so the
compose file is read as data, with compose's variable interpolation applied from .env.example."""

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from sensor_platform.cli import build_parser
from sensor_platform.defs.dbt import dbt_definitions
from sensor_platform.defs.ingest import MAX_RUNTIME_TAG, SOURCES, landing_job
from sensor_platform.defs.pools import POOL_LIMITS
from sensor_platform.demo import DEV_INSTANCE_YAML
from sensor_platform_tests.platform import definitions_for, settings_for

REPO = Path(__file__).resolve().parents[1]
CODE_SERVERS = {"user-code": "sensor_platform", "analytics-code": "analytics"}
DAGSTER_SERVICES = ("dagster-webserver", "dagster-daemon", *CODE_SERVERS)
SERVICES = {
    "postgres",
    "kafka",
    "mqtt",
    "minio",
    "minio-buckets",
    "mysql",
    "simulator",
    "dashboard",
    *DAGSTER_SERVICES,
}


# -- compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$ ----------
def interpolate(text: str, env: Mapping[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            out.append(_resolve(text[i + 2 : j - 1], env))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _resolve(expression: str, env: Mapping[str, str]) -> str:
    name, operator, argument = re.fullmatch(
        r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?|\?)(.*))?", expression, re.S
    ).groups()
    value = env.get(name)
    if operator == ":-":
        return value if value else interpolate(argument, env)
    if operator == "-":
        return value if value is not None else interpolate(argument, env)
    if operator in (":?", "?") and not value:
        raise KeyError(f"{name}: {argument}")
    if value is None:
        raise KeyError(f"{name} is not set and has no default")
    return value


def _walk(node, fn):
    if isinstance(node, dict):
        return {k: _walk(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return fn(node) if isinstance(node, str) else node


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def compose(env: Mapping[str, str] | None = None) -> dict:
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return _walk(raw, lambda s: interpolate(s, env_example() if env is None else env))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def option(command: list[str], *flags: str) -> str:
    for i, part in enumerate(command):
        if part in flags:
            return command[i + 1]
    raise AssertionError(f"none of {flags} in {command}")


def instance_env_vars(node) -> set[str]:
    """Every variable dagster.yaml reads through {env: NAME}."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(instance_env_vars(v) for v in node.values()))
    return set()


# -- compose ---------------------------------------------------------------------------------------
def test_compose_services_images_and_dependencies():
    services = compose()["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        assert service.get("command") or service.get("image") in {
            "postgres:16",
            "apache/kafka:3.9.1",
        }, name
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
    # the platform's services run the image of this repository's Dockerfile, never a pulled one
    for name in (*DAGSTER_SERVICES, "simulator", "dashboard"):
        assert services[name]["image"] == "sensor-platform:latest"
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    published = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), published


def test_compose_refuses_to_start_without_the_passwords():
    for secret in ("DAGSTER_PG_PASSWORD", "AWS_SECRET_ACCESS_KEY", "MYSQL_ROOT_PASSWORD"):
        env = {k: v for k, v in env_example().items() if k != secret}
        with pytest.raises(KeyError, match=secret):
            compose(env)


def test_instance_settings_reach_webserver_daemon_and_run_workers():
    services = compose()["services"]
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    needed = instance_env_vars(config)
    assert needed == {
        *(f"DAGSTER_PG_{p}" for p in ("HOST", "PORT", "USER", "PASSWORD", "DB")),
        "DAGSTER_COMPUTE_LOGS_BUCKET",
        "DAGSTER_COMPUTE_LOGS_ENDPOINT_URL",
        "AWS_REGION",
    }
    for name in DAGSTER_SERVICES:
        env = environment(services[name])
        assert needed <= set(env), name
        assert env["DAGSTER_HOME"] == "/opt/dagster/home", name
        assert env["DAGSTER_PG_HOST"] in services and env["DAGSTER_PG_HOST"] == "postgres"
    # the compute logs' bucket is the one the one-shot service creates, in MinIO
    buckets = environment(services["minio-buckets"])
    for name in DAGSTER_SERVICES:
        env = environment(services[name])
        assert env["DAGSTER_COMPUTE_LOGS_BUCKET"] == buckets["BUCKET"]
        assert env["DAGSTER_COMPUTE_LOGS_ENDPOINT_URL"] == "http://minio:9000"
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            buckets["MC_USER"],
            buckets["MC_PASSWORD"],
        )
    postgres = environment(services["postgres"])
    instance = environment(services["user-code"])
    assert postgres["POSTGRES_USER"] == instance["DAGSTER_PG_USER"]
    assert postgres["POSTGRES_PASSWORD"] == instance["DAGSTER_PG_PASSWORD"]
    assert postgres["POSTGRES_DB"] == instance["DAGSTER_PG_DB"]


def test_compose_workspace_points_at_the_code_servers():
    document = compose()
    services, configs = document["services"], document["configs"]
    entries = [
        e["grpc_server"] for e in yaml.safe_load(configs["workspace"]["content"])["load_from"]
    ]
    local = {
        e["python_module"]["location_name"]: e["python_module"]["module_name"]
        for e in yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    }
    assert {e["location_name"] for e in entries} == set(local) == set(CODE_SERVERS.values())
    for grpc in entries:
        [service] = [s for s, location in CODE_SERVERS.items() if location == grpc["location_name"]]
        code_server = services[service]["command"]
        assert code_server[:3] == ["dagster", "code-server", "start"]
        assert grpc["host"] == service
        assert str(grpc["port"]) == option(code_server, "-p", "--port")
        assert str(grpc["port"]) in services[service]["expose"]
        assert option(code_server, "-h", "--host") == "0.0.0.0"
        # the same code location as workspace.yaml (make ui, tests)
        assert option(code_server, "-m", "--module-name") == local[grpc["location_name"]]
        assert option(code_server, "--location-name") == grpc["location_name"]
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    assert local[tool["code_location_name"]] == tool["module_name"]
    for name in ("dagster-webserver", "dagster-daemon"):
        service = services[name]
        mounted = {c["target"] for c in service["configs"] if c["source"] == "workspace"}
        assert option(service["command"], "-w", "--workspace") in mounted, name
        for code_server in CODE_SERVERS:
            assert service["depends_on"][code_server]["condition"] == "service_healthy"


def test_platform_settings_point_at_the_compose_servers():
    services = compose()["services"]
    env = environment(services["user-code"])
    kafka = environment(services["kafka"])
    internal = dict(
        listener.split("://") for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )["INTERNAL"]
    assert env["SENSOR_KAFKA_BOOTSTRAP_SERVERS"] == internal == "kafka:9092"
    assert env["SENSOR_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "9000:9000" in services["minio"]["ports"]
    minio = environment(services["minio"])
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
    )
    assert env["SENSOR_LAKE_ROOT"].startswith("s3://")
    warehouse = re.fullmatch(
        r"postgresql\+psycopg2://([^:]+):([^@]+)@postgres:5432/(\w+)", env["SENSOR_WAREHOUSE_URL"]
    )
    assert warehouse, env["SENSOR_WAREHOUSE_URL"]
    assert (
        f"CREATE DATABASE {warehouse.group(3)};" in compose()["configs"]["postgres-init"]["content"]
    )
    assert env["SENSOR_SOURCE"] == "kafka"
    assert services["user-code"]["env_file"] == [{"path": ".env", "required": False}]


def test_simulator_publishes_to_the_kafka_service():
    services = compose()["services"]
    command = services["simulator"]["command"]
    assert command[:2] == ["sensor-platform", "simulate"]
    args = build_parser().parse_args(command[1:])  # every flag exists and parses
    assert (args.to, args.bootstrap_servers) == ("kafka", "kafka:9092")
    topics = environment(services["user-code"])["SENSOR_KAFKA_TOPICS"].split(",")
    assert args.topic in topics
    assert services["simulator"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_dashboard_reads_the_platforms_warehouse_and_lake():
    services = compose()["services"]
    dashboard, platform = services["dashboard"], environment(services["user-code"])
    args = build_parser().parse_args(dashboard["command"][1:])  # every flag exists and parses
    assert (args.command, args.host, args.port) == ("dashboard", "0.0.0.0", 8501)
    assert f"{args.port}:{args.port}" in dashboard["ports"]
    env = environment(dashboard)
    for name in ("SENSOR_WAREHOUSE_URL", "SENSOR_LAKE_ROOT", "SENSOR_S3_ENDPOINT_URL"):
        assert env[name] == platform[name], name
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        platform["AWS_ACCESS_KEY_ID"],
        platform["AWS_SECRET_ACCESS_KEY"],
    )
    assert not {k for k in env if k.startswith("DAGSTER_PG")}  # no access to Dagster's instance
    assert "_stcore/health" in " ".join(dashboard["healthcheck"]["test"])
    assert dashboard["depends_on"]["postgres"]["condition"] == "service_healthy"


# -- dagster.yaml ----------------------------------------------------------------------------------
def test_production_instance_config_is_valid_and_limits_what_the_code_uses(tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's own schema validation
    postgres = config["storage"]["postgres"]["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 would pick psycopg 3
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": False,
    }
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] == 10
    assert (
        config["run_monitoring"]["max_runtime_seconds"] == 12 * 3600
    )  # runs with no tag of their own
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] == 7
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    # every source's landing runs carry the tag a limit names; an MQTT session drains alone
    named = {(limit["key"], limit.get("value")): limit["limit"] for limit in limits}
    for source in SOURCES:
        job = landing_job(source)
        assert ("sensor_platform/feed", job.tags["sensor_platform/feed"]) in named
    assert named["sensor_platform/feed", "mqtt"] == 1
    assert config["concurrency"]["pools"]["default_limit"] == 1


def test_every_pool_the_code_uses_is_created_at_deploy_time(tmp_path):
    """init-instance creates POOL_LIMITS: every pool a step of either code location uses."""
    platform = definitions_for(tmp_path)
    analytics = dbt_definitions(settings_for(tmp_path))
    used = {
        pool
        for defs in (platform, analytics)
        for assets in defs.resolve_asset_graph().assets_defs
        if assets.is_executable
        for pool in assets.node_def.pools
    }
    assert used == set(POOL_LIMITS) == {"raw_sensor_readings", "warehouse"}
    # landing runs end at their maximum runtime, from the settings
    for source in SOURCES:
        job = platform.resolve_job_def(source.job)
        assert job.tags[MAX_RUNTIME_TAG] == "900"
    short = definitions_for(tmp_path, SENSOR_LANDING_MAX_RUNTIME_SECONDS="60")
    assert short.resolve_job_def("kafka_ingest_job").tags[MAX_RUNTIME_TAG] == "60"


def test_dev_instance_stays_embedded(tmp_path):
    # `make demo` / `make ui` keep their generated SQLite instance: no server settings in it
    (tmp_path / "dagster.yaml").write_text(DEV_INSTANCE_YAML)
    config, _ = dagster_instance_config(str(tmp_path))
    assert "storage" not in config  # SQLite under DAGSTER_HOME
    # ... and the same behaviour as production for what decides when runs start and recover
    production = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["run_retries"] == production["run_retries"]
    assert config["concurrency"]["pools"] == {"default_limit": 1}
    for key in ("free_slots_after_run_end_seconds", "max_runtime_seconds", "poll_interval_seconds"):
        assert config["run_monitoring"][key] == production["run_monitoring"][key], key


# -- Dockerfile and .env.example -------------------------------------------------------------------
def test_dockerfile_builds_the_user_code_image():
    text = (REPO / "Dockerfile").read_text()
    instructions = [
        line.strip()
        for line in text.replace("\\\n", " ").splitlines()
        if line.strip()[:1].isupper()
    ]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "RUN pip install -c constraints.txt ." in instructions
    env = " ".join(i for i in instructions if i.startswith("ENV "))
    assert "DAGSTER_HOME=/opt/dagster/home" in env
    assert "SENSOR_DBT_PROJECT_DIR=/opt/sensor-platform/dbt_project" in env
    assert "COPY dagster.yaml ${DAGSTER_HOME}/dagster.yaml" in instructions
    assert "COPY dbt_project ./dbt_project" in instructions
    assert any("sensor-platform dbt-parse" in i for i in instructions)  # the manifest is built in
    cmd = yaml.safe_load(next(i for i in instructions if i.startswith("CMD "))[4:])
    assert cmd == compose()["services"]["user-code"]["command"]


def test_the_image_creates_the_pools_before_the_daemon_starts():
    text = (REPO / "Dockerfile").read_text()
    assert "COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" in text
    assert 'ENTRYPOINT ["docker-entrypoint.sh"]' in text
    script = (REPO / "docker-entrypoint.sh").read_text()
    assert (REPO / "docker-entrypoint.sh").stat().st_mode & 0o111  # executable in the image
    commands = [line.strip() for line in script.splitlines() if line.strip()[:1] not in "#"]
    init = commands.index("sensor-platform init-instance")
    assert commands[init - 1] == 'if [ "$1" = "dagster-daemon" ]; then'
    assert commands[-1] == 'exec "$@"'  # then the service's own command, as PID 1
    assert build_parser().parse_args(["init-instance"]).command == "init-instance"
    services = compose()["services"]
    assert services["dagster-daemon"]["command"][0] == "dagster-daemon"
    assert "entrypoint" not in services["dagster-daemon"]  # the image's, with the init


def test_compose_reads_only_variables_that_env_example_lists():
    raw = (REPO / "docker-compose.yml").read_text()
    in_compose = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw.replace("$${", "")))
    assert sorted(name for name in in_compose if name not in env_example()) == []
