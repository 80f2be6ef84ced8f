"""Real Mosquitto brokers for the MQTT tests: the system one on 127.0.0.1:1883, and private ones
started from a temporary config on a free port (persistence, a password file, TLS), stopped after.

Tests keep apart with client ids and topics of their own (`unique`), never by cleaning the broker.
"""

import getpass
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sensor_platform.mqtt.drain import drain
from sensor_platform.mqtt.settings import MqttSettings
from sensor_platform_tests.conftest import free_port, in_ci, require_server, server_listening

SYSTEM_HOST, SYSTEM_PORT = "127.0.0.1", 1883
START_TIMEOUT_S = 10


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def broker_settings(host: str, port: int, protocol: str = "5", **overrides) -> MqttSettings:
    """Settings with a client id and a topic tree (`<root>/#`, template `<root>/{site_id}/
    {device_id}`) of the test's own."""
    name = unique("t")
    defaults = {
        "host": host,
        "port": port,
        "topics": (f"{name}/#",),
        "client_id": f"{name}-drain",
        "protocol": protocol,
        "topic_template": f"{name}/{{site_id}}/{{device_id}}",
        "connect_timeout_seconds": 5.0,
    }
    return MqttSettings(**{**defaults, **overrides})


def system_broker(protocol: str = "5", **overrides) -> MqttSettings:
    """Settings for the system Mosquitto (see broker_settings)."""
    require_server("Mosquitto", SYSTEM_HOST, SYSTEM_PORT)
    return broker_settings(SYSTEM_HOST, SYSTEM_PORT, protocol, **overrides)


def topic_root(settings: MqttSettings) -> str:
    """The test's topic tree: publish below it."""
    return settings.topics[0].removesuffix("/#")


def open_session(settings: MqttSettings) -> None:
    """The first run: creates the persistent session and its subscriptions, so the broker keeps
    what is published from now on (nothing to drain yet)."""
    with drain(settings, idle_seconds=0.3) as batch:
        assert batch.messages == [] and not batch.session_present


def require_mosquitto() -> str:
    path = shutil.which("mosquitto")
    if path:
        return path
    if in_ci():
        pytest.fail("the mosquitto binary is not installed; CI must run this test")
    print("SKIP: the mosquitto binary is not installed")
    pytest.skip("the mosquitto binary is not installed")


class Mosquitto:
    """A private broker; `restart()` stops it (SIGTERM: it saves its persistence file) and starts
    it again on the same port."""

    def __init__(self, directory: Path, config_lines: list[str]):
        self.binary = require_mosquitto()
        self.directory = directory
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            # when run as root, Mosquitto would switch to the user "mosquitto", who cannot
            # write the test's temporary folder
            f"user {getpass.getuser()}",
            "log_dest stderr",
            *config_lines,
        ]
        if not any(line.startswith("allow_anonymous") for line in config_lines):
            lines.append("allow_anonymous true")  # Mosquitto 2 refuses anonymous clients by default
        self.config.write_text("\n".join(lines) + "\n")
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Mosquitto":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server_listening("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(START_TIMEOUT_S)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def settings(self, protocol: str = "5", **overrides) -> MqttSettings:
        return broker_settings("127.0.0.1", self.port, protocol, **overrides)


@contextmanager
def private_mosquitto(directory: Path, *config_lines: str) -> Iterator[Mosquitto]:
    broker = Mosquitto(directory, list(config_lines))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def password_file(directory: Path, users: dict[str, str]) -> Path:
    path = directory / "passwords"
    path.write_text("")
    for user, password in users.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(path), user, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
    return path
