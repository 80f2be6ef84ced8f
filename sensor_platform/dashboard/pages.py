"""What each page of the dashboard reads, as one call per page (two for the explorer: its pickers,
then the chosen series) on one connection. The app caches these calls; the benchmark and the
concurrency test run exactly them."""

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from sensor_platform.dashboard import alarms, data_quality, explorer, overview
from sensor_platform.dashboard.relations import open_episodes
from sensor_platform.datasets import REGISTRY

Frames = dict[str, pd.DataFrame | None]


def overview_page(
    con: duckdb.DuckDBPyConnection, *, now: datetime, stale_after: timedelta
) -> Frames:
    open_now = open_episodes(con, stale_after)
    return {
        "sites": overview.sites(con, now=now, open_now=open_now),
        "silent": overview.silent_devices(open_now),
        "freshness": overview.freshness(con, now=now),
        "feeds": overview.feeds(con, now=now),
    }


def explorer_choices(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """What the pickers offer, and where the data ends (the default ranges end there)."""
    return {"inventory": explorer.inventory(con), "data_end": explorer.data_end(con)}


def explorer_page(
    con: duckdb.DuckDBPyConnection,
    *,
    level: str,
    site_id: str | None,
    devices: list[str],
    metric: str,
    start: datetime,
    end: datetime,
    device: str,
) -> Frames:
    chosen = dict(site_id=site_id, devices=devices, metric=metric, start=start, end=end)
    return {
        "series": explorer.series(con, REGISTRY.get(level), **chosen),
        "episodes": explorer.episodes(con, **chosen),
        "latest": explorer.latest_readings(con, device_id=device),
    }


def alarms_page(con: duckdb.DuckDBPyConnection, *, chosen: alarms.AlarmFilter) -> Frames:
    """Every episode of the range (for the filters' choices), the chosen ones and their notices."""
    everything = alarms.episodes(con, alarms.AlarmFilter(chosen.start, chosen.end))
    episodes = everything if chosen.is_everything else alarms.episodes(con, chosen)
    return {
        "all": everything,
        "episodes": episodes,
        "notices": alarms.notices(con, episodes["episode_id"].tolist()),
    }


def quality_page(con: duckdb.DuckDBPyConnection, *, since: datetime) -> Frames:
    return {
        "grid": data_quality.grid(con, since=since),
        "failures": data_quality.latest_failures(con, since=since),
        "exclusions": data_quality.exclusions(con),
    }
