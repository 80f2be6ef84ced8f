"""The Alarms page's queries: the anomaly episodes of a range (open and closed) and, from the alert
ledger, every notice about them with its delivery state per channel."""

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from sensor_platform.dashboard.relations import day_of, frame, latest_episodes_sql
from sensor_platform.notify.ledger import LEDGER_TABLE
from sensor_platform.notify.states import notice_states

_LEDGER_COLUMNS = ", ".join(f'"{name}"' for name in LEDGER_TABLE.schema.names)  # fixed schema


@dataclass(frozen=True)
class AlarmFilter:
    """Which episodes: those overlapping [start, end); None means every value."""

    start: datetime
    end: datetime
    sites: tuple[str, ...] | None = None
    no_site: bool = True  # with `sites`: also episodes of devices without a site
    severities: tuple[str, ...] | None = None
    rules: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None

    @property
    def is_everything(self) -> bool:
        """No filter beyond the range."""
        return (self.sites, self.severities, self.rules, self.statuses) == (None,) * 4

    def sql(self) -> tuple[str, dict]:
        """The episodes' latest states, as SQL with bound parameters."""
        where = (
            "($sites::VARCHAR[] IS NULL OR list_contains($sites::VARCHAR[], site_id) "
            "OR (site_id IS NULL AND $no_site)) "
            "AND ($severities::VARCHAR[] IS NULL OR list_contains($severities::VARCHAR[], severity)) "
            "AND ($rules::VARCHAR[] IS NULL OR list_contains($rules::VARCHAR[], rule)) "
            "AND ($statuses::VARCHAR[] IS NULL OR list_contains($statuses::VARCHAR[], status))"
        )
        sql = f"""
            SELECT * FROM ({latest_episodes_sql()})
            WHERE start_time < $end AND coalesce(closed_at, end_time) >= $start AND {where}
        """  # noqa: S608 - fixed SQL
        params = {
            "since_day": day_of(self.start),
            "start": self.start,
            "end": self.end,
            "sites": _listed(self.sites),
            "no_site": self.no_site,
            "severities": _listed(self.severities),
            "rules": _listed(self.rules),
            "statuses": _listed(self.statuses),
        }
        return sql, params


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def episodes(con: duckdb.DuckDBPyConnection, chosen: AlarmFilter) -> pd.DataFrame:
    """The chosen episodes in their current state, newest first, with their duration."""
    sql, params = chosen.sql()
    table = frame(
        con,
        f"""
        SELECT episode_id, site_id, device_id, metric, rule, kind, severity, status, start_time,
               end_time, closed_at, peak_value, threshold, reading_count,
               round(epoch(coalesce(closed_at, end_time) - start_time) / 60, 1) AS minutes
        FROM ({sql})
        ORDER BY start_time DESC, site_id, device_id, rule
        """,  # noqa: S608 - fixed SQL
        params,
    )
    return table


def notices(con: duckdb.DuckDBPyConnection, episode_ids: list[str]) -> pd.DataFrame:
    """One row per channel and notice (an episode's opened / escalated / closed event) about the
    episodes: its delivery state from the ledger (sent, expired, failed, unknown, attempting) and
    whether it may have arrived twice."""
    ledger_sql = f"""
        SELECT {_LEDGER_COLUMNS} FROM "{LEDGER_TABLE.name}"
        WHERE episode_id IN (SELECT unnest($ids::VARCHAR[]))
    """  # noqa: S608 - fixed SQL
    history = con.sql(ledger_sql, params={"ids": list(episode_ids)}).to_arrow_table()
    rows = [
        {
            "episode_id": state.episode_id,
            "event": state.event,
            "channel": state.channel,
            "state": state.state,
            "last_recorded_at": state.last_recorded_at,
            "possible_duplicate": state.possible_duplicate,
            "site_id": state.episode["site_id"],
            "device_id": state.episode["device_id"],
            "rule": state.episode["rule"],
            "severity": state.severity,
        }
        for state in notice_states(history).values()
    ]
    columns = [
        "episode_id",
        "event",
        "channel",
        "state",
        "last_recorded_at",
        "possible_duplicate",
        "site_id",
        "device_id",
        "rule",
        "severity",
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(
        ["last_recorded_at", "channel"], ascending=[False, True], ignore_index=True
    )


def delivery_by_episode(episode_table: pd.DataFrame, notice_table: pd.DataFrame) -> pd.DataFrame:
    """The episodes with one column per channel, right after what identifies them: the state of
    each of their notices there (`opened: sent, closed: failed`), empty where nothing was
    announced."""
    channels = sorted(notice_table["channel"].unique())
    table = episode_table.copy()
    labelled = notice_table.sort_values("last_recorded_at", kind="stable").assign(
        label=notice_table["event"] + ": " + notice_table["state"]
    )
    for channel in channels:
        mine = labelled[labelled["channel"] == channel]
        summary = mine.groupby("episode_id", sort=False)["label"].agg(", ".join)
        table[channel] = table["episode_id"].map(summary)
    first = ["site_id", "device_id", "rule", "severity", "status", "start_time", *channels]
    return table[first + [c for c in table.columns if c not in first]]


def counts(episode_table: pd.DataFrame) -> pd.DataFrame:
    """Episodes per severity, rule and status."""
    if episode_table.empty:
        return pd.DataFrame(columns=["severity", "rule", "open", "closed"])
    pivot = (
        episode_table.groupby(["severity", "rule", "status"])
        .size()
        .unstack("status", fill_value=0)
        .reindex(columns=["open", "closed"], fill_value=0)
        .reset_index()
    )
    pivot.columns.name = None
    return pivot.sort_values(["severity", "open"], ascending=[True, False], ignore_index=True)
