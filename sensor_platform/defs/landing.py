"""The landing step shared by every feed: normalize messages, land them, report what happened."""

from collections.abc import Iterable

import dagster as dg
import pyarrow.compute as pc

from sensor_platform.defs.metadata import table_schema
from sensor_platform.defs.partitions import hour_key
from sensor_platform.lake import layout
from sensor_platform.lake.landing import LandingReport, land_batch
from sensor_platform.lake.store import Lake
from sensor_platform.readings.normalize import Message, NormalizeLimits, normalize_messages
from sensor_platform.readings.schema import QUARANTINE_COLUMNS

QUARANTINE_ASSET = dg.AssetKey("quarantined_messages")


def land_messages(
    context: dg.OpExecutionContext,
    lake: Lake,
    batch_id: str,
    messages: Iterable[Message],
    limits: NormalizeLimits,
) -> LandingReport:
    """Normalize and land one batch; log its figures and a quarantine materialization."""
    normalized = normalize_messages(messages, batch_id=batch_id, limits=limits)
    report = land_batch(lake, batch_id, normalized.readings, normalized.quarantine)
    reasons = {
        row["values"]: row["counts"]
        for row in pc.value_counts(normalized.quarantine["reason"]).to_pylist()
    }
    context.add_output_metadata(
        {
            "batch_id": batch_id,
            "messages": normalized.messages,
            "readings": report.readings,
            "quarantined": report.quarantined,
            "hours": dg.MetadataValue.json({hour_key(h): n for h, n in report.hours.items()}),
            "bytes_written": report.bytes_written,
        }
    )
    if report.quarantined:
        context.log_event(
            dg.AssetMaterialization(
                QUARANTINE_ASSET,
                description=f"{report.quarantined} messages quarantined from batch {batch_id}",
                metadata={
                    "batch_id": batch_id,
                    "dagster/row_count": report.quarantined,
                    "reasons": dg.MetadataValue.json(reasons),
                },
            )
        )
        context.log.warning(f"quarantined {report.quarantined} messages: {reasons}")
    return report


quarantined_messages = dg.AssetSpec(
    QUARANTINE_ASSET,
    description=(
        "Messages that could not become readings (not JSON, no device id, bad timestamp, "
        "non-finite value, oversized, ...), kept with their raw bytes, source and a reason code "
        "in quarantine/date=YYYY-MM-DD/<batch_id>.parquet."
    ),
    group_name="raw",
    kinds={"parquet"},
    owners=["team:data-platform"],
    tags={"domain": "iot", "tier": "bronze", "pii": "none"},
    metadata={
        "dagster/column_schema": table_schema(QUARANTINE_COLUMNS),
        "dagster/table_name": "quarantined_messages",
        "partition_path": f"{layout.QUARANTINE}/date=YYYY-MM-DD/<batch_id>.parquet",
    },
)
