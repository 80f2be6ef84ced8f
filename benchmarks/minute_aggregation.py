"""Benchmark: minute aggregates of one hour of readings, ours vs the same columns in DuckDB SQL.

    .venv/bin/python benchmarks/minute_aggregation.py [--rows 10000000] [--sizes 2500000 ...]
        [--repeat 3] [--threads 2] [--memory-limit 1GB] [--tied-share 0.01] [--sql-variants]

Generates one hour of readings the way the lake holds a raw partition (READING_SCHEMA, sorted by
device_id, metric, event_time, reading_id, 256 Ki-row groups) from a fleet of devices that report
at their own cadence (1 s to 60 s), miss about 1 % of their readings and send about 1 % of them
twice at the same instant with a different reading_id and value (so the tie-break runs), plus the
fleet's cadence table. Then computes the minute aggregates of that file several ways, in rounds:
every method once per round, each run in its own subprocess so that its peak RSS (ru_maxrss of
that child, from os.wait4) is its own; this parent process stays lean (the data is generated in
a child too) because Linux carries the parent's peak RSS into a forked child:

- ours: `minute_aggregates(path, cadences)`;
- DuckDB SQL, same columns: one query over the file that computes every column ours does
  (SQL_VARIANTS["ordered"] with COVERAGE_SQL, the fastest way; `--sql-variants` times them all);
- DuckDB SQL GROUP BY: count/min/max/avg/stddev_samp only, for information;
- pandas: read_parquet, sort by event_time and reading_id, groupby; the same columns as ours.

Every method returns an Arrow table (pandas: a DataFrame) ordered like ours. Each same-columns
method's output is compared with ours (exact for counts, extremes, units, first/last and times;
rtol 1e-9 for the sums), so the ratios compare equal work. Finally ours runs on growing hours
(more devices at the same cadences) to show that what it holds besides the table it returns
stays flat.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOUR_START_US = 1_772_323_200_000_000  # 2026-03-01T00:00:00Z
KINDS = [  # device_id prefix, share of the fleet, cadences (s), metrics (name, unit, level, noise)
    ("BLD", 0.4, (10, 30, 60), [("co2", "ppm", 450.0, 30.0), ("temperature", "°C", 21.0, 0.5)]),
    ("FARM", 0.3, (30, 60), [("humidity", "%", 60.0, 3.0), ("soil_moisture", "%", 30.0, 2.0),
                             ("temperature", "°C", 18.0, 1.0)]),
    ("FIRE", 0.3, (1, 5, 10), [("co_level", "ppm", 2.0, 0.5), ("gas_level", "ppm", 10.0, 2.0),
                               ("humidity", "%", 45.0, 2.0), ("smoke_density", "obs/m", 0.02, 0.01),
                               ("temperature", "°C", 22.0, 0.3)]),
]  # fmt: skip
MISSING_SHARE = 0.01  # readings a device never sends: coverage below 1
TIED_SHARE = 0.01  # readings sent twice at the same instant, with another reading_id and value
NO_UNIT_SHARE = 0.02  # series whose device sends no unit
NO_SITE_SHARE = 0.02  # devices not assigned to a site

# The same columns as ours, written the ways an analyst would: a `minutes` view (one of
# SQL_VARIANTS) joined to the cadences (COVERAGE_SQL); DuckDB inlines the view, so it runs as one
# query. Every variant gives the same table (the run checks). The first/last pick by
# (event_time, reading_id) as ordered aggregates, first(... ORDER BY ...), was the fastest here;
# arg_min/arg_max with a struct key and row_number() windows were slower (`--sql-variants` times
# them all). The minute is floored with integer arithmetic on epoch microseconds, the fastest way
# (right for times after 1970, as here); date_trunc on a TIMESTAMPTZ goes through ICU calendars.
SQL_VARIANTS = {
    "ordered": """
SELECT make_timestamp(epoch_us(event_time) // 60000000 * 60000000) AS window_start,
       device_id, site_id, metric,
       first(unit ORDER BY event_time, reading_id) AS unit,
       count(*) AS reading_count, min(value) AS min_value, max(value) AS max_value,
       avg(value) AS mean_value, stddev_samp(value) AS stddev_value,
       var_pop(value) * count(*) AS m2,
       first(value ORDER BY event_time, reading_id) AS first_value,
       min(event_time) AS first_event_time,
       last(value ORDER BY event_time, reading_id) AS last_value,
       max(event_time) AS last_event_time
FROM readings
GROUP BY ALL
""",
    "arg_min": """
SELECT make_timestamp(epoch_us(event_time) // 60000000 * 60000000) AS window_start,
       device_id, site_id, metric,
       arg_min_null(unit, (event_time, reading_id)) AS unit,
       count(*) AS reading_count, min(value) AS min_value, max(value) AS max_value,
       avg(value) AS mean_value, stddev_samp(value) AS stddev_value,
       var_pop(value) * count(*) AS m2,
       arg_min(value, (event_time, reading_id)) AS first_value,
       min(event_time) AS first_event_time,
       arg_max(value, (event_time, reading_id)) AS last_value,
       max(event_time) AS last_event_time
FROM readings
GROUP BY ALL
""",
    "window": """
WITH ranked AS (
    SELECT make_timestamp(epoch_us(event_time) // 60000000 * 60000000) AS window_start,
           device_id, site_id, metric, unit, value, event_time,
           row_number() OVER (series ORDER BY event_time, reading_id) AS position,
           count(*) OVER series AS readings
    FROM readings
    WINDOW series AS (PARTITION BY epoch_us(event_time) // 60000000, device_id, site_id, metric)
)
SELECT window_start, device_id, site_id, metric,
       any_value(unit) FILTER (WHERE position = 1) AS unit,
       count(*) AS reading_count, min(value) AS min_value, max(value) AS max_value,
       avg(value) AS mean_value, stddev_samp(value) AS stddev_value,
       var_pop(value) * count(*) AS m2,
       any_value(value) FILTER (WHERE position = 1) AS first_value,
       min(event_time) AS first_event_time,
       any_value(value) FILTER (WHERE position = readings) AS last_value,
       max(event_time) AS last_event_time
FROM ranked
GROUP BY ALL
""",
}
SQL_VARIANTS["date_trunc"] = SQL_VARIANTS["ordered"].replace(
    "make_timestamp(epoch_us(event_time) // 60000000 * 60000000)",
    "date_trunc('minute', event_time)",
)
COVERAGE_SQL = """
SELECT m.*, 60 / c.cadence_seconds AS expected_count,
       m.reading_count / (60 / c.cadence_seconds) AS coverage
FROM minutes AS m LEFT JOIN cadences AS c USING (device_id)
ORDER BY window_start, device_id, site_id NULLS LAST, metric
"""
# For information: the usual aggregates only (no unit, first/last, m2, coverage, order).
GROUP_BY_SQL = """
SELECT make_timestamp(epoch_us(event_time) // 60000000 * 60000000) AS window_start,
       device_id, site_id, metric,
       count(*), min(value), max(value), avg(value), stddev_samp(value)
FROM readings
GROUP BY ALL
"""
METHODS = {
    "ours": "ours (minute_aggregates)",
    "sql": "DuckDB SQL, same columns",
    "group_by": "DuckDB SQL GROUP BY only",
    "pandas": "pandas, same columns",
}
VARIANT_METHODS = {f"sql_{name}": f"  variant: {name}" for name in SQL_VARIANTS}
CHECKED = ("ours", "sql", "pandas", *VARIANT_METHODS)  # methods that compute every column


def generate_hour(
    rows: int, path: Path, cadence_path: Path, tied_share: float = TIED_SHARE, seed: int = 42
) -> dict:
    """About `rows` readings of one hour from a fleet sized to send them, plus its cadences;
    what was generated, counted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO))
    from sensor_platform.lake.store import ROW_GROUP_SIZE
    from sensor_platform.readings.schema import READING_SCHEMA

    rng = np.random.default_rng(seed)
    per_device = sum(
        share * len(metrics) * np.mean([3600 / c for c in cadences])
        for _, share, cadences, metrics in KINDS
    ) * (1 - MISSING_SHARE + tied_share)
    fleet = max(1, round(rows / per_device))

    # Devices in device_id order; series (device, metric) in (device_id, metric) order.
    names, cadence, series_device, series_metric = [], [], [], []
    metric_rows = []  # (name, unit, level, noise) of every kind's metrics, in one list
    for prefix, share, cadences, metrics in KINDS:
        count = max(1, round(fleet * share))
        first_metric = len(metric_rows)
        metric_rows += metrics
        for i in range(count):
            series_device += [len(names)] * len(metrics)
            series_metric += range(first_metric, first_metric + len(metrics))
            names.append(f"{prefix}-{i:06d}")
        cadence += [cadences[i % len(cadences)] for i in range(count)]  # in even shares
    cadence = np.array(cadence, dtype=np.int64)
    series_device, series_metric = np.array(series_device), np.array(series_metric)
    sites = pa.array(
        [None if rng.random() < NO_SITE_SHARE else f"site-{i // 40:04d}" for i in range(len(names))],
        pa.string(),
    )  # fmt: skip

    # Every series ticks at its device's cadence from a per-device phase (whole milliseconds).
    series_cadence = cadence[series_device]
    ticks = 3600 // series_cadence
    phase_us = rng.integers(0, 1000, len(names))[series_device] * 1000
    series = np.repeat(np.arange(len(series_device)), ticks)
    tick = np.arange(len(series)) - np.repeat(np.cumsum(ticks) - ticks, ticks)
    event_us = HOUR_START_US + tick * series_cadence[series] * 1_000_000 + phase_us[series]
    sent = rng.random(len(series)) >= MISSING_SHARE
    copies = sent.astype(np.int64) + (sent & (rng.random(len(series)) < tied_share))
    series, event_us = np.repeat(series, copies), np.repeat(event_us, copies)
    n = len(series)

    # reading_id: 32 hex digits, as the pipeline's blake2b ids; lake order puts ties by id.
    id_bytes = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    id_order = id_bytes[:, :8].copy().view(">u8").ravel()
    order = np.lexsort((id_order, event_us, series))
    series, event_us, id_bytes = series[order], event_us[order], id_bytes[order]
    hex_pairs = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")
    reading_id = pa.array(np.ascontiguousarray(hex_pairs[id_bytes]).view("S32").ravel())

    level = np.array([m[2] for m in metric_rows])[series_metric]
    noise = np.array([m[3] for m in metric_rows])[series_metric]
    drift = rng.normal(0.0, 1.0, len(series_device)) * noise
    units = pa.array([m[1] for m in metric_rows]).take(pa.array(series_metric))
    units = pc.if_else(pa.array(rng.random(len(series_device)) < NO_UNIT_SHARE), None, units)
    series_index = pa.array(series)
    device_index = pa.array(series_device[series])
    device_id = pa.array(names).take(device_index)
    partition = pc.cast(pa.array(series_device[series] % 12), pa.string())
    ingest_us = event_us + rng.integers(50_000, 2_000_000, n)
    table = pa.table(
        {
            "event_time": pa.array(event_us, pa.timestamp("us", tz="UTC")),
            "device_id": device_id,
            "site_id": sites.take(device_index),
            "metric": pa.array([m[0] for m in metric_rows]).take(pa.array(series_metric[series])),
            "value": level[series] + drift[series] + rng.normal(0.0, 1.0, n) * noise[series],
            "unit": units.take(series_index),
            "status_code": pa.array(np.where(rng.random(n) < 0.001, 17, 0).astype(np.int32)),
            "ingest_time": pa.array(ingest_us, pa.timestamp("us", tz="UTC")),
            "source": pc.binary_join_element_wise(
                "kafka:sensors/", partition, "/", pc.cast(pa.array(np.arange(n)), pa.string()), ""
            ),
            "reading_id": reading_id.cast(pa.string()),
        },
        schema=READING_SCHEMA,
    )
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE)
    pq.write_table(pa.table({"device_id": names, "cadence_seconds": cadence}), cadence_path)
    return {"readings": n, "devices": len(names), "series": len(series_device),
            "tied": int((copies == 2).sum())}  # fmt: skip


def run_method(method: str, args: argparse.Namespace) -> dict:
    """Run one method once in this process: its wall and CPU seconds, the output rows, and the
    output written to `--out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = args.file
    cadences = pq.read_table(args.cadences)
    if method == "ours":
        sys.path.insert(0, str(REPO))
        from sensor_platform.rollups.compute import minute_aggregates

        cadence_map = dict(zip(*cadences.to_pydict().values(), strict=True))

        def once() -> pa.Table:
            return minute_aggregates(
                [path], cadence_map, memory_limit=args.memory_limit, threads=args.threads
            )
    elif method in ("sql", "group_by", *VARIANT_METHODS):
        import duckdb

        variant = {"sql": "ordered", "group_by": None}.get(method, method.removeprefix("sql_"))

        def once() -> pa.Table:
            con = duckdb.connect(
                config={"memory_limit": args.memory_limit, "threads": args.threads}
            )
            con.execute("SET TimeZone = 'UTC'")
            con.read_parquet(path).create_view("readings")
            con.register("cadences", cadences)
            if variant is None:
                table = con.sql(GROUP_BY_SQL).to_arrow_table()
            else:
                con.sql(SQL_VARIANTS[variant]).create_view("minutes")
                table = con.sql(COVERAGE_SQL).to_arrow_table()
            con.close()
            return table
    elif method == "pandas":
        once = _pandas_minutes(path, cadences.to_pandas())
    else:
        raise ValueError(f"unknown method {method!r}")

    started, started_cpu = time.perf_counter(), _cpu_seconds()
    result = once()
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - started_cpu
    if not isinstance(result, pa.Table):
        result = pa.Table.from_pandas(result, preserve_index=False)
    if args.out and method in CHECKED:
        pq.write_table(result, args.out)
    return {"seconds": seconds, "cpu": cpu, "rows": len(result), "output_mb": result.nbytes / 1e6}


def _cpu_seconds() -> float:
    """CPU time of this process, every thread: steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pandas_minutes(path: str, cadences):
    """pandas computing every column ours does, the straightforward way."""
    import pandas as pd

    columns = ["event_time", "device_id", "site_id", "metric", "value", "unit", "reading_id"]
    keys = ["window_start", "device_id", "site_id", "metric"]

    def once():
        df = pd.read_parquet(path, columns=columns)
        df["window_start"] = df["event_time"].dt.floor("min")
        df = df.sort_values(["event_time", "reading_id"])
        grouped = df.groupby(keys, dropna=False, sort=False)
        out = grouped.agg(
            reading_count=("value", "count"),
            min_value=("value", "min"),
            max_value=("value", "max"),
            mean_value=("value", "mean"),
            stddev_value=("value", "std"),
            m2=("value", "var"),  # sample variance here, made m2 below
            first_value=("value", "first"),
            first_event_time=("event_time", "min"),
            last_value=("value", "last"),
            last_event_time=("event_time", "max"),
        )
        out["m2"] = out["m2"].fillna(0.0) * (out["reading_count"] - 1)  # NaN for one reading
        out.insert(0, "unit", grouped["unit"].first(skipna=False))
        out = out.reset_index().merge(cadences, on="device_id", how="left")
        out["expected_count"] = 60 / out.pop("cadence_seconds")
        out["coverage"] = out["reading_count"] / out["expected_count"]
        return out.sort_values(keys, na_position="last", ignore_index=True)

    return once


def compare(reference: str, other: str) -> str | None:
    """None when `other` holds the same minute aggregates as `reference`, else what differs."""
    import numpy as np
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO))
    from sensor_platform.rollups.schema import AGGREGATE_SCHEMA

    ours = pq.read_table(reference)
    theirs = pq.read_table(other).select(AGGREGATE_SCHEMA.names).cast(AGGREGATE_SCHEMA)
    if ours.num_rows != theirs.num_rows:
        return f"{theirs.num_rows:,} rows, ours {ours.num_rows:,}"
    for name in AGGREGATE_SCHEMA.names:
        mine, other_column = ours.column(name), theirs.column(name)
        if name in ("mean_value", "stddev_value", "m2", "expected_count", "coverage"):
            # Sums depend on the order they run in: equal to 1e-9, and NULL in the same rows.
            if not mine.is_null().equals(other_column.is_null()):
                return f"{name}: NULL in other rows"
            a, b = (c.fill_null(0.0).to_numpy() for c in (mine, other_column))
            close = np.isclose(a, b, rtol=1e-9, atol=1e-12)
            if not close.all():
                return f"{name}: {int((~close).sum())} rows differ"
        elif not mine.equals(other_column):
            return f"{name} differs"
    return None


def measure(method: str, path: Path, args: argparse.Namespace, out: Path | None = None) -> dict:
    """Run a method once in a child process; its own result plus its own peak RSS."""
    command = [sys.executable, __file__, "--child", method, "--file", str(path),
               "--cadences", str(_cadence_file(path)),
               "--threads", str(args.threads), "--memory-limit", args.memory_limit]  # fmt: skip
    if out:
        command += ["--out", str(out)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{method} failed with exit code {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return result


def _cadence_file(hour_file: Path) -> Path:
    return hour_file.with_suffix(".cadences.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="readings in the hour")
    parser.add_argument("--sizes", type=int, nargs="*", default=[2_500_000, 5_000_000, 10_000_000],
                        help="hour sizes for the memory run (none to skip it)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; each method runs once a round and its best round counts")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (ours and SQL)")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit")
    parser.add_argument("--sql-variants", action="store_true",
                        help="also time every way of writing the same-columns SQL")  # fmt: skip
    parser.add_argument("--tied-share", type=float, default=TIED_SHARE,
                        help="share of readings sent twice at the same instant")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--cadences", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "generate":
        print(json.dumps(generate_hour(args.rows, Path(args.file), Path(args.cadences),
                                       args.tied_share)))  # fmt: skip
        return
    if args.child == "compare":
        print(json.dumps(compare(args.file, args.out)))
        return
    if args.child:
        print(json.dumps(run_method(args.child, args)))
        return

    with tempfile.TemporaryDirectory(prefix="minute-bench-") as tmp:
        files: dict[int, Path] = {}
        readings: dict[int, int] = {}  # readings generated for each --rows or --sizes figure

        def hour_file(rows: int) -> Path:
            if rows not in files:
                files[rows] = Path(tmp) / f"hour-{rows}.parquet"
                started = time.perf_counter()
                generate = [sys.executable, __file__, "--child", "generate", "--rows", str(rows),
                            "--file", str(files[rows]),
                            "--cadences", str(_cadence_file(files[rows])),
                            "--tied-share", str(args.tied_share)]  # fmt: skip
                made = json.loads(subprocess.run(generate, check=True, stdout=subprocess.PIPE,
                                                 text=True).stdout)  # fmt: skip
                size_mb = files[rows].stat().st_size / 1e6
                readings[rows] = made["readings"]
                print(f"generated {made['readings']:,} readings of {made['devices']:,} devices "
                      f"({made['series']:,} series, {made['tied']:,} readings sent twice at the "
                      f"same instant), {size_mb:,.0f} MB Parquet, "
                      f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
            return files[rows]

        path = hour_file(args.rows)
        methods = {**METHODS, **(VARIANT_METHODS if args.sql_variants else {})}
        print(
            f"\nminute aggregates of one hour, {readings[args.rows]:,} readings, best of "
            f"{args.repeat} rounds (each method once per round, in its own process), "
            f"DuckDB threads={args.threads} memory_limit={args.memory_limit}"
        )
        print(
            f"{'method':<28}{'seconds':>8}{'CPU s':>7}{'readings/s':>12}{'peak RSS':>10}"
            f"{'rows out':>10}  same as ours"
        )
        # Rounds: every method once per round, in turn, so that the load of others on a shared
        # machine falls on all of them alike; a method's best round counts.
        runs: dict[str, list[dict]] = {method: [] for method in methods}
        outputs = {m: Path(tmp) / f"{m}.parquet" if m in CHECKED else None for m in methods}
        for _ in range(args.repeat):
            for method in methods:
                runs[method].append(measure(method, path, args, outputs[method]))
        results = {}
        for method, label in methods.items():
            r = results[method] = {
                "seconds": min(run["seconds"] for run in runs[method]),
                "cpu": min(run["cpu"] for run in runs[method]),
                "peak_rss_mb": max(run["peak_rss_mb"] for run in runs[method]),
                "rows": runs[method][-1]["rows"],
            }
            same = "-"
            if method != "ours" and outputs[method]:
                check = [sys.executable, __file__, "--child", "compare",
                         "--file", str(outputs["ours"]), "--out", str(outputs[method])]  # fmt: skip
                verdict = json.loads(
                    subprocess.run(check, check=True, stdout=subprocess.PIPE, text=True).stdout
                )
                same = "yes" if verdict is None else f"NO: {verdict}"
            print(
                f"{label:<28}{r['seconds']:>8.2f}{r['cpu']:>7.2f}"
                f"{readings[args.rows] / r['seconds'] / 1e6:>10.1f} M{r['peak_rss_mb']:>7,.0f} MB"
                f"{r['rows']:>10,}  {same}",
                flush=True,
            )
        ours = results["ours"]
        for method, target in (
            ("sql", " (target >= 0.8x)"),
            ("group_by", ""),
            ("pandas", " (target >= 3x)"),
        ):
            theirs = results[method]
            print(
                f"ours vs {METHODS[method] + ':':<26} {theirs['seconds'] / ours['seconds']:.2f}x"
                f" wall, {theirs['cpu'] / ours['cpu']:.2f}x CPU{target}"
            )

        if args.sizes:
            print("\nours as the hour grows (more devices at the same cadences)")
            print(
                f"{'readings':>12}{'seconds':>9}{'readings/s':>12}{'peak RSS':>10}"
                f"{'rows out':>10}{'output':>9}{'RSS - output':>14}"
            )
            for rows in args.sizes:
                r = measure("ours", hour_file(rows), args)
                print(
                    f"{readings[rows]:>12,}{r['seconds']:>9.2f}"
                    f"{readings[rows] / r['seconds'] / 1e6:>10.1f} M"
                    f"{r['peak_rss_mb']:>7,.0f} MB{r['rows']:>10,}{r['output_mb']:>6,.0f} MB"
                    f"{r['peak_rss_mb'] - r['output_mb']:>11,.0f} MB",
                    flush=True,
                )


if __name__ == "__main__":
    main()
