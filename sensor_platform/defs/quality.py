"""Data-quality checks: Great Expectations 1.x suites turned into Dagster asset checks.

`gx_asset_checks` is the reusable part: it turns the suites of one asset into a multi-asset check
(one Dagster check per suite / quality dimension) that validates every partition the run
materialized, in an ephemeral GX context, and reports per expectation: success, observed value,
unexpected count and percent, and a bounded sample of unexpected rows. Every result is also
appended to the `data_quality_results` warehouse table, and the run's Data Docs are published
into the lake and linked from the check. Great Expectations is imported only when a check runs.
"""

import warnings
from datetime import UTC, datetime, timedelta

import dagster as dg

from sensor_platform import settings
from sensor_platform.defs.aggregates import (
    sensor_readings_daily,
    sensor_readings_hourly,
    sensor_readings_minute,
)
from sensor_platform.defs.partitions import HOURLY, days_in, hours_in
from sensor_platform.defs.raw import raw_sensor_readings
from sensor_platform.defs.resources import FleetResource, LakeResource, WarehouseResource
from sensor_platform.lake.store import Lake
from sensor_platform.quality.frames import Registry
from sensor_platform.quality.gx_validate import SEVERITY_RANK
from sensor_platform.quality.partition_checks import AssetQualityReport, check_partitions
from sensor_platform.quality.results import (
    RESULTS_TABLE,
    CheckSummary,
    MergedExpectation,
    results_table,
)
from sensor_platform.quality.rules import QualityRules, load_rules
from sensor_platform.quality.suites import SUITES, SuiteDefinition

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


class QualityResource(dg.ConfigurableResource):
    """Great Expectations over an ephemeral context (nothing on disk but the published Data
    Docs): the rules file (thresholds, ranges, severities) and whether to build Data Docs."""

    rules_file: str | None = None
    build_docs: bool = True

    def rules(self) -> QualityRules:
        return load_rules(self.rules_file)

    def check_partitions(
        self,
        lake: Lake,
        asset: str,
        windows: list[datetime],
        *,
        suites: list[SuiteDefinition],
        registry: Registry,
        run_id: str,
    ) -> AssetQualityReport:
        return check_partitions(
            lake,
            asset,
            windows,
            rules=self.rules(),
            registry=registry,
            now=datetime.now(UTC),
            run_name=run_id[:8],
            build_docs=self.build_docs,
            suites=suites,
        )


def build_quality_resource() -> QualityResource:
    return QualityResource(rules_file=settings.quality_rules_file())


def gx_asset_checks(
    asset: dg.AssetsDefinition, suites: list[SuiteDefinition], *, blocking: bool
) -> dg.AssetChecksDefinition:
    """One Dagster asset check per suite of `asset`, run together over the partitions the run
    materialized. With `blocking`, a failure of ERROR severity stops the assets downstream in the
    same run; WARN failures never block."""
    asset_name = asset.key.to_user_string()
    partitions_in = hours_in if asset.partitions_def == HOURLY else days_in
    specs = [
        dg.AssetCheckSpec(
            suite.dimension,
            asset=asset,
            blocking=blocking,
            description=f"{suite.dimension.capitalize()}: {suite.description}",
            metadata={"quality_dimension": suite.dimension, "gx_suite": suite.name},
        )
        for suite in suites
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{asset_name}_quality",
        description=f"Great Expectations suites of {asset_name}, one check per quality dimension.",
    )
    def _quality_checks(
        context: dg.AssetCheckExecutionContext,
        lake: LakeResource,
        warehouse: WarehouseResource,
        fleet: FleetResource,
        quality: QualityResource,
    ):
        store, registry = lake.lake(), _registry(fleet)
        windows = partitions_in(context.partition_time_window)
        report = quality.check_partitions(
            store, asset_name, windows, suites=suites, registry=registry, run_id=context.run.run_id
        )
        history = _record_history(context, warehouse, report)
        for suite in suites:
            summary = report.summaries[suite.dimension]
            yield _check_result(asset, suite, summary, report, history)

    return _quality_checks


def _registry(fleet: FleetResource) -> Registry:
    devices = fleet.fleet().devices
    return Registry(
        cadences={d.device_id: d.cadence_seconds for d in devices},
        sites=frozenset(d.site_id for d in devices),
    )


def _record_history(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    report: AssetQualityReport,
) -> str:
    """Append the results to the history table. A warehouse outage must not hide the verdict
    itself, so a failure here is logged and reported in the check metadata instead of raised."""
    rows = results_table(report.outcomes, run_id=context.run.run_id, checked_at=datetime.now(UTC))
    try:
        wh = warehouse.warehouse()
        wh.append(RESULTS_TABLE, rows)
    except Exception as err:  # the verdict matters more than its history
        context.log.error(f"could not append {rows.num_rows} rows to {RESULTS_TABLE.name}: {err}")
        return f"NOT recorded: {type(err).__name__}"
    return f"{rows.num_rows} rows appended to {RESULTS_TABLE.name} ({wh.display_url})"


def _check_result(
    asset: dg.AssetsDefinition,
    suite: SuiteDefinition,
    summary: CheckSummary,
    report: AssetQualityReport,
    history: str,
) -> dg.AssetCheckResult:
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
        asset_key=asset.key,
        check_name=suite.dimension,
        passed=summary.success,
        severity=dg.AssetCheckSeverity.ERROR if severity == "error" else dg.AssetCheckSeverity.WARN,
        description=summary.describe(),
        metadata=metadata,
    )


def _record(e: MergedExpectation) -> dg.TableRecord:
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


raw_quality_checks = gx_asset_checks(
    raw_sensor_readings, SUITES["raw_sensor_readings"], blocking=True
)
minute_quality_checks = gx_asset_checks(
    sensor_readings_minute, SUITES["sensor_readings_minute"], blocking=False
)
hourly_quality_checks = gx_asset_checks(
    sensor_readings_hourly, SUITES["sensor_readings_hourly"], blocking=False
)
daily_quality_checks = gx_asset_checks(
    sensor_readings_daily, SUITES["sensor_readings_daily"], blocking=False
)
QUALITY_CHECKS = [
    raw_quality_checks,
    minute_quality_checks,
    hourly_quality_checks,
    daily_quality_checks,
]


def freshness_checks(rules: QualityRules) -> list[dg.AssetChecksDefinition]:
    """Timeliness of the newest readings: raw_sensor_readings updated within freshness_hours.
    (Dagster now prefers a FreshnessPolicy on the asset itself; this check works without
    touching the asset and shows in the checks tab next to the suites, so its supersession
    warning is silenced here on purpose.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return list(
            dg.build_last_update_freshness_checks(
                assets=[raw_sensor_readings],
                lower_bound_delta=timedelta(hours=rules.freshness_hours),
            )
        )


def freshness_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            name="raw_freshness_sensor",
            default_status=dg.DefaultSensorStatus.RUNNING,
        )


def quality_definitions() -> dg.Definitions:
    """Every quality check, the freshness sensor and the `quality` resource, to merge into the
    code location's Definitions."""
    resource = build_quality_resource()
    freshness = freshness_checks(resource.rules())
    return dg.Definitions(
        asset_checks=[*QUALITY_CHECKS, *freshness],
        sensors=[freshness_sensor(freshness)],
        resources={"quality": resource},
    )
