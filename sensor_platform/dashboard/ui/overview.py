"""Overview: the fleet per site, readings in the last hour, open alarms, silent devices, data
freshness and what each feed last landed."""

import streamlit as st

from sensor_platform.dashboard import overview, pages
from sensor_platform.dashboard.ui.context import context, now, page, query

TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC")


def render() -> None:
    with page("Overview"):
        stale_after = context().rules.stale_after
        moment = now()
        data = query(pages.overview_page, now=moment, stale_after=stale_after)
        sites = data["sites"]
        figures = overview.totals(sites)
        columns = st.columns(6)
        for column, (label, key) in zip(
            columns,
            [
                ("Sites", "sites"),
                ("Devices", "devices"),
                ("Readings, last hour", "readings_last_hour"),
                ("Open critical alarms", "open_critical"),
                ("Open warning alarms", "open_warning"),
                ("Silent devices", "silent_devices"),
            ],
            strict=True,
        ):
            column.metric(label, f"{figures[key]:,}")

        st.subheader("Sites")
        st.dataframe(
            sites,
            hide_index=True,
            column_config={
                "site_id": "site",
                "readings_last_hour": "readings (last hour)",
                "open_critical": "open critical",
                "open_warning": "open warning",
                "silent_devices": "silent devices",
                "last_reading": st.column_config.DatetimeColumn(
                    "last reading (UTC)", format="YYYY-MM-DD HH:mm:ss", timezone="UTC"
                ),
            },
        )

        st.subheader("Silent devices")
        silent = data["silent"]
        if silent.empty:
            st.caption("No device is silent.")
        else:
            st.dataframe(
                silent,
                hide_index=True,
                column_config={
                    "last_heard": st.column_config.DatetimeColumn(
                        "last heard (UTC)", format="YYYY-MM-DD HH:mm:ss", timezone="UTC"
                    )
                },
            )

        st.subheader("Data freshness")
        st.dataframe(
            data["freshness"],
            hide_index=True,
            column_config={
                "newest_window": TIME,
                "latest_reading": TIME,
                "age_minutes": "age (min)",
            },
        )
        st.subheader("Feeds (newest hour of raw data)")
        st.dataframe(
            data["feeds"],
            hide_index=True,
            column_config={"last_ingest": TIME},
        )
        st.caption(
            "Delay: from measurement to ingestion. For Kafka the newest landed offset per "
            "topic/partition is shown; the lag against the broker is observed by the "
            "kafka_topics asset in Dagster, not stored in the lake or the warehouse."
        )
