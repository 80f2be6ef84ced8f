"""At least once, end to end on the ground floor: episodes -> plan -> real HTTP deliveries -> the
ledger in a real warehouse (a DuckDB file; PostgreSQL where the ledger's rows and columns matter),
across failures, slow endpoints, killed workers, re-runs and restarts. Exactly once wherever no
outcome was unknown; where one was, the duplicate is counted."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy.engine import make_url

from sensor_platform.detection.schema import EPISODE_SCHEMA
from sensor_platform.notify.channels import Channel, ChannelSetting, build_channels
from sensor_platform.notify.delivery import RetryPolicy
from sensor_platform.notify.ledger import LEDGER_SCHEMA, LEDGER_TABLE, AlertLedger, pending_count
from sensor_platform.notify.messages import notification_id
from sensor_platform.notify.planning import (
    EPISODE_GONE,
    TOO_OLD,
    Pending,
    pending_notices,
    plan_deliveries,
    send_alerts,
)
from sensor_platform.notify.receiver import Reply, WebhookReceiver, notices_in
from sensor_platform.notify.states import Duplicates, duplicate_counts, notice_states
from sensor_platform.warehouse.store import TableSpec, Warehouse
from sensor_platform_tests.conftest import free_port, postgres_role
from sensor_platform_tests.test_notify import START, episodes

FAST = RetryPolicy(attempts=3, timeout_s=0.3, backoff_s=0.01, max_backoff_s=0.05)
NOW = START + timedelta(hours=1)


@pytest.fixture
def warehouse_url(tmp_path):
    return f"duckdb:///{tmp_path}/warehouse.duckdb"


@pytest.fixture(params=["duckdb", "postgres"])
def ledger_url(request, tmp_path):
    """A warehouse on each engine whose SQL the ledger's rows go through."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path}/warehouse.duckdb"
        return
    postgres_url = request.getfixturevalue("postgres_url")
    with postgres_role(postgres_url, "sensor_notify_test") as role:
        yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)


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
        [Reply(429, body={"retry_after": 7200})],  # longer than we wait: the next run sends it
        [Reply(503)] * 3,  # every attempt of the run fails: the next run sends it
    ],
    ids=["200", "500-then-200", "429-retry_after", "429-long", "down-for-a-run"],
)
def test_without_unknown_outcomes_every_notice_arrives_exactly_once(
    receiver, warehouse_url, replies
):
    for path in PATHS.values():
        receiver.script(path, *replies)
    table = episodes(12)
    expected = sorted((e, "opened") for e in table["episode_id"].to_pylist())
    reports = [run(table, warehouse_url, channels_at(receiver)) for _ in range(3)]
    assert reports[-1].sent == 0 and reports[-1].pending == 0 and reports[-1].passed
    for path in PATHS.values():
        assert sorted(delivered(receiver, path)) == expected, path
    assert sum(r.sent for r in reports) == 3 * 12
    assert sum(r.duplicates for r in reports) == 0
    history = AlertLedger(Warehouse(warehouse_url)).history()
    assert duplicate_counts(history) == {}
    assert {s.state for s in notice_states(history).values()} == {"sent"}


def outcomes_by_attempt(history: pa.Table, channel: str) -> list[list[str]]:
    """Each attempt's outcomes for one notification of `channel`, attempts in order."""
    rows = [r for r in history.to_pylist() if r["channel"] == channel]
    first = min(rows, key=lambda r: r["recorded_at"])["notification_id"]
    attempts: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["recorded_at"]):
        if row["notification_id"] == first:
            attempts.setdefault(row["attempt_id"], []).append(row)
    return [[r["outcome"] for r in attempt] for attempt in attempts.values()]


def test_a_slow_endpoint_duplicates_are_counted_and_the_idempotent_one_has_none(
    receiver, ledger_url
):
    """Every endpoint processes the request and answers after the client's timeout (0.3 s)."""
    for path in PATHS.values():
        receiver.script(path, Reply(204, delay_s=1.5))
    receiver.honour_idempotency_keys(PATHS["webhook"])
    table = episodes(3)
    expected = sorted((e, "opened") for e in table["episode_id"].to_pylist())
    report = run(table, ledger_url, channels_at(receiver))

    by_name = {r.channel: r for r in report.channels}
    for kind in ("discord", "slack"):  # no means to recognise a repeat: shown twice, counted
        assert sorted(delivered(receiver, PATHS[kind])) == sorted(expected * 2), kind
        assert (by_name[kind].notices_sent, by_name[kind].duplicates) == (3, 3)
    webhook = by_name["webhook"]
    assert sorted(delivered(receiver, PATHS["webhook"])) == expected  # processed once
    assert [r.replayed for r in receiver.requests(PATHS["webhook"])] == [False, True]
    assert (webhook.notices_sent, webhook.duplicates, webhook.deduplicated) == (3, 0, 3)
    assert report.passed  # everything arrived; the duplicates are figures, not failures
    assert report.duplicates_total == {
        "discord": Duplicates(possible=3),
        "slack": Duplicates(possible=3),
        "webhook": Duplicates(deduplicated=3),
    }

    history = AlertLedger(Warehouse(ledger_url)).history()
    for kind in PATHS:  # the unknown outcome is on record before the retry's result
        assert outcomes_by_attempt(history, kind) == [["attempting", "unknown", "sent"]], kind
    assert run(table, ledger_url, channels_at(receiver)).sent == 0


def test_an_unknown_outcome_goes_out_again_next_run_under_the_same_key(receiver, warehouse_url):
    """Every Discord request of the run is processed and answered too late; Slack answers a
    gateway 504, then 500 twice, and processes none: its outcome is uncertain all the same."""
    receiver.script(PATHS["discord"], *[Reply(204, delay_s=1.5)] * 3)
    receiver.script(PATHS["slack"], Reply(504), Reply(500), Reply(500))
    channels = channels_at(receiver)[:2]  # discord and slack
    table = episodes(3)
    first = run(table, warehouse_url, channels)
    assert {r.channel: (r.unknown, r.failed, r.pending) for r in first.channels} == {
        "discord": (3, 0, 3),
        "slack": (0, 3, 3),
    }
    assert first.severity == "error"
    history = AlertLedger(Warehouse(warehouse_url)).history()
    assert pending_notices(table, history, channels, now=NOW, max_age=None) == {
        "discord": Pending(unknown=3),
        "slack": Pending(failed=3),
    }
    assert outcomes_by_attempt(history, "discord") == [["attempting"] + ["unknown"] * 3]
    assert outcomes_by_attempt(history, "slack") == [["attempting", "unknown", "failed"]]

    second = run(table, warehouse_url, channels)
    assert {r.channel: (r.notices_sent, r.retried, r.duplicates) for r in second.channels} == {
        "discord": (3, 3, 3),
        "slack": (3, 3, 3),  # taken once in fact, but nobody can tell: possibly twice
    }
    discord = receiver.requests(PATHS["discord"])
    assert len(discord) == 4 and len({r.headers["Idempotency-Key"] for r in discord}) == 1
    assert len(delivered(receiver, PATHS["discord"])) == 4 * 3  # no means to recognise a repeat
    assert len(delivered(receiver, PATHS["slack"])) == 3


_KILLED_WORKER = """
import json, sys
from datetime import datetime
import pyarrow.parquet as pq
from sensor_platform.notify.channels import Channel
from sensor_platform.notify.delivery import RetryPolicy
from sensor_platform.notify.ledger import AlertLedger
from sensor_platform.notify.planning import send_alerts
from sensor_platform.warehouse.store import Warehouse

episodes, warehouse_url, urls, now = sys.argv[1:]
channels = [Channel(kind, kind, url) for kind, url in json.loads(urls).items()]
send_alerts(
    pq.read_table(episodes),
    AlertLedger(Warehouse(warehouse_url)),
    channels,
    now=datetime.fromisoformat(now),
    max_age=None,
    policy=RetryPolicy(attempts=1, timeout_s=120),
)
"""


def test_a_worker_killed_mid_request_leaves_attempting_and_the_next_run_retries(
    receiver, ledger_url, tmp_path
):
    """A worker process sends to three endpoints that act at once but hold their answers back,
    and is killed (SIGKILL) while it waits. The next run finds what it left, sends the same
    messages again under the same keys and counts the duplicates of Discord and Slack; the
    generic webhook recognises the key and processes nothing twice."""
    for path in PATHS.values():
        receiver.script(path, Reply(204, delay_s=60))
    receiver.honour_idempotency_keys(PATHS["webhook"])
    table = episodes(12)  # Discord: 10 + 2 embeds in two messages; one message elsewhere
    pq.write_table(table, tmp_path / "episodes.parquet")
    channels = channels_at(receiver)
    urls = {c.name: c.url for c in channels}
    worker = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WORKER, str(tmp_path / "episodes.parquet"), ledger_url]
        + [json.dumps(urls), NOW.isoformat()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not all(receiver.requests(path) for path in PATHS.values()):
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the worker never reached every endpoint"
            time.sleep(0.05)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        worker.stderr.close()
    assert worker.returncode == -signal.SIGKILL

    history = AlertLedger(Warehouse(ledger_url)).history()
    assert set(history["outcome"].to_pylist()) == {"attempting"}
    assert pending_notices(table, history, channels, now=NOW, max_age=None) == {
        "discord": Pending(attempting=10, never_attempted=2),
        "slack": Pending(attempting=12),
        "webhook": Pending(attempting=12),
    }
    assert pending_count(history) == 34  # what the ledger alone shows

    report = run(table, ledger_url, channels)
    by_name = {r.channel: r for r in report.channels}
    assert {k: (r.notices_sent, r.retried, r.duplicates) for k, r in by_name.items()} == {
        "discord": (12, 10, 10),  # the first message again; the second never went out
        "slack": (12, 12, 12),
        "webhook": (12, 12, 0),
    }
    assert by_name["webhook"].deduplicated == 12 and report.passed
    discord = receiver.received(PATHS["discord"])
    assert [len(r.payload["embeds"]) for r in discord] == [10, 10, 2]
    assert discord[0].payload == discord[1].payload
    assert len(receiver.received(PATHS["slack"])) == 2
    generic = receiver.requests(PATHS["webhook"])
    assert [(r.processed, r.replayed) for r in generic] == [(True, False), (False, True)]
    assert generic[0].headers["Idempotency-Key"] == generic[1].headers["Idempotency-Key"]

    history = AlertLedger(Warehouse(ledger_url)).history()
    for kind in PATHS:
        assert outcomes_by_attempt(history, kind) == [["attempting"], ["attempting", "sent"]]
    assert duplicate_counts(history) == {
        "discord": Duplicates(possible=10),
        "slack": Duplicates(possible=12),
        "webhook": Duplicates(deduplicated=12),
    }
    assert all(p.total == 0 for p in pending_notices(table, history, channels, now=NOW).values())


def test_expired_notices_are_recorded_once_and_warn(receiver, warehouse_url):
    later = NOW + timedelta(days=3)
    channels = channels_at(receiver, webhook=f"http://127.0.0.1:{free_port()}/down-0123456789")
    failing = run(episodes(2), warehouse_url, channels)  # the webhook is down
    assert [r.channel for r in failing.failed_channels] == ["webhook"]

    table = pa.concat_tables([episodes(2), episodes(3, device="EQ-old{i}")])
    report = run(table, warehouse_url, channels, now=later, max_age=timedelta(days=1))
    assert report.sent == 0
    assert {r.channel: r.expired for r in report.channels} == {
        "discord": 3,
        "slack": 3,
        "webhook": 5,  # the webhook's 2 failed ones expired too
    }
    assert not report.passed and report.severity == "warn"
    assert report.problems == [
        "discord: 3 expired unsent",
        "slack: 3 expired unsent",
        "webhook: 5 expired unsent",
    ]
    history = AlertLedger(Warehouse(warehouse_url)).history()
    expired = [r for r in history.to_pylist() if r["outcome"] == "expired"]
    assert len(expired) == 11 and all(r["attempts"] == 0 for r in expired)
    again = run(table, warehouse_url, channels, now=later, max_age=timedelta(days=1))
    assert again.expired == 0 and again.passed  # recorded once, not again
    assert len(receiver.received(PATHS["discord"])) == 1


def test_pending_notices_of_episodes_not_read_wait_then_expire(warehouse_url):
    """A run that reads other episodes (a backfill of other hours) leaves them pending; once no
    run has tried them for longer than max_age, one records them as expired."""
    down = [Channel("webhook", "webhook", f"http://127.0.0.1:{free_port()}/down-0123456789")]
    assert run(episodes(2), warehouse_url, down).pending == 2
    other = episodes(1, device="EQ-other{i}")
    backfill = run(other, warehouse_url, down, max_age=timedelta(days=1))
    [webhook] = backfill.channels
    assert (webhook.waiting, webhook.expired, webhook.notices_due) == (2, 0, 1)
    history = AlertLedger(Warehouse(warehouse_url)).history()
    [pending] = pending_notices(other, history, down, now=NOW, max_age=timedelta(days=1)).values()
    assert (pending.waiting, pending.failed, pending.never_attempted, pending.total) == (2, 1, 0, 1)

    much_later = datetime.now(UTC) + timedelta(days=2)  # the ledger is stamped by the wall clock
    later = run(other, warehouse_url, down, now=much_later, max_age=timedelta(days=1))
    [webhook] = later.channels
    assert (webhook.waiting, webhook.expired) == (0, 3)  # the 2 not read, and `other` itself
    history = AlertLedger(Warehouse(warehouse_url)).history()
    details = {r["detail"] for r in history.to_pylist() if r["outcome"] == "expired"}
    assert details == {EPISODE_GONE, TOO_OLD}


def test_a_malformed_url_fails_only_its_channel(receiver, warehouse_url):
    setup = build_channels(
        [
            ChannelSetting("discord", "discord", receiver.url(PATHS["discord"]), "SENSOR_D_URL"),
            ChannelSetting("slack", "slack", "not a url", "SENSOR_SLACK_WEBHOOK_URL"),
            ChannelSetting("webhook", "webhook", receiver.url(PATHS["webhook"]), "SENSOR_W_URL"),
        ]
    )
    report = run(episodes(4), warehouse_url, setup.channels, config_errors=setup.errors)
    assert {r.channel: r.notices_sent for r in report.channels} == {"discord": 4, "webhook": 4}
    assert report.problems == [
        "slack: SENSOR_SLACK_WEBHOOK_URL is not an http(s) URL "
        "(it holds spaces or control characters)"
    ]
    assert not report.passed and report.severity == "error" and not report.no_channel_configured


def test_no_channel_configured_is_a_warning_not_a_pass(warehouse_url):
    report = run(episodes(2), warehouse_url, [])
    assert report.no_channel_configured and not report.passed
    assert report.severity == "warn" and report.problems == []


def test_a_ledger_table_of_the_first_version_gets_the_new_columns(receiver, ledger_url):
    first_version = pa.schema([f for f in LEDGER_SCHEMA if f.name in _FIRST_VERSION_COLUMNS])
    warehouse = Warehouse(ledger_url)
    table = episodes(2)
    [episode, _] = table.to_pylist()
    old_row = {
        "recorded_at": datetime.now(UTC) - timedelta(minutes=5),  # inside the horizon
        "notification_id": notification_id(episode["episode_id"], "opened"),
        "episode_id": episode["episode_id"],
        "event": "opened",
        "channel": "webhook",
        "outcome": "failed",
        "severity": "critical",
        "device_id": episode["device_id"],
        "site_id": episode["site_id"],
        "metric": episode["metric"],
        "rule": episode["rule"],
        "episode_start": episode["start_time"],
        "attempts": 4,
        "http_status": 503,
        "detail": "HTTP 503",
        "run_id": "before",
    }
    old_spec = TableSpec(LEDGER_TABLE.name, first_version, "recorded_at")
    warehouse.append(old_spec, pa.Table.from_pylist([old_row], schema=first_version))

    channel = Channel("webhook", "webhook", receiver.url(PATHS["webhook"]))
    report = run(table, ledger_url, [channel])
    [webhook] = report.channels
    assert (webhook.notices_sent, webhook.retried) == (2, 1)  # the old failed one, and a new one
    assert sorted(delivered(receiver, PATHS["webhook"])) == sorted(
        (e, "opened") for e in table["episode_id"].to_pylist()
    )
    history = AlertLedger(Warehouse(ledger_url)).history()
    old = [r for r in history.to_pylist() if r["run_id"] == "before"]
    assert [(r["attempt_id"], r["message_key"], r["replayed"]) for r in old] == [(None,) * 3]
    assert {s.state for s in notice_states(history).values()} == {"sent"}


_FIRST_VERSION_COLUMNS = (
    "recorded_at notification_id episode_id event channel outcome severity device_id site_id "
    "metric rule episode_start attempts http_status detail run_id"
).split()


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
        assert [r.retried for r in second.channels] == [0, 0, 5]  # due again, planned afresh
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

    # Old news is not announced, but recorded as expired where it would have gone.
    old = episodes(1, device="EQ-old{i}")
    report = run(old, warehouse_url, channels, now=NOW + timedelta(days=3), max_age=timedelta(1))
    assert report.sent == 0 and len(receiver.received("all")) == 4
    assert {r.channel: r.expired for r in report.channels} == {
        "webhook": 1,
        "discord": 1,
        "slack": 0,
    }


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
    for history in (sent, AlertLedger(Warehouse(warehouse_url)).history()):
        plans = plan_deliveries(table, history, channels, now=NOW, max_age=None)
        assert [p.messages + p.expired for p in plans] == [[], [], []]
