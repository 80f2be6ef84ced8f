"""Drain the broker's persistent session: collect what it holds, land it, and only then acknowledge.

Guarantee: at least once from the broker, exactly once in raw. Every run connects with the same
client id to the same session (QoS 1, no clean start, a session expiry), so the broker keeps
messages while no run is connected. A drain collects what the broker delivers, bounded by
`max_messages`, `max_seconds` and an `idle_seconds` gap, and sends the PUBACKs (paho's manual
acknowledgement) only when `acknowledge()` is called after landing; `acknowledge()` returns once
the broker has processed them. Leaving the block without it disconnects without acknowledging,
and the broker delivers the same messages to the next run (flagged `dup`); raw de-duplicates
them by reading_id. What the broker itself may drop (its queue limits, an expired session, a
crash between its autosaves) and what QoS 0 loses is in the README's MQTT section.

    with drain(settings, max_messages=50_000, max_seconds=30) as batch:
        land(batch.batch_id, batch.normalizer_messages())
        batch.acknowledge()
"""

import threading
import time
import uuid
from datetime import UTC, datetime
from hashlib import blake2b
from typing import NamedTuple

import paho.mqtt.client as mqtt

from sensor_platform.mqtt.access import unavailable
from sensor_platform.mqtt.connection import Connection
from sensor_platform.mqtt.settings import MqttSettings
from sensor_platform.mqtt.topics import TopicTemplate
from sensor_platform.readings.normalize import Message

SOURCE_PREFIX = "mqtt:"


class ReceivedMessage(NamedTuple):
    topic: str
    payload: bytes  # exactly as received
    received_at: datetime  # UTC, when this process received it
    qos: int  # as delivered: min(publisher's QoS, 1)
    retain: bool  # a retained message sent because the subscription is new
    dup: bool  # the broker's DUP flag: sent before, e.g. to a run that did not acknowledge it
    # (Mosquitto also flags MQTT 3.1.1 messages that were only queued meanwhile)
    mid: int  # packet id, what acknowledge() sends back


class Drain:
    """One run's drain of the session; use `drain(...)` as a context manager."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        max_messages: int = 50_000,
        max_seconds: float = 30.0,
        idle_seconds: float = 1.0,
    ):
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if max_seconds <= 0 or idle_seconds <= 0:
            raise ValueError("max_seconds and idle_seconds must be > 0")
        self.settings = settings
        self.max_messages = max_messages
        self.max_seconds = max_seconds
        self.idle_seconds = idle_seconds
        self.messages: list[ReceivedMessage] = []
        self.stopped_by: str | None = None  # "max_messages", "max_seconds" or "idle"
        self.acknowledged = False
        self._collecting = True
        self._last_arrival = 0.0
        self._arrived = threading.Condition()
        self._started_at = datetime.now(UTC)
        self._connection = Connection(
            settings,
            persistent=True,
            manual_ack=True,
            receive_maximum=max_messages,
            on_message=self._on_message,
        )

    # -- steps ---------------------------------------------------------------------------------
    def open(self) -> "Drain":
        """Connect to the session and subscribe its filters (QoS 1); the broker starts sending
        what it kept as soon as the CONNACK is out."""
        self._connection.open()
        try:
            self._connection.subscribe(self.settings.topics)
        except Exception:
            self.close()
            raise
        return self

    def collect(self) -> list[ReceivedMessage]:
        """Wait for messages until max_messages, max_seconds or an idle gap; later arrivals are
        left unacknowledged (the broker sends them again). Raises BrokerUnavailable when the
        connection is lost meanwhile: nothing is acknowledged, so nothing is lost."""
        start = time.monotonic()
        deadline = start + self.max_seconds
        with self._arrived:
            self._last_arrival = max(self._last_arrival, start)
            while True:
                if len(self.messages) >= self.max_messages:
                    self.stopped_by = "max_messages"
                    break
                if self._connection.lost:
                    self._collecting = False
                    raise self._connection.ended_error("draining")
                now = time.monotonic()
                if now >= deadline:
                    self.stopped_by = "max_seconds"
                    break
                idle_until = self._last_arrival + self.idle_seconds
                if now >= idle_until:
                    self.stopped_by = "idle"
                    break
                self._arrived.wait(min(deadline, idle_until) - now)
            self._collecting = False
        return self.messages

    def acknowledge(self) -> int:
        """Send the PUBACKs of every collected QoS 1 message and return once the broker has
        processed them; then disconnect. Call it only after the messages are durable.

        The PUBACKs free the broker's send quota, so while more is queued the broker sends the
        next messages before it confirms: they are left unacknowledged for the next run (the
        wait lasts as long as they keep coming). Raises BrokerUnavailable when the connection
        was lost first: the broker then delivers the messages again, and raw de-duplicates them."""
        if self.acknowledged:
            return len(self.messages)
        with self._arrived:
            self._collecting = False  # acknowledge exactly what the caller has seen
        connection = self._connection
        if connection.lost:
            raise self._unacknowledged(connection.lost)
        for message in self.messages:
            if message.qos:
                connection.ack(message.mid, message.qos)
        try:
            connection.barrier("acknowledging")
        except Exception as exc:
            raise self._unacknowledged(str(exc)) from None
        self.acknowledged = True
        connection.close()
        return len(self.messages)

    def close(self) -> None:
        """Disconnect; whatever was not acknowledged stays with the session."""
        self._collecting = False
        self._connection.close()

    # -- results -------------------------------------------------------------------------------
    @property
    def session_present(self) -> bool:
        """False when the broker had no session for this client id: on the first run that is
        expected; later it means messages published since the last run were not kept (the
        session expired, or the broker restarted without its persistence)."""
        return self._connection.session_present

    @property
    def batch_id(self) -> str:
        """Names this drain's landing files: its first receive time and a digest of the client id
        and packet ids (never message content)."""
        first = self.messages[0].received_at if self.messages else self._started_at
        digest = blake2b(self.settings.client_id.encode(), digest_size=6)
        for message in self.messages:
            digest.update(message.mid.to_bytes(2, "big"))
        return f"mqtt-{first:%Y%m%dT%H%M%S%f}Z-{digest.hexdigest()}"

    def normalizer_messages(self) -> list[Message]:
        """The collected messages as normalizer input (source `mqtt:<topic>`, the ids of the
        settings' topic template)."""
        return normalizer_messages(self.messages, self.settings.template)

    def summary(self) -> dict[str, object]:
        """Figures for a run's metadata or a tick's log."""
        return {
            "messages": len(self.messages),
            "flagged_dup": sum(m.dup for m in self.messages),
            "retained": sum(m.retain for m in self.messages),
            "qos0": sum(not m.qos for m in self.messages),
            "session_present": self.session_present,
            "stopped_by": self.stopped_by,
            "acknowledged": self.acknowledged,
        }

    # -- plumbing ------------------------------------------------------------------------------
    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        with self._arrived:
            if not self._collecting or len(self.messages) >= self.max_messages:
                return  # not acknowledged: the broker keeps it for the next run
            try:
                topic = message.topic
            except UnicodeDecodeError:  # brokers reject such topics; never crash the loop
                topic = message._topic.decode("utf-8", "backslashreplace")
            self.messages.append(
                ReceivedMessage(
                    topic,
                    message.payload,
                    datetime.now(UTC),
                    message.qos,
                    bool(message.retain),
                    bool(message.dup),
                    message.mid,
                )
            )
            self._last_arrival = time.monotonic()
            self._arrived.notify()

    def _unacknowledged(self, why: str) -> Exception:
        return unavailable(
            self.settings,
            "acknowledging",
            f"{why}; {len(self.messages)} landed messages were not acknowledged: the broker "
            "delivers them again and raw de-duplicates them",
        )

    def __enter__(self) -> "Drain":
        self.open()
        try:
            self.collect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def drain(
    settings: MqttSettings,
    *,
    max_messages: int = 50_000,
    max_seconds: float = 30.0,
    idle_seconds: float = 1.0,
) -> Drain:
    """A drain of the session, to use as `with drain(...) as batch:` (connects, subscribes and
    collects on entry; disconnects on exit, without acknowledging unless `batch.acknowledge()`
    was called)."""
    return Drain(
        settings, max_messages=max_messages, max_seconds=max_seconds, idle_seconds=idle_seconds
    )


def check_broker(settings: MqttSettings) -> None:
    """Connect and subscribe with a throwaway clean session, then disconnect; raise
    BrokerUnavailable (down) or BrokerAccessDenied (refused). For a sensor tick that reports the
    broker's state without touching the draining session: a second connection with that client
    id would take the session over from a run draining it."""
    probe = Connection(
        settings, persistent=False, client_id=f"{settings.client_id}-probe-{uuid.uuid4().hex[:8]}"
    )
    probe.open()
    try:
        probe.subscribe(settings.topics)
    finally:
        probe.close()


def normalizer_messages(
    received: list[ReceivedMessage], template: TopicTemplate | None
) -> list[Message]:
    """Normalizer input: source `mqtt:<topic>`, the receive time, and the ids the topic carries
    by `template` (used only where a payload has none)."""
    carried: dict[str, dict[str, str] | None] = {}
    messages = []
    for m in received:
        if template is None:
            fields = None
        elif m.topic in carried:
            fields = carried[m.topic]
        else:
            fields = carried[m.topic] = template.fields(m.topic)
        messages.append(Message(m.payload, SOURCE_PREFIX + m.topic, m.received_at, fields))
    return messages
