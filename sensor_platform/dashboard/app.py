"""The dashboard's Streamlit script: `streamlit run` runs it on every interaction
(`sensor-platform dashboard` starts it with the configured address and port)."""

from sensor_platform.dashboard.ui.navigation import main

main()
