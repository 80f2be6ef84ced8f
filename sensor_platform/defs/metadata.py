"""Definition-time metadata shared by every asset: column schemas, owners and tags from the
dataset registry, so the UI and the catalog describe each dataset the same way."""

import dagster as dg

from sensor_platform.datasets import Dataset

OWNERS = ["team:data-platform"]


def table_schema(columns: dict[str, tuple]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                str(typ),
                description=desc,
                constraints=dg.TableColumnConstraints(nullable=nullable),
            )
            for name, (typ, nullable, desc) in columns.items()
        ]
    )


def dataset_metadata(dataset: Dataset) -> dict[str, object]:
    """Column schema, table name and where a partition's file lives."""
    metadata: dict[str, object] = {
        "dagster/column_schema": table_schema(dataset.columns),
        "dagster/table_name": dataset.name,
    }
    metadata["partition_path"] = dataset.partition_path
    return metadata


def dataset_tags(dataset: Dataset) -> dict[str, str]:
    return {"domain": "iot", "tier": dataset.tier, "pii": "none"}
