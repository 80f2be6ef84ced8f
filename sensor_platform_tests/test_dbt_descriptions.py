"""The dbt models as the catalog and the UI show them: a description for people (no raw SQL) and
a meaning for every column, of every model and every source table."""

import json

import dagster as dg
import pytest

from sensor_platform.analytics.dbt_project import manifest_path, project_dir
from sensor_platform.settings import load_settings


@pytest.mark.integration  # loads dbt (seconds)
def test_model_descriptions_carry_no_raw_sql_and_every_column_is_described():
    from sensor_platform.defs.dbt import dbt_definitions

    specs = list(dbt_definitions(load_settings({})).resolve_all_asset_specs())
    models = [s for s in specs if s.group_name == "analytics"]
    assert len(models) == 5
    for spec in models:
        assert spec.description and "Raw SQL" not in spec.description, spec.key
        assert "select" not in spec.description.lower(), spec.key
        schema = spec.metadata["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema) and schema.columns, spec.key
        undescribed = [c.name for c in schema.columns if not c.description]
        assert not undescribed, f"{spec.key.to_user_string()}: {undescribed}"


def test_every_source_column_is_described():
    manifest = json.loads(manifest_path(project_dir()).read_text())
    for source in manifest["sources"].values():
        undescribed = [c for c, v in source["columns"].items() if not v.get("description")]
        assert source["description"] and not undescribed, (source["name"], undescribed)
