"""`sensor-platform demo` (what `make demo` runs) works on the embedded defaults and shows the
whole product: a whole day, quarantine, the catalog, the analysts' file and the dbt models, with
nothing red that it does not explain. (The demo runs once per session: conftest.demo_checkout.)"""

import duckdb
import pytest

from sensor_platform.demo import EXPECTED

pytestmark = pytest.mark.integration  # Dagster runs


def test_demo_runs_the_whole_graph_and_summarizes(demo_checkout):
    summary, out, data = demo_checkout.summary, demo_checkout.printed, demo_checkout.root / "data"
    assert summary["raw_partitions"] == 24  # yesterday, a whole day
    assert summary["readings"] > 50_000
    assert summary["quarantined"] > 0  # a few malformed messages, for the quarantine to show
    # every check that did not pass is one the demo explains
    red = {name for name, passed in summary["checks"].items() if not passed}
    assert red <= set(EXPECTED), red
    assert "raw_sensor_readings.validity" in summary["checks"]
    assert f"readings in the lake     {summary['readings']:,}" in out
    for where in ("make ui", "make sql", "make dashboard", "catalog page"):
        assert where in out
    for name in red:
        assert f"expected: {EXPECTED[name]}" in out
    assert (demo_checkout.root / ".dagster_home" / "dagster.yaml").exists()
    assert (data / "lake" / "catalog" / "index.html").exists()
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    (total,) = con.execute("SELECT sum(reading_count) FROM sensor_readings_daily").fetchall()[0]
    (health,) = con.execute("SELECT count(*) FROM site_daily_health").fetchall()[0]
    con.close()
    assert total == summary["readings"] and health > 0
    # the analysts' file answers on its own (views over the lake)
    analytics = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    (days,) = analytics.execute("SELECT count(*) FROM sensor_readings_daily").fetchall()[0]
    analytics.close()
    assert days > 0
