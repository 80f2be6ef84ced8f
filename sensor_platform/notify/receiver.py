"""A local webhook endpoint (a real HTTP server on 127.0.0.1) that records every request and what
it did with it.

It stands in for Discord, Slack or any webhook in tests, demos and the latency benchmark, and is no
kinder than they are: a request scripted to succeed is processed when it arrives, and a slow answer
(`delay_s`) does not undo that, even when the client stopped waiting. Paths can be scripted to
answer with errors, rate limits or slowly, and can be made idempotent: a repeated Idempotency-Key
is acknowledged (the first answer's status, `Idempotent-Replayed: true`) but not processed again,
like a well-behaved generic webhook. A request with `?wait=true` is answered like Discord: 200 with
the created message instead of 204.
"""

import json
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from sensor_platform.notify.delivery import REPLAYED_HEADER


@dataclass(frozen=True)
class Reply:
    status: int = 204
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # answer this long after processing the request


@dataclass(frozen=True)
class Received:
    path: str  # without the query
    headers: dict[str, str]
    payload: Any
    received_at: datetime
    query: dict[str, str] = field(default_factory=dict)
    status: int = 204  # what the server answers (or answered too late)
    processed: bool = True  # acted on: a 2xx that was not a replayed idempotency key
    replayed: bool = False  # a key this path had processed already


class WebhookReceiver:
    def __init__(self, port: int = 0):
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes handlers that are still delaying an answer
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._requests: list[Received] = []
        self._idempotent: set[str] = set()
        self._keys: dict[tuple[str, str], int] = {}  # (path, key) -> status of the first answer
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with `replies`, then 204 No Content."""
        with self._lock:
            self._scripts[_path(path)].extend(replies)

    def honour_idempotency_keys(self, path: str) -> None:
        """Process each Idempotency-Key sent to `path` once; repeats are only acknowledged."""
        with self._lock:
            self._idempotent.add(_path(path))

    def requests(self, path: str | None = None) -> list[Received]:
        """Every request that arrived, processed or not, in order of arrival."""
        with self._lock:
            wanted = None if path is None else _path(path)
            return [r for r in self._requests if wanted is None or r.path == wanted]

    def received(self, path: str | None = None) -> list[Received]:
        """The requests the server acted on, answered in time or not."""
        return [r for r in self.requests(path) if r.processed]

    def attempts(self, path: str) -> int:
        return len(self.requests(path))

    def _arrive(self, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload, reply = None, Reply(400, body={"message": "body is not JSON"})
        else:
            reply = None
        key = headers.get("Idempotency-Key")
        with self._lock:
            replay = key is not None and path in self._idempotent and (path, key) in self._keys
            if replay:
                reply = Reply(self._keys[path, key], headers={REPLAYED_HEADER: "true"})
            elif reply is None:
                queue = self._scripts[path]
                reply = queue.popleft() if queue else Reply()
            processed = not replay and 200 <= reply.status < 300
            if processed and key is not None and path in self._idempotent:
                self._keys[path, key] = reply.status
            self._requests.append(
                Received(
                    path=path,
                    headers=headers,
                    payload=payload,
                    received_at=datetime.now(UTC),
                    query=dict(parse_qsl(query)),
                    status=reply.status,
                    processed=processed,
                    replayed=replay,
                )
            )
            serial = len(self._requests)
        if 200 <= reply.status < 300 and reply.body is None and "wait=true" in query.split("&"):
            # Discord with ?wait=true: the created message, not 204
            embeds = payload.get("embeds", []) if isinstance(payload, dict) else []
            content = payload.get("content", "") if isinstance(payload, dict) else ""
            message = {"id": str(10**17 + serial), "type": 0, "content": content, "embeds": embeds}
            reply = Reply(200, message, reply.headers, reply.delay_s)
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path, _, query = self.path.partition("?")
                reply = receiver._arrive(path, query, dict(self.headers), body)
                if reply.delay_s:
                    receiver._stopping.wait(reply.delay_s)
                data = json.dumps(reply.body).encode() if reply.body is not None else b""
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if data:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:  # the client stopped waiting: the work is done all the same
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests and benchmarks print what matters

        return Handler


def _path(path: str) -> str:
    return "/" + path.lstrip("/").partition("?")[0]


_NOTICE = re.compile(r"episode `?([0-9a-f]{32})`? · ([a-z+]+)")


def notices_in(received: Received) -> list[tuple[str, str]]:
    """(episode id, events) of every notice a received Discord, Slack or generic message carried."""
    payload = received.payload
    if isinstance(payload, dict) and "notices" in payload:
        return [(n["episode"]["episode_id"], "+".join(n["events"])) for n in payload["notices"]]
    if isinstance(payload, dict) and "embeds" in payload:
        texts = [e["footer"]["text"] for e in payload["embeds"]]
    elif isinstance(payload, dict) and "blocks" in payload:
        texts = [b["text"]["text"] for b in payload["blocks"]]
    else:
        return []
    return [m.groups() for text in texts for m in _NOTICE.finditer(text)]
