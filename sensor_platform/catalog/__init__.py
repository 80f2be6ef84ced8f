"""The data catalog: dataset entries, schema versions, the HTML page, the JSON document and the
analysts' DuckDB views file. Plain Python: no Dagster here."""
