"""Land one batch of normalized readings: split by event hour, write files named by the batch id.

A batch id names exactly one piece of work (a Kafka offset range, a simulator window), so landing
the same batch again rewrites the same files with the same content and never duplicates a reading.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.lake import layout
from sensor_platform.lake.store import Lake, LakeFile


@dataclass(frozen=True)
class LandingReport:
    batch_id: str
    readings: int
    quarantined: int
    hours: dict[datetime, int]  # event hour (UTC) -> readings landed for it
    files: list[LakeFile] = field(default_factory=list)

    @property
    def bytes_written(self) -> int:
        return sum(f.size for f in self.files)


def land_batch(
    lake: Lake, batch_id: str, readings: pa.Table, quarantine: pa.Table
) -> LandingReport:
    """Write `readings` as one landing file per event hour and `quarantine` as one file per day."""
    layout.check_batch_id(batch_id)
    files: list[LakeFile] = []
    hours: dict[datetime, int] = {}
    for hour, rows in _split_by(readings, "event_time", "hour"):
        files.append(lake.write_parquet(layout.landing_file(hour, batch_id), rows))
        hours[hour] = rows.num_rows
    for day, rows in _split_by(quarantine, "received_at", "day"):
        files.append(lake.write_parquet(layout.quarantine_file(day, batch_id), rows))
    return LandingReport(batch_id, readings.num_rows, quarantine.num_rows, hours, files)


def _split_by(table: pa.Table, column: str, unit: str) -> list[tuple[datetime, pa.Table]]:
    """Group rows by the UTC hour or day of `column`, vectorized, preserving row order."""
    if table.num_rows == 0:
        return []
    buckets = pc.floor_temporal(table[column], unit=unit)
    parts = []
    for bucket in pc.unique(buckets).to_pylist():
        rows = table.filter(pc.equal(buckets, pa.scalar(bucket, buckets.type)))
        parts.append((bucket.astimezone(UTC), rows))
    return sorted(parts, key=lambda part: part[0])
