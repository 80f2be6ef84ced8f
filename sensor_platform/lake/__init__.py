"""The Parquet lake: a local folder or an S3 prefix, Hive-style partition folders, atomic writes."""
