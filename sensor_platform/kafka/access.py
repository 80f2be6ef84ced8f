"""Tell a Kafka broker that refuses us from one that is down, within a bounded time.

Only connection-level failures (nothing listening, timeouts) mean "broker down, try again later".
Wrong credentials, an unsupported SASL mechanism, a failed TLS handshake or missing ACLs need a
person, so they raise `BrokerAccessDenied` instead. kafka-python cannot tell them apart on its own:
it retries a failed SASL authentication until its bootstrap deadline and then reports a timeout,
exactly as for a broker that is down, and it waits forever for a TLS handshake with a listener that
does not speak TLS. So `listener_refusal` asks the bootstrap listener itself, with plain sockets
and a deadline: TCP, then TLS, then ApiVersions and the SASL exchange (kafka-python's own SASL
mechanisms and TLS context, so it judges exactly what the client would send).
"""

import socket
import ssl
import struct
import time

from kafka.errors import (
    AuthorizationError,
    IllegalSaslStateError,
    KafkaConfigurationError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
    for_code,
)

# Shared by every source; `access_denied` names the bootstrap servers, the security protocol and
# the SASL mechanism and user.
from sensor_platform.broker_access import BrokerAccessDenied, describe_error
from sensor_platform.broker_access import BrokerUnavailable as BrokerUnavailable
from sensor_platform.kafka.settings import KafkaSettings

# Errors that mean "may not talk to the cluster": a person must act, retrying never helps.
ACCESS_ERRORS = (
    AuthorizationError,  # topic, group, cluster, transactional id: missing ACLs
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLError,
    ssl.CertificateError,
)

_METADATA, _API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 3, 18, 17, 36
_CLIENT_ID = b"sensor-platform-probe"


def uses_tls(settings: KafkaSettings) -> bool:
    return settings.security.get("security_protocol", "PLAINTEXT") in ("SSL", "SASL_SSL")


def uses_sasl(settings: KafkaSettings) -> bool:
    return settings.security.get("security_protocol", "PLAINTEXT") in ("SASL_PLAINTEXT", "SASL_SSL")


def access_denied(settings: KafkaSettings, doing: str, reason: str) -> BrokerAccessDenied:
    security = settings.security
    how = [security.get("security_protocol", "PLAINTEXT")]
    if uses_sasl(settings):
        how.append(f"SASL mechanism {security.get('sasl_mechanism', 'PLAIN')}")
        if security.get("sasl_plain_username"):
            how.append(f"user {security['sasl_plain_username']!r}")
    message = (
        f"Kafka at {settings.bootstrap_servers} refused access ({', '.join(how)}) while {doing}: "
        f"{reason}. Retrying will not help: check the credentials, SASL mechanism, TLS settings "
        "and the broker's ACLs. Nothing was read or changed."
    )
    return BrokerAccessDenied(settings.redact(message))


def tls_refusal(settings: KafkaSettings) -> str | None:
    """Why the bootstrap listeners refuse a TLS handshake, or None (accepted, or none reachable).

    Run before every TLS client: kafka-python would wait forever on a listener that does not
    answer the handshake."""
    return listener_refusal(settings, tls_only=True) if uses_tls(settings) else None


def listener_refusal(settings: KafkaSettings, *, tls_only: bool = False) -> str | None:
    """Why the first reachable bootstrap listener refuses this client (TLS, SASL, or a security
    protocol it does not expect), or None when it accepts us or no listener is reachable or answers
    (that is "unavailable", not a refusal).

    Bounded by settings.request_timeout_ms per listener; sends at most one SASL authentication."""
    timeout_s = settings.request_timeout_ms / 1000
    for host, port in _servers(settings):
        deadline = time.monotonic() + timeout_s
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError:
            continue  # nothing listening there: down, not refused
        try:
            if uses_tls(settings):
                refusal, sock = _tls_handshake(sock, host, settings)
                if refusal or tls_only:
                    return refusal
            wire = _Wire(sock, deadline)
            try:
                wire.call(_API_VERSIONS, 0, b"")
                if not uses_sasl(settings):
                    # What a plain client asks next; v1 with no topics: brokers only, a small answer.
                    wire.call(_METADATA, 1, struct.pack(">i", 0))
            except _ListenerGone:
                # A listener that expects TLS or SASL drops a client that skips it.
                protocol = settings.security.get("security_protocol", "PLAINTEXT")
                return (
                    f"the listener closed the connection on a Kafka request from a {protocol} "
                    "client: it probably requires another security_protocol (TLS or SASL)"
                )
            if uses_sasl(settings):
                return _sasl_refusal(wire, host, settings)
            return None
        except (TimeoutError, ConnectionError, _ListenerGone, struct.error):
            continue  # stopped answering, or not a Kafka listener: down, not a refusal
        finally:
            sock.close()
    return None


def _servers(settings: KafkaSettings) -> list[tuple[str, int]]:
    servers = []
    for server in settings.client_config()["bootstrap_servers"]:
        host, _, port = server.rpartition(":")
        servers.append((host.strip("[]") or server, int(port) if port.isdigit() else 9092))
    return servers


def _tls_handshake(
    sock: socket.socket, host: str, settings: KafkaSettings
) -> tuple[str | None, socket.socket]:
    from kafka.net.transport import KafkaSSLTransport  # the client's own context builder

    config = {**KafkaSSLTransport.DEFAULT_CONFIG}
    config.update({k: v for k, v in settings.security.items() if k in config})
    try:
        context = KafkaSSLTransport._build_ssl_context(config)
    except (OSError, ValueError) as exc:  # unreadable CA or certificate file, bad key password
        return f"TLS settings unusable: {describe_error(exc)}", sock
    try:
        tls = context.wrap_socket(sock, server_hostname=host)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        return f"TLS handshake failed: {describe_error(exc)}", sock
    except TimeoutError:
        return (
            f"no answer to the TLS handshake within {settings.request_timeout_ms} ms: "
            "is this a plaintext listener",
            sock,
        )
    except ConnectionError:
        return (
            "the listener closed the connection during the TLS handshake (a plaintext one?)",
            sock,
        )
    return None, tls


class _ListenerGone(Exception):
    """The listener closed the connection before a step that never closes it when healthy."""


class _Wire:
    """Kafka request/response framing over a blocking socket (request header v1, non-flexible)."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.deadline = deadline
        self.correlation_id = 0

    def call(self, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation_id += 1
        header = struct.pack(">hhih", api_key, version, self.correlation_id, len(_CLIENT_ID))
        frame = header + _CLIENT_ID + body
        self.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", self._exactly(4))
        response = self._exactly(size)
        if struct.unpack(">i", response[:4])[0] != self.correlation_id:
            raise _ListenerGone("answer to another request")
        return response[4:]

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            self.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise _ListenerGone("connection closed")
            data += chunk
        return data


def _sasl_refusal(wire: _Wire, host: str, settings: KafkaSettings) -> str | None:
    from kafka.net.sasl import get_sasl_mechanism  # kafka-python's mechanisms: same bytes

    name = settings.security.get("sasl_mechanism", "PLAIN")
    try:
        handshake = wire.call(_SASL_HANDSHAKE, 1, _string(name))
    except _ListenerGone:
        return f"the broker closed the connection at the SASL handshake for {name}"
    error, pos = _int16(handshake, 0)
    offered, _ = _strings(handshake, pos)
    if error:
        return (
            f"SASL handshake for {name} rejected: {for_code(error).__name__} (offered: {offered})"
        )
    if name not in offered:
        return f"SASL mechanism {name} not enabled on the broker (it offers {offered or 'none'})"
    try:
        mechanism = get_sasl_mechanism(name)(host=host, **settings.client_config())
    except (KeyError, KafkaConfigurationError) as exc:
        return f"SASL settings unusable: {describe_error(exc)}"
    while not mechanism.is_done():
        try:
            answer = wire.call(_SASL_AUTHENTICATE, 1, _bytes(mechanism.auth_bytes()))
        except _ListenerGone:
            return "the broker closed the connection during SASL authentication"
        error, pos = _int16(answer, 0)
        text, pos = _nullable_string(answer, pos)
        if error:
            return f"SASL authentication failed: {for_code(error).__name__}: {text or ''}".rstrip()
        token, _ = _bytes_at(answer, pos)
        try:
            mechanism.receive(token)
        except Exception as exc:  # the broker's answer is not the success the mechanism expects
            return f"SASL authentication failed: the broker rejected the {name} exchange ({exc!r})"
    return None if mechanism.is_authenticated() else "SASL authentication failed"


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _bytes(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def _int16(data: bytes, pos: int) -> tuple[int, int]:
    return struct.unpack_from(">h", data, pos)[0], pos + 2


def _nullable_string(data: bytes, pos: int) -> tuple[str | None, int]:
    (size,) = struct.unpack_from(">h", data, pos)
    pos += 2
    if size < 0:
        return None, pos
    return data[pos : pos + size].decode(errors="replace"), pos + size


def _strings(data: bytes, pos: int) -> tuple[list[str], int]:
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    items = []
    for _ in range(max(count, 0)):
        item, pos = _nullable_string(data, pos)
        items.append(item or "")
    return items, pos


def _bytes_at(data: bytes, pos: int) -> tuple[bytes, int]:
    (size,) = struct.unpack_from(">i", data, pos)
    pos += 4
    return (b"", pos) if size < 0 else (data[pos : pos + size], pos + size)
