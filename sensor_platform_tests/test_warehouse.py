"""The SQL warehouse on real engines: a DuckDB file, PostgreSQL and MariaDB. Windows are replaced
atomically and idempotently, hostile strings and NULLs round-trip, schemas evolve, passwords stay
hidden, and concurrent writers (threads on servers, processes on a DuckDB file) both finish."""

import re
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from sensor_platform.warehouse import duckdb_file
from sensor_platform.warehouse.postgres_mysql import ServerDatabase
from sensor_platform.warehouse.store import TableSpec, Warehouse, WarehouseLockTimeout
from sensor_platform_tests.conftest import free_port

UTC_US = pa.timestamp("us", tz="UTC")
T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SCHEMA = pa.schema(
    [
        pa.field("window_start", UTC_US, nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("site_id", pa.string()),
        pa.field("reading_count", pa.int64(), nullable=False),
        pa.field("status_code", pa.int32()),
        pa.field("mean_value", pa.float64()),
        pa.field("healthy", pa.bool_()),
        pa.field("raw", pa.binary()),
        pa.field("last_event_time", UTC_US),
    ]
)
HOSTILE = [
    'it\'s "quoted" `back`',
    "'; DROP TABLE x; --",
    "../../etc/passwd",
    "".join(map(chr, range(1, 32))) + "\x7f",
    "온실-1",
    "🌡️ Gewächshaus Ünïcødé",
    "back\\slash %s %(x)s :name $1 ?",
    "trailing spaces   ",
    "",
    "x" * 100_000,
]


@pytest.fixture(params=["duckdb", "postgres", "mysql"])
def url(request, tmp_path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/warehouse.duckdb"
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def spec(url):
    """A table no other test uses, dropped afterwards on the servers."""
    table = TableSpec(f"wh_test_{uuid.uuid4().hex[:12]}", SCHEMA, description="test table")
    yield table
    if not url.startswith("duckdb"):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            quoted = conn.dialect.identifier_preparer.quote(table.name)
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quoted}")
        engine.dispose()


def window_rows(start: datetime, n: int, *, device: str = "dev", schema=SCHEMA) -> pa.Table:
    """`n` rows spread over the hour from `start`, every column filled."""
    i = pa.array(range(n), pa.int64())
    step_us = 3_600_000_000 // max(n, 1)
    times = pc.add(pa.scalar(start, UTC_US), pc.multiply(i, step_us).cast(pa.duration("us")))
    columns = {
        "window_start": times,
        "device_id": pc.binary_join_element_wise(device, pc.cast(i, pa.string()), "-"),
        "site_id": pa.array(["greenhouse-1"] * n),
        "reading_count": i,
        "status_code": pc.cast(pc.bit_wise_and(i, 7), pa.int32()),
        "mean_value": pc.divide(pc.cast(i, pa.float64()), 3.0),
        "healthy": pc.equal(pc.bit_wise_and(i, 1), 0),
        "raw": pc.cast(pc.cast(i, pa.string()), pa.binary()),
        "last_event_time": times,
    }
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


def ordered(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


def count_in(wh: Warehouse, spec: TableSpec, start: datetime, end: datetime) -> int:
    [(n,)] = wh.execute_query(
        f"SELECT count(*) FROM {spec.name} WHERE window_start >= :s AND window_start < :e",  # noqa: S608 - test table name
        {"s": start, "e": end},
    )
    return n


def test_publish_then_republish_the_same_window(url, spec):
    wh = Warehouse(url)
    rows = window_rows(T0, 5_500)  # more than one insert chunk on the servers
    assert wh.replace_window(spec, rows, T0, T0 + HOUR) == 5_500
    first = wh.read(spec)
    assert first.schema == SCHEMA
    assert first.equals(ordered(rows))
    assert first["window_start"].type.tz == "UTC"
    assert wh.replace_window(spec, rows, T0, T0 + HOUR) == 5_500
    assert wh.read(spec).equals(first)
    assert count_in(wh, spec, T0, T0 + HOUR) == 5_500


def test_replacing_a_window_leaves_the_others_alone(url, spec):
    wh = Warehouse(url)
    before, during, after = (window_rows(T0 + k * HOUR, 50, device=f"d{k}") for k in range(3))
    for k, rows in enumerate([before, during, after]):
        wh.replace_window(spec, rows, T0 + k * HOUR, T0 + (k + 1) * HOUR)
    replacement = window_rows(T0 + HOUR, 7, device="new")
    assert wh.replace_window(spec, replacement, T0 + HOUR, T0 + 2 * HOUR) == 7
    assert wh.read(spec, T0, T0 + HOUR).equals(ordered(before))
    assert wh.read(spec, T0 + HOUR, T0 + 2 * HOUR).equals(ordered(replacement))
    assert wh.read(spec, T0 + 2 * HOUR).equals(ordered(after))
    assert wh.read(spec).num_rows == 107
    # an empty window is published as empty
    assert wh.replace_window(spec, SCHEMA.empty_table(), T0 + HOUR, T0 + 2 * HOUR) == 0
    assert count_in(wh, spec, T0, T0 + 3 * HOUR) == 100


def test_rows_outside_the_window_are_refused_before_anything_changes(url, spec):
    wh = Warehouse(url)
    stray = window_rows(T0 + HOUR, 3)  # belongs to the next hour
    with pytest.raises(ValueError, match="outside"):
        wh.replace_window(spec, stray, T0, T0 + HOUR)
    tables = wh.execute_query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = :t", {"t": spec.name}
    )
    assert tables == [(0,)]  # not even created
    rows = window_rows(T0, 20)
    wh.replace_window(spec, rows, T0, T0 + HOUR)
    mixed = pa.concat_tables([window_rows(T0, 5, device="new"), stray])
    with pytest.raises(ValueError, match="3 of 8 rows"):
        wh.replace_window(spec, mixed, T0, T0 + HOUR)
    with pytest.raises(ValueError, match="timezone-aware"):
        wh.replace_window(spec, rows, T0.replace(tzinfo=None), T0 + HOUR)
    with pytest.raises(ValueError, match="missing"):
        wh.replace_window(spec, rows.drop_columns(["raw"]), T0, T0 + HOUR)
    assert wh.read(spec).equals(ordered(rows))


def test_a_failed_insert_rolls_back_the_delete(url, spec, monkeypatch):
    wh = Warehouse(url)
    rows = window_rows(T0, 30)
    wh.replace_window(spec, rows, T0, T0 + HOUR)

    def broken_insert(*args):
        raise RuntimeError("connection lost mid-insert")

    monkeypatch.setattr(duckdb_file, "_insert", broken_insert)
    monkeypatch.setattr(ServerDatabase, "_insert", broken_insert)
    with pytest.raises(RuntimeError, match="mid-insert"):
        wh.replace_window(spec, window_rows(T0, 5, device="new"), T0, T0 + HOUR)
    assert wh.read(spec).equals(ordered(rows))


def test_hostile_strings_and_bytes_round_trip_exactly(url, spec):
    wh = Warehouse(url)
    n = len(HOSTILE)
    rows = window_rows(T0, n).set_column(1, SCHEMA.field("device_id"), pa.array(HOSTILE))
    rows = rows.set_column(2, SCHEMA.field("site_id"), pa.array(HOSTILE[::-1]))
    raw = [bytes(range(256)), b"\x00", b"", *[s.encode() for s in HOSTILE[3:]]]
    rows = rows.set_column(7, SCHEMA.field("raw"), pa.array(raw, pa.binary()))
    wh.replace_window(spec, rows, T0, T0 + HOUR)
    got = wh.read(spec)
    assert got.equals(ordered(rows))
    assert sorted(got["device_id"].to_pylist()) == sorted(HOSTILE)
    # bound parameters find a hostile value as it is
    [(found,)] = wh.execute_query(
        f"SELECT count(*) FROM {spec.name} WHERE device_id = :d",  # noqa: S608 - test table name
        {"d": "'; DROP TABLE x; --"},
    )
    assert found == 1
    nul = rows.slice(0, 1).set_column(1, SCHEMA.field("device_id"), pa.array(["a\x00b"]))
    with pytest.raises(ValueError, match="NUL"):
        wh.replace_window(spec, nul, T0, T0 + HOUR)
    assert wh.read(spec).equals(got)


def test_nulls_round_trip(url, spec):
    wh = Warehouse(url)
    rows = window_rows(T0, 4)
    nullable = [f.name for f in SCHEMA if f.nullable]
    for name in nullable:
        i = rows.schema.get_field_index(name)
        mask = pa.array([True, False, True, False])
        rows = rows.set_column(
            i, rows.field(i), pc.if_else(mask, pa.nulls(4, rows.field(i).type), rows[name])
        )
    wh.replace_window(spec, rows, T0, T0 + HOUR)
    got = wh.read(spec)
    assert got.equals(ordered(rows))
    assert all(got[name].null_count == 2 for name in nullable)
    with pytest.raises(ValueError, match="not nullable"):
        bad = rows.set_column(1, SCHEMA.field("device_id"), pa.array(["a", None, "b", "c"]))
        wh.replace_window(spec, bad, T0, T0 + HOUR)


def test_schema_evolution_adds_the_missing_columns(url, spec):
    wh = Warehouse(url)
    old_schema = pa.schema([f for f in SCHEMA if f.name not in {"healthy", "raw"}])
    old_spec = TableSpec(spec.name, old_schema)
    old_rows = window_rows(T0, 10, schema=old_schema)
    wh.replace_window(old_spec, old_rows, T0, T0 + HOUR)
    assert wh.read(spec)["raw"].null_count == 10  # not there yet: read as NULL
    new_rows = window_rows(T0 + HOUR, 10)
    wh.replace_window(spec, new_rows, T0 + HOUR, T0 + 2 * HOUR)
    got = wh.read(spec)
    assert got.num_rows == 20
    assert got.slice(10).equals(ordered(new_rows))
    assert got.slice(0, 10).select(old_schema.names).equals(ordered(old_rows))
    assert got.slice(0, 10)["healthy"].null_count == 10
    assert wh.read(old_spec, T0 + HOUR).equals(ordered(new_rows).select(old_schema.names))


def test_column_types_and_time_index(url, spec):
    wh = Warehouse(url)
    wh.replace_window(spec, window_rows(T0, 1), T0, T0 + HOUR)
    types = dict(
        wh.execute_query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t",
            {"t": spec.name},
        )
    )
    expected = {
        "duckdb": ("TIMESTAMP WITH TIME ZONE", "VARCHAR", "DOUBLE", "BIGINT", "BLOB", "BOOLEAN"),
        "postgresql": (
            "timestamp with time zone",
            "text",
            "double precision",
            "bigint",
            "bytea",
            "boolean",
        ),
        "mysql": ("datetime", "mediumtext", "double", "bigint", "longblob", "tinyint"),
    }[wh.dialect]
    actual = tuple(
        types[c]
        for c in ("window_start", "device_id", "mean_value", "reading_count", "raw", "healthy")
    )
    assert actual == expected
    index_query = {
        "duckdb": "SELECT index_name FROM duckdb_indexes() WHERE table_name = :t",
        "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = :t",
        "mysql": "SELECT index_name FROM information_schema.statistics WHERE table_name = :t",
    }[wh.dialect]
    assert wh.execute_query(index_query, {"t": spec.name}) == [(spec.index_name,)]


def test_append_adds_rows_and_execute_query_refuses_writes(url, spec):
    wh = Warehouse(url)
    assert wh.read(spec).num_rows == 0  # missing table reads as empty
    rows = window_rows(T0, 6)
    assert wh.append(spec, rows) == 6
    assert wh.append(spec, rows) == 6
    assert wh.read(spec).equals(ordered(pa.concat_tables([rows, rows])))
    with pytest.raises(ValueError, match="read-only"):
        wh.execute_query(f"DELETE FROM {spec.name}")  # noqa: S608 - test table name
    if wh.dialect == "postgresql":  # a query that writes runs in a read-only transaction
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            wh.execute_query(
                f"WITH gone AS (DELETE FROM {spec.name} RETURNING 1) SELECT count(*) FROM gone"  # noqa: S608 - test table name
            )
    assert count_in(wh, spec, T0, T0 + HOUR) == 12


def test_display_url_and_errors_never_show_the_password():
    port = free_port()  # nothing listens there
    for url in (
        f"postgresql+psycopg2://sensor:s3cr3t-pw@127.0.0.1:{port}/test",
        f"mysql+pymysql://sensor:s3cr3t-pw@127.0.0.1:{port}/test",
        f"postgresql+psycopg2://127.0.0.1:{port}/test?user=sensor&password=s3cr3t-pw",
    ):
        wh = Warehouse(url, lock_timeout_s=1)
        assert "s3cr3t-pw" not in wh.display_url and "***" in wh.display_url
        assert "s3cr3t-pw" not in repr(wh)
        with pytest.raises(sa.exc.OperationalError) as failure:
            wh.read(TableSpec("anything", SCHEMA))
        assert "s3cr3t-pw" not in str(failure.value)
    with pytest.raises(ValueError) as bad:
        Warehouse("sqlite:///x.db?password=s3cr3t-pw")
    assert "s3cr3t-pw" not in str(bad.value)
    with pytest.raises(ValueError) as unparsable:
        Warehouse("postgresql+psycopg2://u:s3cr3t-pw@host:notaport/db")
    assert "s3cr3t-pw" not in str(unparsable.value)
    assert Warehouse("duckdb:///data/w.duckdb").display_url == "duckdb:///data/w.duckdb"


@pytest.mark.parametrize(
    "name, schema, time_column",
    [
        ("Upper", SCHEMA, "window_start"),
        ("x; drop table y", SCHEMA, "window_start"),
        ("t" * 64, SCHEMA, "window_start"),
        ("t", pa.schema([("window_start", UTC_US), ("bad name", pa.string())]), "window_start"),
        ("t", pa.schema([("window_start", UTC_US), ("v", pa.float32())]), "window_start"),
        ("t", pa.schema([("window_start", pa.timestamp("us"))]), "window_start"),
        ("t", SCHEMA, "nope"),
    ],
)
def test_table_specs_are_validated(name, schema, time_column):
    with pytest.raises(ValueError):
        TableSpec(name, schema, time_column)


@pytest.mark.parametrize("server", ["postgres", "mysql"])
def test_threads_publishing_concurrently_on_a_server(request, server):
    url = request.getfixturevalue(f"{server}_url")
    table = TableSpec(f"wh_test_{uuid.uuid4().hex[:12]}", SCHEMA)
    wh = Warehouse(url)
    windows = {k: window_rows(T0 + k * HOUR, 200, device=f"d{k}") for k in range(2)}
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def publish(k: int, times: int) -> None:
        try:
            for _ in range(times):
                wh.replace_window(table, windows[k], T0 + k * HOUR, T0 + (k + 1) * HOUR)
        except BaseException as exc:
            errors.append(exc)

    def watch() -> None:  # a reader must never see a window half-replaced or doubled
        while not done.is_set():
            seen.append(count_in(wh, table, T0, T0 + HOUR))

    try:
        wh.replace_window(table, windows[0], T0, T0 + HOUR)
        # two writers on different windows, a third on the same window as the first
        writers = [threading.Thread(target=publish, args=a) for a in ((0, 3), (1, 3), (0, 3))]
        reader = threading.Thread(target=watch)
        reader.start()
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        done.set()
        reader.join()
        assert not errors
        assert seen and set(seen) == {200}
        for k, rows in windows.items():
            assert wh.read(table, T0 + k * HOUR, T0 + (k + 1) * HOUR).equals(ordered(rows))
    finally:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")
        engine.dispose()


PUBLISHER = """
import sys
from datetime import datetime, timedelta
sys.path.insert(0, {root!r})
from sensor_platform_tests.test_warehouse import SCHEMA, T0, HOUR, window_rows
from sensor_platform.warehouse.store import TableSpec, Warehouse
k = int(sys.argv[1])
wh = Warehouse(sys.argv[2], lock_timeout_s=60)
rows = window_rows(T0 + k * HOUR, 1000, device=f"d{{k}}")
for _ in range(4):
    wh.replace_window(TableSpec("sensor_readings_minute", SCHEMA), rows, T0 + k * HOUR, T0 + (k + 1) * HOUR)
"""

HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_two_processes_publishing_to_one_duckdb_file(tmp_path):
    url = f"duckdb:///{tmp_path}/warehouse.duckdb"
    script = PUBLISHER.format(root=str(Path(__file__).resolve().parents[1]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(k), url], stderr=subprocess.PIPE, text=True
        )
        for k in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    wh = Warehouse(url)
    spec = TableSpec("sensor_readings_minute", SCHEMA)
    for k in range(2):
        expected = window_rows(T0 + k * HOUR, 1000, device=f"d{k}")
        assert wh.read(spec, T0 + k * HOUR, T0 + (k + 1) * HOUR).equals(ordered(expected))
    assert wh.read(spec).num_rows == 2000


def test_a_locked_duckdb_file_is_waited_for_then_reported(tmp_path, monkeypatch):
    attempts: list[str] = []
    connect = duckdb_file.duckdb.connect

    def counted_connect(target, **kwargs):
        attempts.append(target)
        return connect(target, **kwargs)

    monkeypatch.setattr(duckdb_file.duckdb, "connect", counted_connect)
    path = tmp_path / "warehouse.duckdb"
    url = f"duckdb:///{path}"
    spec = TableSpec("sensor_readings_minute", SCHEMA)
    rows = window_rows(T0, 10)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "1.0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseLockTimeout, match=re.escape(str(path))):
            Warehouse(url, lock_timeout_s=0.2).replace_window(spec, rows, T0, T0 + HOUR)
        assert len(attempts) > 1  # it retried before giving up
        attempts.clear()
        assert Warehouse(url, lock_timeout_s=30).replace_window(spec, rows, T0, T0 + HOUR) == 10
        assert len(attempts) > 1  # it waited for the holder to let go
    finally:
        holder.wait(timeout=30)
    assert Warehouse(url).read(spec).equals(ordered(rows))


HOLD_LOCK = """
import sys, time
from sensor_platform.warehouse.store import Warehouse
with Warehouse(sys.argv[1]).exclusive(sys.argv[2]):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_an_exclusive_lock_has_one_holder_and_dies_with_its_process(url):
    import signal
    import subprocess
    import sys

    name = f"lock_{uuid.uuid4().hex[:8]}"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, url, name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(WarehouseLockTimeout, match=name):
            with Warehouse(url, lock_timeout_s=1).exclusive(name):
                pass
        holder.send_signal(signal.SIGKILL)  # a worker killed while it holds the lock
        holder.wait()
        # the lock went with the process: taken at once (a lease would still run for minutes)
        with Warehouse(url, lock_timeout_s=5).exclusive(name):
            pass
    finally:
        holder.kill()
        holder.wait()
