"""Tell an MQTT broker that refuses us from one that is down: two exceptions, never a password.

Down (try again later, nothing read or acknowledged): nothing listening, a timeout, a connection
lost, or a broker that says it is unavailable or busy. Refused (a person must act): a CONNACK or
SUBACK that refuses the credentials, the client id, the protocol version or the topic filter,
and any TLS failure. A listener that hangs up without answering is asked, with plain sockets and
a deadline, what it speaks: a TLS listener reached without TLS, or a plain MQTT listener reached
with TLS, is a refusal; anything else (a load balancer with no broker behind it) is "down".
"""

import socket
import ssl
import struct
import uuid

# The same two exceptions as the Kafka source: one seam catches both sources' failures.
from sensor_platform.broker_access import BrokerAccessDenied, BrokerUnavailable, describe_error
from sensor_platform.mqtt.settings import MqttSettings

# CONNACK / DISCONNECT reasons (paho's ReasonCode names) that say "not now" rather than "not you".
TRANSIENT_REASONS = frozenset(
    {
        "Server unavailable",
        "Server busy",
        "Quota exceeded",
        "Connection rate exceeded",
        "Use another server",
        "Server shutting down",
        "Keep alive timeout",
        "Session taken over",
    }
)


def unavailable(settings: MqttSettings, doing: str, reason: str) -> BrokerUnavailable:
    return BrokerUnavailable(
        settings.redact(
            f"MQTT broker at {settings.address} is unavailable while {doing} ({settings.who()}): "
            f"{reason}. Nothing was acknowledged: the session keeps its messages for the next run."
        )
    )


def access_denied(settings: MqttSettings, doing: str, reason: str) -> BrokerAccessDenied:
    return BrokerAccessDenied(
        settings.redact(
            f"MQTT broker at {settings.address} refused access while {doing} ({settings.who()}): "
            f"{reason}. Retrying will not help: check the username and password, the broker's "
            "ACLs, the client id, the protocol version and the TLS settings. Nothing was "
            "acknowledged."
        )
    )


def connect_error(settings: MqttSettings, exc: BaseException) -> Exception:
    """The exception to raise for an error of the TCP connect or the TLS handshake."""
    # ssl errors are OSErrors too: test them first.
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return access_denied(settings, "connecting", f"TLS failed: {describe_error(exc)}")
    if settings.tls_ca_file and speaks_plain_mqtt(settings):
        # The TCP connection worked but the handshake was cut off: a listener without TLS.
        return access_denied(
            settings,
            "connecting",
            f"TLS failed ({describe_error(exc)}): the listener speaks MQTT without TLS",
        )
    return unavailable(settings, "connecting", describe_error(exc))


def hang_up_error(settings: MqttSettings) -> Exception:
    """The exception for a listener that closed the connection without answering CONNECT."""
    what = "the listener closed the connection without answering CONNECT"
    if not settings.tls_ca_file and speaks_tls(settings):
        return access_denied(settings, "connecting", f"{what}: it expects TLS (set the CA file)")
    return unavailable(settings, "connecting", what)


def speaks_tls(settings: MqttSettings) -> bool:
    """Whether the listener answers a TLS handshake (any certificate accepted: this only asks)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(
            (settings.host, settings.port), timeout=settings.connect_timeout_seconds
        ) as sock:
            with context.wrap_socket(sock, server_hostname=settings.host):
                return True
    except (OSError, ValueError):
        return False


def speaks_plain_mqtt(settings: MqttSettings) -> bool:
    """Whether the listener answers an MQTT 3.1.1 CONNECT without TLS with a CONNACK (of any
    verdict). The probe has a clean session and a throwaway client id: it leaves nothing behind."""
    client_id = f"sensor-platform-probe-{uuid.uuid4().hex[:8]}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x05"  # protocol 3.1.1, clean session, keepalive 5 s
    payload = struct.pack(">H", len(client_id)) + client_id
    body = variable + payload
    connect = bytes([0x10, len(body)]) + body
    try:
        with socket.create_connection(
            (settings.host, settings.port), timeout=settings.connect_timeout_seconds
        ) as sock:
            sock.sendall(connect)
            answer = sock.recv(4)
            if answer[:2] == b"\x20\x02":
                sock.sendall(b"\xe0\x00")  # DISCONNECT
                return True
            return False
    except OSError:
        return False


def refusal_error(settings: MqttSettings, doing: str, reason_name: str) -> Exception:
    """The exception to raise for a CONNACK or DISCONNECT reason that is a failure."""
    if reason_name in TRANSIENT_REASONS:
        hint = ""
        if reason_name == "Session taken over":
            hint = (
                " (another client connected with the same client id: only one run may drain "
                "a session at a time)"
            )
        return unavailable(settings, doing, f"{reason_name}{hint}")
    return access_denied(settings, doing, reason_name)
