"""Publish a rendered Great Expectations Data Docs site into the lake (local folder or S3), and
link to its pages.

The site is rendered into a local scratch folder, then copied through the lake's filesystem, so
the same code serves local lakes and S3. Pages are written every time; the static assets (fonts,
styles, about 4 MB) only when the lake does not hold them yet. Validation pages are named by run
and partition, so they accumulate into a browsable history; index.html lists the latest run's.
"""

from pathlib import Path

import pyarrow.fs as pafs

from sensor_platform.lake.store import Lake

DOCS_PREFIX = "docs/data_quality"
STATIC_MARKER = "static/styles/data_docs_default_styles.css"


def publish_docs(lake: Lake, site_dir: str | Path, prefix: str = DOCS_PREFIX) -> list[str]:
    """Copy the site in `site_dir` to `prefix` in the lake; returns the lake paths written."""
    site = Path(site_dir)
    skip_static = lake.exists(f"{prefix}/{STATIC_MARKER}")
    written = []
    for file in sorted(p for p in site.rglob("*") if p.is_file()):
        relative = file.relative_to(site).as_posix()
        if skip_static and relative.startswith("static/"):
            continue
        target = f"{prefix}/{relative}"
        lake.fs.create_dir(lake.full_path(target).rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(
            str(file),
            lake.full_path(target),
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=lake.fs,
        )
        written.append(target)
    return written


def docs_url(lake: Lake, page: str, prefix: str = DOCS_PREFIX) -> str:
    """A link to a page of the site: a file:// URL on a local lake, the s3:// URI otherwise."""
    relpath = f"{prefix}/{page}"
    if lake.is_local:
        return Path(lake.full_path(relpath)).resolve().as_uri()
    return lake.uri(relpath)
