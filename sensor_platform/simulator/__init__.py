"""A deterministic fleet simulator: the platform's mock feed and its ground-truth anomaly labels."""
