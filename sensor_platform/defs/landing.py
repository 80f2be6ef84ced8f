"""The landing step shared by every feed: normalize messages, land them, announce what the fast
alarm rules find in them, and report what happened."""

from collections.abc import Iterable
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.datasets import PARTITION_KEY_FORMAT, Dataset
from sensor_platform.defs.alerts import announce_batch
from sensor_platform.defs.metadata import OWNERS, dataset_metadata, dataset_tags
from sensor_platform.defs.resources import (
    AlertsResource,
    AnomalyRulesResource,
    LakeResource,
    PipelineResource,
    WarehouseResource,
)

if TYPE_CHECKING:
    from sensor_platform.lake.landing import LandingReport
    from sensor_platform.readings.normalize import Message

QUARANTINE_ASSET = dg.AssetKey("quarantined_messages")
BATCH_ID_TAG = "sensor_platform/batch_id"


def land_messages(
    context: dg.OpExecutionContext,
    batch_id: str,
    messages: Iterable["Message"],
    *,
    lake: LakeResource,
    pipeline: PipelineResource,
    anomaly_rules: AnomalyRulesResource,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
    extra: dict[str, object] | None = None,
) -> "LandingReport":
    """Normalize and land one batch, then announce the fast rules' episodes of its devices right
    away (thresholds, device faults); log its figures and a quarantine materialization. The batch
    is landed whatever the alerts do: an alert that could not go out here is due to the hourly
    alert run."""
    import pyarrow.compute as pc

    from sensor_platform.lake.landing import land_batch
    from sensor_platform.readings.normalize import normalize_messages

    store = lake.lake()
    normalized = normalize_messages(messages, batch_id=batch_id, limits=pipeline.limits())
    report = land_batch(store, batch_id, normalized.readings, normalized.quarantine)
    reasons = {
        row["values"]: row["counts"]
        for row in pc.value_counts(normalized.quarantine["reason"]).to_pylist()
    }
    fast_alerts = announce_batch(
        context, store, normalized.readings, anomaly_rules, warehouse, alerts
    )
    context.add_output_metadata(
        {
            "batch_id": batch_id,
            "messages": normalized.messages,
            "readings": report.readings,
            "quarantined": report.quarantined,
            "hours": dg.MetadataValue.json(
                {h.strftime(PARTITION_KEY_FORMAT["hourly"]): n for h, n in report.hours.items()}
            ),
            "bytes_written": report.bytes_written,
            **fast_alerts,
            **(extra or {}),
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


def quarantine_spec(quarantine: Dataset, upstream: tuple[dg.AssetKey, ...] = ()) -> dg.AssetSpec:
    """The quarantine: written by every landing run, never materialized on its own."""
    return dg.AssetSpec(
        QUARANTINE_ASSET,
        description=quarantine.description,
        deps=list(upstream),
        group_name="raw",
        kinds={"parquet"},
        owners=OWNERS,
        tags=dataset_tags(quarantine),
        metadata=dataset_metadata(quarantine),
    )
