"""Parse device timestamps (ISO-8601 strings or epoch numbers) into UTC microseconds.

Accepted forms:

- ISO-8601 strings with `Z` or a `+HH:MM` / `+HHMM` offset; a string without an offset is UTC.
  Digits beyond microseconds are truncated; epoch fractions are rounded half-even.
- Epoch numbers, as JSON numbers or numeric strings. The unit is decided by magnitude:
  |v| < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, < 1e20 nanoseconds.
  1e11 seconds is the year 5138, so any current epoch in seconds is below it, and any current
  epoch in milliseconds (after March 1973) is above it. Larger values are rejected.
"""

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

SECONDS_BELOW, MILLIS_BELOW, MICROS_BELOW, NANOS_BELOW = 10**11, 10**14, 10**17, 10**20
MICROS_PER_UNIT = (  # (exclusive upper bound of |value|, microseconds per unit), s to ns
    (SECONDS_BELOW, Decimal(1_000_000)),
    (MILLIS_BELOW, Decimal(1_000)),
    (MICROS_BELOW, Decimal(1)),
    (NANOS_BELOW, Decimal("0.001")),
)

MAX_TIMESTAMP_CHARS = 64

# ASCII digits only: int() and float() also accept "1_000" and non-Latin digits.
NUMERIC_STRING = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def datetime_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of `value`; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // ONE_MICROSECOND


def micros_datetime(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def timestamp_micros(value: object) -> int:
    """Microseconds since the Unix epoch (UTC) of a device timestamp; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be a string or a number, not bool")
    if isinstance(value, int):
        return _int_epoch_micros(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"epoch timestamp is not finite: {value}")
        if value.is_integer() and abs(value) < SECONDS_BELOW:
            # Whole seconds (the common case) are exact as integers; Decimal is 5x slower.
            return int(value) * 1_000_000
        return _decimal_epoch_micros(Decimal(value))
    if isinstance(value, str):
        if len(value) > MAX_TIMESTAMP_CHARS:  # also keeps hostile strings out of the cache
            raise ValueError(f"timestamp string longer than {MAX_TIMESTAMP_CHARS} characters")
        return _string_micros(value)
    raise ValueError(f"timestamp must be a string or a number, not {type(value).__name__}")


def parse_timestamp(value: object) -> datetime:
    """A device timestamp as a tz-aware UTC datetime (microsecond precision); raises ValueError."""
    micros = timestamp_micros(value)
    try:
        return micros_datetime(micros)
    except OverflowError:
        raise ValueError(f"timestamp out of range: {value!r}") from None


# Devices of a fleet report the same second many times over, so parsed strings are cached.
@lru_cache(maxsize=1 << 16)
def _string_micros(value: str) -> int:
    text = value.strip()
    if text.isdigit() and text.isascii():
        return _int_epoch_micros(int(text))
    if NUMERIC_STRING.fullmatch(text):
        return _decimal_epoch_micros(Decimal(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp or epoch number: {_preview(text)}") from None
    return datetime_micros(parsed)


def _int_epoch_micros(value: int) -> int:
    # Integer arithmetic is exact and several times cheaper than Decimal on the hot path.
    magnitude = abs(value)
    if magnitude < SECONDS_BELOW:
        return value * 1_000_000
    if magnitude < MILLIS_BELOW:
        return value * 1_000
    if magnitude < MICROS_BELOW:
        return value
    return _decimal_epoch_micros(Decimal(value))


def _decimal_epoch_micros(value: Decimal) -> int:
    magnitude = abs(value)
    for bound, micros_per_unit in MICROS_PER_UNIT:
        if magnitude < bound:
            return int((value * micros_per_unit).to_integral_value(ROUND_HALF_EVEN))
    raise ValueError(f"epoch timestamp too large for any unit (s, ms, us, ns): {value}")


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
