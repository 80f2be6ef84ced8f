"""Waiting for a warehouse writer lock: backoff, and the error raised when the lock never comes."""

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WarehouseLockTimeout(TimeoutError):
    """Another writer held the warehouse (a DuckDB file, or a table on a server) too long."""


def retry_while_locked(
    attempt: Callable[[], T],
    is_locked: Callable[[Exception], bool],
    *,
    timeout_s: float,
    what: str,
) -> T:
    """Call `attempt` until it stops failing with a lock error, backing off exponentially (with
    jitter, so two waiting writers do not retry in step) for at most `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not is_locked(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseLockTimeout(
                    f"{what} stayed locked by another writer for {timeout_s:g}s; "
                    "is another process (or an open DuckDB shell) writing to it?"
                ) from exc
        time.sleep(min(delay * random.uniform(0.5, 1.5), remaining))
        delay = min(delay * 2, 1.0)
