"""Run expectation suites on pandas frames with an ephemeral Great Expectations 1.x context and
return plain, bounded results: per expectation its success, observed value, unexpected count and
percent, and at most `sample_size` unexpected rows (the identifying columns only, read back from
the frame by index). Nothing of the data beyond that sample ever leaves this module.

Great Expectations is imported when the first suite runs, never at import time of this module.
"""

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pandas as pd

from sensor_platform.quality.rules import FleetRegistry, QualityRules
from sensor_platform.quality.suites import SuiteDefinition

DOCS_SITE = "sensor_platform"
MAX_TEXT = 200  # characters of any single value kept in a result
SEVERITY_RANK = {"warn": 1, "error": 2}


@dataclass(frozen=True)
class ExpectationOutcome:
    rule: str
    subject: str  # the metric or column the rule is about
    expectation: str  # Great Expectations type, e.g. expect_column_values_to_be_between
    description: str
    severity: str  # error | warn
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: Any = None
    sample: tuple[dict[str, Any], ...] = ()
    error: str | None = None  # the expectation could not be evaluated (counts as a failure)


@dataclass(frozen=True)
class SuiteOutcome:
    suite: str
    asset: str
    dimension: str
    partition: str
    rows: int
    expectations: tuple[ExpectationOutcome, ...]
    docs_page: str | None = None  # path of the validation's page inside the Data Docs site
    counts: str = "rows"  # what a row of the frame is (readings, series ...): see FRAME_ROWS

    @property
    def success(self) -> bool:
        return all(e.success for e in self.expectations)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [e for e in self.expectations if not e.success]

    @property
    def severity(self) -> str | None:
        """The worst severity among failed expectations; None when everything passed."""
        return max((e.severity for e in self.failed), key=SEVERITY_RANK.get, default=None)

    @property
    def outcome(self) -> str:
        """passed, failed-warn or failed-error (the name of its Data Docs page)."""
        return "passed" if self.success else f"failed-{self.severity}"


@dataclass
class GxValidator:
    """Validates frames against suites in one ephemeral context; with `build_docs`, renders the
    Data Docs site of every validation it ran into a local folder (see `docs_dir`)."""

    rules: QualityRules
    registry: FleetRegistry
    build_docs: bool = False
    _context: Any = field(default=None, init=False, repr=False)
    _definitions: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _docs_dir: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)
    # Page as rendered -> page as published (named by its outcome, see data_docs.py).
    pages: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def validate(
        self, suite: SuiteDefinition, frame: pd.DataFrame, *, partition: str, run_name: str
    ) -> SuiteOutcome:
        """Run `suite` on `frame` (one partition) and summarize the result."""
        from great_expectations.core.run_identifier import RunIdentifier

        definition = self._definition(suite)
        store = self.context.validation_results_store
        before = set(store.list_keys()) if self.build_docs else set()
        result = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": self.rules.sample_size,
            },
            run_id=RunIdentifier(run_name=f"{run_name}-{_path_safe(partition)}"),
        )
        expectations = tuple(self._outcome(r, suite, frame) for r in result.results)
        outcome = SuiteOutcome(
            suite.name, suite.asset, suite.dimension, partition, len(frame), expectations,
            counts=suite.counts,
        )  # fmt: skip
        new_keys = set(store.list_keys()) - before if self.build_docs else set()
        if len(new_keys) != 1:
            return outcome
        rendered = _page_path(new_keys.pop())
        published = f"{rendered.rsplit('/', 1)[0]}/{outcome.outcome}.html"
        self.pages[rendered] = published
        return dataclasses.replace(outcome, docs_page=published)

    @property
    def docs_dir(self) -> str | None:
        return self._docs_dir.name if self._docs_dir else None

    def render_docs(self) -> str | None:
        """Render the Data Docs site of every validation run so far; returns its folder."""
        if not self.build_docs or self._context is None:
            return None
        self._context.build_data_docs(site_names=[DOCS_SITE])
        return self.docs_dir

    def close(self) -> None:
        if self._docs_dir is not None:
            self._docs_dir.cleanup()
            self._docs_dir = None

    @property
    def context(self) -> Any:
        if self._context is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            # In-memory stores and no default docs site (which would claim a temp folder).
            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                progress_bars=ProgressBarsConfig(globally=False),
                analytics_enabled=False,
            )
            context = gx.get_context(mode="ephemeral", project_config=config)
            if self.build_docs:
                self._docs_dir = tempfile.TemporaryDirectory(prefix="gx-docs-")
                context.add_data_docs_site(
                    site_name=DOCS_SITE,
                    site_config={
                        "class_name": "SiteBuilder",
                        "show_how_to_buttons": False,
                        "store_backend": {
                            "class_name": "TupleFilesystemStoreBackend",
                            "base_directory": self._docs_dir.name,
                        },
                        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    },
                )
            context.data_sources.add_pandas("sensor_platform")
            self._context = context
        return self._context

    def _definition(self, suite: SuiteDefinition) -> Any:
        if suite.name not in self._definitions:
            import great_expectations as gx

            source = self.context.data_sources.get("sensor_platform")
            batch = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe(
                "partition"
            )
            expectations = suite.expectations(self.rules, self.registry)
            gx_suite = self.context.suites.add(
                gx.ExpectationSuite(name=suite.name, expectations=expectations)
            )
            self._definitions[suite.name] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite)
            )
        return self._definitions[suite.name]

    def _outcome(self, result: Any, suite: SuiteDefinition, frame: pd.DataFrame):
        config = result.expectation_config
        meta = config.meta or {}
        rule = meta.get("rule", config.type)
        details = result.result or {}
        error = _exception_message(result.exception_info)
        return ExpectationOutcome(
            rule=rule,
            subject=str(meta.get("subject", "")),
            expectation=config.type,
            description=config.description or "",
            severity=self.rules.severity_of(rule) if rule in self.rules.severity else "error",
            success=bool(result.success) and error is None,
            element_count=details.get("element_count"),
            unexpected_count=details.get("unexpected_count"),
            unexpected_percent=_json_safe(details.get("unexpected_percent")),
            observed_value=_json_safe(details.get("observed_value")),
            sample=self._sample(details, suite, frame),
            error=error,
        )

    def _sample(self, details: dict, suite: SuiteDefinition, frame: pd.DataFrame) -> tuple:
        limit = self.rules.sample_size
        indices = list(details.get("partial_unexpected_index_list") or [])[:limit]
        columns = [c for c in suite.sample_columns if c in frame.columns]
        if indices and columns:
            rows = frame.loc[[i for i in indices if i in frame.index], columns]
            return tuple(
                {k: _json_safe(v) for k, v in row.items()} for row in rows.to_dict("records")
            )
        values = list(details.get("partial_unexpected_list") or [])[:limit]
        return tuple({"value": _json_safe(v)} for v in values)


def _exception_message(info: Any) -> str | None:
    """The message of an exception raised while evaluating an expectation, if one was. GX
    reports it either at the top level or per metric that failed to resolve."""
    if not isinstance(info, dict):
        return None
    candidates = [info, *(v for v in info.values() if isinstance(v, dict))]
    for candidate in candidates:
        if candidate.get("raised_exception"):
            return _clip(str(candidate.get("exception_message") or "exception"))
    return None


def _page_path(key: Any) -> str:
    """Where the site builder renders a validation result, relative to the site root:
    validations/<asset>/<check>/<run name>/<run time>/<batch id>.html."""
    parts = key.to_tuple()  # (suite name, run name, run time, batch id)
    return "validations/" + "/".join(str(p) for p in parts) + ".html"


def _path_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _json_safe(value: Any) -> Any:
    """A value fit for JSON metadata: timestamps as ISO text, NaN as None, long text clipped,
    containers bounded so a misbehaving result can never carry a whole column."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, pd.Timestamp | datetime | date):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value[:20]]
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    if pd.isna(value):
        return None
    return _clip(str(value))
