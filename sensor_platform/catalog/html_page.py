"""The static catalog page: one self-contained HTML file (inline CSS and JS, no external URLs) with a
search box and one section per dataset. Every value is HTML-escaped.

The search box filters sections by any text in them; `#q=words` in the URL pre-fills it, so a link
can point at a filtered view.
"""

import html
import json
from datetime import datetime

from sensor_platform.catalog.entries import CatalogEntry, CheckOutcome

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:1rem 2rem}
header h1{margin:0;font-size:1.4rem}
main{padding:1rem 2rem;max-width:70rem}
#catalog-search{width:100%;font-size:1rem;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}
section.dataset{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:1rem;
margin-bottom:1rem}
section.dataset h2{margin:.1rem 0 .5rem;font-family:monospace}
dl{display:grid;grid-template-columns:12rem 1fr;gap:.2rem 1rem;margin:.5rem 0}
dt{color:#5a6172}dd{margin:0;word-break:break-all}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e3e6ea;text-align:left;padding:.25rem .5rem;vertical-align:top}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.8rem;background:#e3e6ea}
.passed,.fresh{background:#cdeccd}.failed,.stale{background:#f4c7c3}.warn{background:#fbe7b5}
#no-match{color:#5a6172}
pre.ddl{background:#f6f7f9;padding:.5rem;overflow-x:auto;font-size:.8rem}
"""

_JS = """
(function () {
  var box = document.getElementById('catalog-search');
  var sections = Array.prototype.slice.call(document.querySelectorAll('section.dataset'));
  function apply() {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    sections.forEach(function (s) {
      var text = s.textContent.toLowerCase();
      var match = words.every(function (w) { return text.indexOf(w) >= 0; });
      s.hidden = !match;
      if (match) { shown += 1; }
    });
    document.getElementById('no-match').hidden = shown > 0;
    document.body.setAttribute('data-shown', String(shown));
  }
  box.addEventListener('input', apply);
  var query = /[#&]q=([^&]*)/.exec(window.location.hash);
  if (query) { box.value = decodeURIComponent(query[1].replace(/\\+/g, ' ')); }
  apply();
})();
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _badge(text: str) -> str:
    css = text if text in {"passed", "failed", "warn", "fresh", "stale"} else ""
    return f'<span class="badge {css}">{_e(text)}</span>'


def _columns_table(entry: CatalogEntry) -> str:
    rows = "".join(
        f"<tr><td><code>{_e(c.name)}</code></td><td>{_e(c.data_type)}</td>"
        f"<td>{'' if c.nullable is None else ('yes' if c.nullable else 'no')}</td>"
        f"<td>{_e(c.description)}</td></tr>"
        for c in entry.columns
    )
    return (
        "<table class='columns'><thead><tr><th>column</th><th>type</th><th>nullable</th>"
        f"<th>meaning</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _checks(entry: CatalogEntry) -> str:
    if not entry.checks:
        return "none"
    items = "".join(
        f"<li>{_e(c.name)}: {_check_badge(c)}"
        f" {_e(c.evaluated_at.isoformat() if c.evaluated_at else '')}</li>"
        for c in entry.checks
    )
    return f"<ul>{items}</ul>"


def _check_badge(check: CheckOutcome) -> str:
    """passed, not evaluated, or failed with the severity it failed with (a passed check has
    none to show, whatever severity it could have failed with)."""
    if check.passed is None:
        return _badge("not evaluated")
    if check.passed:
        return _badge("passed")
    css = "warn" if check.severity == "WARN" else "failed"
    text = f"failed: {check.severity.lower()}" if check.severity else "failed"
    return f'<span class="badge {css}">{_e(text)}</span>'


def _partitions(entry: CatalogEntry) -> str:
    if not entry.partitions:
        return "none"
    return f"{len(entry.partitions)} ({_e(entry.partitions[0])} .. {_e(entry.partitions[-1])})"


_DIALECT_LABELS = {"hive": "Athena, Spark, Hive", "trino": "Trino (Hive connector)"}


def _external_tables(entry: CatalogEntry) -> str:
    if not entry.external_tables:
        return "n/a"
    return "".join(
        f"<details><summary>{_e(_DIALECT_LABELS.get(d, d))}</summary>"
        f"<pre class='ddl' data-dialect='{_e(d)}'>{_e(ddl)}</pre></details>"
        for d, ddl in entry.external_tables.items()
    )


def _section(entry: CatalogEntry) -> str:
    facts = [
        ("owner", _e(entry.owner)),
        ("layer", _e(entry.layer)),
        ("group", _e(entry.group)),
        ("kinds", _e(", ".join(entry.kinds))),
        ("tags", _e(", ".join(f"{k}: {v}" for k, v in sorted(entry.tags.items())))),
        ("location", f"<code>{_e(entry.location)}</code>"),
        ("format", _e(entry.storage_format)),
        ("query as", f"<code>{_e(entry.table_name or entry.name)}</code>"),
        ("partitioning", _e(entry.partitioning)),
        ("partitions present", _partitions(entry)),
        ("rows", _e(f"{entry.row_count:,}" if entry.row_count is not None else "unknown")),
        ("size", _e(f"{entry.size_bytes:,} bytes" if entry.size_bytes is not None else "n/a")),
        ("last update", _e(entry.last_update.isoformat() if entry.last_update else "never")),
        (
            "freshness",
            f"{_badge(entry.freshness_status)} "
            f"{_e('' if entry.freshness_hours is None else f'{entry.freshness_hours} h ago')}",
        ),
        ("quality", f"{_badge(entry.quality_status)}{_checks(entry)}"),
        ("schema version", _e(entry.schema_version)),
        (
            "last schema change",
            f"<code>{_e(json.dumps(entry.schema_diff))}</code>" if entry.schema_diff else "none",
        ),
        ("metrics", _e(", ".join(entry.metrics) or "n/a")),
        ("external table", _external_tables(entry)),
    ]
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f'<section class="dataset" id="dataset-{_e(entry.name)}" data-dataset="{_e(entry.name)}">'
        f"<h2>{_e(entry.name)}</h2><p>{_e(entry.description)}</p><dl>{rows}</dl>"
        f"{_columns_table(entry)}</section>"
    )


def render_catalog_page(entries: list[CatalogEntry], built_at: datetime) -> str:
    sections = "\n".join(_section(e) for e in sorted(entries, key=lambda e: (e.layer, e.name)))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Sensor Platform data catalog</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Sensor Platform data catalog</h1><div>{len(entries)} datasets, built "
        f"{_e(built_at.isoformat())}</div></header><main>"
        "<input id='catalog-search' type='search' placeholder='Search datasets, columns, "
        "owners, metrics ...' aria-label='Search the catalog' autofocus>"
        "<p id='no-match' hidden>No dataset matches.</p>"
        f"{sections}</main><script>{_JS}</script></body></html>\n"
    )
