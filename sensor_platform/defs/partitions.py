"""Partitions: hourly and daily, UTC, starting at SENSOR_PARTITIONS_START."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from sensor_platform import settings

# end_offset=1: the hour (day) in progress is a partition too, so fresh readings flow at once.
HOURLY = dg.HourlyPartitionsDefinition(
    start_date=f"{settings.partitions_start()}-00:00", end_offset=1
)
DAILY = dg.DailyPartitionsDefinition(start_date=settings.partitions_start(), end_offset=1)


def hours_in(window: dg.TimeWindow) -> list[datetime]:
    """The UTC hour starts inside a partition time window (one or many partitions)."""
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    return [start + timedelta(hours=i) for i in range(int((end - start).total_seconds() // 3600))]


def days_in(window: dg.TimeWindow) -> list[datetime]:
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    return [start + timedelta(days=i) for i in range(int((end - start).total_seconds() // 86400))]


def hour_key(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%d-%H:%M")
