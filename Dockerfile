# The platform image: the user-code server (gRPC), its run workers, and in docker-compose.yml also
# the Dagster webserver, the daemon and the simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    SENSOR_DBT_PROJECT_DIR=/opt/sensor-platform/dbt_project \
    SENSOR_DATA_DIR=/opt/sensor-platform/data

WORKDIR /opt/sensor-platform

# Dependencies first (pinned by constraints.txt), so a code change does not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
COPY sensor_platform ./sensor_platform
RUN pip install -c constraints.txt .

# The dbt project, parsed now: the analytics code location loads its manifest and never runs
# dbt to load (the installed package finds the project through SENSOR_DBT_PROJECT_DIR).
COPY dbt_project ./dbt_project
RUN rm -rf dbt_project/target dbt_project/logs && sensor-platform dbt-parse

# The production instance: PostgreSQL storage, run queue and limits (DAGSTER_PG_* at run time).
COPY dagster.yaml ${DAGSTER_HOME}/dagster.yaml
# The same on AWS ECS, every run its own ECS task: tasks there set DAGSTER_HOME=/opt/dagster/ecs.
# (On Kubernetes the Helm chart mounts its own instance file over ${DAGSTER_HOME}/dagster.yaml.)
COPY deploy/ecs/dagster.yaml /opt/dagster/ecs/dagster.yaml
# Creates the instance's pools (`sensor-platform init-instance`) before the daemon starts.
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

RUN useradd --create-home --uid 10001 sensor \
    && mkdir -p ${DAGSTER_HOME}/storage ${SENSOR_DATA_DIR} \
    && chown -R sensor ${DAGSTER_HOME} ${SENSOR_DATA_DIR} /opt/sensor-platform/dbt_project
USER sensor

EXPOSE 4000
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "sensor_platform.definitions", "--location-name", "sensor_platform"]
