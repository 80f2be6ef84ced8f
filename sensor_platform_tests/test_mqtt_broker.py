"""The MQTT source against brokers of its own (Mosquitto from a temporary config on a free port):
a restart mid-stream, the broker limits that lose data, and a broker that is down versus one that
refuses us (credentials, TLS), with bounded waits and never a password in a message."""

import socket
import subprocess
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from sensor_platform.mqtt.access import BrokerAccessDenied, BrokerUnavailable
from sensor_platform.mqtt.drain import check_broker, drain
from sensor_platform.mqtt.publish import publish
from sensor_platform.mqtt.settings import MqttSettings
from sensor_platform_tests.conftest import free_port
from sensor_platform_tests.mosquitto import (
    open_session,
    password_file,
    private_mosquitto,
    system_broker,
    topic_root,
)

pytestmark = pytest.mark.integration

IDLE = 0.3
PASSWORD = "correct-horse-battery-staple"
WRONG = "wrong-password-1234"


def drain_all(settings: MqttSettings) -> list[bytes]:
    """Every message the session holds, acknowledged, in drains of at most 50."""
    payloads: list[bytes] = []
    while True:
        with drain(settings, idle_seconds=IDLE, max_messages=50) as batch:
            payloads += [m.payload for m in batch.messages]
            batch.acknowledge()
        if not batch.messages:
            return payloads


def messages(root: str, label: str, count: int) -> list[tuple[str, bytes]]:
    return [(f"{root}/site/dev", f"{label}-{i}".encode()) for i in range(count)]


# -- restarts and the broker's own limits ----------------------------------------------------------
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_broker_restart_mid_stream_loses_nothing_for_a_persistent_qos1_session(
    tmp_path, protocol
):
    with private_mosquitto(
        tmp_path, "persistence true", f"persistence_location {tmp_path}/"
    ) as broker:
        settings = broker.settings(protocol)
        root = topic_root(settings)
        open_session(settings)
        first = messages(root, "before", 10)
        publish(settings, first)

        landed: list[bytes] = []
        with drain(settings, idle_seconds=IDLE, max_messages=4) as batch:
            landed += [m.payload for m in batch.messages]
            batch.acknowledge()
        # a run lands its batch, then the broker restarts before it acknowledges
        with drain(settings, idle_seconds=IDLE, max_messages=3) as batch:
            landed += [m.payload for m in batch.messages]
            broker.restart()
            with pytest.raises(BrokerUnavailable, match="will deliver them again|delivers them"):
                batch.acknowledge()
        publish(settings, messages(root, "after", 10))

        with drain(settings, idle_seconds=IDLE) as batch:
            assert batch.session_present  # the session survived the restart
        landed += drain_all(settings)

    expected = {p for _, p in first} | {p for _, p in messages(root, "after", 10)}
    assert set(landed) == expected  # nothing lost
    # exactly the three landed-but-unacknowledged messages came twice (raw de-duplicates them)
    assert len(landed) == len(expected) + 3


def test_the_compose_broker_config_runs_and_keeps_the_session_across_a_restart(tmp_path):
    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    content = compose["configs"]["mosquitto"]["content"]
    assert "/mosquitto/data/" in content and "listener 1883" in content
    lines = [
        line.replace("/mosquitto/data/", f"{tmp_path}/")
        for line in content.splitlines()
        if not line.startswith("listener ")  # the private broker listens on a free port
    ]
    with private_mosquitto(tmp_path, *lines) as broker:
        settings = broker.settings("5")
        root = topic_root(settings)
        open_session(settings)
        # more than Mosquitto's default queue of 1000 while no run is connected
        publish(settings, messages(root, "queued", 1200))
        broker.restart()
        assert len(set(drain_all(settings))) == 1200


def test_without_persistence_a_restart_loses_the_session_and_says_so(tmp_path):
    with private_mosquitto(tmp_path, "persistence false") as broker:
        settings = broker.settings("5")
        root = topic_root(settings)
        open_session(settings)
        publish(settings, messages(root, "kept-in-memory", 3))
        broker.restart()
        with drain(settings, idle_seconds=IDLE) as batch:
            assert batch.messages == []
            assert not batch.session_present  # what the ingestion reports as possible loss


def test_max_queued_messages_bounds_what_the_broker_keeps_for_an_absent_run(tmp_path):
    with private_mosquitto(tmp_path, "max_queued_messages 5") as broker:
        settings = broker.settings("5")
        root = topic_root(settings)
        open_session(settings)
        publish(settings, messages(root, "m", 12))  # no run connected: only 5 are queued
        assert drain_all(settings) == [f"m-{i}".encode() for i in range(5)]
        # while a run is connected its Receive Maximum counts instead: nothing is dropped
        session = drain(settings, idle_seconds=1.0, max_messages=12).open()
        try:
            publish(settings, messages(root, "live", 12))
            assert len(session.collect()) == 12
            session.acknowledge()
        finally:
            session.close()


# -- down versus refused ---------------------------------------------------------------------------
def test_nothing_listening_is_unavailable_and_fast():
    settings = MqttSettings(port=free_port(), connect_timeout_seconds=2)
    with pytest.raises(BrokerUnavailable, match="Connection refused") as err:
        with drain(settings):
            pass
    assert "Nothing was acknowledged" in str(err.value)
    with pytest.raises(BrokerUnavailable, match="Connection refused"):
        check_broker(settings)


def test_checking_the_broker_leaves_the_session_alone():
    settings = system_broker("5")
    open_session(settings)
    publish(settings, messages(topic_root(settings), "kept", 2))
    session = drain(settings, idle_seconds=IDLE).open()  # a run is draining
    try:
        check_broker(settings)  # the tick's probe: its own client id, a clean session
        assert [m.payload for m in session.collect()] == [b"kept-0", b"kept-1"]
        assert session.acknowledge() == 2  # the run was not taken over
    finally:
        session.close()


@contextmanager
def fake_listener(behaviour: str):
    """A TCP listener that accepts and then hangs up ('close'), or never answers ('silent'):
    a load balancer with no broker behind it, or a broker that stopped answering."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if behaviour == "close":
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    ("behaviour", "why"),
    [("close", "closed the connection without answering"), ("silent", "no CONNACK within 1 s")],
)
def test_a_listener_that_is_no_broker_is_unavailable_within_the_timeout(behaviour, why):
    with fake_listener(behaviour) as port:
        settings = MqttSettings(port=port, connect_timeout_seconds=1)
        with pytest.raises(BrokerUnavailable, match=why):
            with drain(settings):
                pass


def test_a_broker_that_goes_away_during_a_drain_is_unavailable(tmp_path):
    with private_mosquitto(tmp_path) as broker:
        settings = broker.settings("5")
        session = drain(settings, idle_seconds=5, max_seconds=10).open()
        try:
            broker.stop()
            with pytest.raises(BrokerUnavailable, match="while draining"):
                session.collect()
        finally:
            session.close()


def assert_never_shows(password: str, err: pytest.ExceptionInfo) -> None:
    text = "".join(traceback.format_exception(err.value))
    assert password not in text and password not in repr(err.value)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_wrong_credentials_fail_loudly_without_the_password(tmp_path, protocol):
    users = password_file(tmp_path, {"alice": PASSWORD})
    with private_mosquitto(tmp_path, "allow_anonymous false", f"password_file {users}") as broker:
        good = broker.settings(protocol, username="alice", password=PASSWORD)
        root = topic_root(good)
        open_session(good)
        assert publish(good, messages(root, "auth", 2)) == 2
        with drain(good, idle_seconds=IDLE) as batch:
            assert len(batch.messages) == 2

        for wrong in (
            broker.settings(protocol, username="alice", password=WRONG),
            broker.settings(protocol),  # anonymous
        ):
            with pytest.raises(BrokerAccessDenied) as err:
                with drain(wrong):
                    pass
            with pytest.raises(BrokerAccessDenied):
                check_broker(wrong)
            message = str(err.value)
            assert f"127.0.0.1:{broker.port}" in message
            assert ("user 'alice'" if wrong.username else "anonymous") in message
            assert "Retrying will not help" in message
            assert_never_shows(WRONG, err)
            assert_never_shows(PASSWORD, err)
        with pytest.raises(BrokerAccessDenied) as err:
            publish(broker.settings(protocol, username="alice", password=WRONG), [])
        assert_never_shows(WRONG, err)


# -- TLS -------------------------------------------------------------------------------------------
def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def certificate_authority(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
    )  # fmt: skip
    return key, cert


@pytest.fixture
def tls_files(tmp_path) -> dict[str, Path]:
    """A CA, a server certificate it signed for 127.0.0.1, and an unrelated CA."""
    ca_key, ca_cert = certificate_authority(tmp_path, "test-ca")
    _, other_ca = certificate_authority(tmp_path, "other-ca")
    key, csr, cert = tmp_path / "server.key", tmp_path / "server.csr", tmp_path / "server.crt"
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    extensions = tmp_path / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extensions),
    )  # fmt: skip
    return {"ca": ca_cert, "other_ca": other_ca, "cert": cert, "key": key}


def test_tls_with_the_right_ca_works_and_every_tls_mistake_is_refused(tmp_path, tls_files):
    with private_mosquitto(
        tmp_path,
        f"cafile {tls_files['ca']}",
        f"certfile {tls_files['cert']}",
        f"keyfile {tls_files['key']}",
    ) as broker:
        settings = broker.settings("5", tls_ca_file=str(tls_files["ca"]))
        root = topic_root(settings)
        open_session(settings)
        publish(settings, messages(root, "tls", 3))
        with drain(settings, idle_seconds=IDLE) as batch:
            assert [m.payload for m in batch.messages] == [b"tls-0", b"tls-1", b"tls-2"]
            batch.acknowledge()

        untrusted = broker.settings("5", tls_ca_file=str(tls_files["other_ca"]))
        with pytest.raises(BrokerAccessDenied, match="certificate verify failed"):
            with drain(untrusted):
                pass
        without_tls = broker.settings("5")
        with pytest.raises(BrokerAccessDenied, match="it expects TLS"):
            with drain(without_tls):
                pass


def test_tls_to_a_listener_without_tls_is_refused():
    settings = system_broker("5", tls_ca_file="/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(BrokerAccessDenied, match="the listener speaks MQTT without TLS"):
        with drain(settings):
            pass
    missing = system_broker("5", tls_ca_file="/nonexistent/ca.pem")
    with pytest.raises(BrokerAccessDenied, match="loading the TLS CA file"):
        with drain(missing):
            pass
