"""What a dataset's files in the lake hold: files, bytes, rows, partitions, columns and metrics.

Row counts and columns come from the Parquet footers (no data is read); the distinct metric names
are one DuckDB scan of the `metric` column only. Also: reading and writing small documents (the
HTML page, JSON) in the lake, atomically like `Lake.write_parquet`.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sensor_platform.lake.store import Lake, LakeFile

# A partition_path template ends where the first placeholder or partition folder starts.
_TEMPLATE_MARKERS = ("=", "<", "YYYY", "*", "{")


@dataclass(frozen=True)
class LakeDatasetStats:
    prefix: str
    files: int
    bytes: int
    rows: int
    partitions: tuple[str, ...]  # e.g. "date=2026-03-01/hour=22", sorted
    schema: pa.Schema | None  # the files' columns (None when there are no files)
    metrics: tuple[str, ...]
    last_modified: datetime | None


def lake_prefix(partition_path: str) -> str:
    """The fixed folder of a `partition_path` template, e.g. `raw/sensor_readings` for
    `raw/sensor_readings/date=YYYY-MM-DD/hour=HH/part-0.parquet`."""
    kept = []
    for segment in partition_path.strip("/").split("/"):
        if any(m in segment for m in _TEMPLATE_MARKERS) or segment.endswith(".parquet"):
            break
        kept.append(segment)
    if not kept:
        raise ValueError(f"partition path {partition_path!r} has no fixed folder")
    return "/".join(kept)


def inspect_lake_dataset(lake: Lake, prefix: str) -> LakeDatasetStats:
    files = lake.list_files(prefix)
    schemas, rows = [], 0
    for f in files:  # one footer per file: cheap, and never the data itself
        with lake.fs.open_input_file(lake.full_path(f.path)) as handle:
            meta = pq.read_metadata(handle)
        rows += meta.num_rows
        schemas.append(meta.schema.to_arrow_schema().remove_metadata())
    schema = _unified(schemas)
    return LakeDatasetStats(
        prefix=prefix,
        files=len(files),
        bytes=sum(f.size for f in files),
        rows=rows,
        partitions=_partitions(prefix, files),
        schema=schema,
        metrics=_metrics(lake, files, schema),
        last_modified=max((f.mtime for f in files if f.mtime), default=None),
    )


def _unified(schemas: list[pa.Schema]) -> pa.Schema | None:
    if not schemas:
        return None
    distinct = list({s.to_string(): s for s in schemas}.values())
    try:
        return pa.unify_schemas(distinct)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return schemas[-1]  # conflicting types: the newest file (last path) describes the data


def _partitions(prefix: str, files: list[LakeFile]) -> tuple[str, ...]:
    found = set()
    for f in files:
        folders = f.path[len(prefix) + 1 :].split("/")[:-1]
        hive = [p for p in folders if "=" in p]
        if hive:
            found.add("/".join(hive))
    return tuple(sorted(found))


def _metrics(lake: Lake, files: list[LakeFile], schema: pa.Schema | None) -> tuple[str, ...]:
    if schema is None or "metric" not in schema.names:
        return ()
    dataset = ds.dataset(
        [lake.full_path(f.path) for f in files], schema=schema, format="parquet", filesystem=lake.fs
    )
    with duckdb.connect() as con:
        con.register("dataset_files", dataset)
        rows = con.execute(
            "SELECT DISTINCT metric FROM dataset_files WHERE metric IS NOT NULL ORDER BY 1"
        ).fetchall()
    return tuple(r[0] for r in rows)


def write_lake_bytes(lake: Lake, relpath: str, data: bytes) -> LakeFile:
    """Write `data` to `relpath` atomically (local: a temp file renamed into place; S3: one PUT)."""
    target = lake.full_path(relpath)
    lake.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    if not lake.is_local:
        with lake.fs.open_output_stream(target) as out:
            out.write(data)
        return lake.stat(relpath)
    tmp_dir = lake.full_path("_tmp")
    lake.fs.create_dir(tmp_dir, recursive=True)
    tmp = f"{tmp_dir}/{uuid.uuid4().hex}.tmp"
    try:
        with lake.fs.open_output_stream(tmp) as out:
            out.write(data)
        lake.fs.move(tmp, target)
    finally:
        if lake.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            lake.fs.delete_file(tmp)
    return lake.stat(relpath)


def read_lake_bytes(lake: Lake, relpath: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    if lake.fs.get_file_info(lake.full_path(relpath)).type != pafs.FileType.File:
        return None
    with lake.fs.open_input_stream(lake.full_path(relpath)) as f:
        return f.read()
