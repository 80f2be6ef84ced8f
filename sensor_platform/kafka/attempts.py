"""One try at landing one Kafka offset range: its run key and batch id, and when to try again.

Run keys: the first attempt is `topic/partition/start-end`, with `@e<epoch>` appended once the
broker lost the partition's data and its offsets started over; attempt n >= 2 appends
`#attempt-<n>`. Batch ids name the range and epoch only, so every attempt rewrites the same files.
"""

from dataclasses import dataclass
from datetime import timedelta

from sensor_platform.kafka.offsets import OffsetRange, cursor_key
from sensor_platform.lake.layout import check_batch_id

ATTEMPT_MARK = "#attempt-"  # run key of a retry: `<first attempt's run key>#attempt-<n>`, n >= 2
EPOCH_MARK = "@e"

# (topic, partition, start, end, epoch) of a range a successful run landed
Landed = tuple[str, int, int, int, int]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed range is asked for again: after 1, 2, 4 ... `first_delay`, at most
    `max_delay` apart, `max_attempts` attempts in all (the first included); then it is stuck."""

    max_attempts: int = 8
    first_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.first_delay < timedelta(0) or self.max_delay < self.first_delay:
            raise ValueError("need 0 <= first_delay <= max_delay")

    def delay(self, failures: int) -> timedelta:
        """The wait after the `failures`-th failure (1-based)."""
        delay = self.first_delay
        for _ in range(failures - 1):  # doubling stepwise: a huge power would overflow timedelta
            delay = min(delay * 2, self.max_delay)
        return min(delay, self.max_delay)


@dataclass(frozen=True)
class Attempt:
    """One try at landing one range: the work of one run."""

    range: OffsetRange
    epoch: int = 0  # how many times the partition's offsets started over (broker lost its data)
    number: int = 1

    @property
    def key(self) -> str:
        return cursor_key(self.range.topic, self.range.partition)

    @property
    def run_key(self) -> str:
        """`topic/partition/start-end`, `@e<epoch>` after a broker reset (a reused run key would
        make Dagster drop the run silently), `#attempt-<n>` from the second attempt on."""
        key = (
            self.range.run_key
            if self.epoch == 0
            else f"{self.range.run_key}{EPOCH_MARK}{self.epoch}"
        )
        return key if self.number == 1 else f"{key}{ATTEMPT_MARK}{self.number}"

    @property
    def batch_id(self) -> str:
        """Names the range and epoch, never the attempt: every attempt rewrites the same files."""
        batch = self.range.batch_id
        return batch if self.epoch == 0 else check_batch_id(f"{batch}-e{self.epoch}")

    @property
    def identity(self) -> Landed:
        """What a landed run reports: the range and epoch, whatever the attempt."""
        r = self.range
        return (r.topic, r.partition, r.start, r.end, self.epoch)


def parse_run_key(run_key: str) -> Attempt:
    """The attempt a run key names (the inverse of Attempt.run_key); ValueError if none."""
    rest, number = run_key, 1
    if ATTEMPT_MARK in rest:
        rest, _, text = rest.rpartition(ATTEMPT_MARK)
        number = _positive(text, run_key)
    epoch = 0
    if EPOCH_MARK in rest.rsplit("/", 1)[-1]:
        rest, _, text = rest.rpartition(EPOCH_MARK)
        epoch = _positive(text, run_key)
    try:
        topic, partition, span = rest.rsplit("/", 2)
        start, end = span.split("-")
        return Attempt(OffsetRange(topic, int(partition), int(start), int(end)), epoch, number)
    except ValueError:
        raise ValueError(f"not a Kafka ingest run key: {run_key!r}") from None


def _positive(text: str, run_key: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"not a Kafka ingest run key: {run_key!r}")
    return int(text)


DEFAULT_RETRY_POLICY = RetryPolicy()
