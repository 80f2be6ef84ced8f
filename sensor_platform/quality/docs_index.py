"""The index of the Data Docs: every validation page kept in the lake, newest first.

Built from the lake's listing alone (a page's path says its asset, check, partition, run, time
and outcome: see data_docs.py), so it lists the validations of every run, not only the last
one's, and costs one listing however many pages there are. `publish_docs` rewrites index.html
after each check run; `sensor-platform docs` renders it fresh on every request.
"""

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from sensor_platform.catalog.lake_inspection import write_lake_bytes
from sensor_platform.lake.store import Lake
from sensor_platform.quality.data_docs import DOCS_PREFIX, VALIDATIONS, offline_css

OUTCOMES = ("passed", "failed-warn", "failed-error")
_LABELS = {
    "passed": "passed",
    "failed-warn": "failed (warn)",
    "failed-error": "failed (error)",
    "unknown": "outcome not in the page name",
}
_HOURLY = re.compile(r"^(\d{4}-\d{2}-\d{2}-\d{2})_(\d{2})$")  # a path-safe hourly partition key

_FILTER_JS = """
(function () {
  var box = document.getElementById('docs-search');
  var rows = Array.prototype.slice.call(document.querySelectorAll('tbody tr'));
  function apply() {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.getAttribute('data-text');
      var match = words.every(function (w) { return text.indexOf(w) >= 0; });
      row.hidden = !match;
      if (match) { shown += 1; }
    });
    document.body.setAttribute('data-shown', String(shown));
  }
  box.addEventListener('input', apply);
  var query = /[#&]q=([^&]*)/.exec(window.location.hash);
  if (query) { box.value = decodeURIComponent(query[1].replace(/\\+/g, ' ')); }
  apply();
})();
"""


@dataclass(frozen=True)
class ValidationPage:
    page: str  # relative to the site root
    asset: str
    check: str
    partition: str
    run: str  # the first characters of the Dagster run id
    checked_at: datetime | None
    outcome: str  # passed | failed-warn | failed-error | unknown (a page from before outcomes)


def parse_page(page: str) -> ValidationPage | None:
    """What a validation page's path says (`validations/<asset>/<check>/<run>-<partition>/<time>/
    <outcome>.html`); None for anything else."""
    parts = page.split("/")
    if len(parts) < 6 or parts[0] != VALIDATIONS or not parts[-1].endswith(".html"):
        return None
    run, _, partition = parts[-3].partition("-")
    stem = parts[-1].removesuffix(".html")
    return ValidationPage(
        page=page,
        asset=parts[1],
        check=".".join(parts[2:-3]),
        partition=_HOURLY.sub(r"\1:\2", partition),
        run=run,
        checked_at=_run_time(parts[-2]),
        outcome=stem if stem in OUTCOMES else "unknown",
    )


def validation_pages(lake: Lake, prefix: str = DOCS_PREFIX) -> list[ValidationPage]:
    """Every validation page under `prefix`, newest first."""
    start = len(prefix) + 1
    found = [
        parse_page(f.path[start:]) for f in lake.list_files(f"{prefix}/{VALIDATIONS}", ".html")
    ]
    pages = [p for p in found if p is not None]
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(pages, key=lambda p: (p.checked_at or oldest, p.page), reverse=True)


def render_index(pages: list[ValidationPage], now: datetime) -> str:
    """The index page: one self-contained HTML file with a filter box (`#q=words` pre-fills it)."""
    counts = {label: sum(p.outcome == o for p in pages) for o, label in _LABELS.items()}
    summary = " · ".join(f"{n} {label}" for label, n in counts.items() if n)
    rows = "\n".join(_row(p) for p in pages)
    assets = len({p.asset for p in pages})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Data quality: every validation</title>
<style>{offline_css()}</style></head>
<body data-shown="{len(pages)}"><div class="container-fluid pt-4">
<h4>Data quality: every validation kept in the lake</h4>
<p class="lead">{len(pages)} validations of {assets} assets, newest first
(built {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC). {_e(summary)}</p>
<input id="docs-search" type="search" placeholder="filter: asset, check, partition, outcome, run"
 aria-label="filter the validations">
<div class="table-responsive"><table class="table table-sm">
<thead><tr><th>checked (UTC)</th><th>asset</th><th>check</th><th>partition</th><th>outcome</th>
<th>run</th></tr></thead>
<tbody>
{rows}
</tbody></table></div></div>
<script>{_FILTER_JS}</script>
</body></html>
"""


def write_index(lake: Lake, prefix: str = DOCS_PREFIX, now: datetime | None = None) -> str:
    """Rewrite `<prefix>/index.html` from the lake's listing; returns its lake path."""
    target = f"{prefix}/index.html"
    page = render_index(validation_pages(lake, prefix), now or datetime.now(UTC))
    write_lake_bytes(lake, target, page.encode("utf-8"))
    return target


def _row(p: ValidationPage) -> str:
    checked = f"{p.checked_at:%Y-%m-%d %H:%M:%S}" if p.checked_at else "?"
    text = " ".join((p.asset, p.check, p.partition, p.outcome, p.run)).lower()
    return (
        f'<tr data-text="{_e(text)}"><td><a href="{_e(quote(p.page))}">{checked}</a></td>'
        f"<td>{_e(p.asset)}</td><td>{_e(p.check)}</td><td>{_e(p.partition)}</td>"
        f'<td><span class="badge outcome-{p.outcome}">{_e(p.outcome)}</span></td>'
        f"<td><code>{_e(p.run)}</code></td></tr>"
    )


def _run_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _e(value: str) -> str:
    return html.escape(value, quote=True)
