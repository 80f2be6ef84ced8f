"""Data quality: pass / warn / fail per dataset, dimension and partition over the last days, the
latest failures with their sample rows and Data Docs page, and excluded readings."""

from datetime import timedelta

import streamlit as st

from sensor_platform.dashboard import charts, data_quality, pages
from sensor_platform.dashboard.ui.context import context, now, page, query

TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", timezone="UTC")


def render() -> None:
    with page("Data quality"):
        days = st.slider("Days", min_value=1, max_value=30, value=3)
        since = now() - timedelta(days=days)
        data = query(pages.quality_page, since=since)
        grid = data["grid"]
        if grid.empty:
            st.info("No quality results in these days.")
        else:
            rows = grid[["asset", "dimension"]].drop_duplicates().shape[0]
            st.altair_chart(charts.quality_heatmap(grid), width="stretch", height=rows * 28 + 60)
        st.subheader("Partitions per status")
        st.dataframe(data_quality.summary(grid), hide_index=True)

        st.subheader("Latest failures")
        failures = data["failures"]
        if failures.empty:
            st.caption("No expectation failed in these days.")
        else:
            lake = context().source.lake
            failures = failures.assign(
                data_docs=[data_quality.docs_link(lake, p) for p in failures["docs_page"]]
            ).drop(columns=["docs_page"])
            st.dataframe(
                failures.drop(columns=["unexpected_sample"]),
                hide_index=True,
                column_config={"checked_at": TIME},
            )
            labels = [
                f"{i + 1}. {row.asset} {row.partition} {row.rule}"
                for i, row in enumerate(failures.itertuples())
            ]
            picked = st.selectbox(
                "Sample rows of", range(len(labels)), format_func=labels.__getitem__
            )
            failure = failures.iloc[picked]
            samples = data_quality.sample_rows(failure["unexpected_sample"])
            if samples.empty:
                st.caption("This expectation kept no sample rows (an aggregate check).")
            else:
                st.dataframe(samples, hide_index=True)
            if failure["data_docs"]:
                st.caption("Data Docs page of this validation (open it from a file browser or S3):")
                st.code(failure["data_docs"], language=None)

        st.subheader("Readings excluded from the aggregates")
        excluded = data["exclusions"]
        if excluded.empty:
            st.caption("No reading was excluded.")
        else:
            st.dataframe(excluded, hide_index=True)
