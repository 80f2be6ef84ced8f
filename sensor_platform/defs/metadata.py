"""Definition-time metadata shared by every asset: column schemas for the UI and the catalog."""

import dagster as dg


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
