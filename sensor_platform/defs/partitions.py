"""Partitions: hourly and daily, UTC, starting at the configured first day."""

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from sensor_platform.datasets import Dataset


@dataclass(frozen=True)
class Partitions:
    hourly: dg.HourlyPartitionsDefinition
    daily: dg.DailyPartitionsDefinition

    @classmethod
    def starting(cls, first_day: str) -> "Partitions":
        # end_offset=1: the hour (day) in progress is a partition too, so fresh readings flow.
        return cls(
            hourly=dg.HourlyPartitionsDefinition(start_date=f"{first_day}-00:00", end_offset=1),
            daily=dg.DailyPartitionsDefinition(start_date=first_day, end_offset=1),
        )

    def of(self, dataset: Dataset) -> dg.TimeWindowPartitionsDefinition:
        if dataset.partitioning is None:
            raise ValueError(f"{dataset.name} is not partitioned by time")
        return self.hourly if dataset.partitioning == "hourly" else self.daily


# A day's partition reads its 24 hours, of which today's later ones do not exist yet: a backfill
# that includes today builds today from the hours that do (Dagster refuses it otherwise).
EXISTING_UPSTREAM = dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)


def partition_starts(dataset: Dataset, window: dg.TimeWindow) -> list[datetime]:
    """The UTC starts of `dataset`'s partitions inside a partition time window (one or many)."""
    return dataset.partitions_in(window.start.astimezone(UTC), window.end.astimezone(UTC))
