"""`sensor-platform demo` (what `make demo` runs) works on the embedded defaults."""

from datetime import UTC, datetime

import duckdb
import pytest

from sensor_platform.demo import run_demo

pytestmark = pytest.mark.integration  # Dagster runs


def test_demo_runs_the_whole_graph_and_summarizes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("SENSOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SENSOR_LAKE_ROOT", raising=False)
    monkeypatch.delenv("SENSOR_WAREHOUSE_URL", raising=False)
    summary = run_demo(hours=2, now=datetime(2026, 3, 2, 1, 30, tzinfo=UTC))
    assert summary["raw_partitions"] == 2
    assert summary["readings"] > 5_000
    assert summary["quarantined"] == 0
    out = capsys.readouterr().out
    assert f"readings in the lake     {summary['readings']:,}" in out
    assert "make ui" in out
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()
    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    (total,) = con.execute("SELECT sum(reading_count) FROM sensor_readings_daily").fetchall()[0]
    con.close()
    assert total == summary["readings"]
