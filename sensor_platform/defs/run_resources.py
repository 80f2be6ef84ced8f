"""What a run asks of the machine it runs on, in the run tags Dagster's run launchers read.

Runs of the landing jobs land one unit of work (a Kafka offset range of at most
SENSOR_KAFKA_MAX_RECORDS_PER_RUN records, one MQTT drain, one simulator window) and carry
`INGESTION_RUN_TAGS`: a small container on Kubernetes (`dagster-k8s/config`, read by
K8sRunLauncher) or a small task on ECS (`ecs/cpu`, `ecs/memory`, read by EcsRunLauncher). Every
other run (raw compaction, aggregates, backfills, automation, the catalog, dbt) gets the
launcher's default: `runK8sConfig` in deploy/kubernetes/values.yaml, `run_resources` in
deploy/ecs/dagster.yaml. The default launcher of `make ui` and docker compose ignores these tags.
"""

import json

# Kubernetes: a container's requests and limits (memory limit = request: the run is never
# scheduled on a node that cannot hold it, and is killed rather than swapped past it).
INGESTION_CONTAINER_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"memory": "1Gi"},
}
# ECS (Fargate): CPU units (1024 = 1 vCPU) and MiB, a pair Fargate offers.
INGESTION_ECS_CPU, INGESTION_ECS_MEMORY = "512", "1024"

INGESTION_RUN_TAGS = {
    "dagster-k8s/config": json.dumps(
        {"container_config": {"resources": INGESTION_CONTAINER_RESOURCES}}, sort_keys=True
    ),
    "ecs/cpu": INGESTION_ECS_CPU,
    "ecs/memory": INGESTION_ECS_MEMORY,
}
