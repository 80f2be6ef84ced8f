"""The SQL warehouse aggregates, anomalies and ledgers are published to (DuckDB, PostgreSQL, MySQL)."""
