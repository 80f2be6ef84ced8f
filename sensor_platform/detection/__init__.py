"""Anomaly detection: rules from a JSON file, vectorized detectors, and episodes across hours."""
