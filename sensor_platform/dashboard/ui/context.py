"""What every page shares: the settings and the data source (one per server process), cached
queries with the configured TTL, the source line of the sidebar and how read failures are shown.

Data values are shown only through st.dataframe, st.selectbox / st.multiselect options, st.text,
st.code and charts, which render them as text; Markdown (titles, captions, metric labels) holds
fixed words and numbers only, and no HTML is ever allowed through.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from sensor_platform.dashboard import pages
from sensor_platform.dashboard.sources import DashboardConfig, DashboardSource, SourceStatus
from sensor_platform.detection.rules import RuleSet, load_rules
from sensor_platform.settings import Settings, load_settings

LOG = logging.getLogger("sensor_platform.dashboard")
NO_SITE = "(no site)"

# The only functions a cached query may name.
QUERIES: dict[str, Callable[..., object]] = {
    f"{fn.__module__}.{fn.__qualname__}": fn
    for fn in (
        pages.overview_page,
        pages.explorer_choices,
        pages.explorer_page,
        pages.alarms_page,
        pages.quality_page,
    )
}


@dataclass(frozen=True)
class Context:
    settings: Settings
    source: DashboardSource
    rules: RuleSet


@st.cache_resource(show_spinner=False)
def context() -> Context:
    """Read once per server process: the settings (through load_settings only) and the rules."""
    settings = load_settings()
    return Context(
        settings=settings,
        source=DashboardSource(DashboardConfig.from_settings(settings)),
        rules=load_rules(settings.anomaly_rules_file),
    )


def _run(name: str, params: dict) -> object:
    return context().source.read(QUERIES[name], **params)


@st.cache_resource(show_spinner=False)
def _cached_run(ttl_s: int) -> Callable[[str, dict], object]:
    # One cached wrapper per process; Streamlit keys its cache by the function's code, so every
    # session shares the results for the TTL.
    return st.cache_data(ttl=ttl_s, show_spinner=False, max_entries=512)(_run)


def query(function: Callable[..., object], **params: object) -> object:
    """`function(con, **params)` (a page's reads) on a fresh read-only connection, cached for the
    TTL."""
    name = f"{function.__module__}.{function.__qualname__}"
    if name not in QUERIES:
        raise ValueError(f"{name} is not a dashboard query")
    ttl = context().settings.dashboard_cache_ttl_seconds
    if ttl <= 0:
        return _run(name, params)
    return _cached_run(ttl)(name, params)


def now() -> datetime:
    """The wall clock, floored to the cache TTL (at least a minute) so that queries relative to
    `now` hit the cache between two refreshes."""
    step = max(context().settings.dashboard_cache_ttl_seconds, 60)
    seconds = int(time.time()) // step * step
    return datetime.fromtimestamp(seconds, UTC)


def site_label(site: str | None) -> str:
    return NO_SITE if site is None else str(site)


def none_for_missing(values: pd.Series) -> list[str | None]:
    """A column's values with pandas' missing markers as None (a bound SQL NULL)."""
    return [None if pd.isna(v) else v for v in values.tolist()]


def sidebar(status: SourceStatus) -> None:
    with st.sidebar:
        st.caption("Reading (read-only)")
        st.text(status.reading)
        if status.snapshot_time is not None:
            st.caption("Analysts' file built (UTC)")
            st.text(f"{status.snapshot_time:%Y-%m-%d %H:%M:%S}")
        for note in status.notes:
            st.info(note)
        if status.empty:
            st.caption("Not there yet (shown empty)")
            st.text("\n".join(status.empty))
        ttl = context().settings.dashboard_cache_ttl_seconds
        st.caption(f"Results are reused for {ttl} s.")
        if st.button("Refresh now"):
            st.cache_data.clear()
            st.rerun()


@st.cache_data(ttl=60, show_spinner=False)
def source_status() -> SourceStatus:
    return context().source.status()


@contextmanager
def page(title: str) -> Iterator[None]:
    """A page: its title, the sidebar, and a footer saying how long its queries took. A source
    that cannot be read right now (a locked or unreachable warehouse, a file being replaced) is
    reported in a sentence; the details go to the server's log, never to the page."""
    started = time.perf_counter()
    st.title(title)
    try:
        sidebar(source_status())
        yield
    except _READ_ERRORS as exc:
        LOG.exception("dashboard page %s could not read its data", title)
        st.error(
            f"The data could not be read just now ({type(exc).__name__}); the details are in "
            "the dashboard's log. Try again in a moment."
        )
    st.caption(f"Page rendered in {time.perf_counter() - started:.2f} s.")


def _read_errors() -> tuple[type[BaseException], ...]:
    import duckdb
    import sqlalchemy.exc

    from sensor_platform.warehouse.locking import WarehouseLockTimeout

    return (duckdb.IOException, sqlalchemy.exc.OperationalError, WarehouseLockTimeout)


_READ_ERRORS = _read_errors()


def ranges(anchor: datetime) -> dict[str, tuple[datetime, datetime]]:
    """The preset ranges ending at `anchor`."""
    spans = {
        "Last hour": timedelta(hours=1),
        "Last 6 hours": timedelta(hours=6),
        "Last 24 hours": timedelta(days=1),
        "Last 7 days": timedelta(days=7),
        "Last 30 days": timedelta(days=30),
    }
    return {label: (anchor - span, anchor) for label, span in spans.items()}
