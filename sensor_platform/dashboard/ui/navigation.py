"""The app: page configuration and the four pages."""

import streamlit as st

from sensor_platform.dashboard.ui import alarms, explorer, overview, quality


def main() -> None:
    st.set_page_config(page_title="Sensor Platform", layout="wide")
    pages = [
        st.Page(overview.render, title="Overview", url_path="overview", default=True),
        st.Page(explorer.render, title="Site / device explorer", url_path="explorer"),
        st.Page(alarms.render, title="Alarms", url_path="alarms"),
        st.Page(quality.render, title="Data quality", url_path="quality"),
    ]
    st.navigation(pages).run()
