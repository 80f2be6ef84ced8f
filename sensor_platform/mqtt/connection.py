"""One paho-mqtt client connected to the broker, with every wait bounded and every failure named.

paho runs its network loop on a thread of its own (`loop_start`), so keepalive pings go on while
a run lands what it drained; automatic reconnection is off, because a new connection would make
the broker re-send what is in flight under the same packet ids. Failures raise
`BrokerUnavailable` or `BrokerAccessDenied` (access.py).
"""

import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sensor_platform.mqtt.access import (
    access_denied,
    connect_error,
    describe_error,
    hang_up_error,
    refusal_error,
    unavailable,
)
from sensor_platform.mqtt.settings import MqttSettings

PROTOCOL_VERSIONS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}
MAX_RECEIVE_MAXIMUM = 65535
# A filter nobody subscribes to: UNSUBSCRIBE from it is a round trip with no side effect, and the
# broker answers only after it has processed every packet sent before (our PUBACKs).
BARRIER_PREFIX = "sensor-platform/barrier/"

OnMessage = Callable[[mqtt.MQTTMessage], None]


class Connection:
    """A connected client. `persistent` keeps the broker's session for `settings.client_id`
    (MQTT 3.1.1 clean_session=False; MQTT 5 clean_start=False with a session expiry)."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        persistent: bool,
        client_id: str | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        on_message: OnMessage | None = None,
    ):
        self.settings = settings
        self.persistent = persistent
        self.client_id = client_id or settings.client_id
        self.timeout = settings.connect_timeout_seconds
        self.v5 = settings.protocol == "5"
        self.session_present = False
        self._receive_maximum = receive_maximum
        self._connack = threading.Event()
        self._connack_reason: str | None = None
        self._ended = threading.Event()
        self._end_reason: str | None = None  # why it ended, when not at our request
        self._end_from_broker = False  # the broker sent DISCONNECT (MQTT 5) with that reason
        self._closing = False
        self._replies: dict[int, list] = {}  # SUBACK / UNSUBACK reason codes by packet id
        self._replied = threading.Condition()
        self._last_traffic = 0.0  # monotonic time of the last message received
        self._deliver = on_message
        self._client = self._make_client(manual_ack)
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> "Connection":
        """Connect and wait for the CONNACK (each step bounded by connect_timeout_seconds)."""
        doing = "connecting"
        try:
            if self.v5:
                self._client.connect(
                    self.settings.host,
                    self.settings.port,
                    self.settings.keepalive_seconds,
                    clean_start=not self.persistent,
                    properties=self._connect_properties(),
                )
            else:
                self._client.connect(
                    self.settings.host, self.settings.port, self.settings.keepalive_seconds
                )
        except (OSError, ssl.CertificateError) as exc:
            raise connect_error(self.settings, exc) from None
        self._client.loop_start()
        self._started = True
        try:
            if not self._connack.wait(self.timeout):
                if self._ended.is_set():
                    raise hang_up_error(self.settings)
                raise unavailable(self.settings, doing, f"no CONNACK within {self.timeout:g} s")
            if self._connack_reason is not None:
                raise refusal_error(self.settings, doing, self._connack_reason)
        except Exception:
            self.close()
            raise
        return self

    def close(self) -> bool:
        """Disconnect (bounded). True when the DISCONNECT went out after everything queued
        before it; False when the connection had already ended."""
        if not self._started:
            return False
        clean = False
        if not self._ended.is_set():
            self._closing = True
            if self._client.disconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS:
                clean = self._ended.wait(self.timeout) and self._end_reason is None
            if not self._ended.is_set():
                # The loop thread ends once the socket is shut; loop_stop() alone would wait for
                # packets a stalled broker never reads.
                sock = self._client.socket()
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        self._client.loop_stop()
        self._started = False
        return clean

    @property
    def lost(self) -> str | None:
        """Why the connection ended without us asking, or None while it is up."""
        if not self._ended.is_set() or self._closing:
            return None
        return self._end_reason or "connection closed"

    # -- requests ------------------------------------------------------------------------------
    def subscribe(self, topic_filters: Sequence[str]) -> None:
        """Subscribe at QoS 1; raise unless the broker grants QoS 1 (or more) to every filter.

        MQTT 5 asks for retained messages only when the subscription is new, so a run does not
        receive them again each time it re-subscribes its existing session (MQTT 3.1.1 does)."""
        doing = "subscribing"
        if self.v5:
            options = SubscribeOptions(
                qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            request: list = [(f, options) for f in topic_filters]
        else:
            request = [(f, 1) for f in topic_filters]
        result, mid = self._client.subscribe(request)
        codes = self._await_reply(result, mid, doing)
        for topic_filter, code in zip(topic_filters, codes, strict=True):
            if code.is_failure:
                raise access_denied(self.settings, doing, f"{topic_filter!r}: {code.getName()}")
            if code.value < 1:
                raise access_denied(
                    self.settings,
                    doing,
                    f"{topic_filter!r} was granted QoS 0 only: the broker would not keep its "
                    "messages while no run is connected (check the broker's max_qos)",
                )

    def barrier(self, doing: str) -> None:
        """Return once the broker has processed every packet sent so far (e.g. our PUBACKs)."""
        result, mid = self._client.unsubscribe(BARRIER_PREFIX + uuid.uuid4().hex)
        self._await_reply(result, mid, doing)

    def ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    @property
    def client(self) -> mqtt.Client:
        return self._client

    # -- paho ----------------------------------------------------------------------------------
    def _make_client(self, manual_ack: bool) -> mqtt.Client:
        settings = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=PROTOCOL_VERSIONS[settings.protocol],
            # MQTT 3.1.1 only: MQTT 5 says it with clean_start and the session expiry.
            clean_session=None if self.v5 else not self.persistent,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        client.connect_timeout = self.timeout
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls_ca_file:
            try:
                client.tls_set(ca_certs=settings.tls_ca_file)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise access_denied(
                    settings, "loading the TLS CA file", describe_error(exc)
                ) from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_reply
        client.on_unsubscribe = self._on_reply
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = (
            self.settings.session_expiry_seconds if self.persistent else 0
        )
        if self._receive_maximum:
            # How many unacknowledged messages the broker may send us at once (Mosquitto's
            # max_inflight_messages otherwise, 20 by default): a drain holds all of its
            # messages unacknowledged until they are landed.
            properties.ReceiveMaximum = min(self._receive_maximum, MAX_RECEIVE_MAXIMUM)
        return properties

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        self._last_traffic = time.monotonic()
        if self._deliver is not None:
            self._deliver(message)

    def _on_connect(self, _client, _userdata, flags, reason_code, _properties) -> None:
        self.session_present = bool(flags.session_present)
        self._connack_reason = reason_code.getName() if reason_code.is_failure else None
        self._connack.set()

    def _on_disconnect(self, _client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._end_from_broker = bool(flags.is_disconnect_packet_from_server)
            name = reason_code.getName()
            # paho names every lost socket "Unspecified error"
            self._end_reason = (
                name
                if self._end_from_broker or name != "Unspecified error"
                else ("connection lost")
            )
        self._ended.set()
        with self._replied:
            self._replied.notify_all()

    def _on_reply(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        with self._replied:
            self._replies[mid] = list(reason_codes)
            self._replied.notify_all()

    def _await_reply(self, result: MQTTErrorCode, mid: int | None, doing: str) -> list:
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            if self._ended.is_set():
                raise self.ended_error(doing)
            raise unavailable(self.settings, doing, mqtt.error_string(result))
        # The reply may queue behind messages the broker sends first (after our PUBACKs free its
        # send quota): wait as long as traffic keeps coming, and timeout seconds beyond.
        waiting_since = time.monotonic()
        with self._replied:
            while True:
                if mid in self._replies:
                    return self._replies.pop(mid)
                if self._ended.is_set():
                    raise self.ended_error(doing)
                quiet = time.monotonic() - max(waiting_since, self._last_traffic)
                if quiet >= self.timeout:
                    raise unavailable(self.settings, doing, f"no answer within {self.timeout:g} s")
                self._replied.wait(self.timeout - quiet)

    def ended_error(self, doing: str) -> Exception:
        """The exception for a connection that ended without us asking."""
        if self._end_from_broker and self._end_reason:
            return refusal_error(self.settings, doing, self._end_reason)
        return unavailable(self.settings, doing, self.lost or "connection closed")
