"""The dashboard's charts as Altair (Vega-Lite) specifications, built from the query frames: the
explorer's aggregates with their min-max band, thresholds and episodes, the alarms over time and
the data-quality heat map. Times are drawn in UTC, like every table of the dashboard. Vega renders
every data value as text, so ids full of markup stay text."""

from datetime import datetime

import altair as alt
import pandas as pd

SEVERITY_SCALE = alt.Scale(domain=["warning", "critical"], range=["#f0a030", "#d62728"])
STATUS_SCALE = alt.Scale(domain=["pass", "warn", "fail"], range=["#2ca02c", "#f0a030", "#d62728"])
UTC = alt.Scale(type="utc")
TIME_FORMAT = "%Y-%m-%d %H:%M"


def series_chart(
    series: pd.DataFrame,
    thresholds: pd.DataFrame,
    episodes: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    value_title: str,
    height: int = 380,
) -> alt.LayerChart:
    """Mean per window as a line per device, the window's min-max as a band, the rules' threshold
    levels as dashed lines and the episodes as shaded spans, coloured by severity, over
    [start, end)."""
    domain = alt.Scale(type="utc", domain=[start.isoformat(), end.isoformat()])
    time = alt.X(
        "window_start:T",
        title="window start (UTC)",
        scale=domain,
        axis=alt.Axis(format="%m-%d %H:%M", labelOverlap=True),
    )
    device = alt.Color("device_id:N", title="device")
    tooltip = [
        alt.Tooltip("device_id:N", title="device"),
        alt.Tooltip("window_start:T", title="window (UTC)", format=TIME_FORMAT, formatType="utc"),
        alt.Tooltip("mean_value:Q", title="mean", format=".3~f"),
        alt.Tooltip("min_value:Q", title="min", format=".3~f"),
        alt.Tooltip("max_value:Q", title="max", format=".3~f"),
        alt.Tooltip("reading_count:Q", title="readings"),
    ]
    base = alt.Chart(series)
    band = base.mark_area(opacity=0.18).encode(
        x=time,
        y=alt.Y("min_value:Q", title=value_title),
        y2="max_value:Q",
        color=device,
    )
    line = base.mark_line(point=len(series) < 200).encode(
        x=time, y="mean_value:Q", color=device, tooltip=tooltip
    )
    layers = [_episode_spans(episodes, domain), band, line, *_threshold_rules(thresholds)]
    return alt.layer(*layers).properties(height=height)


def _episode_spans(episodes: pd.DataFrame, domain: alt.Scale) -> alt.Chart:
    spans = episodes.assign(
        span_end=episodes["closed_at"].fillna(episodes["end_time"])
        if not episodes.empty
        else pd.Series(dtype="datetime64[us, UTC]")
    )
    return (
        alt.Chart(spans)
        .mark_rect(opacity=0.15)
        .encode(
            x=alt.X("start_time:T", scale=domain),
            x2="span_end:T",
            fill=alt.Fill("severity:N", scale=SEVERITY_SCALE, title="episode"),
            tooltip=[
                alt.Tooltip("rule:N"),
                alt.Tooltip("device_id:N", title="device"),
                alt.Tooltip("severity:N"),
                alt.Tooltip("status:N"),
                alt.Tooltip(
                    "start_time:T", title="start (UTC)", format=TIME_FORMAT, formatType="utc"
                ),
                alt.Tooltip("peak_value:Q", title="peak", format=".3~f"),
            ],
        )
    )


def _threshold_rules(thresholds: pd.DataFrame) -> list[alt.Chart]:
    if thresholds.empty:
        return []
    labelled = thresholds.assign(
        label=thresholds["severity"] + " " + thresholds["level"].map("{:g}".format)
    )
    base = alt.Chart(labelled)
    rules = base.mark_rule(strokeDash=[6, 4], strokeWidth=1.5).encode(
        y="level:Q",
        stroke=alt.Stroke("severity:N", scale=SEVERITY_SCALE, title="threshold"),
        tooltip=["rule:N", "severity:N", "level:Q", "direction:N"],
    )
    labels = base.mark_text(align="left", dx=4, dy=-6).encode(
        x=alt.value(0),
        y="level:Q",
        text="label:N",
        fill=alt.Fill("severity:N", scale=SEVERITY_SCALE, legend=None),
    )
    return [rules, labels]


def alarms_timeline(episodes: pd.DataFrame, *, bucket: str, height: int = 220) -> alt.Chart:
    """Episodes started per `bucket` ('h' or 'D'), stacked by severity, split open / closed."""
    started = episodes.assign(
        bucket=episodes["start_time"].dt.floor(bucket)
        if not episodes.empty
        else pd.Series(dtype="datetime64[us, UTC]")
    )
    return (
        alt.Chart(started)
        .mark_bar()
        .encode(
            x=alt.X("bucket:T", title="started (UTC)", scale=UTC),
            y=alt.Y("count():Q", title="episodes"),
            color=alt.Color("severity:N", scale=SEVERITY_SCALE),
            opacity=alt.Opacity(
                "status:N", scale=alt.Scale(domain=["open", "closed"], range=[1.0, 0.45])
            ),
            tooltip=[
                alt.Tooltip("bucket:T", title="from (UTC)", format=TIME_FORMAT, formatType="utc"),
                "severity:N",
                "status:N",
                alt.Tooltip("count():Q", title="episodes"),
            ],
        )
        .properties(height=height)
    )


def quality_heatmap(grid: pd.DataFrame) -> alt.Chart:
    """One row per dataset and dimension, one cell per partition over its time span, coloured by
    the latest run's status."""
    cells = grid.assign(check=grid["asset"] + " · " + grid["dimension"])
    return (
        alt.Chart(cells)
        .mark_rect(stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X("start:T", title="partition (UTC)", scale=UTC),
            x2="end:T",
            y=alt.Y("check:N", title=None, axis=alt.Axis(labelLimit=320)),
            color=alt.Color("status:N", scale=STATUS_SCALE),
            tooltip=[
                "asset:N",
                "dimension:N",
                "partition:N",
                "status:N",
                alt.Tooltip("failed:Q", title="failed expectations"),
                alt.Tooltip("expectations:Q"),
                alt.Tooltip(
                    "checked_at:T", title="checked (UTC)", format=TIME_FORMAT, formatType="utc"
                ),
            ],
        )
    )
