"""The catalog page shows a check's outcome, and the severity of a failure only: never a passed
check next to the severity it could have failed with ("passed ERROR")."""

import re
from datetime import UTC, datetime

from sensor_platform.catalog.entries import CatalogEntry, CheckOutcome, quality_status
from sensor_platform.catalog.html_page import render_catalog_page

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def entry(checks: tuple[CheckOutcome, ...]) -> CatalogEntry:
    return CatalogEntry(
        name="raw_sensor_readings", description="", owner="team:x", layer="raw", group="raw",
        kinds=(), tags={}, location="/lake/raw", storage_format="parquet", lake_prefix="raw",
        table_name=None, partitioning="hourly", columns=(), metrics=(), schema_version=1,
        schema_diff=None, row_count=None, size_bytes=None, file_count=None, partitions=(),
        last_update=None, freshness_hours=None, freshness_status="never",
        quality_status=quality_status(checks), checks=checks,
    )  # fmt: skip


def check_items(page: str) -> dict[str, str]:
    items = re.findall(r"<li>(\w+): (.*?)</li>", page)
    return {name: re.sub(r"<[^>]+>", "", shown).strip() for name, shown in items}


def test_a_check_shows_its_outcome_and_a_failure_its_severity():
    checks = (
        CheckOutcome("completeness", True, "", T0),
        CheckOutcome("validity", False, "ERROR", T0),
        CheckOutcome("timeliness", False, "WARN", T0),
        CheckOutcome("uniqueness", None, "", None),
    )
    page = render_catalog_page([entry(checks)], T0)
    assert check_items(page) == {
        "completeness": f"passed {T0.isoformat()}",
        "validity": f"failed: error {T0.isoformat()}",
        "timeliness": f"failed: warn {T0.isoformat()}",
        "uniqueness": "not evaluated",
    }
    assert '<span class="badge failed">failed: error</span>' in page
    assert '<span class="badge warn">failed: warn</span>' in page


def test_a_passed_check_never_shows_a_severity_even_if_one_was_recorded():
    # What an instance recorded before: a passed check with the severity it could fail with.
    page = render_catalog_page([entry((CheckOutcome("validity", True, "ERROR", T0),))], T0)
    assert check_items(page) == {"validity": f"passed {T0.isoformat()}"}
    assert "ERROR" not in page
