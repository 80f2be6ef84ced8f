"""Benchmark: minute aggregates of one hour of readings, ours vs plain DuckDB SQL vs pandas.

    .venv/bin/python benchmarks/minute_aggregation.py [--rows 10000000] [--sizes 2500000 ...]
                                                      [--repeat 3] [--threads 2]

Generates one hour of readings into a Parquet file in a temporary folder, then computes the
minute aggregates of that same file three ways, each in its own subprocess so that its peak RSS
(ru_maxrss of that child, from os.wait4) is its own; this parent process stays lean (the data
is generated in a child too) because Linux carries the parent's peak RSS into a forked child: (1) ours, `minute_aggregates` on the file
path; (2) a plain DuckDB GROUP BY with count/min/max/avg/stddev_samp over read_parquet, bucketing
minutes the same way ours does; (3) pandas read_parquet + groupby with the same statistics. A
fourth row shows the same DuckDB GROUP BY written with date_trunc, the way it is usually written.
Then runs ours at each of --sizes rows to show that peak memory stays flat as the hour grows.
Ours does more than the baselines (unit, first/last value by event time with a deterministic tie
break, mergeable m2, coverage), so the ratios are the price of those columns.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOUR_START_US = 1_772_323_200_000_000  # 2026-03-01T00:00:00Z
METRICS = [("temperature", "°C", 21.0), ("humidity", "%", 55.0), ("co2", "ppm", 420.0),
           ("pressure", "hPa", 1013.0), ("voltage", "V", 3.3)]  # fmt: skip

BASELINE_SQL = """
SELECT epoch_us(event_time) // 60000000 AS minute, device_id, site_id, metric,
       count(*), min(value), max(value), avg(value), stddev_samp(value)
FROM read_parquet(?)
GROUP BY ALL
"""
DATE_TRUNC_SQL = """
SELECT date_trunc('minute', event_time) AS minute, device_id, site_id, metric,
       count(*), min(value), max(value), avg(value), stddev_samp(value)
FROM read_parquet(?)
GROUP BY ALL
"""
METHODS = {
    "ours": "ours (minute_aggregates)",
    "duckdb": "DuckDB SQL GROUP BY",
    "pandas": "pandas groupby",
    "duckdb_date_trunc": "DuckDB SQL, date_trunc",
}


def generate_hour(rows: int, path: Path, devices: int = 200, seed: int = 42) -> None:
    """One hour of readings at a steady cadence per series, in time order, as READING_SCHEMA."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sys.path.insert(0, str(REPO))
    from sensor_platform.readings.schema import READING_SCHEMA

    rng = np.random.default_rng(seed)
    series = devices * len(METRICS)
    per_series = -(-rows // series)
    interval_us = 3_600_000_000 // per_series
    ordinal = np.arange(rows)
    series_idx = ordinal % series  # every series reports once per interval, in turn
    phase = rng.integers(0, interval_us, series)
    event_us = HOUR_START_US + (ordinal // series) * interval_us + phase[series_idx]
    device_idx, metric_idx = series_idx // len(METRICS), series_idx % len(METRICS)

    device_names = pa.array([f"greenhouse-{i // 20:02d}/sensor-{i:04d}" for i in range(devices)])
    site_names = pa.array([f"site-{i // 20:02d}" if i % 50 else None for i in range(devices)])
    device_id = device_names.take(pa.array(device_idx))
    metric = pa.array([m for m, _, _ in METRICS]).take(pa.array(metric_idx))
    offsets = np.array([base for _, _, base in METRICS])
    event_time = pa.array(event_us, pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "event_time": event_time,
            "device_id": device_id,
            "site_id": site_names.take(pa.array(device_idx)),
            "metric": metric,
            "value": offsets[metric_idx] + rng.normal(0.0, 1.0, rows),
            "unit": pa.array([u for _, u, _ in METRICS]).take(pa.array(metric_idx)),
            "status_code": pa.array(np.zeros(rows, dtype=np.int32)),
            "ingest_time": pa.array(event_us + 800_000, pa.timestamp("us", tz="UTC")),
            "source": pa.array(np.full(rows, "kafka:sensors/0")).cast(pa.string()),
            "reading_id": pc.binary_join_element_wise(
                device_id, metric, pc.cast(pa.array(event_us), pa.string()), "|"
            ),
        },
        schema=READING_SCHEMA,
    )
    pq.write_table(table, path, row_group_size=256 * 1024)


def run_method(method: str, path: str, repeat: int, threads: int, memory_limit: str) -> dict:
    """Run one method `repeat` times in this process; the best time and the output row count."""
    if method == "ours":
        sys.path.insert(0, str(REPO))
        from sensor_platform.rollups.compute import minute_aggregates

        def once() -> int:
            return minute_aggregates(
                [path], {}, memory_limit=memory_limit, threads=threads
            ).num_rows
    elif method.startswith("duckdb"):
        import duckdb

        sql = BASELINE_SQL if method == "duckdb" else DATE_TRUNC_SQL

        def once() -> int:
            con = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads})
            con.execute("SET TimeZone = 'UTC'")
            rows = len(con.sql(sql, params=[path]).fetchall())
            con.close()
            return rows
    elif method == "pandas":
        import pandas as pd

        def once() -> int:
            df = pd.read_parquet(
                path, columns=["event_time", "device_id", "site_id", "metric", "value"]
            )
            df["minute"] = df["event_time"].dt.floor("min")
            grouped = df.groupby(["minute", "device_id", "site_id", "metric"], dropna=False)
            stats = grouped["value"].agg(["count", "min", "max", "mean", "std"])
            return len(stats)
    else:
        raise ValueError(f"unknown method {method!r}")

    best, rows = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = once()
        best = min(best, time.perf_counter() - started)
    return {"seconds": best, "rows": rows}


def measure(method: str, path: Path, args: argparse.Namespace) -> dict:
    """Run a method in a child process; its own result plus its own peak RSS."""
    command = [sys.executable, __file__, "--child", method, "--file", str(path),
               "--repeat", str(args.repeat), "--threads", str(args.threads),
               "--memory-limit", args.memory_limit]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{method} failed with exit code {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="readings in the hour")
    parser.add_argument("--sizes", type=int, nargs="*", default=[2_500_000, 5_000_000, 10_000_000],
                        help="hour sizes for the memory run (none to skip it)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the best counts")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (ours and SQL)")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit")
    parser.add_argument("--child", choices=[*METHODS, "generate"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "generate":
        generate_hour(args.rows, Path(args.file))
        return
    if args.child:
        result = run_method(args.child, args.file, args.repeat, args.threads, args.memory_limit)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="minute-bench-") as tmp:
        files: dict[int, Path] = {}

        def hour_file(rows: int) -> Path:
            if rows not in files:
                files[rows] = Path(tmp) / f"hour-{rows}.parquet"
                started = time.perf_counter()
                generate = [sys.executable, __file__, "--child", "generate",
                            "--rows", str(rows), "--file", str(files[rows])]  # fmt: skip
                subprocess.run(generate, check=True)
                size_mb = files[rows].stat().st_size / 1e6
                print(f"generated {rows:,} readings ({size_mb:,.0f} MB Parquet) "
                      f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
            return files[rows]

        path = hour_file(args.rows)
        print(f"\nminute aggregates of one hour, {args.rows:,} readings, "
              f"best of {args.repeat}, DuckDB threads={args.threads} "
              f"memory_limit={args.memory_limit}")  # fmt: skip
        print(f"{'method':<28}{'seconds':>9}{'readings/s':>14}{'peak RSS':>12}{'output rows':>13}")
        results = {}
        for method, label in METHODS.items():
            r = results[method] = measure(method, path, args)
            print(f"{label:<28}{r['seconds']:>9.2f}{args.rows / r['seconds'] / 1e6:>12.1f} M"
                  f"{r['peak_rss_mb']:>9,.0f} MB{r['rows']:>13,}", flush=True)  # fmt: skip
        ours = results["ours"]["seconds"]
        print(f"\nours vs DuckDB SQL: {results['duckdb']['seconds'] / ours:.2f}x (target >= 0.8x)")
        print(f"ours vs pandas:     {results['pandas']['seconds'] / ours:.2f}x (target >= 3x)")

        if args.sizes:
            print("\nours as the hour grows (peak RSS should stay flat)")
            print(f"{'readings':>12}{'seconds':>9}{'readings/s':>14}{'peak RSS':>12}")
            for rows in args.sizes:
                r = measure("ours", hour_file(rows), args)
                print(f"{rows:>12,}{r['seconds']:>9.2f}{rows / r['seconds'] / 1e6:>12.1f} M"
                      f"{r['peak_rss_mb']:>9,.0f} MB", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
