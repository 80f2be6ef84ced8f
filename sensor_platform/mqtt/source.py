"""MQTT as a source (ingest.Source): a unit is one drain of the persistent session.

MQTT cannot tell how much the broker holds without receiving it, so each tick asks for one drain
run (a run key naming the tick), unless one is still queued or running: a second connection with
the session's client id would take the session over. The tick probes the broker with a
throwaway client id first, so a broker that is down is reported (and nothing asked for) and one
that refuses us fails the tick loudly. The run drains, lands, and only then acknowledges (see
mqtt/drain.py): at least once from the broker, exactly once in raw.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sensor_platform.broker_access import BrokerUnavailable
from sensor_platform.ingest import Plan, RunLog, Unit
from sensor_platform.mqtt.settings import MqttSettings

SOURCE = "mqtt"


@dataclass(frozen=True)
class MqttSource:
    settings: MqttSettings
    max_messages: int = 50_000
    max_seconds: float = 30.0
    idle_seconds: float = 1.0
    name: str = SOURCE

    def plan(self, state: str | None, now: datetime, runs: RunLog) -> Plan:
        from sensor_platform.mqtt.drain import check_broker

        if runs.in_flight():
            return Plan([], None, skip_reason="a drain of the session is queued or running")
        try:
            check_broker(self.settings)  # BrokerAccessDenied propagates: the tick fails
        except BrokerUnavailable as exc:
            message = f"MQTT broker unavailable, nothing asked for: {exc}"
            return Plan([], None, skip_reason=message, notes=[("error", message)])
        tick = f"{now:%Y%m%dT%H%M%S}"
        return Plan(
            [Unit(run_key=f"mqtt/{self.settings.client_id}/{tick}", batch_id=f"mqtt-{tick}",
                  config={"requested_at": now.isoformat()})],
            state=None,
        )  # fmt: skip

    @contextmanager
    def read(self, config: dict[str, Any]):
        """Drain the session; the landing files are named by the drain (its first receive time
        and the packet ids), so a drain landed twice rewrites its own files."""
        from sensor_platform.mqtt.drain import drain

        with drain(
            self.settings,
            max_messages=self.max_messages,
            max_seconds=self.max_seconds,
            idle_seconds=self.idle_seconds,
        ) as batch:
            yield MqttBatch(batch)


class MqttBatch:
    """A drain as an ingest batch."""

    def __init__(self, drained):
        self._drained = drained
        self.batch_id = drained.batch_id

    @property
    def messages(self):
        return self._drained.normalizer_messages()

    def acknowledge(self) -> None:
        """After landing: a connection lost meanwhile is no failure (the data is landed; the
        broker sends the messages again and raw de-duplicates them)."""
        if not self._drained.messages:
            return
        try:
            self._drained.acknowledge()
        except BrokerUnavailable:
            pass  # reported in the summary: acknowledged False

    def summary(self) -> dict[str, Any]:
        return {f"mqtt_{k}": v for k, v in self._drained.summary().items()}

    def warnings(self) -> list[str]:
        if self._drained.session_present:
            return []
        return [
            f"the broker had no session for client id {self._drained.settings.client_id!r}: "
            "messages published since the last drain were not kept for us (expected on the "
            "first drain; later, the session expired or the broker lost its persistence)"
        ]
