"""The lake on S3, against a moto server standing in for S3 or MinIO (endpoint override),
configured the way a deployment does it: SENSOR_LAKE_ROOT, SENSOR_S3_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment. What the pipeline writes through
the lake, boto3 reads straight from the bucket, and the other way round."""

import io
from datetime import UTC, datetime, timedelta

import boto3
import pyarrow.parquet as pq
import pytest

from sensor_platform.datasets import REGISTRY
from sensor_platform.definitions import build_definitions
from sensor_platform.lake import layout
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform.settings import load_settings
from sensor_platform_tests.platform import feed_run_request
from sensor_platform_tests.readings_factory import readings_table

pytestmark = pytest.mark.integration  # Dagster runs

BUCKET, PREFIX = "sensor-lake", "prod"
HOUR = datetime(2026, 3, 1, 0, tzinfo=UTC)


@pytest.fixture
def s3_environment(monkeypatch, tmp_path, s3_endpoint):
    """The variables a deployment sets to point the platform at a (moto) S3 server."""
    env = {
        "SENSOR_LAKE_ROOT": f"s3://{BUCKET}/{PREFIX}",
        "SENSOR_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "sensor-test-key",
        "AWS_SECRET_ACCESS_KEY": "sensor-test-secret",
        "SENSOR_DATA_DIR": str(tmp_path / "data"),  # the DuckDB warehouse stays local
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def s3_client(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["SENSOR_S3_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def test_the_lake_and_boto3_see_one_store(s3_environment):
    readings = readings_table(
        [
            {"event_time": HOUR + timedelta(minutes=m), "device_id": "dev-1", "metric": "co2",
             "value": 400 + m}
            for m in range(5)
        ]
    )  # fmt: skip
    lake = build_definitions(load_settings()).resources["lake"]
    store = lake.lake()  # the secrets are EnvVars: resolved from the environment here
    written = store.write_parquet(layout.raw_partition_file(HOUR), readings)  # creates the bucket
    client = s3_client(s3_environment)
    body = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{written.path}")["Body"].read()
    assert pq.read_table(io.BytesIO(body)).num_rows == 5 and len(body) == written.size
    sink = io.BytesIO()
    pq.write_table(readings.slice(0, 2), sink)
    landed_key = f"{PREFIX}/{layout.landing_file(HOUR, 'from-boto3')}"
    client.put_object(Bucket=BUCKET, Key=landed_key, Body=sink.getvalue())
    landed = store.list_files(layout.LANDING)
    assert [f.path for f in landed] == [layout.landing_file(HOUR, "from-boto3")]
    assert store.read_parquet([f.path for f in landed], READING_SCHEMA).num_rows == 2


def test_feed_and_raw_partition_land_on_s3(s3_environment):
    definitions = build_definitions(load_settings())
    request = feed_run_request(HOUR, HOUR + timedelta(minutes=15))
    landed = definitions.resolve_job_def("simulated_feed_job").execute_in_process(
        run_config=request.run_config, tags=request.tags
    )
    assert landed.success
    raw = definitions.resolve_job_def("raw_job").execute_in_process(
        partition_key="2026-03-01-00:00"
    )
    assert raw.success

    client = s3_client(s3_environment)
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    keys = sorted(o["Key"] for o in listing.get("Contents", []))
    raw_key = f"{PREFIX}/{layout.raw_partition_file(HOUR)}"
    table = pq.read_table(io.BytesIO(client.get_object(Bucket=BUCKET, Key=raw_key)["Body"].read()))
    # the lake created the bucket itself (MinIO in docker-compose relies on that)
    assert raw_key in keys
    assert any(k.startswith(f"{PREFIX}/{layout.landing_dir(HOUR)}/") for k in keys)
    minute = REGISTRY.get("sensor_readings_minute").partition_file(HOUR)
    assert f"{PREFIX}/{minute}" in keys
    raw_rows = raw.asset_materializations_for_node("raw_sensor_readings")[0].metadata
    assert table.num_rows == raw_rows["dagster/row_count"].value > 0
    assert table.schema.remove_metadata().equals(READING_SCHEMA)
