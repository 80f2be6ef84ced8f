"""Alarms: the episodes of a range (open and closed) by severity, rule and site, with every notice
about them and its delivery state per channel, from the alert ledger."""

from datetime import timedelta

import streamlit as st

from sensor_platform.dashboard import alarms, charts, pages
from sensor_platform.dashboard.ui.context import (
    NO_SITE,
    none_for_missing,
    now,
    page,
    query,
    ranges,
    site_label,
)

TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC")
PRESETS = ("Last 24 hours", "Last 7 days", "Last 30 days")
STATUSES = ["open", "closed"]
SEVERITIES = ["critical", "warning"]


def render() -> None:
    with page("Alarms"):
        presets = {k: v for k, v in ranges(now()).items() if k in PRESETS}
        choice = st.radio("Episodes active in", list(presets), index=1, horizontal=True)
        start, end = presets[choice]
        everything = query(pages.alarms_page, chosen=alarms.AlarmFilter(start=start, end=end))[
            "all"
        ]
        sites = list(dict.fromkeys(none_for_missing(everything["site_id"].sort_values())))
        columns = st.columns(4)
        statuses = columns[0].multiselect("Status", STATUSES, default=STATUSES)
        severities = columns[1].multiselect("Severity", SEVERITIES, default=SEVERITIES)
        chosen_sites = columns[2].multiselect(
            "Sites (all when empty)", sites, format_func=site_label
        )
        rules = sorted(everything["rule"].unique().tolist())
        chosen_rules = columns[3].multiselect("Rules (all when empty)", rules)
        chosen = alarms.AlarmFilter(
            start=start,
            end=end,
            sites=tuple(s for s in chosen_sites if s is not None) if chosen_sites else None,
            no_site=not chosen_sites or None in chosen_sites,
            severities=None if set(severities) == set(SEVERITIES) else tuple(severities),
            rules=tuple(chosen_rules) or None,
            statuses=None if set(statuses) == set(STATUSES) else tuple(statuses),
        )
        data = query(pages.alarms_page, chosen=chosen)
        episodes, notices = data["episodes"], data["notices"]

        figures = st.columns(5)
        figures[0].metric("Episodes", f"{len(episodes):,}")
        figures[1].metric("Open", f"{int((episodes['status'] == 'open').sum()):,}")
        figures[2].metric("Critical", f"{int((episodes['severity'] == 'critical').sum()):,}")
        figures[3].metric("Notices sent", f"{int((notices['state'] == 'sent').sum()):,}")
        pending = notices["state"].isin(["failed", "unknown", "attempting"]).sum()
        figures[4].metric("Notices pending", f"{int(pending):,}")

        bucket = "h" if end - start <= timedelta(days=2) else "D"
        st.altair_chart(charts.alarms_timeline(episodes, bucket=bucket), width="stretch")
        st.subheader("By severity and rule")
        st.dataframe(alarms.counts(episodes), hide_index=True)

        st.subheader("Episodes, with their notices per channel")
        st.dataframe(
            alarms.delivery_by_episode(episodes, notices),
            hide_index=True,
            column_config={c: TIME for c in ("start_time", "end_time", "closed_at")},
        )
        st.subheader("Notices (alert ledger)")
        if notices.empty:
            st.caption("No notice about these episodes in the ledger.")
        else:
            st.dataframe(notices, hide_index=True, column_config={"last_recorded_at": TIME})
            st.caption(
                "sent / expired are settled; failed, unknown and attempting are pending and "
                "retried. possible_duplicate: sent after an unknown outcome, so the channel may "
                f"show it twice. Devices without a site are listed as {NO_SITE}."
            )
