"""Data Docs that work offline and from the UI: every published page is self-contained (checked
in headless Chromium with the network cut off, against Great Expectations' own page as it comes),
the index lists every validation of every run kept in the lake, and `sensor-platform docs`
serves the site over HTTP, the only way a browser opens a link from Dagster's UI."""

import json
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sensor_platform.catalog.lake_inspection import read_lake_bytes, write_lake_bytes
from sensor_platform.datasets import REGISTRY as DATASETS
from sensor_platform.lake.store import Lake
from sensor_platform.quality.data_docs import (
    DOCS_PREFIX,
    REMOTE_RESOURCE,
    docs_url,
    publish_docs,
    self_contained,
)
from sensor_platform.quality.docs_index import parse_page, validation_pages, write_index
from sensor_platform.quality.docs_server import docs_server, site_path
from sensor_platform.quality.suites import suites_for
from sensor_platform_tests.test_quality_suites import (
    HOUR,
    NOW,
    RAW,
    REGISTRY,
    RULES,
    check_partitions,
    clean_rows,
    write_raw,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOUR_KEY = "2026-03-01-10:00"


# Two of raw's suites (one that fails, one that passes) keep each run short.
SUITES = [
    s for s in suites_for(DATASETS.raw, DATASETS) if s.dimension in ("completeness", "validity")
]


def run_raw_checks(lake: Lake, hours: list[datetime], run_name: str, **kwargs):
    return check_partitions(
        lake, RAW, hours, rules=RULES, registry=REGISTRY, now=NOW, run_name=run_name,
        suites=SUITES, **kwargs,
    )  # fmt: skip


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    bad = clean_rows(HOUR)
    bad[0]["value"] = 5000.0  # an impossible temperature: validity fails with ERROR
    write_raw(lake, HOUR, bad)
    write_raw(lake, HOUR + timedelta(hours=1), clean_rows(HOUR + timedelta(hours=1)))
    return lake


@contextmanager
def serving(lake: Lake) -> Iterator[str]:
    server = docs_server(lake, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


# -- publishing ----------------------------------------------------------------------------------
def test_pages_are_published_self_contained_and_named_by_outcome(lake):
    report = run_raw_checks(lake, [HOUR], "docs")
    validity = report.docs_pages[f"validity/{HOUR_KEY}"]
    assert validity.startswith("file://") and validity.endswith("/failed-error.html")
    assert report.docs_pages[f"completeness/{HOUR_KEY}"].endswith("/passed.html")
    page = Path(validity.removeprefix("file://")).read_text()
    assert "5000" in page and "<style>" in page
    assert not REMOTE_RESOURCE.search(page)
    assert not re.search(r"cdn[a-z]*\.|jquery|bootstrapcdn|unpkg|static/", page)
    # Great Expectations' own index and static assets (4 MB of fonts) are not published.
    assert not lake.list_files(f"{DOCS_PREFIX}/static", "")
    index = Path(lake.full_path(f"{DOCS_PREFIX}/index.html"))
    assert report.docs_index == index.resolve().as_uri()
    assert 'href="validations/raw_sensor_readings/validity/' in index.read_text()


def test_links_point_at_the_docs_server_when_a_base_url_is_set(lake):
    report = run_raw_checks(lake, [HOUR], "abcd1234", docs_base_url="http://docs.local:3030/")
    assert report.docs_index == "http://docs.local:3030/index.html"
    assert report.docs_pages[f"validity/{HOUR_KEY}"].startswith(
        "http://docs.local:3030/validations/raw_sensor_readings/validity/abcd1234-2026-03-01-10_00/"
    )
    assert docs_url(lake, "x.html", base_url="https://dq.example.com/dq") == (
        "https://dq.example.com/dq/x.html"
    )


def test_the_index_lists_every_validation_of_every_run_kept_in_the_lake(lake):
    first = run_raw_checks(lake, [HOUR], "run00001")
    second = run_raw_checks(lake, [HOUR, HOUR + timedelta(hours=1)], "run00002")
    suites = len(first.outcomes)
    pages = validation_pages(lake)
    assert len(pages) == suites * 3  # the first run's pages are still listed
    assert {(p.run, p.partition) for p in pages} == {
        ("run00001", HOUR_KEY),
        ("run00002", HOUR_KEY),
        ("run00002", "2026-03-01-11:00"),
    }
    assert [p.checked_at for p in pages] == sorted((p.checked_at for p in pages), reverse=True)
    failed = [(p.run, p.check, p.outcome) for p in pages if p.outcome != "passed"]
    assert sorted(failed) == [
        ("run00001", "validity", "failed-error"),
        ("run00002", "validity", "failed-error"),
    ]
    published = {o.docs_page for o in first.outcomes + second.outcomes}
    assert {p.page for p in pages} == published

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.links: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "a":
                self.links.append(dict(attrs)["href"])

    rows = Rows()
    rows.feed(Path(lake.full_path(f"{DOCS_PREFIX}/index.html")).read_text())
    assert sorted(rows.links) == sorted(published)
    for link in rows.links:  # every link of the index opens a page
        assert lake.exists(f"{DOCS_PREFIX}/{link}")


def test_page_paths_say_what_they_are_and_others_are_ignored():
    page = parse_page(
        "validations/sensor_readings_hourly/consistency/0f3e9a1b-2026-03-01/"
        "20261130T165312.110543Z/failed-warn.html"
    )
    assert (page.asset, page.check, page.partition, page.run, page.outcome) == (
        "sensor_readings_hourly", "consistency", "2026-03-01", "0f3e9a1b", "failed-warn",
    )  # fmt: skip
    assert page.checked_at == datetime(2026, 11, 30, 16, 53, 12, 110543, tzinfo=UTC)
    # A page published before outcomes were in the name is listed as unknown.
    older = parse_page(
        "validations/raw_sensor_readings/validity/abcd-2026-03-01-10_00/"
        "20261130T165312.110543Z/sensor_platform-raw_sensor_readings.validity.html"
    )
    assert (older.partition, older.outcome) == (HOUR_KEY, "unknown")
    assert parse_page("expectations/raw_sensor_readings/validity.html") is None
    assert parse_page("validations/x.html") is None


@pytest.mark.integration  # a browser or the docs server
def test_publish_renames_and_rewrites_pages_through_an_s3_lake(tmp_path, s3_endpoint):
    site = tmp_path / "site"
    (site / "validations" / "s").mkdir(parents=True)
    (site / "static" / "styles").mkdir(parents=True)
    (site / "index.html").write_text("<html>gx index of this run only</html>")
    (site / "static" / "styles" / "data_docs_default_styles.css").write_text("body{}")
    (site / "validations" / "s" / "p.html").write_text(
        '<html><head><link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/b.css"/>'
        "</head><body>page</body></html>"
    )
    lake = Lake("s3://quality-docs/lake", s3_endpoint_url=s3_endpoint,
                s3_access_key="testing", s3_secret_key="testing")  # fmt: skip
    written = publish_docs(lake, site, {"validations/s/p.html": "validations/s/passed.html"})
    assert written == [f"{DOCS_PREFIX}/validations/s/passed.html"]
    page = read_lake_bytes(lake, written[0]).decode()
    assert "page" in page and "bootstrapcdn" not in page and "<style>" in page
    with serving(lake) as base:
        assert get(f"{base}/validations/s/passed.html")[2].decode() == page


# -- self-contained, in a browser with no network ------------------------------------------------
HARNESS = """<!doctype html><html><body>
<iframe id="page" src="PAGE" style="width:1200px;height:900px"></iframe>
<script>
document.getElementById('page').addEventListener('load', function () {
  var d = this.contentDocument, w = this.contentWindow, r = {};
  try { measure(d, w, r); } catch (e) { r.error = String(e); }
  document.body.setAttribute('data-result', JSON.stringify(r));
});
function measure(d, w, r) {
  function style(selector, pseudo) {
    var el = d.querySelector(selector);
    return el ? w.getComputedStyle(el, pseudo || null) : null;
  }
  r.table = style('table.table').borderCollapse;
  r.card = style('.card').borderTopStyle;
  r.icon = style('.fa-check-circle', '::before').content;
  r.collapsed = style('.collapse').display;
  r.failed_only = typeof w.hideSucceededValidations;
  if (r.failed_only === 'function') {
    try { w.hideSucceededValidations(); } catch (e) { r.failed_only = String(e); }
    var passed = d.querySelector('.fa-check-circle').closest('tr');
    var failed = d.querySelector('td .fa-times').closest('tr');
    r.passed_row = w.getComputedStyle(passed).display;
    r.failed_row = w.getComputedStyle(failed).display;
  }
}
</script></body></html>
"""


def rendered_styles(lake: Lake, page: str) -> dict:
    """Computed styles of a page of the lake's site, as headless Chromium shows it served by
    `sensor-platform docs`, with every host but 127.0.0.1 unreachable."""
    assert os.path.exists(CHROMIUM), "chromium is needed: apt-get install -y chromium"
    write_lake_bytes(lake, f"{DOCS_PREFIX}/harness.html", HARNESS.replace("PAGE", page).encode())
    with serving(lake) as base:
        out = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND, "
             "EXCLUDE 127.0.0.1", "--virtual-time-budget=10000", "--dump-dom",
             f"{base}/harness.html"],
            capture_output=True, text=True, timeout=90, check=True,
        )  # fmt: skip
    found = re.search(r'data-result="([^"]*)"', out.stdout)
    assert found, out.stdout[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.mark.integration  # a browser or the docs server
def test_a_published_page_renders_styled_offline_in_a_real_browser(lake):
    report = run_raw_checks(lake, [HOUR], "offline1")
    page = next(o.docs_page for o in report.outcomes if o.dimension == "validity")
    assert rendered_styles(lake, page) == {
        "table": "collapse",
        "card": "solid",
        "icon": '"✔"',
        "collapsed": "none",  # "Show more info..." folded until clicked
        "failed_only": "function",
        "passed_row": "none",  # the "Failed only" filter works without jQuery
        "failed_row": "table-row",
    }


@pytest.mark.integration  # a browser or the docs server
def test_great_expectations_page_as_it_comes_is_unstyled_offline(lake, tmp_path):
    """The control: the same page as Great Expectations renders it, CDN links and all."""
    report = run_raw_checks(lake, [HOUR], "offline2")
    page = next(o.docs_page for o in report.outcomes if o.dimension == "validity")
    published = lake.full_path(f"{DOCS_PREFIX}/{page}")
    original = Path(published).read_text()
    assert self_contained(original) != original
    raw = re.sub(r"<style>/\* Offline stylesheet.*?</style>|<script>// Offline behaviour.*?</script>",
                 "", original, flags=re.S)  # fmt: skip
    Path(published).write_text(raw.replace("</head>", CDN_TAGS + "</head>"))
    styles = rendered_styles(lake, page)
    assert styles["table"] == "separate" and styles["icon"] == "none"
    assert "$ is not defined" in styles["failed_only"]  # its filter needs jQuery


CDN_TAGS = (
    '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/'
    'bootstrap.min.css"/><script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
)


# -- the server ------------------------------------------------------------------------------------
@pytest.mark.integration  # a browser or the docs server
def test_the_server_serves_pages_and_a_fresh_index(lake):
    first = run_raw_checks(lake, [HOUR], "serve001")
    page = first.outcomes[0].docs_page
    with serving(lake) as base:
        status, kind, body = get(f"{base}/{page}")
        assert (status, kind) == (200, "text/html; charset=utf-8") and b"<style>" in body
        assert get(f"{base}/")[2] == get(f"{base}/index.html")[2]
        # Pages a run publishes while the server runs are listed at once.
        run_raw_checks(lake, [HOUR + timedelta(hours=1)], "serve002")
        index = get(f"{base}/index.html")[2].decode()
        assert "serve001" in index and "serve002" in index
        assert get(f"{base}/validations/nothing.html")[0] == 404


@pytest.mark.integration  # the docs server
@pytest.mark.parametrize(
    "request_path",
    ["/../lake/raw", "/%2e%2e/%2e%2e/etc/passwd", "/validations/..%2f..%2fx",
     "/a\\..\\b", "/validations//x.html", "/./index.html"],
)  # fmt: skip
def test_the_server_never_leaves_the_site(request_path, lake, tmp_path):
    assert site_path(request_path) is None
    write_lake_bytes(lake, "secret.html", b"not for the browser")
    with serving(lake) as base:
        status, _, body = get(base + request_path.replace("\\", "%5C"))
        assert status == 404 and b"not for the browser" not in body


def test_site_paths_inside_the_site():
    assert site_path("/") == "" and site_path("/index.html?x=1#y") == "index.html"
    assert site_path("/validations/a%20b/c.html") == "validations/a b/c.html"
    assert site_path("//etc/passwd") == "passwd"  # "etc" is a host there: still inside the site


def test_write_index_on_an_empty_lake(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    assert write_index(lake) == f"{DOCS_PREFIX}/index.html"
    text = read_lake_bytes(lake, f"{DOCS_PREFIX}/index.html").decode()
    assert "0 validations of 0 assets" in text and "<tbody>\n\n</tbody>" in text
