"""Platform notices: a stuck Kafka range as the check on kafka_topics judges it and as the notice
the alert channels get, and that notice's delivery through the real webhook machinery and
ledger: once per channel, never again after a re-run, the same key after an unknown outcome,
and no trace of it in the anomaly alerts' planning."""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sensor_platform.defs.notices import NOTICE_RETRIES
from sensor_platform.kafka.attempts import RetryPolicy
from sensor_platform.kafka.cursor import IngestCursor
from sensor_platform.kafka.offsets import OffsetRange
from sensor_platform.kafka.stuck import stuck_notice, stuck_ranges, stuck_verdict
from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import RetryPolicy as DeliveryPolicy
from sensor_platform.notify.ledger import AlertLedger
from sensor_platform.notify.messages import PlatformNotice, platform_message
from sensor_platform.notify.planning import pending_notices
from sensor_platform.notify.platform import send_platform_notice
from sensor_platform.notify.receiver import Reply, WebhookReceiver
from sensor_platform.notify.states import notice_states
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.test_notify import episodes

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TWO = RetryPolicy(max_attempts=2, first_delay=timedelta(seconds=5), max_delay=timedelta(seconds=5))
FAST = DeliveryPolicy(attempts=3, timeout_s=0.3, backoff_s=0.01, max_backoff_s=0.05)
PATHS = {
    "discord": "api/webhooks/1/discord-token-0123456789",
    "slack": "services/T1/B1/slack-token-0123456789",
    "webhook": "generic",
}


def stuck_cursor() -> IngestCursor:
    """Partition 0 of `t`: 0-10 landed nowhere after two attempts, 10-20 pending behind it."""
    cursor = IngestCursor(offsets={"t/0": 20})
    first = cursor.request(OffsetRange("t", 0, 0, 10))
    cursor.request(OffsetRange("t", 0, 10, 20))
    cursor.mark_failed(first, T0, TWO)
    [retry] = cursor.due_retries(T0 + timedelta(seconds=5))
    cursor.mark_requested(retry)
    cursor.mark_failed(retry, T0 + timedelta(seconds=9), TWO)
    return cursor


def test_the_check_fails_naming_each_stuck_range_and_passes_once_none_is():
    cursor = stuck_cursor()
    [stuck] = stuck_ranges(cursor)
    verdict = stuck_verdict([stuck])
    assert not verdict.passed
    assert "t/0/0-10" in verdict.description and "kafka_skip_range_job" in verdict.description
    assert verdict.metadata["stuck_ranges"] == 1
    assert verdict.metadata["stuck"] == [
        {
            "range": "t/0/0-10",
            "run_key": "t/0/0-10#attempt-2",
            "attempts": 2,
            "since": (T0 + timedelta(seconds=9)).isoformat(),
            "offsets": 10,
            "batch_id": stuck.last.batch_id,
        }
    ]
    cursor.skip(OffsetRange("t", 0, 0, 10), T0 + timedelta(minutes=1), "poison, see OPS-1")
    cleared = stuck_verdict(stuck_ranges(cursor))
    assert cleared.passed and cleared.metadata == {"stuck_ranges": 0}


def test_the_notice_of_a_stuck_range_is_keyed_by_the_range_whatever_its_last_attempt():
    [stuck] = stuck_ranges(stuck_cursor())
    notice = stuck_notice(stuck)
    assert notice.key == "platform/kafka-stuck/t/0/0-10"
    assert notice.since == T0 + timedelta(seconds=9)
    assert "failed 2 times" in notice.text and "waits at 0" in notice.text
    assert dict(notice.facts)["Offsets"] == "0-10 (10)"
    assert PlatformNotice.from_config(notice.config()) == notice  # through run config and back
    episode = notice.notice.episode
    assert (episode["episode_id"], episode["severity"], episode["rule"]) == (
        notice.key,
        "platform",
        "kafka-stuck",
    )


def test_each_service_gets_one_message_that_can_ping_nobody():
    notice = PlatformNotice(
        "kafka-stuck", "t/0/0-10", "Kafka range stuck: <!channel>", "@everyone look", T0
    )
    discord = platform_message("discord", notice).payload
    assert discord["allowed_mentions"] == {"parse": []}
    assert discord["embeds"][0]["footer"]["text"] == notice.key
    slack = platform_message("slack", notice).payload
    assert "<!channel>" not in str(slack["blocks"]) and "&lt;!channel&gt;" in str(slack["blocks"])
    generic = platform_message("webhook", notice).payload
    assert generic["severity"] == "platform" and generic["platform_notice"]["key"] == notice.key
    keys = {platform_message(k, notice).idempotency_key for k in PATHS}
    assert len(keys) == 1  # one notification: the same key on every channel and every attempt


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


def channels_at(receiver: WebhookReceiver) -> list[Channel]:
    # A channel's routing is for anomalies: a platform notice reaches critical-only channels too.
    return [Channel(kind, kind, receiver.url(path), "critical") for kind, path in PATHS.items()]


def send(notice, warehouse_url, channels):
    ledger = AlertLedger(Warehouse(warehouse_url))  # nothing kept in memory between runs
    return send_platform_notice(notice, ledger, channels, policy=FAST, sleep=time.sleep)


def test_a_notice_reaches_every_channel_once_however_often_it_is_sent(receiver, tmp_path):
    url = f"duckdb:///{tmp_path}/warehouse.duckdb"
    receiver.script(PATHS["slack"], Reply(503), Reply(503), Reply(503))  # down for a run
    notice = stuck_notice(stuck_ranges(stuck_cursor())[0])
    channels = channels_at(receiver)
    first = send(notice, url, channels)
    assert (first.sent, first.undelivered.keys()) == (["discord", "webhook"], {"slack"})
    assert not first.delivered and "HTTP 503" in first.undelivered["slack"]
    again = send(notice, url, channels)
    assert (again.sent, again.already, again.delivered) == (["slack"], ["discord", "webhook"], True)
    assert send(notice, url, channels).sent == []
    for path in PATHS.values():
        assert len(receiver.received(path)) == 1, path
    [generic] = receiver.received(PATHS["webhook"])
    assert generic.payload["platform_notice"]["subject"] == "t/0/0-10"
    # the URL is a secret: nothing recorded quotes it
    history = AlertLedger(Warehouse(url)).history()
    assert "token" not in str(history.to_pylist())
    assert {(s.channel, s.state) for s in notice_states(history).values()} == {
        ("discord", "sent"),
        ("slack", "sent"),
        ("webhook", "sent"),
    }


def test_an_unknown_outcome_is_sent_again_under_the_same_key_and_counted(receiver, tmp_path):
    url = f"duckdb:///{tmp_path}/warehouse.duckdb"
    receiver.script(PATHS["webhook"], *[Reply(204, delay_s=1.0)] * 3)  # taken, answered too late
    notice = stuck_notice(stuck_ranges(stuck_cursor())[0])
    [channel] = [c for c in channels_at(receiver) if c.kind == "webhook"]
    first = send(notice, url, [channel])
    assert first.undelivered["webhook"].startswith("unknown: timed out")
    assert send(notice, url, [channel]).sent == ["webhook"]
    assert send(notice, url, [channel]).sent == []
    requests = receiver.requests(PATHS["webhook"])
    assert len(requests) == 4 and len({r.headers["Idempotency-Key"] for r in requests}) == 1
    [state] = notice_states(AlertLedger(Warehouse(url)).history()).values()
    assert state.state == "sent" and state.possible_duplicate  # recorded, as for alerts


def test_anomaly_alerts_neither_plan_nor_expire_platform_notices(receiver, tmp_path):
    url = f"duckdb:///{tmp_path}/warehouse.duckdb"
    receiver.script(PATHS["webhook"], Reply(500), Reply(500), Reply(500))
    notice = stuck_notice(stuck_ranges(stuck_cursor())[0])
    [channel] = [c for c in channels_at(receiver) if c.kind == "webhook"]
    assert not send(notice, url, [channel]).delivered  # pending in the ledger
    history = AlertLedger(Warehouse(url)).history()
    now = T0 + timedelta(days=30)  # long past any alert max age
    pending = pending_notices(episodes(0), history, [channel], now=now, max_age=timedelta(hours=1))
    assert pending["webhook"].total == 0 and pending["webhook"].waiting == 0


def test_a_channel_that_is_down_is_tried_again_for_an_hour():
    waits = [NOTICE_RETRIES.calculate_delay(n) for n in range(1, NOTICE_RETRIES.max_retries + 1)]
    assert waits == [30, 90, 210, 450, 930, 1890] and sum(waits) == 3600
    assert NOTICE_RETRIES.backoff == dg.Backoff.EXPONENTIAL
