"""The lake on S3 through the dagster-aws S3Resource, against a moto server standing in for S3 or
MinIO (endpoint override). The `lake` resource and an S3Resource are configured from the same
environment variables (SENSOR_S3_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
and must see one and the same store: what the pipeline writes through the lake, boto3 reads
through the S3Resource, and the other way round."""

import io
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster_aws.s3 import S3Resource

from sensor_platform.defs.aggregates import sensor_readings_minute
from sensor_platform.defs.alerts import anomaly_alerts, build_alert_resources, sensor_anomalies
from sensor_platform.defs.automation import raw_job
from sensor_platform.defs.feed import feed_run_request, simulated_feed_job
from sensor_platform.defs.raw import raw_sensor_readings
from sensor_platform.defs.resources import LakeResource, build_resources
from sensor_platform.lake import layout
from sensor_platform.readings.schema import READING_SCHEMA
from sensor_platform_tests.readings_factory import readings_table

BUCKET, PREFIX = "sensor-lake", "prod"
HOUR = datetime(2026, 3, 1, 0, tzinfo=UTC)


@pytest.fixture
def s3_environment(monkeypatch, tmp_path, s3_endpoint):
    """The variables a deployment sets to point the platform at a (moto) S3 server."""
    for name, value in {
        "SENSOR_LAKE_ROOT": f"s3://{BUCKET}/{PREFIX}",
        "SENSOR_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "sensor-test-key",
        "AWS_SECRET_ACCESS_KEY": "sensor-test-secret",
        "SENSOR_DATA_DIR": str(tmp_path / "data"),  # the DuckDB warehouse stays local
    }.items():
        monkeypatch.setenv(name, value)


def s3_resource() -> S3Resource:
    """The dagster-aws resource as the code location would register it (key `s3`): the same
    variables as the lake, passed as EnvVars so the UI shows their names, never the secret."""
    return S3Resource(
        endpoint_url=dg.EnvVar("SENSOR_S3_ENDPOINT_URL"),
        region_name=dg.EnvVar("AWS_REGION"),
        aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
    )


def lake_from_s3(root: str, s3: S3Resource) -> LakeResource:
    """The lake configured from the S3Resource's settings (the proposed wiring)."""
    return LakeResource(
        root=root,
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region_name,
        s3_access_key=s3.aws_access_key_id,
        s3_secret_key=s3.aws_secret_access_key,
    )


def test_lake_and_s3_resource_see_one_store(s3_environment):
    readings = readings_table(
        [
            {
                "event_time": HOUR + timedelta(minutes=m),
                "device_id": "dev-1",
                "metric": "co2",
                "value": 400 + m,
            }
            for m in range(5)
        ]
    )
    landed_key = f"{PREFIX}/{layout.landing_file(HOUR, 'from-boto3')}"

    @dg.asset
    def round_trip(lake: LakeResource, s3: S3Resource) -> dg.MaterializeResult:
        client, store = s3.get_client(), lake.lake()
        # written by the lake (which creates the bucket), read by boto3
        written = store.write_parquet(layout.raw_partition_file(HOUR), readings)
        body = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{written.path}")["Body"].read()
        # put by boto3, found and read by the lake
        sink = io.BytesIO()
        pq.write_table(readings.slice(0, 2), sink)
        client.put_object(Bucket=BUCKET, Key=landed_key, Body=sink.getvalue())
        landed = store.list_files(layout.LANDING)
        return dg.MaterializeResult(
            metadata={
                "read_by_boto3": pq.read_table(io.BytesIO(body)).num_rows,
                "bytes": written.size,
                "object_size": len(body),
                "listed_by_lake": [f.path for f in landed],
                "read_by_lake": store.read_parquet(
                    [f.path for f in landed], READING_SCHEMA
                ).num_rows,
            }
        )

    for lake in (build_resources()["lake"], lake_from_s3(f"s3://{BUCKET}/{PREFIX}", s3_resource())):
        result = dg.materialize([round_trip], resources={"lake": lake, "s3": s3_resource()})
        metadata = result.asset_materializations_for_node("round_trip")[0].metadata
        assert metadata["read_by_boto3"].value == 5
        assert metadata["object_size"].value == metadata["bytes"].value
        assert metadata["listed_by_lake"].value == [layout.landing_file(HOUR, "from-boto3")]
        assert metadata["read_by_lake"].value == 2


def test_feed_and_raw_partition_land_on_s3(s3_environment):
    resources = {**build_resources(), "s3": s3_resource()}
    request = feed_run_request(HOUR, HOUR + timedelta(minutes=15))
    landed = simulated_feed_job.execute_in_process(
        run_config=request.run_config, tags=request.tags, resources=resources
    )
    assert landed.success
    definitions = dg.Definitions(
        assets=[raw_sensor_readings, sensor_readings_minute, sensor_anomalies, anomaly_alerts],
        jobs=[raw_job],
        resources={**resources, **build_alert_resources()},
    )
    raw = definitions.resolve_job_def("raw_job").execute_in_process(
        partition_key="2026-03-01-00:00"
    )
    assert raw.success

    @dg.asset
    def inventory(s3: S3Resource) -> dg.MaterializeResult:
        listing = s3.get_client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
        keys = sorted(o["Key"] for o in listing.get("Contents", []))
        raw_key = f"{PREFIX}/{layout.raw_partition_file(HOUR)}"
        body = s3.get_client().get_object(Bucket=BUCKET, Key=raw_key)["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        return dg.MaterializeResult(
            metadata={
                "keys": keys,
                "raw_rows": table.num_rows,
                "canonical_schema": table.schema.remove_metadata().equals(READING_SCHEMA),
            }
        )

    result = dg.materialize([inventory], resources={"s3": s3_resource()})
    metadata = result.asset_materializations_for_node("inventory")[0].metadata
    keys = metadata["keys"].value
    # the lake created the bucket itself (MinIO in docker-compose relies on that)
    assert f"{PREFIX}/{layout.raw_partition_file(HOUR)}" in keys
    assert any(k.startswith(f"{PREFIX}/{layout.landing_dir(HOUR)}/") for k in keys)
    assert f"{PREFIX}/{layout.aggregate_partition_file('sensor_readings_minute', HOUR)}" in keys
    raw_rows = raw.asset_materializations_for_node("raw_sensor_readings")[0].metadata
    assert metadata["raw_rows"].value == raw_rows["dagster/row_count"].value > 0
    assert metadata["canonical_schema"].value is True
