"""Data-quality checks: the Great Expectations suites of each registry dataset as Dagster checks.

`quality_checks` turns the suites of one dataset into a multi-asset check (one Dagster check per
quality dimension) that validates every partition the run materialized, in an ephemeral GX
context, and reports per expectation: success, observed value, unexpected count and percent, and
a bounded sample of unexpected rows. Every result is also appended to the `data_quality_results`
warehouse table, and the run's Data Docs are published into the lake and linked from the check.
Great Expectations is imported only when a check runs.
"""

import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from sensor_platform.datasets import Dataset, Registry
from sensor_platform.defs.partitions import partition_starts
from sensor_platform.defs.resources import (
    FleetResource,
    LakeResource,
    QualityResource,
    WarehouseResource,
)
from sensor_platform.quality.suites import SuiteDefinition, suites_for

if TYPE_CHECKING:
    from sensor_platform.defs.partitions import Partitions
    from sensor_platform.quality.partition_checks import AssetQualityReport
    from sensor_platform.quality.results import CheckSummary, MergedExpectation

MAX_LISTED_PARTITIONS = 50
EXPECTATION_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("rule", "string"),
        dg.TableColumn("subject", "string"),
        dg.TableColumn("severity", "string"),
        dg.TableColumn("success", "bool"),
        dg.TableColumn("unexpected_count", "int"),
        dg.TableColumn("unexpected_percent", "float"),
        dg.TableColumn("element_count", "int"),
        dg.TableColumn("observed_value", "string"),
        dg.TableColumn("description", "string"),
    ]
)


def quality_checks(
    datasets: Registry,
    dataset: Dataset,
    partitions_def: dg.PartitionsDefinition | None = None,
) -> dg.AssetChecksDefinition:
    """One Dagster check per quality dimension of `dataset`, run together over the partitions the
    run materialized. No check blocks: alarms never wait for quality, and what must not reach
    the aggregates is kept out by the quality gate on every path (defs/aggregates.py).

    With the asset's `partitions_def`, a check run for one partition records that partition in
    Dagster's own field (the UI shows it per partition). A run over a range (a single-run
    backfill) gives one result per check for the whole range: Dagster cannot split one check
    result over partitions, so its metadata lists them (`partition`, `failed_partitions`)."""
    suites = suites_for(dataset, datasets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks are a preview
        specs = [
            dg.AssetCheckSpec(
                suite.dimension,
                asset=dataset.name,
                description=f"{suite.dimension.capitalize()}: {suite.description} Counts "
                f"{suite.counts}.",
                metadata={"quality_dimension": suite.dimension, "gx_suite": suite.name},
                partitions_def=partitions_def,
            )
            for suite in suites
        ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{dataset.name}_quality",
        description=f"Great Expectations suites of {dataset.name}, one check per quality dimension.",
    )
    def _quality_checks(
        context: dg.AssetCheckExecutionContext,
        lake: LakeResource,
        warehouse: WarehouseResource,
        fleet: FleetResource,
        quality: QualityResource,
    ):
        report = quality.check_partitions(
            lake.lake(),
            datasets,
            dataset,
            partition_starts(dataset, context.partition_time_window),
            fleet=fleet.registry(),
            run_id=context.run.run_id,
            now=datetime.now(UTC),
        )
        history = _record_history(context, warehouse, report)
        for suite in suites:
            yield _check_result(dataset, suite, report.summaries[suite.dimension], report, history)

    return _quality_checks


def _record_history(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    report: "AssetQualityReport",
) -> str:
    """Append the results to the history table. A warehouse outage must not hide the verdict
    itself, so a failure here is logged and reported in the check metadata instead of raised."""
    from sensor_platform.quality.results import RESULTS_TABLE, results_table

    rows = results_table(report.outcomes, run_id=context.run.run_id, checked_at=datetime.now(UTC))
    try:
        wh = warehouse.warehouse()
        wh.append(RESULTS_TABLE, rows)
    except Exception as err:  # the verdict matters more than its history
        context.log.error(f"could not append {rows.num_rows} rows to {RESULTS_TABLE.name}: {err}")
        return f"NOT recorded: {type(err).__name__}"
    return f"{rows.num_rows} rows appended to {RESULTS_TABLE.name} ({wh.display_url})"


def _check_result(
    dataset: Dataset,
    suite: SuiteDefinition,
    summary: "CheckSummary",
    report: "AssetQualityReport",
    history: str,
) -> dg.AssetCheckResult:
    from sensor_platform.quality.gx_validate import SEVERITY_RANK

    failed = summary.failed
    failures = [e.report(MAX_LISTED_PARTITIONS) for e in failed]
    page = (
        report.docs_pages.get(f"{suite.dimension}/{summary.partitions[0]}")
        if len(summary.partitions) == 1
        else None
    )
    metadata: dict[str, object] = {
        "partition": summary.partition_label,
        "partitions_validated": len(summary.partitions),
        "failed_partitions": dg.MetadataValue.json(
            summary.failed_partitions[:MAX_LISTED_PARTITIONS]
        ),
        "rows_validated": summary.rows,
        "expectations_evaluated": len(summary.expectations),
        "expectations_failed": len(failed),
        "unexpected_count": sum(e.unexpected_count for e in summary.expectations),
        "failures": dg.MetadataValue.json(failures),
        "expectations": dg.MetadataValue.table(
            records=[_record(e) for e in summary.expectations], schema=EXPECTATION_COLUMNS
        ),
        "gx_suite": suite.name,
        "history": history,
    }
    if page or report.docs_index:
        metadata["data_docs"] = dg.MetadataValue.url(page or report.docs_index)
    # A failed check carries its worst failure; a passed one the worst it could have failed with.
    severity = summary.severity or max(
        (e.severity for e in summary.expectations), key=SEVERITY_RANK.get, default="warn"
    )
    return dg.AssetCheckResult(
        asset_key=dataset.name,
        check_name=suite.dimension,
        passed=summary.success,
        severity=dg.AssetCheckSeverity.ERROR if severity == "error" else dg.AssetCheckSeverity.WARN,
        description=summary.describe(),
        metadata=metadata,
    )


def _record(e: "MergedExpectation") -> dg.TableRecord:
    observed = e.observed_value
    return dg.TableRecord(
        {
            "rule": e.rule,
            "subject": e.subject,
            "severity": e.severity,
            "success": e.success,
            "unexpected_count": e.unexpected_count,
            "unexpected_percent": e.unexpected_percent,
            "element_count": e.element_count,
            "observed_value": None if observed is None else str(observed)[:200],
            "description": e.description,
        }
    )


def quality_definitions(
    datasets: Registry, freshness_hours: float, partitions: "Partitions | None" = None
) -> dg.Definitions:
    """Every quality check and the freshness check and sensor of the raw readings; with
    `partitions`, each check is partitioned like its asset (see quality_checks).

    Freshness: raw_sensor_readings updated within `freshness_hours`. (Dagster now prefers a
    FreshnessPolicy on the asset itself; this check works without touching the asset and shows
    in the checks tab next to the suites, so its supersession warning is silenced on purpose.)"""
    checks = [
        quality_checks(datasets, d, partitions.of(d) if partitions else None)
        for d in datasets
        if d.quality
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        freshness = list(
            dg.build_last_update_freshness_checks(
                assets=[datasets.raw.name], lower_bound_delta=timedelta(hours=freshness_hours)
            )
        )
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=freshness,
            name="raw_freshness_sensor",
            default_status=dg.DefaultSensorStatus.RUNNING,
        )
    return dg.Definitions(asset_checks=[*checks, *freshness], sensors=[sensor])
