"""Backfills of any range launch as the UI launches them (the webserver's GraphQL mutation, on the
workspace of `make ui`): a range of days that includes today, whose hours are partly in the future,
for the aggregates and for the dbt models downstream of them."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

pytestmark = pytest.mark.integration  # code servers of both code locations

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}
"""


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSOR_DATA_DIR", str(tmp_path / "data"))  # the code servers' settings
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        with define_out_of_process_context("workspace.yaml", None, instance) as context:
            yield context, instance


def test_a_range_of_days_that_includes_today_launches(workspace):
    context, instance = workspace
    assets = ["sensor_readings_hourly", "sensor_readings_daily", "site_daily_health"]
    today = datetime.now(UTC).date()
    days = [f"{today - timedelta(days=n):%Y-%m-%d}" for n in (2, 1, 0)]
    result = execute_dagster_graphql(
        context,
        LAUNCH,
        {
            "params": {
                "assetSelection": [{"path": [name]} for name in assets],
                "partitionNames": days,
            }
        },
    )
    launched = result.data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = instance.get_backfill(launched["backfillId"])
    targeted = backfill.asset_backfill_data.target_subset
    for name in assets:
        keys = targeted.get_partitions_subset(dg.AssetKey(name)).get_partition_keys()
        assert sorted(keys) == days, name
