"""The Streamlit pages of the dashboard: a thin layer over the query modules beside it."""
