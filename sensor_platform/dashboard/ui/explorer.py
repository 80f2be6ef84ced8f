"""Site / device explorer: pick a site, devices, a metric and a range; the aggregates at the level
the range calls for, with thresholds and episodes, and the latest raw readings of one device."""

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from sensor_platform.dashboard import charts, explorer, pages
from sensor_platform.dashboard.ui.context import (
    context,
    none_for_missing,
    page,
    query,
    ranges,
    site_label,
)

TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC")
MAX_DEVICES = 10


def render() -> None:
    with page("Site / device explorer"):
        choices = query(pages.explorer_choices)
        inventory = choices["inventory"]
        if inventory.empty:
            st.info("No aggregates yet: the explorer fills in once minute aggregates exist.")
            return
        sites = list(dict.fromkeys(none_for_missing(inventory["site_id"])))
        left, middle, right = st.columns([2, 3, 2])
        site = left.selectbox("Site", sites, format_func=site_label)
        mine = inventory["site_id"].isna() if site is None else inventory["site_id"] == site
        at_site = inventory[mine]
        devices_here = list(dict.fromkeys(at_site["device_id"].tolist()))
        devices = middle.multiselect(
            "Devices", devices_here, default=devices_here[:3], max_selections=MAX_DEVICES
        )
        metrics = sorted(at_site["metric"].unique().tolist())
        metric = right.selectbox(
            "Metric", metrics, index=metrics.index("temperature") if "temperature" in metrics else 0
        )
        end = choices["data_end"] or datetime.now(UTC)
        presets = ranges(end)
        choice = st.radio(
            "Range (ending at the newest data)", [*presets, "Custom"], index=1, horizontal=True
        )
        if choice == "Custom":
            picked = st.date_input(
                "From / to (UTC days)", value=(end.date() - timedelta(days=1), end.date())
            )
            if len(picked) != 2:
                st.caption("Pick both days.")
                return
            start = datetime.combine(picked[0], time(), UTC)
            end = datetime.combine(picked[1], time(), UTC) + timedelta(days=1)
        else:
            start, end = presets[choice]
        if not devices:
            st.caption("Pick at least one device.")
            return
        level = explorer.level_for(start, end)
        device = st.session_state.get("latest_device")
        data = query(
            pages.explorer_page,
            level=level.name,
            site_id=site,
            devices=devices,
            metric=metric,
            start=start,
            end=end,
            device=device if device in devices else devices[0],
        )
        series, episodes = data["series"], data["episodes"]
        thresholds = explorer.thresholds(context().rules, metric)
        units = series["unit"].dropna().unique().tolist()
        title = f"{metric} ({', '.join(units)})" if units else metric
        st.caption(
            f"{level.name}: {len(series):,} windows of {level.window} from "
            f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; mean line, min-max band, "
            "threshold levels dashed, anomaly episodes shaded."
        )
        st.altair_chart(
            charts.series_chart(
                series, thresholds, episodes, start=start, end=end, value_title=title
            ),
            width="stretch",
        )
        st.subheader("Anomaly episodes in the range")
        if episodes.empty:
            st.caption("No episode in the range.")
        else:
            st.dataframe(
                episodes,
                hide_index=True,
                column_config={
                    c: TIME for c in ("start_time", "end_time", "closed_at", "peak_time")
                },
            )
        st.subheader("Latest raw readings")
        st.selectbox("Device", devices, key="latest_device")
        st.dataframe(
            data["latest"],
            hide_index=True,
            column_config={"event_time": TIME, "ingest_time": TIME},
        )
