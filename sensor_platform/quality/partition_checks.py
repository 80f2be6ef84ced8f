"""Validate every partition of a materialized range of one asset against its suites, in one
ephemeral Great Expectations context, and publish the Data Docs of that run into the lake."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from sensor_platform.lake.store import Lake
from sensor_platform.quality import frames
from sensor_platform.quality.data_docs import docs_url, publish_docs
from sensor_platform.quality.frames import Registry
from sensor_platform.quality.gx_validate import GxValidator, SuiteOutcome
from sensor_platform.quality.results import CheckSummary, summarize
from sensor_platform.quality.rules import QualityRules
from sensor_platform.quality.suites import DAILY, HOURLY, MINUTE, RAW, SUITES, SuiteDefinition

FrameLoader = Callable[[Lake, datetime, Registry, datetime], dict[str, pd.DataFrame]]

FRAME_LOADERS: dict[str, FrameLoader] = {
    RAW: lambda lake, window, registry, now: frames.raw_frames(lake, window),
    MINUTE: frames.minute_frames,
    HOURLY: lambda lake, window, registry, now: frames.hourly_frames(lake, window),
    DAILY: lambda lake, window, registry, now: frames.daily_frames(lake, window, now),
}
PARTITION_FORMAT = {RAW: "%Y-%m-%d-%H:%M", MINUTE: "%Y-%m-%d-%H:%M"}  # the rest are daily


@dataclass(frozen=True)
class AssetQualityReport:
    asset: str
    outcomes: list[SuiteOutcome]  # every suite on every partition, in order
    summaries: dict[str, CheckSummary]  # dimension -> the suite merged over the range
    docs_index: str | None  # link to the Data Docs site's index, when docs were built
    docs_pages: dict[str, str]  # "<dimension>/<partition>" -> link to that validation's page


def partition_key(asset: str, window: datetime) -> str:
    """The Dagster partition key of a window start (hourly or daily, UTC)."""
    return window.astimezone(UTC).strftime(PARTITION_FORMAT.get(asset, "%Y-%m-%d"))


def check_partitions(
    lake: Lake,
    asset: str,
    windows: list[datetime],
    *,
    rules: QualityRules,
    registry: Registry,
    now: datetime,
    run_name: str,
    build_docs: bool = True,
    suites: list[SuiteDefinition] | None = None,
) -> AssetQualityReport:
    """Run the suites of `asset` (default: all of them) on each window (partition start) and
    merge each suite's outcomes over the windows."""
    if asset not in FRAME_LOADERS:
        raise ValueError(f"no quality frames for asset {asset!r}")
    suites = SUITES[asset] if suites is None else suites
    validator = GxValidator(rules, registry, build_docs=build_docs)
    try:
        outcomes = []
        for window in windows:
            partition = partition_key(asset, window)
            data = FRAME_LOADERS[asset](lake, window, registry, now)
            for suite in suites:
                outcomes.append(
                    validator.validate(
                        suite, data[suite.frame], partition=partition, run_name=run_name
                    )
                )
        site = validator.render_docs()
        if site is not None:
            publish_docs(lake, site)
    finally:
        validator.close()
    summaries = {
        suite.dimension: summarize(
            [o for o in outcomes if o.suite == suite.name], rules.sample_size
        )
        for suite in suites
    }
    pages = {
        f"{o.dimension}/{o.partition}": docs_url(lake, o.docs_page) for o in outcomes if o.docs_page
    }
    return AssetQualityReport(
        asset=asset,
        outcomes=outcomes,
        summaries=summaries,
        docs_index=docs_url(lake, "index.html") if build_docs else None,
        docs_pages=pages,
    )
