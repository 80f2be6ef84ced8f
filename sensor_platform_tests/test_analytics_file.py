"""The analysts' file opens in the tools analysts have: the DuckDB 1.x CLI from PyPI (installed by
the dev extra) reads the format the DuckDB 2 package writes, and `sensor-platform sql` opens it
read-only, with that CLI or with its built-in prompt, and says what to do when it is missing."""

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sensor_platform.catalog.analytics_db import STORAGE_VERSION, refresh_analytics_db
from sensor_platform.catalog.sql_prompt import find_cli, format_table, run_builtin
from sensor_platform.cli import main
from sensor_platform.lake.store import Lake
from sensor_platform.readings.schema import UTC_MICROS
from sensor_platform.warehouse.tables import TableSpec


@pytest.fixture
def analytics(tmp_path) -> Path:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_parquet("x/date=2026-03-01/part-0.parquet", pa.table({"v": [1, 2]}))
    lake.write_parquet("x/date=2026-03-02/part-0.parquet", pa.table({"v": [3]}))
    rows = pa.table({"dataset": ["x"], "row_count": pa.array([3], pa.int64()),
                     "built_at": pa.array([datetime(2026, 3, 2, tzinfo=UTC)], UTC_MICROS)})  # fmt: skip
    spec = TableSpec(name="data_catalog", schema=rows.schema, time_column="built_at")
    path = tmp_path / "analytics.duckdb"
    refresh_analytics_db(str(path), lake, {"x": "x"}, [(spec, rows)])
    return path


def cli() -> str:
    found = find_cli()
    assert found, "the DuckDB CLI is needed: pip install duckdb-cli (make install does)"
    return found


def test_the_newest_duckdb_1_cli_on_pypi_opens_the_file(analytics):
    version = subprocess.run([cli(), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("v1."), version.stdout  # the 1.x CLI, not the writer's 2.x
    out = subprocess.run(
        [cli(), "-readonly", "-csv", str(analytics), "-c",
         "SELECT sum(v) AS total, count(DISTINCT date) AS days FROM x;"
         "SELECT row_count FROM data_catalog;"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["total,days", "6,2", "row_count", "3"]


def test_the_file_is_in_the_v1_storage_format_not_the_writers_default(analytics, tmp_path):
    with duckdb.connect(str(analytics), read_only=True) as con:
        (tags,) = con.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = 'analytics'"
        ).fetchone()
    assert tags["storage_version"].startswith(STORAGE_VERSION)
    plain = tmp_path / "plain.duckdb"
    duckdb.connect(str(plain)).close()  # what DuckDB 2 writes by default: the CLI refuses it
    refused = subprocess.run([cli(), "-readonly", str(plain), "-c", "SELECT 1"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode != 0 and "version number" in refused.stderr


def test_sql_command_runs_the_cli_read_only(analytics, capfd):
    assert main(["sql", "--file", str(analytics), "-c", "SELECT sum(v) AS total FROM x"]) == 0
    assert "total" in capfd.readouterr().out
    # Read-only: the analysts never write into the file the catalog rebuilds.
    assert main(["sql", "--file", str(analytics), "-c", "CREATE TABLE t (a INT)"]) != 0
    assert "read-only" in capfd.readouterr().err.lower()


def test_sql_command_builtin_prompt(analytics, capsys):
    assert main(["sql", "--builtin", "--file", str(analytics), "-c", "SELECT * FROM x"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == ["v | date", "--+-----------"] and "3 rows" in out


def test_builtin_prompt_reads_statements_dot_commands_and_reports_errors(analytics):
    stdin = io.StringIO(
        ".tables\nSELECT v\n  FROM x\n  ORDER BY v DESC\n  LIMIT 1;\nSELECT nope FROM x;\n"
        "CREATE TABLE t (a INT);\n.quit\nSELECT 'never run';\n"
    )
    out = io.StringIO()
    assert run_builtin(analytics, None, stdin, out) == 1
    text = out.getvalue()
    assert "data_catalog | BASE TABLE" in text and "x            | VIEW" in text
    assert "v\n-\n3\n1 rows" in text
    assert text.count("\nError: ") == 2 and "read-only mode" in text
    assert "never run" not in text


def test_builtin_prompt_bounds_what_it_prints(tmp_path):
    path = tmp_path / "big.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS n, repeat('x', 500) AS s FROM range(5000)")
    out = io.StringIO()
    assert run_builtin(path, "SELECT * FROM t", io.StringIO(), out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-1] == "5000 rows (200 shown)" and len(lines) == 2 + 200 + 1
    assert max(len(line) for line in lines) < 100


def test_sql_command_says_how_to_build_a_missing_file(tmp_path, capsys):
    assert main(["sql", "--file", str(tmp_path / "none.duckdb"), "-c", "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert "no analysts' file at" in err and "make demo" in err and "data_catalog" in err


def test_sql_command_reads_the_file_from_the_settings(analytics, monkeypatch, capsys):
    monkeypatch.setenv("SENSOR_ANALYTICS_DB", str(analytics))
    assert main(["sql", "--builtin", "-c", "SELECT count(*) AS n FROM x"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "3"


def test_an_old_cli_is_passed_over_for_the_builtin_prompt(tmp_path, monkeypatch):
    old = tmp_path / "bin" / "duckdb"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'v0.9.2 3c695d7ba9'\n")
    old.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "elsewhere" / "python"))
    monkeypatch.setenv("PATH", f"{old.parent}{os.pathsep}/usr/bin:/bin")
    assert find_cli() is None
    old.write_text("#!/bin/sh\necho 'v1.5.6 069cc9f9b5'\n")
    assert find_cli() == str(old)


def test_format_table_aligns_and_clips():
    text = format_table(["a", "long_name"], [(1, None), (22, "y" * 100)])
    assert text.splitlines()[:3] == ["a  | long_name", "---+" + "-" * 61, "1  | NULL"]
    assert text.splitlines()[3].endswith("…") and len(text.splitlines()[3]) == 5 + 60
