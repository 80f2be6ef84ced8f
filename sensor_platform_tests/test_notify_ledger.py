"""Exactly once, end to end on the ground floor: episodes -> plan -> real HTTP deliveries -> the
ledger in a real DuckDB warehouse, across failures, re-runs and restarts."""

import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from sensor_platform.detection.schema import EPISODE_SCHEMA
from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import RetryPolicy
from sensor_platform.notify.ledger import AlertLedger, pending_count
from sensor_platform.notify.planning import plan_notices, send_alerts
from sensor_platform.notify.receiver import Reply, WebhookReceiver, notices_in
from sensor_platform.warehouse.store import Warehouse
from sensor_platform_tests.conftest import free_port
from sensor_platform_tests.test_notify import START, episodes

FAST = RetryPolicy(attempts=3, timeout_s=0.3, backoff_s=0.01, max_backoff_s=0.05)
NOW = START + timedelta(hours=1)


@pytest.fixture
def warehouse_url(tmp_path):
    return f"duckdb:///{tmp_path}/warehouse.duckdb"


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


def channels_at(receiver, **overrides) -> list[Channel]:
    urls = {
        "discord": receiver.url("api/webhooks/1/discord-token-0123456789"),
        "slack": receiver.url("services/T1/B1/slack-token-0123456789"),
        "webhook": receiver.url("generic"),
    } | overrides
    return [Channel(kind, kind, url) for kind, url in urls.items()]


def run(table, warehouse_url, channels, **kwargs):
    # A new Warehouse and ledger each time: nothing survives in memory between runs.
    ledger = AlertLedger(Warehouse(warehouse_url))
    options = {"now": NOW, "max_age": None, "policy": FAST, "sleep": time.sleep} | kwargs
    return send_alerts(table, ledger, channels, **options)


def delivered(receiver, path) -> list[tuple[str, str]]:
    return [n for r in receiver.received(path) for n in notices_in(r)]


PATHS = {
    "discord": "api/webhooks/1/discord-token-0123456789",
    "slack": "services/T1/B1/slack-token-0123456789",
    "webhook": "generic",
}


@pytest.mark.parametrize(
    "replies",
    [
        [],
        [Reply(500)],
        [Reply(429, body={"retry_after": 0.2, "global": False})],
        [Reply(204, delay_s=1.5)],  # answers long after the client (0.3 s) gave up
        [Reply(429, body={"retry_after": 7200})],  # longer than we wait: the next run sends it
        [Reply(503)] * 3,  # every attempt of the run fails: the next run sends it
    ],
    ids=["200", "500-then-200", "429-retry_after", "slow", "429-long", "down-for-a-run"],
)
def test_every_notice_arrives_exactly_once(receiver, warehouse_url, replies):
    for path in PATHS.values():
        receiver.script(path, *replies)
    table = episodes(12)
    expected = sorted((e, "opened") for e in table["episode_id"].to_pylist())
    reports = [run(table, warehouse_url, channels_at(receiver)) for _ in range(3)]
    assert reports[-1].sent == 0 and reports[-1].pending == 0
    # Let an answer the client gave up on finish: it would show here, had it been counted.
    time.sleep(max((r.delay_s for r in replies), default=0.0))
    for path in PATHS.values():
        assert sorted(delivered(receiver, path)) == expected, path
    assert sum(r.sent for r in reports) == 3 * 12


def test_refused_channel_stays_pending_then_catches_up(warehouse_url, receiver):
    port = free_port()
    down = f"http://127.0.0.1:{port}/hook-token-0123456789"
    channels = channels_at(receiver, webhook=down)
    table = episodes(5)
    first = run(table, warehouse_url, channels)
    assert [r.channel for r in first.failed_channels] == ["webhook"]
    assert first.pending == 5 and first.sent == 10
    history = AlertLedger(Warehouse(warehouse_url)).history()
    assert pending_count(history) == 5
    assert "hook-token" not in str(history.column("detail").to_pylist())
    with WebhookReceiver(port=port) as revived:
        second = run(table, warehouse_url, channels)
        third = run(table, warehouse_url, channels)
        assert (second.sent, second.pending, third.sent) == (5, 0, 0)
        assert len(delivered(revived, "hook-token-0123456789")) == 5
    assert len(delivered(receiver, PATHS["discord"])) == 5  # nothing sent twice elsewhere
    assert pending_count(AlertLedger(Warehouse(warehouse_url)).history()) == 0


def _state(table: pa.Table, hour: int, **changes) -> pa.Table:
    rows = [
        row | {"partition_hour": START + timedelta(hours=hour)} | changes
        for row in table.to_pylist()
    ]
    return pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA)


def test_escalation_closing_routing_and_age(receiver, warehouse_url):
    everything = Channel("webhook", "webhook", receiver.url("all"))
    critical_only = Channel("discord", "discord", receiver.url("critical"), "critical")
    other_site = Channel("slack", "slack", receiver.url("fac2"), sites=frozenset({"FAC002"}))
    channels = [everything, critical_only, other_site]
    warning = episodes(1, severity="warning")
    [episode] = warning["episode_id"].to_pylist()

    run(_state(warning, 0), warehouse_url, channels)
    assert delivered(receiver, "all") == [(episode, "opened")]
    assert delivered(receiver, "critical") == [] and delivered(receiver, "fac2") == []

    history = pa.concat_tables([_state(warning, 0), _state(warning, 1, severity="critical")])
    run(history, warehouse_url, channels)
    assert delivered(receiver, "all")[1:] == [(episode, "escalated")]
    assert delivered(receiver, "critical") == [(episode, "opened")]

    ended = _state(warning, 2, severity="critical", status="closed", closed_at=NOW)
    run(pa.concat_tables([history, ended]), warehouse_url, channels)
    run(pa.concat_tables([history, ended]), warehouse_url, channels)
    assert delivered(receiver, "all")[2:] == [(episode, "closed")]
    assert delivered(receiver, "critical")[1:] == [(episode, "closed")]
    assert delivered(receiver, "fac2") == []

    # Short-lived and already over when first seen: one notice settles both events.
    brief = episodes(
        1, device="EQ-brief{i}", status="closed", closed_at=START + timedelta(minutes=5)
    )
    run(brief, warehouse_url, channels)
    assert delivered(receiver, "all")[3:] == [(brief["episode_id"][0].as_py(), "opened+closed")]

    # Old news is not announced at all.
    old = episodes(1, device="EQ-old{i}")
    report = run(old, warehouse_url, channels, now=NOW + timedelta(days=3), max_age=timedelta(1))
    assert report.sent == 0 and len(receiver.received("all")) == 4


def test_a_storm_becomes_a_few_messages(receiver, warehouse_url):
    report = run(episodes(50), warehouse_url, channels_at(receiver))
    assert report.sent == 150
    assert len(receiver.received(PATHS["discord"])) == 5  # 10 embeds each
    assert len(receiver.received(PATHS["slack"])) == 3
    assert len(receiver.received(PATHS["webhook"])) == 1
    assert len(set(delivered(receiver, PATHS["discord"]))) == 50


def test_plan_is_empty_once_everything_was_sent(receiver, warehouse_url):
    table = episodes(3)
    channels = channels_at(receiver)
    run(table, warehouse_url, channels)
    sent = AlertLedger(Warehouse(warehouse_url)).delivered()
    assert sent.num_rows == 9 and set(sent["outcome"].to_pylist()) == {"sent"}
    assert sent["recorded_at"][0].as_py() <= datetime.now(UTC)
    plan = plan_notices(table, sent, channels, now=NOW, max_age=None)
    assert all(notices == [] for notices in plan.values())
