"""The ingest seam: what every source of readings (the simulator, Kafka, MQTT) provides, in plain
Python; `defs/ingest.py` turns any `Source` into a Dagster sensor and a landing job.

A source
- plans units of work on each sensor tick (`plan`), from its state (kept as JSON in the sensor's
  cursor) and what became of the runs it asked for; a unit names exactly one piece of work with a
  run key (one run per key: Dagster drops a repeated key) and a batch id (the landing files'
  name, the same for every attempt, so re-landing a unit rewrites the same files);
- reads one unit, in a run, into normalizer messages with their receive time and source (`read`,
  a context manager);
- acknowledges the unit once it is durably landed (`Batch.acknowledge`), and never before;
- may judge its own health on each tick (`Plan.verdicts`: checks on the source's asset) and raise
  platform notices for what needs a person (`Plan.notices`: one run each, keyed by the notice).

Exactly once in raw holds for every source: raw partitions de-duplicate by reading_id, so a unit
landed twice (a retry, a broker that redelivers) changes nothing. What a source adds on top:
replayable sources (the simulator, Kafka) read the same bytes again for the same unit; MQTT is at
least once from the broker (unacknowledged messages come back to the next run).
"""

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sensor_platform.broker_access import BrokerAccessDenied, BrokerUnavailable
from sensor_platform.notify.messages import PlatformNotice
from sensor_platform.readings.normalize import Message

__all__ = [
    "Batch",
    "BrokerAccessDenied",
    "BrokerUnavailable",
    "FinishedRun",
    "Plan",
    "Replayed",
    "RunLog",
    "Source",
    "Unit",
    "UnitUnreadable",
    "Verdict",
]


class UnitUnreadable(Exception):
    """The unit cannot be read and reading it again will not help (e.g. the broker no longer
    holds the offsets): the run fails, and the source's own policy decides what follows."""


@dataclass(frozen=True)
class Unit:
    """One piece of work: one run."""

    run_key: str  # names exactly the work (`topic/partition/start-end`, a time window, ...)
    batch_id: str  # names the landing files: the same for every attempt of the unit
    config: dict[str, Any]  # what the run needs to read it: JSON values, never payloads
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishedRun:
    """A landing run of the source that ended, as the sensor's tick sees it."""

    config: dict[str, Any]
    tags: dict[str, str]
    succeeded: bool


class RunLog(Protocol):
    """What the Dagster instance knows about the source's runs (the sensor provides it)."""

    def finished(self, batch_ids: Sequence[str], since: datetime | None) -> list[FinishedRun]:
        """Landing runs that ended: those tagged with one of `batch_ids`, and every one updated
        after `since` (None: none by time)."""
        ...

    def in_flight(self) -> list[dict[str, Any]]:
        """The unit configs of the source's landing runs that are queued or running."""
        ...

    def operator_requests(self, since: datetime | None) -> list[dict[str, Any]]:
        """Configs of the source's operator runs (e.g. a skipped Kafka range) since `since`."""
        ...


@dataclass(frozen=True)
class Verdict:
    """The result of a check on the source's asset, as one tick evaluated it."""

    check: str  # the check's name
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON values


@dataclass(frozen=True)
class Plan:
    """What one sensor tick decided."""

    units: list[Unit]
    state: str | None  # the new cursor (None: unchanged)
    skip_reason: str | None = None  # why nothing was asked for, when nothing was
    notes: list[tuple[str, str]] = field(default_factory=list)  # (info|warning|error, text)
    observation: dict[str, Any] | None = None  # figures for the source's asset (lag, ...)
    verdicts: list[Verdict] = field(default_factory=list)  # checks on the source's asset
    # to announce, each once (a notice asked for again, e.g. on every tick, is not sent again)
    notices: list[PlatformNotice] = field(default_factory=list)


class Batch(Protocol):
    """One unit, read: its messages, and the acknowledgement to send once they are landed."""

    batch_id: str

    @property
    def messages(self) -> Iterable[Message]: ...

    def acknowledge(self) -> None: ...

    def summary(self) -> dict[str, Any]: ...

    def warnings(self) -> list[str]:
        """What a person should know about this read (logged as warnings in the run)."""
        ...


class Source(Protocol):
    name: str  # simulator | kafka | mqtt: the runs' `sensor_platform/feed` tag

    def plan(self, state: str | None, now: datetime, runs: RunLog) -> Plan:
        """Plan the units of this tick. Raises BrokerAccessDenied when the broker refuses us
        (the tick fails, loudly); returns a skip with the state unchanged when it is down."""
        ...

    def read(self, config: dict[str, Any]) -> AbstractContextManager[Batch]:
        """Read the unit `config` names. Raises BrokerUnavailable (worth retrying),
        BrokerAccessDenied or UnitUnreadable (not worth it)."""
        ...


@dataclass(frozen=True)
class Replayed:
    """A batch of a replayable source: nothing to acknowledge (the unit can be read again)."""

    batch_id: str
    messages: Iterable[Message]

    def acknowledge(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {}

    def warnings(self) -> list[str]:
        return []
