"""The platform's definitions built for a test: settings from a plain mapping (never the test
process's environment), data under a temporary folder."""

from pathlib import Path

import dagster as dg

from sensor_platform.datasets import REGISTRY
from sensor_platform.definitions import build_definitions
from sensor_platform.settings import Settings, load_settings

hour_key = REGISTRY.raw.partition_key


def settings_for(data_dir: Path, **env: str) -> Settings:
    """Settings of a platform whose embedded defaults live in `data_dir`, plus `env`."""
    return load_settings({"SENSOR_DATA_DIR": str(data_dir), **env})


def definitions_for(data_dir: Path, **env: str) -> dg.Definitions:
    return build_definitions(settings_for(data_dir, **env))
