"""What a stuck Kafka range tells people: the `no_stuck_ranges` check on `kafka_topics`, and one
platform notice per stuck range to the alert channels (ledger key `platform/kafka-stuck/<range>`).

A range is named here as the first attempt's run key (`topic/partition/start-end`, `@e<epoch>`
after a broker reset): the same for every attempt, so the notice is one per range, whichever
attempt failed last. The skip job takes either name.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sensor_platform.kafka.attempts import Attempt
from sensor_platform.kafka.cursor import IngestCursor
from sensor_platform.notify.messages import PlatformNotice

if TYPE_CHECKING:  # the ingest seam imports the normalizer (pyarrow): not at load time
    from sensor_platform.ingest import Verdict

CHECK = "no_stuck_ranges"
NOTICE_KIND = "kafka-stuck"
SKIP_JOB = "kafka_skip_range_job"


@dataclass(frozen=True)
class StuckRange:
    last: Attempt  # the attempt that failed last
    since: datetime  # when it was declared stuck
    committed_at: int  # the partition's durable offset: where its commits wait

    @property
    def name(self) -> str:
        return Attempt(self.last.range, self.last.epoch).run_key

    def describe(self) -> dict[str, object]:
        return {
            "range": self.name,
            "run_key": self.last.run_key,
            "attempts": self.last.number,
            "since": self.since.isoformat(),
            "offsets": len(self.last.range),
            "batch_id": self.last.batch_id,
        }


def stuck_ranges(cursor: IngestCursor) -> list[StuckRange]:
    return [
        StuckRange(attempt, since, cursor.durable(attempt.key))
        for attempt in cursor.stuck()
        if (since := cursor.stuck_since(attempt)) is not None
    ]


def stuck_verdict(stuck: list[StuckRange]) -> "Verdict":
    """Fails while any range is stuck, naming each; passes again once none is."""
    from sensor_platform.ingest import Verdict

    if not stuck:
        return Verdict(CHECK, True, "no stuck range", {"stuck_ranges": 0})
    names = ", ".join(s.name for s in stuck)
    return Verdict(
        CHECK,
        False,
        f"{len(stuck)} Kafka ranges failed every attempt and wait for a person: {names}. "
        f"Re-execute the failed run once the cause is fixed, or give the range up with {SKIP_JOB}.",
        {"stuck_ranges": len(stuck), "stuck": [s.describe() for s in stuck]},
    )


def stuck_notice(stuck: StuckRange) -> PlatformNotice:
    rng = stuck.last.range
    return PlatformNotice(
        kind=NOTICE_KIND,
        subject=stuck.name,
        title=f"Kafka range stuck: {stuck.name}",
        text=(
            f"Landing offsets {rng.start}-{rng.end} of {rng.topic} partition {rng.partition} "
            f"failed {stuck.last.number} times (last run key {stuck.last.run_key}); it is not "
            "asked for again. Its data is not in the lake, and the partition's committed offset "
            f"waits at {stuck.committed_at}. Fix the cause and re-execute the failed run, or give "
            f"the range up with {SKIP_JOB} (run_key and reason)."
        ),
        since=stuck.since,
        facts=(
            ("Topic", rng.topic),
            ("Partition", str(rng.partition)),
            ("Offsets", f"{rng.start}-{rng.end} ({len(rng)})"),
            ("Attempts", str(stuck.last.number)),
            ("Batch", stuck.last.batch_id),
        ),
    )
