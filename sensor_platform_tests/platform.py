"""The platform's definitions built for a test: settings from a plain mapping (never the test
process's environment), data under a temporary folder."""

from datetime import datetime
from pathlib import Path

import dagster as dg

from sensor_platform.datasets import REGISTRY
from sensor_platform.definitions import build_definitions
from sensor_platform.defs.ingest import source_named
from sensor_platform.settings import Settings, load_settings
from sensor_platform.simulator.source import window_unit

hour_key = REGISTRY.raw.partition_key


def feed_run_request(start: datetime, end: datetime):
    """The run the simulated feed's sensor asks for the window [start, end)."""
    return source_named("simulator").run_request(window_unit(start, end))


def settings_for(data_dir: Path, **env: str) -> Settings:
    """Settings of a platform whose embedded defaults live in `data_dir`, plus `env`."""
    return load_settings({"SENSOR_DATA_DIR": str(data_dir), **env})


def definitions_for(data_dir: Path, **env: str) -> dg.Definitions:
    return build_definitions(settings_for(data_dir, **env))
