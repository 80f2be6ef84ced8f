"""`sensor-platform docs`: the lake's Data Docs site over HTTP, so that the links of the checks
open from the Dagster UI (a browser refuses file:// links from a web page).

It serves `<lake>/docs/data_quality` read-only, from a local lake or S3 alike, and renders the
index fresh on every request (so it lists what concurrent check runs just published). Nothing
outside that folder can be reached: paths with `..`, backslashes or empty segments are refused.
By default it listens on 127.0.0.1 only; production can put any web server in front of the same
folder instead and point SENSOR_DOCS_BASE_URL at it.
"""

import sys
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from sensor_platform.catalog.lake_inspection import read_lake_bytes
from sensor_platform.lake.store import Lake
from sensor_platform.quality.data_docs import DOCS_PREFIX
from sensor_platform.quality.docs_index import render_index, validation_pages

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "json": "application/json",
    "png": "image/png",
    "gif": "image/gif",
    "svg": "image/svg+xml",
    "ico": "image/x-icon",
}


def docs_server(lake: Lake, host: str, port: int, prefix: str = DOCS_PREFIX) -> ThreadingHTTPServer:
    """A server of the site (not yet serving: call `serve_forever`); port 0 picks a free one."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "sensor-platform-docs"

        def do_GET(self) -> None:  # noqa: N802 - the http.server hook
            relative = site_path(self.path)
            if relative is None:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            elif relative in ("", "index.html"):
                index = render_index(validation_pages(lake, prefix), datetime.now(UTC))
                self._send(HTTPStatus.OK, index.encode("utf-8"), CONTENT_TYPES["html"])
            else:
                body = read_lake_bytes(lake, f"{prefix}/{relative}")
                if body is None:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                else:
                    kind = CONTENT_TYPES.get(
                        relative.rsplit(".", 1)[-1], "application/octet-stream"
                    )
                    self._send(HTTPStatus.OK, body, kind)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            print(f"{self.address_string()} {format % args}", file=sys.stderr)

    return ThreadingHTTPServer((host, port), Handler)


def site_path(request_path: str) -> str | None:
    """The path inside the site a request asks for; None when it would leave the site."""
    path = unquote(urlsplit(request_path).path)
    if not path.startswith("/") or "\\" in path or "\x00" in path:
        return None
    relative = path[1:]
    if relative in ("", "index.html"):
        return relative
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return relative
