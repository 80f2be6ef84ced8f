"""The production configurations past one machine: deploy/kubernetes/values.yaml (Dagster's Helm
chart, K8sRunLauncher) and deploy/ecs/dagster.yaml (EcsRunLauncher, S3 compute logs), beside the
repository's dagster.yaml.

Every run launcher and compute-log block is checked against its class's own config schema
(`config_type()`, processed the way Dagster processes it when the instance loads the class), so a
misspelt key or a wrong type fails here rather than in the cluster; the instance files pass
Dagster's instance schema; the queue, pools, retries, monitoring and retention are dagster.yaml's
own; and the resources each kind of run gets are computed by dagster-k8s and dagster-aws from the
run's tags.
"""

import copy
import importlib
import re
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes.config_class import ConfigurableClassData

from sensor_platform.defs.ingest import SOURCES
from sensor_platform.defs.run_resources import INGESTION_RUN_TAGS
from sensor_platform_tests.platform import definitions_for

REPO = Path(__file__).resolve().parents[1]
ROOT_INSTANCE = REPO / "dagster.yaml"
ECS_INSTANCE = REPO / "deploy" / "ecs" / "dagster.yaml"
HELM_VALUES = REPO / "deploy" / "kubernetes" / "values.yaml"
# What decides when runs start and how they recover: one definition, dagster.yaml's.
SHARED_BLOCKS = (
    "concurrency",
    "run_retries",
    "run_monitoring",
    "retention",
    "sensors",
    "schedules",
)
# Variables the instance blocks read ({env: NAME}); set to placeholders while validating.
INSTANCE_ENV = {
    "DAGSTER_COMPUTE_LOGS_BUCKET": "logs",
    "DAGSTER_COMPUTE_LOGS_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",  # boto3's, for the ECS client EcsRunLauncher creates
    "DAGSTER_HOME": "/opt/dagster/home",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "sensor-platform-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "sensor-platform-pg",
    "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "sensor-platform-pipeline-env",
}


@pytest.fixture(autouse=True)
def instance_env(monkeypatch):
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _class_config(block: dict) -> dict:
    """`block`'s config processed by its class's own schema, as Dagster does when the instance
    loads the class (ConfigurableClassData.rehydrate), short of building the object (which would
    reach for a cluster). Raises with the schema's errors."""
    data = ConfigurableClassData(
        block["module"], block["class"], yaml.safe_dump(block.get("config") or {})
    )
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
    if not result.success:
        raise ValueError("; ".join(e.message for e in result.errors))
    return result.value


# -- the Helm chart's rendering of the values we set ------------------------------------------------
# The chart (helm/dagster/templates/helpers/instance/) writes its camelCase values into the
# instance's dagster.yaml as the classes' snake_case fields, adds the fields it always sets, and
# passes nested Kubernetes objects through as given.
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def helm_run_launcher(values: dict) -> dict:
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    config = {
        "service_account_name": "sensor-platform-dagster",
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "job_namespace": "sensor-platform",
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}],
    }
    for key, value in values["runLauncher"]["config"]["k8sRunLauncher"].items():
        if key in ("envConfigMaps", "envSecrets"):
            config.setdefault(_snake(key), []).extend(v["name"] for v in value)
        elif key == "image":
            config["job_image"] = f"{value['repository']}:{value['tag']}"
        elif key == "runK8sConfig":
            config["run_k8s_config"] = {_snake(k): v for k, v in value.items()}
        elif value != []:  # the chart leaves empty lists out
            config[_snake(key)] = value
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def helm_compute_logs(values: dict) -> dict:
    manager = values["computeLogManager"]
    assert manager["type"] == "S3ComputeLogManager"
    config = {_snake(k): v for k, v in manager["config"]["s3ComputeLogManager"].items()}
    return {
        "module": "dagster_aws.s3.compute_log_manager",
        "class": "S3ComputeLogManager",
        "config": config,
    }


def helm_instance(values: dict) -> dict:
    """The instance blocks the chart renders from `values` that this repository decides."""
    return {
        "run_launcher": helm_run_launcher(values),
        "compute_logs": helm_compute_logs(values),
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
        **values["additionalInstanceConfig"],
    }


# Every block a class reads its config from, in each production configuration.
BLOCKS = {
    "dagster.yaml compute_logs": lambda: _yaml(ROOT_INSTANCE)["compute_logs"],
    "dagster.yaml run_coordinator": lambda: _yaml(ROOT_INSTANCE)["run_coordinator"],
    "ecs run_launcher": lambda: _yaml(ECS_INSTANCE)["run_launcher"],
    "ecs compute_logs": lambda: _yaml(ECS_INSTANCE)["compute_logs"],
    "ecs run_coordinator": lambda: _yaml(ECS_INSTANCE)["run_coordinator"],
    "helm run_launcher": lambda: helm_run_launcher(_yaml(HELM_VALUES)),
    "helm compute_logs": lambda: helm_compute_logs(_yaml(HELM_VALUES)),
}
EXPECTED_CLASSES = {
    "dagster.yaml compute_logs": "S3ComputeLogManager",
    "dagster.yaml run_coordinator": "QueuedRunCoordinator",
    "ecs run_launcher": "EcsRunLauncher",
    "ecs compute_logs": "S3ComputeLogManager",
    "ecs run_coordinator": "QueuedRunCoordinator",
    "helm run_launcher": "K8sRunLauncher",
    "helm compute_logs": "S3ComputeLogManager",
}


@pytest.mark.parametrize("name", BLOCKS)
def test_each_block_passes_its_classs_own_config_schema(name):
    block = BLOCKS[name]()
    assert block["class"] == EXPECTED_CLASSES[name]
    _class_config(block)


@pytest.mark.parametrize("name", [n for n in BLOCKS if "run_coordinator" not in n])
def test_a_misspelt_key_fails_the_schema(name):
    block = copy.deepcopy(BLOCKS[name]())
    config = block["config"]
    key = next(k for k in config if isinstance(config[k], str | bool | int | dict))
    config[key[:-1]] = config.pop(key)  # the last letter dropped, as a typo does
    with pytest.raises(ValueError, match=re.escape(key[:-1])):
        _class_config(block)


def test_a_misspelt_helm_value_fails_the_run_launchers_schema():
    values = _yaml(HELM_VALUES)
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher["failPodOnRunFailur"] = launcher.pop("failPodOnRunFailure")
    with pytest.raises(ValueError, match="fail_pod_on_run_failur"):
        _class_config(helm_run_launcher(values))
    values = _yaml(HELM_VALUES)
    values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfg"] = {}
    with pytest.raises(ValueError, match="container_confg"):
        _class_config(helm_run_launcher(values))


@pytest.mark.parametrize(
    "instance",
    [
        pytest.param(lambda: ECS_INSTANCE.read_text(), id="ecs"),
        pytest.param(lambda: yaml.safe_dump(helm_instance(_yaml(HELM_VALUES))), id="helm"),
    ],
)
def test_instances_pass_dagsters_instance_schema_and_share_dagster_yamls_rules(instance, tmp_path):
    (tmp_path / "dagster.yaml").write_text(instance())
    config, _ = dagster_instance_config(str(tmp_path))
    root = _yaml(ROOT_INSTANCE)
    for block in SHARED_BLOCKS:
        assert config[block] == root[block], block
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert "config" not in config["run_coordinator"]  # the limits are concurrency.runs only
    assert config["telemetry"] == root["telemetry"]


def test_ecs_instance_is_dagster_yaml_but_for_launcher_and_compute_logs():
    ecs, root = _yaml(ECS_INSTANCE), _yaml(ROOT_INSTANCE)
    assert set(ecs) == set(root) | {"run_launcher"}
    for block in set(root) - {"compute_logs"}:
        assert ecs[block] == root[block], block
    # real S3 through the task's IAM role: no endpoint override
    assert "endpoint_url" not in ecs["compute_logs"]["config"]
    assert ecs["compute_logs"]["config"]["bucket"] == root["compute_logs"]["config"]["bucket"]


def test_the_image_carries_the_ecs_instance_where_its_header_says():
    home = re.search(r"DAGSTER_HOME=(/[\w/]+)", ECS_INSTANCE.read_text()).group(1)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"COPY deploy/ecs/dagster.yaml {home}/dagster.yaml" in dockerfile


def test_helm_values_leave_the_charts_copies_of_dagster_yamls_blocks_off():
    # dagster.yaml's blocks arrive through additionalInstanceConfig; the chart's own rendering of
    # the same blocks must stay off, or the instance file would name them twice.
    values = _yaml(HELM_VALUES)
    daemon = values["dagsterDaemon"]
    assert not daemon["runRetries"]["enabled"] and not daemon["runMonitoring"]["enabled"]
    assert not daemon["sensors"]["useThreads"] and not daemon["schedules"]["useThreads"]
    assert not values["retention"]["enabled"]
    assert not values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert set(values["additionalInstanceConfig"]) == set(SHARED_BLOCKS)
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["global"]["dagsterHome"] == "/opt/dagster/home"  # the Dockerfile's


def test_helm_user_deployments_are_the_workspace_code_locations():
    values = _yaml(HELM_VALUES)
    deployments = values["dagster-user-deployments"]["deployments"]
    workspace = _yaml(REPO / "workspace.yaml")["load_from"]
    modules = [e["python_module"]["module_name"] for e in workspace]
    served = []
    for deployment in deployments:
        args = deployment["codeServerArgs"]
        served.append(args[args.index("--module-name") + 1])
        assert deployment["image"] == deployments[0]["image"]  # one image: the Dockerfile's
        assert deployment["includeConfigInLaunchedRuns"]["enabled"]
        _k8s_model("V1ResourceRequirements", deployment["resources"])
    assert served == modules


# -- what each kind of run gets ---------------------------------------------------------------------
def _k8s_model(name: str, values: dict):
    import kubernetes  # with dagster-k8s: seconds to import, so only where a test needs them
    from dagster_k8s.models import k8s_model_from_dict

    return k8s_model_from_dict(getattr(kubernetes.client, name), values)


def _k8s_container(launcher_config: dict, tags: dict):
    """The container a run gets from K8sRunLauncher's run_k8s_config merged with the run's tags,
    by dagster-k8s (tag config validated by its schema, merged deep, then a Kubernetes model)."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

    context = K8sContainerContext(
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher_config["run_k8s_config"])
    ).merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    return _k8s_model("V1Container", {"name": "run", **context.run_k8s_config.container_config})


def _ecs_resources(tags: dict) -> dict:
    from dagster_aws.ecs.container_context import EcsContainerContext

    block = _yaml(ECS_INSTANCE)["run_launcher"]
    klass = getattr(importlib.import_module(block["module"]), block["class"])
    launcher = klass.from_config_value(None, _class_config(block))
    run = DagsterRun(job_name="job", run_id="run", tags=tags)
    return dict(
        launcher.get_cpu_and_memory_overrides(
            EcsContainerContext.create_for_run(run, launcher), run
        )
    )


def test_landing_runs_are_small_and_every_other_run_gets_the_launchers_default(tmp_path):
    definitions = definitions_for(tmp_path / "data")
    landing = {s.job for s in SOURCES}
    jobs = {j.name: j for j in definitions.resolve_all_job_defs() if not j.name.startswith("__")}
    assert landing < set(jobs)
    for name, job in jobs.items():
        tags = {k: v for k, v in job.run_tags.items() if k in INGESTION_RUN_TAGS}
        assert tags == (INGESTION_RUN_TAGS if name in landing else {}), name

    launcher = _class_config(helm_run_launcher(_yaml(HELM_VALUES)))
    small = _k8s_container(launcher, INGESTION_RUN_TAGS).resources
    default = _k8s_container(launcher, {}).resources
    assert (small.requests, small.limits) == ({"cpu": "500m", "memory": "1Gi"}, {"memory": "1Gi"})
    assert (default.requests, default.limits) == ({"cpu": "1", "memory": "4Gi"}, {"memory": "4Gi"})

    assert _ecs_resources(INGESTION_RUN_TAGS) == {"cpu": "512", "memory": "1024"}
    assert _ecs_resources({}) == {"cpu": "1024", "memory": "4096"}
