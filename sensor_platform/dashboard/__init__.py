"""The live operations dashboard: read-only queries over the lake and the warehouse (sources,
overview, explorer, alarms, data_quality, charts: plain Python, no Streamlit) and the Streamlit
app over them (`ui/`, started by `sensor-platform dashboard`)."""
