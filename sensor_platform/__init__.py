"""Sensor Platform: an open-source Dagster data platform for IoT sensor data."""
