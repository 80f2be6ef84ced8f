"""A broker that refuses us (SASL, TLS, security protocol, ACLs) fails loudly; only one that is down
is 'unavailable'. Against real listeners: Tansu with and without authentication, a TLS listener with
an untrusted certificate, a closed port, and small listeners speaking the Kafka wire protocol that
refuse SASL logins or deny a topic by ACL, as Apache Kafka does."""

import datetime as dt
import socket
import ssl
import struct
import threading
import time

import pytest

from sensor_platform.kafka.access import BrokerAccessDenied
from sensor_platform.kafka.broker import LocalBroker, start_local_broker
from sensor_platform.kafka.client import (
    BrokerUnavailable,
    list_partitions,
    partition_states,
    produce,
    read_range,
)
from sensor_platform.kafka.offsets import OffsetRange
from sensor_platform.kafka.settings import KafkaSettings
from sensor_platform_tests.conftest import free_port

PASSWORD = "hunter2-secret"
TIMEOUT_MS = 1_000
# Generous: kafka-python retries until its bootstrap deadline (TIMEOUT_MS), then one probe.
HANG_BOUND_S = 10


def sasl(mechanism: str = "PLAIN", protocol: str = "SASL_PLAINTEXT") -> dict[str, str]:
    return {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "lake",
        "sasl_plain_password": PASSWORD,
    }


def settings(bootstrap: str, security: dict[str, str]) -> KafkaSettings:
    return KafkaSettings(
        bootstrap, topics=("sensors",), security=security, request_timeout_ms=TIMEOUT_MS
    )


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


class KafkaListener:
    """A Kafka listener on a free port, speaking the wire protocol (request header v1, answers in
    the non-flexible layouts of the versions it advertises); `answer` gives each response body,
    or None to close the connection as a broker does on a request it refuses to serve."""

    API_KEYS: list[tuple[int, int, int]] = []  # (api key, min version, max version)

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.bootstrap = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def answer(self, api_key: int, version: int, body: bytes) -> bytes | None:
        raise NotImplementedError

    def api_versions(self, version: int) -> bytes:
        """ApiVersions in the v0 layout, UNSUPPORTED_VERSION first for a version it does not
        know, as brokers do."""
        if version > 0:
            return struct.pack(">hi", 35, 1) + struct.pack(">hhh", 18, 0, 0)
        keys = b"".join(struct.pack(">hhh", *k) for k in self.API_KEYS)
        return struct.pack(">hi", 0, len(self.API_KEYS)) + keys

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    (size,) = struct.unpack(">i", self._read(conn, 4))
                    frame = self._read(conn, size)
                    api_key, version, correlation = struct.unpack(">hhi", frame[:8])
                    (client_len,) = struct.unpack(">h", frame[8:10])
                    body = self.answer(api_key, version, frame[10 + max(client_len, 0) :])
                    if body is None:
                        return
                    out = struct.pack(">i", correlation) + body
                    conn.sendall(struct.pack(">i", len(out)) + out)
            except (EOFError, OSError):
                return

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data


class SaslListener(KafkaListener):
    """Requires SASL, as Apache Kafka's SASL_PLAINTEXT listener does: SaslHandshake with the
    mechanisms it enables, SaslAuthenticate checked against one user, and the connection closed
    on any other request before authentication."""

    API_KEYS = [(0, 3, 9), (1, 4, 12), (2, 1, 7), (3, 1, 12), (8, 2, 8), (9, 1, 8), (10, 0, 4),
                (17, 0, 1), (18, 0, 0), (19, 0, 7), (36, 0, 1)]  # fmt: skip

    def __init__(self, mechanisms: list[str], *, echo_credentials: bool = False):
        self.mechanisms = mechanisms
        self.echo_credentials = echo_credentials  # a careless broker quoting what it got
        self.authentications = 0
        super().__init__()

    def answer(self, api_key: int, version: int, body: bytes) -> bytes | None:
        if api_key == 18:
            return self.api_versions(version)
        if api_key == 17:  # SaslHandshake
            (size,) = struct.unpack(">h", body[:2])
            requested = body[2 : 2 + size].decode()
            error = 0 if requested in self.mechanisms else 33  # UNSUPPORTED_SASL_MECHANISM
            offered = b"".join(_string(m) for m in self.mechanisms)
            return struct.pack(">hi", error, len(self.mechanisms)) + offered
        if api_key == 36:  # SaslAuthenticate (PLAIN): authzid \0 user \0 password
            self.authentications += 1
            (size,) = struct.unpack(">i", body[:4])
            _, user, password = body[4 : 4 + size].decode().split("\0")
            message = "Authentication failed: Invalid username or password"
            if self.echo_credentials:
                message += f" (got {user}/{password})"
            answer = struct.pack(">h", 58) + _string(message) + struct.pack(">i", 0)
            return answer + (struct.pack(">q", 0) if version >= 1 else b"")
        return None  # what a SASL listener does with a request before authentication


class AclListener(KafkaListener):
    """A plaintext listener whose ACLs deny this client topic `sensors`, as Kafka answers: with
    no DESCRIBE, Metadata names the topic with TOPIC_AUTHORIZATION_FAILED; with DESCRIBE but the
    offsets denied, ListOffsets does."""

    API_KEYS = [(2, 1, 1), (3, 1, 1), (18, 0, 0)]

    def __init__(self, *, describe: bool):
        self.describe = describe
        super().__init__()

    def answer(self, api_key: int, version: int, body: bytes) -> bytes | None:
        if api_key == 18:
            return self.api_versions(version)
        if api_key == 3:  # Metadata v1: this broker (node 0, no rack), controller 0, one topic
            broker = struct.pack(">i", 0) + _string("127.0.0.1") + struct.pack(">ih", self.port, -1)
            if self.describe:  # partition 0 led by node 0, replicas [0], isr [0]
                partition = struct.pack(">hiiiiii", 0, 0, 0, 1, 0, 1, 0)
                topic = struct.pack(">h", 0) + _string("sensors") + b"\x00"
                topic += struct.pack(">i", 1) + partition
            else:
                topic = struct.pack(">h", 29) + _string("sensors") + b"\x00" + struct.pack(">i", 0)
            return struct.pack(">i", 1) + broker + struct.pack(">ii", 0, 1) + topic
        if api_key == 2:  # ListOffsets v1: partition 0 of sensors, TOPIC_AUTHORIZATION_FAILED
            partition = struct.pack(">ihqq", 0, 29, -1, -1)
            return struct.pack(">i", 1) + _string("sensors") + struct.pack(">i", 1) + partition
        return None


@pytest.fixture
def plain_sasl_listener():
    listener = SaslListener(["PLAIN"])
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def authenticating_broker():
    """Tansu started with --authentication: it requires SASL and knows no user."""
    with start_local_broker(authentication=True) as broker:
        yield broker


def assert_refused(exc_info: pytest.ExceptionInfo, bootstrap: str, *expected: str) -> str:
    message = str(exc_info.value)
    assert bootstrap in message
    for text in expected:
        assert text in message
    assert PASSWORD not in message
    return message


def test_wrong_password_fails_loudly_with_the_mechanism_and_no_secret(plain_sasl_listener):
    refused = settings(plain_sasl_listener.bootstrap, sasl("PLAIN"))
    started = time.monotonic()
    with pytest.raises(BrokerAccessDenied) as exc_info:
        list_partitions(refused)
    assert time.monotonic() - started < HANG_BOUND_S
    assert_refused(
        exc_info,
        plain_sasl_listener.bootstrap,
        "SASL_PLAINTEXT",
        "PLAIN",
        "'lake'",
        "Invalid username or password",
        "listing topics",
    )
    assert not isinstance(exc_info.value, BrokerUnavailable)


def test_every_client_function_reports_the_refusal(plain_sasl_listener):
    refused = settings(plain_sasl_listener.bootstrap, sasl("PLAIN"))
    with pytest.raises(BrokerAccessDenied, match="reading partition offsets"):
        partition_states(refused, [("sensors", 0)])
    with pytest.raises(BrokerAccessDenied, match="reading sensors/0/0-5"):
        read_range(refused, OffsetRange("sensors", 0, 0, 5), timeout_s=5)
    with pytest.raises(BrokerAccessDenied, match="producing to sensors"):
        produce(refused, "sensors", [(None, b"{}")])


def test_a_secret_quoted_by_the_broker_is_masked():
    listener = SaslListener(["PLAIN"], echo_credentials=True)
    try:
        with pytest.raises(BrokerAccessDenied) as exc_info:
            list_partitions(settings(listener.bootstrap, sasl("PLAIN")))
    finally:
        listener.close()
    message = assert_refused(exc_info, listener.bootstrap, "got lake/***")
    assert listener.authentications >= 1, "the listener never saw the client's credentials"
    assert PASSWORD not in repr(exc_info.value)
    assert "***" in message


def test_a_mechanism_the_broker_does_not_enable_is_refused():
    listener = SaslListener(["SCRAM-SHA-512"])
    try:
        with pytest.raises(BrokerAccessDenied) as exc_info:
            list_partitions(settings(listener.bootstrap, sasl("PLAIN")))
    finally:
        listener.close()
    assert_refused(exc_info, listener.bootstrap, "PLAIN", "SCRAM-SHA-512")


def test_unknown_user_on_a_tansu_broker_that_requires_sasl(authenticating_broker: LocalBroker):
    refused = settings(authenticating_broker.bootstrap, sasl("SCRAM-SHA-256"))
    started = time.monotonic()
    with pytest.raises(BrokerAccessDenied) as exc_info:
        list_partitions(refused)
    assert time.monotonic() - started < HANG_BOUND_S
    assert_refused(exc_info, authenticating_broker.bootstrap, "SCRAM-SHA-256", "SASL")


def test_plaintext_client_on_a_broker_that_requires_sasl(authenticating_broker: LocalBroker):
    with pytest.raises(BrokerAccessDenied) as exc_info:
        list_partitions(settings(authenticating_broker.bootstrap, {}))
    assert_refused(exc_info, authenticating_broker.bootstrap, "PLAINTEXT", "security_protocol")


def test_tls_client_on_a_plaintext_listener_fails_loudly_and_does_not_hang(kafka_broker):
    # kafka-python alone waits forever for this handshake.
    started = time.monotonic()
    with pytest.raises(BrokerAccessDenied) as exc_info:
        list_partitions(settings(kafka_broker.bootstrap, {"security_protocol": "SSL"}))
    assert time.monotonic() - started < HANG_BOUND_S
    assert_refused(exc_info, kafka_broker.bootstrap, "(SSL)", "TLS handshake")


def test_untrusted_certificate_fails_loudly(tmp_path):
    cert, key = _self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    bootstrap = f"127.0.0.1:{server.getsockname()[1]}"

    def accept() -> None:  # a TLS listener: completes handshakes that the client accepts
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                context.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        with pytest.raises(BrokerAccessDenied) as exc_info:
            list_partitions(settings(bootstrap, sasl("PLAIN", protocol="SASL_SSL")))
    finally:
        server.close()
    assert_refused(exc_info, bootstrap, "SASL_SSL", "certificate verify failed")


def test_a_topic_the_acls_hide_fails_loudly():
    listener = AclListener(describe=False)
    try:
        denied = settings(listener.bootstrap, {})
        with pytest.raises(BrokerAccessDenied) as exc_info:
            list_partitions(denied)
        assert_refused(exc_info, listener.bootstrap, "TopicAuthorizationFailedError", "sensors")
        with pytest.raises(BrokerAccessDenied, match="reading partition offsets"):
            partition_states(denied, [("sensors", 0)])
    finally:
        listener.close()


def test_offsets_the_acls_deny_fail_loudly():
    listener = AclListener(describe=True)
    try:
        denied = settings(listener.bootstrap, {})
        assert list_partitions(denied) == [("sensors", 0)]
        with pytest.raises(BrokerAccessDenied) as exc_info:
            partition_states(denied, [("sensors", 0)])
    finally:
        listener.close()
    assert_refused(exc_info, listener.bootstrap, "TopicAuthorizationFailedError", "(PLAINTEXT)")


def test_closed_port_with_security_configured_is_unavailable_not_refused():
    for security in ({}, sasl("PLAIN"), {"security_protocol": "SSL"}):
        dead = settings(f"127.0.0.1:{free_port()}", security)
        with pytest.raises(BrokerUnavailable) as exc_info:
            list_partitions(dead)
        assert PASSWORD not in str(exc_info.value)


def _self_signed_certificate(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)
