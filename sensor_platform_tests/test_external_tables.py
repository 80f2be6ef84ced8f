"""The external table DDL the catalog publishes for Athena, Spark and Trino: it parses in each
engine's dialect (sqlglot), and after a real pipeline run its columns, types, partition columns and
location are what DuckDB finds in the same Parquet files (`read_parquet(..., hive_partitioning)`).
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from sensor_platform.catalog.external_tables import (
    DIALECTS,
    external_table_ddl,
    partition_columns,
    table_location,
)
from sensor_platform.catalog.lake_inspection import read_lake_bytes
from sensor_platform.catalog.publishing import EXTERNAL_TABLES, HTML_PAGE, JSON_DOCUMENT
from sensor_platform.datasets import REGISTRY, Dataset
from sensor_platform.lake.landing import land_batch
from sensor_platform.lake.store import Lake
from sensor_platform.readings.normalize import Message, normalize_messages
from sensor_platform_tests.platform import definitions_for, run_simulated_hours

# The sqlglot dialects each published spelling is read in.
READERS = {"hive": ("hive", "athena", "spark"), "trino": ("trino",)}
# What DuckDB calls the type each engine type declares. The engines' TIMESTAMP over Parquet
# timestamps marked isAdjustedToUTC (every timestamp the platform writes) is a UTC instant,
# which DuckDB reads as TIMESTAMP WITH TIME ZONE (sqlglot reads Spark's TIMESTAMP as TIMESTAMPTZ).
AS_DUCKDB = {
    exp.DataType.Type.TEXT: "VARCHAR",
    exp.DataType.Type.VARCHAR: "VARCHAR",
    exp.DataType.Type.DOUBLE: "DOUBLE",
    exp.DataType.Type.BIGINT: "BIGINT",
    exp.DataType.Type.INT: "INTEGER",
    exp.DataType.Type.BOOLEAN: "BOOLEAN",
    exp.DataType.Type.BINARY: "BLOB",
    exp.DataType.Type.VARBINARY: "BLOB",
    exp.DataType.Type.DATE: "DATE",
    exp.DataType.Type.TIMESTAMP: "TIMESTAMP WITH TIME ZONE",
    exp.DataType.Type.TIMESTAMPTZ: "TIMESTAMP WITH TIME ZONE",
}
# 09:00 and 10:00: DuckDB infers a partition value's type from the values it sees, and reads
# `hour` as a string (as declared) only when some hour keeps a leading zero; from 10:00 to
# 23:00 alone it would guess BIGINT.
START = datetime(2026, 3, 1, 9, tzinfo=UTC)
HOURS = 2


def _statements(ddl: str, read: str) -> list[exp.Expression]:
    return sqlglot.parse(ddl, read=read, error_level=sqlglot.ErrorLevel.RAISE)


def _table(create: exp.Create) -> dict:
    """Name, columns (name -> DuckDB type), partition columns and location of a parsed CREATE."""
    columns = {c.name: AS_DUCKDB[c.args["kind"].this] for c in create.this.expressions}
    properties = create.args["properties"].expressions
    [partitioned] = [p for p in properties if isinstance(p, exp.PartitionedByProperty)]
    if isinstance(partitioned.this, exp.Schema):  # hive: PARTITIONED BY (name type, ...)
        keys = [c.name for c in partitioned.this.expressions]
        columns |= {c.name: AS_DUCKDB[c.args["kind"].this] for c in partitioned.this.expressions}
        [location] = [p.this.this for p in properties if isinstance(p, exp.LocationProperty)]
        [file_format] = [p.this.name for p in properties if isinstance(p, exp.FileFormatProperty)]
        assert any(isinstance(p, exp.ExternalProperty) for p in properties)
    else:  # trino: partitioned_by = ARRAY['name', ...], the columns listed among the others
        keys = [k.this for k in partitioned.this.expressions]
        assert list(columns)[-len(keys) :] == keys, "Trino wants partition columns last"
        [location] = [
            p.args["value"].this
            for p in properties
            if isinstance(p, exp.Property) and p.name == "external_location"
        ]
        [file_format] = [p.this.this for p in properties if isinstance(p, exp.FileFormatProperty)]
    assert file_format.upper() == "PARQUET"
    return {
        "name": create.this.this.name,
        "columns": columns,
        "partitions": keys,
        "location": location,
    }


def _parsed(ddl: str, dialect: str) -> dict:
    """The table the DDL declares, parsed in every reader of `dialect`; all readers agree."""
    tables = []
    for read in READERS[dialect]:
        statements = _statements(ddl, read)
        create = statements[0]
        assert isinstance(create, exp.Create) and create.kind == "TABLE", read
        if dialect == "hive":  # then the partition folders are registered
            assert [s.sql(read) for s in statements[1:]] == [
                f"MSCK REPAIR TABLE `{create.this.this.name}`"
            ]
        else:
            assert len(statements) == 1
        tables.append(_table(create))
    assert all(t == tables[0] for t in tables)
    return tables[0]


# -- the DDL as text (ground floor) -------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("dataset", list(REGISTRY), ids=lambda d: d.name)
def test_ddl_parses_and_declares_the_registry_columns(dataset: Dataset, dialect: str):
    location = f"s3://bucket/lake/{dataset.prefix}"
    table = _parsed(external_table_ddl(dataset, location, dialect), dialect)
    assert table["name"] == dataset.name
    assert table["location"] == f"{location}/"
    keys = partition_columns(dataset)
    assert table["partitions"] == keys
    assert list(table["columns"]) == [*dataset.columns, *keys]
    assert keys == ["date", "hour"] if dataset.partitioning == "hourly" else ["date"]


def test_every_dataset_gets_a_table_in_one_script_per_dialect(tmp_path):
    from sensor_platform.catalog.external_tables import external_tables_script

    lake = Lake(str(tmp_path / "lake"))
    for dialect in DIALECTS:
        statements = [
            (d.name, external_table_ddl(d, table_location(lake, d.prefix), dialect))
            for d in REGISTRY
        ]
        script = external_tables_script(statements, dialect)
        read = READERS[dialect][0]
        creates = [s for s in _statements(script, read) if isinstance(s, exp.Create)]
        assert [c.this.this.name for c in creates] == [d.name for d in REGISTRY]
    # a local lake's tables point at its absolute folders
    assert table_location(lake, "raw/sensor_readings") == (
        (tmp_path / "lake" / "raw" / "sensor_readings").as_uri()
    )


def test_what_ddl_cannot_say_is_refused():
    raw = REGISTRY.raw
    with pytest.raises(ValueError, match="cannot go into DDL"):
        external_table_ddl(raw, "s3://bucket/it's/raw", "hive")
    with pytest.raises(ValueError, match="unknown dialect"):
        external_table_ddl(raw, "s3://bucket/raw", "mysql")
    odd = _dataset("odd", "hourly", when=pa.duration("s"))
    with pytest.raises(ValueError, match="no hive column type for Arrow type duration"):
        external_table_ddl(odd, "s3://bucket/odd", "hive")
    clash = _dataset("clash", "daily", date=pa.string())
    with pytest.raises(ValueError, match="also partition folders"):
        external_table_ddl(clash, "s3://bucket/clash", "trino")


def _dataset(name: str, partitioning: str, **columns: pa.DataType) -> Dataset:
    return Dataset(
        name=name,
        prefix=name,
        partitioning=partitioning,
        columns={c: (t, False, "") for c, t in columns.items()},
        description="",
        tier="bronze",
    )


# -- the published DDL against DuckDB reading the files of a real run ---------------------------


@pytest.fixture(scope="module")
def lake_after_a_run(tmp_path_factory) -> tuple[Lake, dict, str]:
    """Two simulated hours through raw, minute/hour/day aggregates and anomalies, a batch of bad
    messages in the quarantine, then the catalog; returns the lake, the JSON and the page."""
    data = tmp_path_factory.mktemp("external-tables") / "data"
    definitions = definitions_for(data)
    instance = dg.DagsterInstance.ephemeral()
    run_simulated_hours(definitions, instance, START, START + timedelta(hours=HOURS))
    lake = Lake(str(data / "lake"))
    bad = [b"not json", b'{"device_id": "d-1"}', b'{"value": 1, "event_time": "2026-03-01"}']
    received = START + timedelta(minutes=5)
    normalized = normalize_messages(
        [Message(p, f"test:{i}", received) for i, p in enumerate(bad)], batch_id="bad-batch"
    )
    assert normalized.quarantine.num_rows == len(bad)
    land_batch(lake, "bad-batch", normalized.readings, normalized.quarantine)
    result = definitions.resolve_job_def("catalog_job").execute_in_process(instance=instance)
    assert result.success
    document = json.loads(read_lake_bytes(lake, JSON_DOCUMENT))
    return lake, document, read_lake_bytes(lake, HTML_PAGE).decode()


def _duckdb_columns(lake: Lake, dataset: Dataset) -> dict[str, str]:
    folder = Path(lake.full_path(dataset.prefix)).resolve()
    with duckdb.connect() as con:
        rows = con.execute(
            "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = true)",
            [f"{folder}/**/*.parquet"],
        ).fetchall()
    return {name: typ for name, typ, *_ in rows}


def _folder_keys(lake: Lake, dataset: Dataset) -> set[tuple[str, ...]]:
    """The partition folder names (`date`, `hour`) of every file of the dataset."""
    return {
        tuple(s.split("=")[0] for s in f.path[len(dataset.prefix) + 1 :].split("/")[:-1])
        for f in lake.list_files(dataset.prefix)
    }


@pytest.mark.integration
@pytest.mark.parametrize("dialect", DIALECTS)
def test_published_ddl_matches_the_files_as_duckdb_reads_them(lake_after_a_run, dialect):
    lake, document, page = lake_after_a_run
    script = read_lake_bytes(lake, EXTERNAL_TABLES[dialect]).decode()
    tables = {
        t["name"]: t
        for t in (
            _table(s) for s in _statements(script, READERS[dialect][0]) if isinstance(s, exp.Create)
        )
    }
    assert set(tables) == {d.name for d in REGISTRY}
    entries = {e["name"]: e for e in document["datasets"]}
    for dataset in REGISTRY:
        table = tables[dataset.name]
        assert lake.list_files(dataset.prefix), f"{dataset.name}: the run wrote no file"
        # columns and types: the files as DuckDB reads them, partition columns included
        assert table["columns"] == _duckdb_columns(lake, dataset), dataset.name
        # partition columns: the folders every file sits in, outermost first
        assert _folder_keys(lake, dataset) == {tuple(table["partitions"])}, dataset.name
        # location: the dataset's folder, as a URI an engine on this machine opens
        assert table["location"] == Path(lake.full_path(dataset.prefix)).resolve().as_uri() + "/"
        # the same statement in the JSON document and on the page
        ddl = entries[dataset.name]["external_table_ddl"][dialect]
        assert ddl in script
        assert _table(_statements(ddl, READERS[dialect][0])[0]) == table
    html_ddl = f"data-dialect='{dialect}'"
    assert page.count(html_ddl) == len(REGISTRY.datasets)
    # datasets outside the lake have no DDL
    assert entries["data_catalog"]["external_table_ddl"] is None
