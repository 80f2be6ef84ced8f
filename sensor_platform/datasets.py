"""The dataset registry: every dataset the platform keeps, described once.

For each dataset: its name (the Dagster asset key and the warehouse table), its folder in the lake,
its partitioning, the window each row aggregates and what it is merged from (aggregates), its
columns, and the quality dimensions checked on it. The lake layout, the rollups, the Dagster asset
factories, automation and repair planning, the quality checks and the catalog all read it, so a
new aggregate level (say 15 minutes) is one more `aggregate(...)` entry in `REGISTRY`.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sensor_platform.detection.schema import EPISODE_COLUMNS
from sensor_platform.lake import layout
from sensor_platform.quality.schema import EXCLUSION_COLUMNS
from sensor_platform.readings.schema import QUARANTINE_COLUMNS, READING_COLUMNS
from sensor_platform.rollups.schema import AGGREGATE_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

    from sensor_platform.warehouse.tables import TableSpec

Partitioning = Literal["hourly", "daily"]
PARTITION_LENGTH = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}
# Dagster's partition keys: 2026-03-01-14:00 for an hour, 2026-03-01 for a day (UTC).
PARTITION_KEY_FORMAT = {"hourly": "%Y-%m-%d-%H:%M", "daily": "%Y-%m-%d"}
RAW = "raw_sensor_readings"
FINEST_WINDOW = timedelta(minutes=1)  # what rollups.compute.minute_aggregates computes


@dataclass(frozen=True)
class Dataset:
    name: str  # asset key and warehouse table name
    prefix: str  # folder in the lake
    partitioning: Partitioning | None  # None: not partitioned by time in Dagster
    columns: dict  # name -> (pyarrow type, nullable, description)
    description: str
    tier: str  # bronze, silver, gold
    table: bool = False  # published to the warehouse (time column: `time_column`)
    time_column: str | None = None
    window: timedelta | None = None  # aggregates: the width of the window a row holds
    source: str | None = None  # aggregates: the dataset they are merged from
    quality: tuple[str, ...] = ()  # quality dimensions checked on every partition
    file_pattern: str | None = None  # where files live when not partitioned by time

    @property
    def partition_length(self) -> timedelta:
        if self.partitioning is None:
            raise ValueError(f"{self.name} is not partitioned by time")
        return PARTITION_LENGTH[self.partitioning]

    @property
    def is_aggregate(self) -> bool:
        return self.window is not None

    @property
    def schema(self) -> "pa.Schema":
        import pyarrow as pa

        return pa.schema(
            [
                pa.field(name, typ, nullable=nullable)
                for name, (typ, nullable, _) in self.columns.items()
            ]
        )

    def table_spec(self) -> "TableSpec":
        """The warehouse table the dataset is published to."""
        from sensor_platform.warehouse.tables import TableSpec

        if not self.table or self.time_column is None:
            raise ValueError(f"{self.name} is not published to the warehouse")
        return TableSpec(self.name, self.schema, self.time_column, self.description)

    def partition_key(self, start: datetime) -> str:
        """The Dagster partition key of the partition starting at `start`."""
        if self.partitioning is None:
            raise ValueError(f"{self.name} has no time partitions")
        return start.astimezone(UTC).strftime(PARTITION_KEY_FORMAT[self.partitioning])

    def partition_start(self, key: str) -> datetime:
        """The UTC start of the partition with Dagster key `key`."""
        if self.partitioning is None:
            raise ValueError(f"{self.name} has no time partitions")
        return datetime.strptime(key, PARTITION_KEY_FORMAT[self.partitioning]).replace(tzinfo=UTC)

    def partition_file(self, start: datetime) -> str:
        """The one Parquet file of the partition starting at `start`."""
        if self.partitioning == "hourly":
            return f"{layout.hour_dir(self.prefix, start)}/{layout.PART_FILE}"
        if self.partitioning == "daily":
            return f"{layout.day_dir(self.prefix, start)}/{layout.PART_FILE}"
        raise ValueError(f"{self.name} has no time partitions")

    @property
    def partition_path(self) -> str:
        """The partition file as a template, for people: `.../date=YYYY-MM-DD/hour=HH/part-0...`."""
        if self.partitioning is None:
            return f"{self.prefix}/{self.file_pattern or '*.parquet'}"
        folders = "date=YYYY-MM-DD/hour=HH" if self.partitioning == "hourly" else "date=YYYY-MM-DD"
        return f"{self.prefix}/{folders}/{layout.PART_FILE}"

    def partitions_in(self, start: datetime, end: datetime) -> list[datetime]:
        """The starts of this dataset's partitions inside [start, end)."""
        step, starts = self.partition_length, []
        while start < end:
            starts.append(start)
            start += step
        return starts

    def files_in(self, start: datetime, end: datetime) -> list[str]:
        """The partition files holding [start, end) of this dataset."""
        return [self.partition_file(s) for s in self.partitions_in(start, end)]


def aggregate(
    name: str,
    *,
    window: timedelta,
    partitioning: Partitioning,
    source: str,
    description: str,
    quality: tuple[str, ...] = ("consistency", "uniqueness"),
) -> Dataset:
    """An aggregate level: rows of `window` merged from `source`, in the aggregates folder."""
    return Dataset(
        name=name,
        prefix=f"aggregates/{name}",
        partitioning=partitioning,
        columns=AGGREGATE_COLUMNS,
        description=description,
        tier="silver",
        table=True,
        time_column="window_start",
        window=window,
        source=source,
        quality=quality,
    )


@dataclass(frozen=True)
class Registry:
    datasets: tuple[Dataset, ...]

    def __post_init__(self) -> None:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate dataset names in the registry: {names}")
        for level in self.aggregates:
            source = self.get(level.source)
            if not source.is_aggregate and level.window != FINEST_WINDOW:
                raise ValueError(f"{level.name}: the level computed from raw readings is by minute")
            if source.partition_length > level.partition_length:
                raise ValueError(f"{level.name}: partitions shorter than its source's")
            if source.is_aggregate and level.window % source.window:
                raise ValueError(f"{level.name}: window is not a multiple of {source.name}'s")

    def get(self, name: str) -> Dataset:
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        raise KeyError(f"no dataset {name!r} in the registry")

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.datasets)

    @property
    def aggregates(self) -> list[Dataset]:
        """The aggregate levels, each after the level it is merged from."""
        return [d for d in self.datasets if d.is_aggregate]

    @property
    def raw(self) -> Dataset:
        return self.get(RAW)


REGISTRY = Registry(
    (
        Dataset(
            name="quarantined_messages",
            prefix=layout.QUARANTINE,
            partitioning=None,
            columns=QUARANTINE_COLUMNS,
            description=(
                "Messages that could not become readings (not JSON, no device id, bad timestamp, "
                "non-finite value, oversized, ...), kept with their raw bytes, source and a reason "
                "code in quarantine/date=YYYY-MM-DD/<batch_id>.parquet."
            ),
            tier="bronze",
            file_pattern="date=YYYY-MM-DD/<batch_id>.parquet",
        ),
        Dataset(
            name=RAW,
            prefix=layout.RAW,
            partitioning="hourly",
            columns=READING_COLUMNS,
            description=(
                "Every valid reading whose event_time falls in the hour (UTC), de-duplicated by "
                "reading_id and sorted by device, metric and time, in one Parquet file per hour. "
                "Rebuilt from the previous file plus every landed batch of that hour, so late "
                "readings join their hour and re-runs never duplicate. Landing files merged here "
                "are deleted after the landing retention."
            ),
            tier="bronze",
            time_column="event_time",
            quality=("completeness", "validity", "uniqueness", "integrity", "timeliness"),
        ),
        aggregate(
            "sensor_readings_minute",
            window=timedelta(minutes=1),
            partitioning="hourly",
            source=RAW,
            description=(
                "Per device, site, metric and UTC minute: count, min, max, mean, sample stddev, "
                "first and last value, mergeable partials (m2) and coverage against the device's "
                "cadence."
            ),
            quality=("consistency", "uniqueness", "completeness", "integrity"),
        ),
        aggregate(
            "sensor_readings_hourly",
            window=timedelta(hours=1),
            partitioning="daily",
            source="sensor_readings_minute",
            description=(
                "Per device, site, metric and UTC hour, merged exactly from the minute aggregates "
                "(count-weighted means and Chan-merged variances: never an average of averages)."
            ),
        ),
        aggregate(
            "sensor_readings_daily",
            window=timedelta(days=1),
            partitioning="daily",
            source="sensor_readings_hourly",
            description=(
                "Per device, site, metric and UTC day, merged exactly from the hourly aggregates."
            ),
            quality=("consistency", "uniqueness", "completeness"),
        ),
        Dataset(
            name="quality_exclusions",
            prefix=layout.EXCLUSIONS,
            partitioning="hourly",
            columns=EXCLUSION_COLUMNS,
            description=(
                "What the quality gate kept out of each hour's aggregates: per device and metric, "
                "the invalid readings (outside the physical range, a unit not allowed, too far "
                "ahead of receipt) and, when more than the allowed share of a series was invalid, "
                "the whole series. Written with the minute aggregates of the hour; raw keeps "
                "every reading, and detection and alerts read them all."
            ),
            tier="silver",
            table=True,
            time_column="partition_hour",
        ),
        Dataset(
            name="sensor_anomalies",
            prefix=layout.ANOMALIES,
            partitioning="hourly",
            columns=EPISODE_COLUMNS,
            description=(
                "Anomaly episodes of the hour, one row per device, metric and rule from start to "
                "end, with severity, peak and reading count: thresholds, device faults, spikes "
                "(median/MAD against the device's own history), stuck sensors, silent devices and "
                "fast changes, under the conditions of detection/rules.json. An episode crossing "
                "hours keeps its id; each hour's row holds its state at the end of that hour."
            ),
            tier="silver",
            table=True,
            time_column="partition_hour",
        ),
    )
)
