"""The analytics code location: the dbt models as assets, next to (not inside) the platform's
location, so the runs that ingest and alert never load dbt. Built when Dagster loads it."""

import dagster as dg

from sensor_platform.defs.dbt import dbt_definitions
from sensor_platform.settings import load_settings


@dg.definitions
def defs() -> dg.Definitions:
    return dbt_definitions(load_settings())
