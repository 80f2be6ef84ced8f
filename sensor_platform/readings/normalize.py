"""Turn incoming JSON messages into canonical reading rows and quarantine rows.

Everything is judged against each message's `received_at`, never the wall clock, so normalizing
the same messages again yields identical tables: exactly-once ingestion relies on that. Bad input
never raises; it becomes a quarantine row with the raw bytes and a reason code (see REASONS).
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import blake2b
from itertools import accumulate
from typing import NamedTuple

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sensor_platform.readings.payloads import PayloadError, field_names, read_object
from sensor_platform.readings.schema import QUARANTINE_SCHEMA, READING_SCHEMA, UTC_MICROS
from sensor_platform.readings.timestamps import datetime_micros, parse_timestamp

__all__ = [
    "REASONS",
    "Message",
    "NormalizeLimits",
    "Normalized",
    "normalize_messages",
    "parse_timestamp",
    "reading_id",
]

REASONS: dict[str, str] = {
    "oversized": "The message is larger than max_message_bytes.",
    "not_utf8": "The message bytes are not valid UTF-8.",
    "not_json": "The message is not valid JSON (NaN and Infinity literals are accepted).",
    "not_object": "The JSON is neither an object nor an array of objects.",
    "missing_device_id": "No usable device id in device_id, equipment_id, sensor_id or deviceId.",
    "id_too_long": "A device id, site id or metric name is longer than max_id_length characters.",
    "missing_timestamp": "No timestamp in event_time, measured_at, timestamp, ts or time.",
    "bad_timestamp": "The timestamp is neither ISO-8601 nor an epoch number in s, ms, us or ns.",
    "future_timestamp": "The event time is later than received_at + future_tolerance.",
    "too_old": "The event time is earlier than received_at - past_horizon.",
    "bad_status_code": "status_code / error_code is not a 32-bit integer or numeric string.",
    "bad_value": "A known metric or a single value is non-numeric, NaN or infinite (good fields "
    "of the same message are still kept).",
    "no_values": "The object (or array) holds no metric value at all.",
}


class Message(NamedTuple):  # a tuple: built once per Kafka record, 2x cheaper than a dataclass
    payload: bytes
    source: str  # "kafka:topic/partition/offset", "mqtt:<topic>" or "simulator:<feed>"
    received_at: datetime  # tz-aware UTC; becomes ingest_time
    # Ids the transport carried beside the payload (an MQTT topic's levels): "device_id" and
    # "site_id", used only for an object whose payload has none of its own.
    transport_fields: Mapping[str, str] | None = None


@dataclass(frozen=True)
class NormalizeLimits:
    max_message_bytes: int = 1_048_576
    max_id_length: int = 256
    future_tolerance: timedelta = timedelta(minutes=5)
    past_horizon: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Normalized:
    readings: pa.Table  # READING_SCHEMA
    quarantine: pa.Table  # QUARANTINE_SCHEMA
    messages: int  # messages seen


def reading_id(device_id: str, metric: str, event_time_us: int) -> str:
    """Deterministic id of one reading: the de-duplication key across re-deliveries."""
    key = f"{device_id}\x1f{metric}\x1f{event_time_us}".encode()
    return blake2b(key, digest_size=16).hexdigest()


def _reading_ids(device_id: str, metrics: list[str], event_time_us: int) -> list[str]:
    """reading_id of each metric of one device and time (the key built once per object: this
    runs once per reading on the ingestion hot path)."""
    prefix, suffix = f"{device_id}\x1f", f"\x1f{event_time_us}"
    return [blake2b((prefix + m + suffix).encode(), digest_size=16).hexdigest() for m in metrics]


def normalize_messages(
    messages: Iterable[Message], *, batch_id: str, limits: NormalizeLimits = NormalizeLimits()
) -> Normalized:
    """Canonical readings and quarantine rows of `messages`, in message order then field order."""
    batch = _BatchColumns(batch_id, limits)
    count = 0
    for message in messages:
        count += 1
        batch.add_message(message)
    return Normalized(batch.readings_table(), batch.quarantine_table(), count)


class _BatchColumns:
    """Output columns as plain lists, turned into Arrow tables once at the end of the batch.

    Columns shared by all readings of one object (device, site, times, status, source) are kept
    once per object and repeated into rows by Arrow, which is cheaper than per-row Python work.
    """

    def __init__(self, batch_id: str, limits: NormalizeLimits):
        self.batch_id = batch_id
        self.limits = limits
        self.serialize = orjson.dumps  # of the message being read: orjson or the stdlib fallback
        self.future_us = limits.future_tolerance // timedelta(microseconds=1)
        self.past_us = limits.past_horizon // timedelta(microseconds=1)
        self.last_received_at: datetime | None = None
        self.last_received_us = 0
        # one entry per object that produced readings
        self.rows: list[int] = []
        self.event_us: list[int] = []
        self.device_id: list[str] = []
        self.site_id: list[str | None] = []
        self.status_code: list[int | None] = []
        self.ingest_us: list[int] = []
        self.source: list[str] = []
        # one entry per reading
        self.metric: list[str] = []
        self.value: list[float] = []
        self.unit: list[str | None] = []
        self.reading_id: list[str] = []
        # one entry per quarantined message, element or partly bad object
        self.q_received_us: list[int] = []
        self.q_source: list[str] = []
        self.q_reason: list[str] = []
        self.q_detail: list[str | None] = []
        self.q_raw: list[bytes] = []

    def add_message(self, message: Message) -> None:
        payload = message.payload
        if type(payload) is not bytes:
            payload = _payload_bytes(payload)
        received_at = message.received_at
        if received_at is not self.last_received_at:  # neighbours often share one datetime
            self.last_received_at, self.last_received_us = received_at, datetime_micros(received_at)
        received_us = self.last_received_us
        if len(payload) > self.limits.max_message_bytes:
            detail = f"{len(payload)} bytes (limit {self.limits.max_message_bytes})"
            self.quarantine(message, received_us, payload, "oversized", detail)
            return
        try:
            document = orjson.loads(payload)
            self.serialize = orjson.dumps
        except orjson.JSONDecodeError:
            try:
                document = _stdlib_loads(payload)
            except PayloadError as err:
                self.quarantine(message, received_us, payload, err.reason, err.detail)
                return
            self.serialize = _stdlib_dumps
        if type(document) is dict:
            self.add_object(document, message, received_us, payload, "")
        elif type(document) is list:
            if not document:
                self.quarantine(message, received_us, payload, "no_values", "empty array")
            for index, element in enumerate(document):
                # A bad element is quarantined on its own (raw=None: re-serialize the element).
                label = f"element {index}: "
                if type(element) is dict:
                    self.add_object(element, message, received_us, None, label)
                else:
                    detail = f"{label}{_json_type(element)} is not an object"
                    raw = self.serialize(element)
                    self.quarantine(message, received_us, raw, "not_object", detail)
        else:
            detail = f"{_json_type(document)} is not an object or an array of objects"
            self.quarantine(message, received_us, payload, "not_object", detail)

    def add_object(
        self, obj: dict, message: Message, received_us: int, raw: bytes | None, label: str
    ) -> None:
        carried = message.transport_fields
        try:
            found = read_object(
                obj,
                max_id_length=self.limits.max_id_length,
                earliest_us=received_us - self.past_us,
                latest_us=received_us + self.future_us,
                default_device_id=carried.get("device_id") if carried else None,
                default_site_id=carried.get("site_id") if carried else None,
            )
        except PayloadError as err:
            raw = self.serialize(obj) if raw is None else raw
            self.quarantine(message, received_us, raw, err.reason, label + err.detail)
            return
        if found.metrics:
            self.rows.append(len(found.metrics))
            self.event_us.append(found.event_us)
            self.device_id.append(found.device_id)
            self.site_id.append(found.site_id)
            self.status_code.append(found.status_code)
            self.ingest_us.append(received_us)
            self.source.append(message.source)
            self.metric.extend(found.metrics)
            self.value.extend(found.values)
            self.unit.extend(found.units)
            self.reading_id.extend(_reading_ids(found.device_id, found.metrics, found.event_us))
        if found.bad_fields or found.long_fields:
            raw = self.serialize(obj) if raw is None else raw
        if found.bad_fields:
            detail = f"{label}not a finite number: {field_names(found.bad_fields)}"
            self.quarantine(message, received_us, raw, "bad_value", detail)
        if found.long_fields:
            limit = self.limits.max_id_length
            detail = f"{label}metric name over {limit} characters: {field_names(found.long_fields)}"
            self.quarantine(message, received_us, raw, "id_too_long", detail)

    def quarantine(
        self, message: Message, received_us: int, raw: bytes, reason: str, detail: str
    ) -> None:
        self.q_received_us.append(received_us)
        self.q_source.append(message.source)
        self.q_reason.append(reason)
        self.q_detail.append(detail)
        self.q_raw.append(raw)

    def readings_table(self) -> pa.Table:
        run_ends = pa.array(accumulate(self.rows), pa.int64())

        def per_object(values: list, typ: pa.DataType) -> pa.Array:
            return pc.run_end_decode(
                pa.RunEndEncodedArray.from_arrays(run_ends, pa.array(values, typ))
            )

        columns = [
            per_object(self.event_us, UTC_MICROS),
            per_object(self.device_id, pa.string()),
            per_object(self.site_id, pa.string()),
            pa.array(self.metric, pa.string()),
            pa.array(self.value, pa.float64()),
            pa.array(self.unit, pa.string()),
            per_object(self.status_code, pa.int32()),
            per_object(self.ingest_us, UTC_MICROS),
            per_object(self.source, pa.string()),
            pa.array(self.reading_id, pa.string()),
        ]
        return pa.Table.from_arrays(columns, schema=READING_SCHEMA)

    def quarantine_table(self) -> pa.Table:
        columns = [
            pa.array(self.q_received_us, UTC_MICROS),
            pa.array(self.q_source, pa.string()),
            pa.array(self.q_reason, pa.string()),
            pa.array(self.q_detail, pa.string()),
            pa.array(self.q_raw, pa.binary()),
            pa.array([self.batch_id] * len(self.q_reason), pa.string()),
        ]
        return pa.Table.from_arrays(columns, schema=QUARANTINE_SCHEMA)


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    return b"" if payload is None else bytes(payload)  # type: ignore[call-overload]


def _stdlib_loads(payload: bytes) -> object:
    # orjson rejects NaN/Infinity literals and integers beyond 64 bits; the stdlib accepts them.
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError("not_utf8", f"invalid UTF-8 at byte {err.start}") from None
    try:
        document = json.loads(text)
        # Lone surrogate escapes ("\ud800") decode to text that cannot be stored as UTF-8.
        _stdlib_dumps(document)
    except (ValueError, RecursionError) as err:
        raise PayloadError("not_json", str(err)[:200]) from None
    return document


def _stdlib_dumps(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
