"""Validate every partition of a materialized range of one dataset against its suites, in one
ephemeral Great Expectations context, and publish the Data Docs of that run into the lake (and
the index of every validation kept there)."""

from dataclasses import dataclass
from datetime import datetime

from sensor_platform.datasets import Dataset, Registry
from sensor_platform.lake.store import Lake
from sensor_platform.quality.data_docs import docs_url, publish_docs
from sensor_platform.quality.docs_index import write_index
from sensor_platform.quality.frames import partition_frames
from sensor_platform.quality.gx_validate import GxValidator, SuiteOutcome
from sensor_platform.quality.results import CheckSummary, summarize
from sensor_platform.quality.rules import FleetRegistry, QualityRules
from sensor_platform.quality.suites import SuiteDefinition, suites_for


@dataclass(frozen=True)
class AssetQualityReport:
    asset: str
    outcomes: list[SuiteOutcome]  # every suite on every partition, in order
    summaries: dict[str, CheckSummary]  # dimension -> the suite merged over the range
    docs_index: str | None  # link to the Data Docs site's index, when docs were built
    docs_pages: dict[str, str]  # "<dimension>/<partition>" -> link to that validation's page


def check_partitions(
    lake: Lake,
    datasets: Registry,
    dataset: Dataset,
    windows: list[datetime],
    *,
    rules: QualityRules,
    fleet: FleetRegistry,
    now: datetime,
    run_name: str,
    build_docs: bool = True,
    suites: list[SuiteDefinition] | None = None,
    docs_base_url: str | None = None,
) -> AssetQualityReport:
    """Run the suites of `dataset` (default: all of them) on each window (partition start) and
    merge each suite's outcomes over the windows. Links to the Data Docs point under
    `docs_base_url` (a server of the site); without one, at the files themselves."""
    suites = suites_for(dataset, datasets) if suites is None else suites
    validator = GxValidator(rules, fleet, build_docs=build_docs)
    try:
        outcomes = []
        for window in windows:
            partition = dataset.partition_key(window)
            data = partition_frames(lake, datasets, dataset, window, fleet, rules, now)
            for suite in suites:
                outcomes.append(
                    validator.validate(
                        suite, data[suite.frame], partition=partition, run_name=run_name
                    )
                )
        site = validator.render_docs()
        if site is not None:
            publish_docs(lake, site, validator.pages)
            write_index(lake)
    finally:
        validator.close()
    summaries = {
        suite.dimension: summarize(
            [o for o in outcomes if o.suite == suite.name], rules.sample_size
        )
        for suite in suites
    }
    pages = {
        f"{o.dimension}/{o.partition}": docs_url(lake, o.docs_page, base_url=docs_base_url)
        for o in outcomes
        if o.docs_page
    }
    return AssetQualityReport(
        asset=dataset.name,
        outcomes=outcomes,
        summaries=summaries,
        docs_index=docs_url(lake, "index.html", base_url=docs_base_url) if build_docs else None,
        docs_pages=pages,
    )
