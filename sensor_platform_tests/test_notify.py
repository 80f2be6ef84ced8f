"""Notifications without the ledger: masking, payload limits, and delivery with retries against a
real HTTP server on 127.0.0.1 scripted to fail in every way the brief lists."""

import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa
import pytest

from sensor_platform.detection.schema import EPISODE_SCHEMA, episode_id
from sensor_platform.notify.channels import (
    Channel,
    ChannelSetting,
    build_channels,
    mask_url,
    redact,
)
from sensor_platform.notify.delivery import RetryPolicy, dispatch, post_message, retry_after
from sensor_platform.notify.messages import (
    DISCORD_MAX_CONTENT,
    DISCORD_MAX_EMBEDS,
    DISCORD_MAX_TOTAL,
    Notice,
    build_messages,
    describe,
    discord_payload_size,
    with_plausible_ranges,
)
from sensor_platform.notify.receiver import Reply, WebhookReceiver
from sensor_platform_tests.conftest import free_port

START = datetime(2026, 3, 1, 10, tzinfo=UTC)
FAST = RetryPolicy(attempts=4, timeout_s=0.3, backoff_s=0.01, max_backoff_s=0.05)
TOKEN = "AbCdEf0123456789secretTOKEN"


def episodes(n: int, *, device: str = "EQ{i}", severity: str = "critical", **extra) -> pa.Table:
    rows = []
    for i in range(n):
        start = START + timedelta(minutes=i)
        dev = device.format(i=i)
        rows.append(
            {
                "episode_id": episode_id(dev, "temperature", "temperature_high", start),
                "partition_hour": START,
                "device_id": dev,
                "site_id": "FAC001",
                "metric": "temperature",
                "unit": "°C",
                "rule": "temperature_high",
                "kind": "threshold",
                "severity": severity,
                "status": "open",
                "start_time": start,
                "end_time": start + timedelta(minutes=3),
                "closed_at": None,
                "reading_count": 7,
                "peak_value": 71.5,
                "peak_time": start + timedelta(minutes=1),
                "peak_score": 71.5,
                "threshold": 60.0,
            }
            | extra
        )
    return pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA)


def notices(n: int, **kwargs) -> list[Notice]:
    return [Notice(row, ("opened",)) for row in episodes(n, **kwargs).to_pylist()]


def test_a_peak_beyond_what_the_sensor_can_measure_says_so():
    ranges = {"temperature": (-90.0, 1000.0)}
    fire, hot = (
        with_plausible_ranges(episodes(1, peak_value=value), ranges).to_pylist()[0]
        for value in (1200.0, 71.5)
    )
    assert describe(fire) == (
        "temperature reached 1200 °C (≥ 60, critical); beyond what the sensor can measure "
        "(-90 to 1000 °C): a faulty or damaged sensor"
    )
    assert describe(hot) == "temperature reached 71.5 °C (≥ 60, critical)"
    # a metric without a range, and episodes read without ranges, say nothing of it
    unknown = with_plausible_ranges(episodes(1, peak_value=1200.0), {}).to_pylist()[0]
    assert describe(unknown) == describe(episodes(1, peak_value=1200.0).to_pylist()[0])
    assert "beyond" not in describe(unknown)
    # every channel carries it
    for kind in ("discord", "slack", "webhook"):
        [message] = build_messages(kind, [Notice(fire, ("opened",))])
        assert "beyond what the sensor can measure" in str(message.payload)


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


def test_masked_urls_never_show_the_token():
    discord = f"https://discord.com/api/webhooks/123456/{TOKEN}"
    assert mask_url(discord) == "https://discord.com/api/webhooks/***"
    assert mask_url(f"https://hooks.slack.com/services/T0/B0/{TOKEN}") == (
        "https://hooks.slack.com/services/***"
    )
    assert mask_url(f"http://user:pw@10.0.0.1:8080/hook/{TOKEN}?k=1") == "http://10.0.0.1:8080/***"
    assert mask_url("not a url") == "***"
    channel = Channel("discord", "discord", discord)
    assert TOKEN not in repr(channel)
    assert TOKEN not in redact(f"POST {discord} failed; token {TOKEN}", [channel])
    with pytest.raises(ValueError) as error:
        Channel("x", "webhook", f"ftp://{TOKEN}")
    assert TOKEN not in str(error.value)


def test_discord_storm_of_50_episodes_respects_every_limit():
    storm = notices(50) + notices(5, device="@everyone " + "x" * 5000 + "{i}", severity="warning")
    messages = build_messages("discord", storm)
    assert len(messages) <= 8  # a handful of requests, not 55
    seen = []
    for message in messages:
        payload = message.payload
        assert len(payload["embeds"]) <= DISCORD_MAX_EMBEDS
        assert len(payload["content"]) <= DISCORD_MAX_CONTENT
        assert discord_payload_size(payload) <= DISCORD_MAX_TOTAL
        assert payload["allowed_mentions"] == {"parse": []}
        for embed in payload["embeds"]:
            assert len(embed["title"]) <= 256 and len(embed["description"]) <= 4096
            assert all(len(f["value"]) <= 1024 for f in embed["fields"])
        seen += [n.episode["episode_id"] for n in message.notices]
    assert sorted(seen) == sorted(n.episode["episode_id"] for n in storm)
    assert messages[0].payload["content"] == "Sensor Platform: 10 new anomalies (10 critical)"


def test_slack_and_generic_payloads_batch_and_escape():
    storm = notices(45, device="<!channel> {i}")
    slack = build_messages("slack", storm)
    assert [len(m.notices) for m in slack] == [20, 20, 5]
    for message in slack:
        assert len(message.payload["blocks"]) <= 50
        text = str(message.payload["blocks"])
        assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    [generic] = build_messages("webhook", storm)
    item = generic.payload["notices"][0]
    assert item["events"] == ["opened"] and item["episode"]["start_time"] == "2026-03-01T10:00:00Z"
    assert item["summary"] == "temperature reached 71.5 °C (≥ 60, critical)"


def test_delivery_succeeds_first_time(receiver):
    channel = Channel("webhook", "webhook", receiver.url("ok"))
    [message] = build_messages("webhook", notices(3))
    with httpx.Client(timeout=FAST.timeout_s) as client:
        result = post_message(client, channel, message, policy=FAST)
    assert (result.ok, result.attempts, result.http_status) == (True, 1, 204)
    [got] = receiver.received("ok")
    assert got.payload["notices"][0]["notification_ids"] == list(
        message.notices[0].notification_ids
    )
    assert got.headers["Idempotency-Key"] == message.idempotency_key


@pytest.mark.parametrize(
    ("replies", "attempts", "min_wait"),
    [
        ([Reply(500), Reply(503)], 3, 0.0),
        ([Reply(429, body={"retry_after": 0.25, "global": False})], 2, 0.25),
        ([Reply(429, headers={"Retry-After": "1"})], 2, 1.0),
    ],
    ids=["5xx-then-ok", "429-retry_after-body", "429-Retry-After-header"],
)
def test_transient_failures_are_retried_and_arrive_once(receiver, replies, attempts, min_wait):
    receiver.script("hook", *replies)
    channel = Channel("discord", "discord", receiver.url("hook"))
    [message] = build_messages("discord", notices(2))
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        time.sleep(seconds)

    with httpx.Client(timeout=FAST.timeout_s) as client:
        result = post_message(client, channel, message, policy=FAST, sleep=sleep)
    assert result.ok and result.attempts == attempts and not result.uncertain
    assert receiver.attempts("hook") == attempts
    assert len(receiver.received("hook")) == 1
    assert max(waits) >= min_wait


@pytest.mark.parametrize("kind", ["discord", "slack", "webhook"])
def test_a_slow_endpoint_gets_the_message_twice_unless_it_honours_the_key(receiver, kind):
    """The endpoint acts on the request, then answers after the client gave up: the outcome is
    unknown, and it is reported (before the retry) as such. The retry reaches Discord and Slack
    a second time; the generic webhook, honouring the Idempotency-Key, takes it once."""
    receiver.script("slow", Reply(204, delay_s=1.5))
    if kind == "webhook":
        receiver.honour_idempotency_keys("slow")
    channel = Channel(kind, kind, receiver.url("slow"))
    [message] = build_messages(kind, notices(2))
    seen_before_retry = []

    def on_unknown(result):
        assert result.outcome == "unknown" and result.http_status is None
        seen_before_retry.append(receiver.attempts("slow"))

    with httpx.Client(timeout=FAST.timeout_s) as client:
        result = post_message(client, channel, message, policy=FAST, on_unknown=on_unknown)
    assert seen_before_retry == [1]  # recorded while only the first request had gone out
    assert (result.outcome, result.attempts, result.uncertain) == ("sent", 2, True)
    first, second = receiver.requests("slow")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    processed = receiver.received("slow")
    if kind == "webhook":
        assert (len(processed), result.replayed, second.replayed) == (1, True, True)
    else:
        assert (len(processed), result.replayed) == (2, False)
        assert processed[0].payload == processed[1].payload
    if kind == "discord":  # wait=true: the created message comes back, not 204
        assert second.query == {"wait": "true"} and result.http_status == 200


def test_discord_waits_for_the_message_and_keeps_the_users_query(receiver):
    channel = Channel("discord", "discord", receiver.url("api/webhooks/1/t?thread_id=77&wait=0"))
    assert channel.post_url.endswith("/api/webhooks/1/t?thread_id=77&wait=true")
    [message] = build_messages("discord", notices(1))
    with httpx.Client(timeout=FAST.timeout_s) as client:
        result = post_message(client, channel, message, policy=FAST)
    [got] = receiver.received("api/webhooks/1/t")
    assert got.query == {"thread_id": "77", "wait": "true"}
    assert (result.outcome, result.http_status) == ("sent", 200)


@pytest.mark.parametrize(
    ("kind", "expected_wait"),
    [("slack", 1.0), ("webhook", 1.0), ("discord", 0.2)],
)
def test_429_waits_the_larger_of_body_and_header_except_discord(receiver, kind, expected_wait):
    receiver.script("busy", Reply(429, body={"retry_after": 0.2}, headers={"Retry-After": "1"}))
    channel = Channel(kind, kind, receiver.url("busy"))
    [message] = build_messages(kind, notices(1))
    waits = []
    with httpx.Client(timeout=FAST.timeout_s) as client:
        result = post_message(client, channel, message, policy=FAST, sleep=waits.append)
    assert result.ok and waits == [expected_wait]
    assert len(receiver.received("busy")) == 1


def test_failures_that_persist_leave_the_message_pending(receiver):
    refused = Channel("slack", "slack", f"http://127.0.0.1:{free_port()}/services/T/B/{TOKEN}")
    [message] = build_messages("slack", notices(1))
    with httpx.Client(timeout=FAST.timeout_s) as client:
        result = post_message(client, refused, message, policy=FAST, sleep=lambda s: None)
        assert (result.ok, result.attempts, result.http_status) == (False, 4, None)
        assert result.detail.startswith("connection failed") and TOKEN not in result.detail

        receiver.script("gone", Reply(404, body={"message": "Unknown Webhook"}))
        gone = Channel("discord", "discord", receiver.url("gone"))
        result = post_message(client, gone, message, policy=FAST, sleep=lambda s: None)
        assert (result.ok, result.attempts, result.http_status) == (False, 1, 404)

        receiver.script("busy", Reply(429, body={"retry_after": 3600}))
        busy = Channel("discord", "discord", receiver.url("busy"))
        result = post_message(client, busy, message, policy=FAST, sleep=lambda s: None)
        assert (result.ok, result.attempts) == (False, 1) and "next run" in result.detail
    assert receiver.received() == []


def test_retry_after_parsing():
    def response(**kwargs):
        return httpx.Response(429, **kwargs)

    assert retry_after(response(json={"retry_after": 1.5})) == 1.5
    assert retry_after(response(headers={"Retry-After": "7"})) == 7
    both = response(json={"retry_after": 30}, headers={"Retry-After": "7"})
    assert retry_after(both, "slack") == retry_after(both, "webhook") == 30
    both = response(json={"retry_after": 0.5}, headers={"Retry-After": "7"})
    assert (retry_after(both, "slack"), retry_after(both, "discord")) == (7, 0.5)
    assert retry_after(response(headers={"Retry-After": "nan"})) == 1.0
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= retry_after(response(headers={"Retry-After": later})) <= 31
    assert retry_after(response(headers={"Retry-After": "soon"})) == 1.0
    assert retry_after(response(text="not json")) == 1.0


def test_a_failing_channel_blocks_no_other(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    slow_policy = RetryPolicy(attempts=3, timeout_s=0.3, backoff_s=0.4, max_backoff_s=0.4)
    port = free_port()
    dead = Channel("slack", "slack", f"http://127.0.0.1:{port}/services/{TOKEN}")
    discord = Channel("discord", "discord", receiver.url(f"api/webhooks/1/{TOKEN}"))
    generic = Channel("webhook", "webhook", receiver.url("generic"))
    broken = Channel("broken", "webhook", receiver.url("broken"))
    storm = notices(25)
    recorded = []

    def record(channel, message, attempt, result):
        if channel is broken and result.outcome == "attempting":
            raise OSError(f"ledger unavailable for {broken.url}")
        recorded.append((channel.name, result.outcome))

    reports = dispatch(
        {ch: build_messages(ch.kind, storm) for ch in (dead, discord, generic, broken)},
        record,
        policy=slow_policy,
    )
    by_name = {r.channel.name: r for r in reports}
    assert [len(m.notices) for m, r in by_name["discord"].results if r.ok] == [10, 10, 5]
    assert [r.outcome for _, r in by_name["webhook"].results] == ["sent"]
    slack = by_name["slack"]
    assert [r.outcome for _, r in slack.results] == ["failed"] and len(slack.not_tried) == 1
    assert slack.requests == 3  # one message's retries, then the channel waits
    assert slack.failure.startswith("connection failed")
    # The dead channel's backoff (0.8 s) did not hold the others up: they finished meanwhile.
    assert recorded.index(("slack", "failed")) > recorded.index(("webhook", "sent"))
    assert recorded.count(("discord", "sent")) == 3
    assert recorded.count(("slack", "attempting")) == 1
    # A channel whose ledger write fails sends nothing (no trace, no request) and stops alone.
    assert by_name["broken"].failure == (
        f"stopped by OSError: ledger unavailable for {broken.masked_url}"
    )
    assert receiver.attempts("broken") == 0
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_channels_are_built_one_by_one_and_errors_name_the_variable():
    secret = f"not a url {TOKEN}"
    setup = build_channels(
        [
            ChannelSetting("discord", "discord", "https://discord.com/api/webhooks/1/t", "D_URL"),
            ChannelSetting("slack", "slack", secret, "SENSOR_SLACK_WEBHOOK_URL"),
            ChannelSetting("webhook", "webhook", "https://example.org:99999/hook", "W_URL"),
            ChannelSetting("other", "webhook", "https://example.org/x", "O_URL", "urgent", "O_SEV"),
            ChannelSetting("unset", "webhook", None, "U_URL"),
            ChannelSetting("site", "slack", "https://h/x", "S_URL", "critical", sites=(" A", "")),
        ]
    )
    assert [c.name for c in setup.channels] == ["discord", "site"]
    assert setup.channels[1].sites == frozenset({"A"})
    assert setup.channels[1].min_severity == "critical"
    assert setup.errors["slack"].startswith("SENSOR_SLACK_WEBHOOK_URL is not an http(s) URL")
    assert setup.errors["webhook"].startswith("W_URL is not an http(s) URL")
    assert setup.errors["other"].startswith("O_SEV must be one of")
    assert TOKEN not in str(setup.errors) and "example.org" not in str(setup.errors)
    assert "unset" not in setup.errors and setup.configured
    assert not build_channels([ChannelSetting("slack", "slack", "", "S")]).configured
