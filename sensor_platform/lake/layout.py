"""Where each dataset lives inside the lake. Paths are built from timestamps and fixed names only.

Layout (relative to the lake root; the datasets and their folders are listed in datasets.py):

    landing/sensor_readings/date=YYYY-MM-DD/hour=HH/<batch_id>.parquet   batches as they arrive
    quarantine/date=YYYY-MM-DD/<batch_id>.parquet                        rejected messages
    raw/sensor_readings/date=YYYY-MM-DD/hour=HH/part-0.parquet          one hour of readings
    aggregates/<level>/date=YYYY-MM-DD[/hour=HH]/part-0.parquet         one partition of a level
    anomalies/date=YYYY-MM-DD/hour=HH/part-0.parquet                    anomaly episodes
    quality/exclusions/date=YYYY-MM-DD/hour=HH/part-0.parquet           kept out of aggregates

Device and site ids never appear in a path: they are data.
"""

import re
from datetime import datetime

LANDING = "landing/sensor_readings"
QUARANTINE = "quarantine"
RAW = "raw/sensor_readings"
ANOMALIES = "anomalies"
EXCLUSIONS = "quality/exclusions"
PART_FILE = "part-0.parquet"

# Batch ids name files, so they are restricted to a safe alphabet; callers build them from
# topic names, partitions, offsets and timestamps, never from message content.
_BATCH_ID = re.compile(r"^[A-Za-z0-9._=-]{1,200}$")


def check_batch_id(batch_id: str) -> str:
    if not _BATCH_ID.match(batch_id) or batch_id in {".", ".."}:
        raise ValueError(
            f"invalid batch id {batch_id!r}: use 1-200 characters from A-Z a-z 0-9 . _ = -"
        )
    return batch_id


def hour_dir(prefix: str, hour: datetime) -> str:
    return f"{prefix}/date={hour:%Y-%m-%d}/hour={hour:%H}"


def day_dir(prefix: str, day: datetime) -> str:
    return f"{prefix}/date={day:%Y-%m-%d}"


def raw_partition_file(hour: datetime) -> str:
    return f"{hour_dir(RAW, hour)}/{PART_FILE}"


def landing_dir(hour: datetime) -> str:
    return hour_dir(LANDING, hour)


def landing_file(hour: datetime, batch_id: str) -> str:
    return f"{landing_dir(hour)}/{check_batch_id(batch_id)}.parquet"


def quarantine_file(day: datetime, batch_id: str) -> str:
    return f"{day_dir(QUARANTINE, day)}/{check_batch_id(batch_id)}.parquet"
