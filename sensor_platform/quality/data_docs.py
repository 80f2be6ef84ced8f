"""Publish the Data Docs pages Great Expectations rendered into the lake (local folder or S3) as
self-contained pages, and link to them.

Great Expectations' pages load Bootstrap, jQuery, Font Awesome and Vega from CDNs, so offline
they render as bare text. Each page is rewritten on its way into the lake: the CDN tags (and the
remote logo) are dropped, and an offline stylesheet and a few lines of plain JavaScript (the
"failed only" filter, the collapsible details) are inlined from docs_assets/, so a page is one
file that renders the same from disk, from S3 or from `sensor-platform docs`, with no network.
Charts that Vega would draw are not drawn (no expectation of ours makes one).

A validation page is published at `validations/<asset>/<check>/<run>-<partition>/<time>/
<outcome>.html` (outcome: passed, failed-warn or failed-error), so the lake's listing alone says
what every page is: the index (docs_index.py) lists every validation kept in the lake.
"""

import re
from collections.abc import Mapping
from pathlib import Path

from sensor_platform.catalog.lake_inspection import write_lake_bytes
from sensor_platform.lake.store import Lake

DOCS_PREFIX = "docs/data_quality"
VALIDATIONS = "validations"
ASSETS = Path(__file__).with_name("docs_assets")

_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", re.I)
_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref=[\"'](?:https?://|[./]*static/)[^>]*>", re.I)
_EXTERNAL_IMAGE = re.compile(r"<img\b[^>]*\bsrc=[\"']https?://[^>]*>", re.I)
_ALT = re.compile(r"\balt=[\"']([^\"']*)[\"']", re.I)
_FOOTER = re.compile(r"<footer\b.*?</footer>", re.I | re.S)  # GX's newsletter banner
# Anything a browser would fetch from elsewhere: none may be left in a published page.
REMOTE_RESOURCE = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']https?://", re.I
)


def self_contained(page: str) -> str:
    """A rendered Great Expectations page with nothing left to load from a CDN."""
    page = _EXTERNAL_SCRIPT.sub("", page)
    page = _EXTERNAL_LINK.sub("", page)
    page = _EXTERNAL_IMAGE.sub(lambda m: _alt_text(m.group(0)), page)
    page = _FOOTER.sub("", page)
    page = page.replace("</head>", f"<style>{offline_css()}</style>\n</head>", 1)
    return page.replace("</body>", f"<script>{offline_js()}</script>\n</body>", 1)


def offline_css() -> str:
    return (ASSETS / "data_docs.css").read_text(encoding="utf-8")


def offline_js() -> str:
    return (ASSETS / "data_docs.js").read_text(encoding="utf-8")


def publish_docs(
    lake: Lake,
    site_dir: str | Path,
    pages: Mapping[str, str] | None = None,
    prefix: str = DOCS_PREFIX,
) -> list[str]:
    """Write the pages of the site in `site_dir` to `prefix` in the lake, each self-contained;
    returns the lake paths written (then docs_index.write_index lists them).

    `pages` renames pages (path in the site -> path to publish at). Great Expectations' own
    index (it knows only this run) and static assets (fonts, images: nothing needs them now)
    are not published."""
    site = Path(site_dir)
    pages = pages or {}
    written = []
    for file in sorted(site.rglob("*.html")):
        relative = file.relative_to(site).as_posix()
        if relative == "index.html" or relative.startswith("static/"):
            continue
        target = f"{prefix}/{pages.get(relative, relative)}"
        html = self_contained(file.read_text(encoding="utf-8"))
        write_lake_bytes(lake, target, html.encode("utf-8"))
        written.append(target)
    return written


def docs_url(lake: Lake, page: str, prefix: str = DOCS_PREFIX, base_url: str | None = None) -> str:
    """A link to a page of the site: under `base_url` (a server of the site, such as
    `sensor-platform docs`) when one is given; else a file:// URL on a local lake (which a
    browser refuses to open from a web page such as Dagster's UI) or the s3:// URI."""
    if base_url:
        return f"{base_url.rstrip('/')}/{page}"
    relpath = f"{prefix}/{page}"
    if lake.is_local:
        return Path(lake.full_path(relpath)).resolve().as_uri()
    return lake.uri(relpath)


def _alt_text(tag: str) -> str:
    found = _ALT.search(tag)
    return f"<span>{found.group(1)}</span>" if found else ""
