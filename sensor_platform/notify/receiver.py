"""A local webhook endpoint (a real HTTP server on 127.0.0.1) that records the JSON it receives.

It stands in for Discord, Slack or any webhook in tests, demos and the latency benchmark, and can
be scripted per path to answer with errors, rate limits or slowly. A request counts as received
only once the server has answered it to a client that was still waiting: a request the client
gave up on (timed out) was, as far as the server knows, never handled, like an aborted request.
"""

import json
import re
import socket
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 204
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait this long before answering


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    payload: Any
    received_at: datetime


class WebhookReceiver:
    def __init__(self, port: int = 0):
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._received: list[Received] = []
        self._attempts: dict[str, int] = defaultdict(int)
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
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with `replies`, then 204 No Content."""
        with self._lock:
            self._scripts["/" + path.lstrip("/")].extend(replies)

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            wanted = None if path is None else "/" + path.lstrip("/")
            return [r for r in self._received if wanted is None or r.path == wanted]

    def attempts(self, path: str) -> int:
        with self._lock:
            return self._attempts["/" + path.lstrip("/")]

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            self._attempts[path] += 1
            queue = self._scripts[path]
            return queue.popleft() if queue else Reply()

    def _commit(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply = receiver._next_reply(self.path)
                if reply.delay_s:
                    threading.Event().wait(reply.delay_s)
                    if _client_gone(self.connection):
                        self.close_connection = True
                        return
                if 200 <= reply.status < 300:
                    receiver._commit(
                        Received(
                            path=self.path,
                            headers=dict(self.headers),
                            payload=json.loads(body or b"null"),
                            received_at=datetime.now(UTC),
                        )
                    )
                data = json.dumps(reply.body).encode() if reply.body is not None else b""
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests and benchmarks print what matters

        return Handler


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


def _client_gone(connection: socket.socket) -> bool:
    """True when the client closed its side (it stopped waiting for the answer)."""
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        connection.setblocking(True)
