"""MQTT settings, topic filters and templates, and the ids a topic lends the normalizer (no broker)."""

import re
from datetime import UTC, datetime

import orjson
import pytest

from sensor_platform.mqtt.drain import ReceivedMessage, normalizer_messages
from sensor_platform.mqtt.settings import MqttSettings
from sensor_platform.mqtt.topics import TopicTemplate, check_topic_filter, check_topic_name
from sensor_platform.readings.normalize import Message, NormalizeLimits, normalize_messages

RECEIVED = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
EVENT = "2026-11-23T07:59:00Z"


# -- topic filters and names -----------------------------------------------------------------------
@pytest.mark.parametrize("good", ["sensors/#", "#", "sensors/+/+", "+/x/#", "a", "a//b", "/a"])
def test_valid_topic_filters(good):
    assert check_topic_filter(good) == good


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("sensors/#/x", "'#' must be a whole level, the last"),
        ("sensors/a#", "'#' must be a whole level"),
        ("sensors/a+/b", "'+' must be a whole level"),
        ("a\x00b", "NUL"),
        ("x" * 65536, "longer than 65535 bytes"),
    ],
)
def test_invalid_topic_filters_say_why(bad, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        check_topic_filter(bad)


def test_topic_names_have_no_wildcards():
    assert check_topic_name("sensors/a/b") == "sensors/a/b"
    for bad in ("sensors/+", "sensors/#", ""):
        with pytest.raises(ValueError):
            check_topic_name(bad)


# -- templates -------------------------------------------------------------------------------------
def test_template_fields_from_concrete_topics():
    template = TopicTemplate.parse("sensors/{site_id}/{device_id}")
    assert template.fields("sensors/GH1/GH1-D01") == {"site_id": "GH1", "device_id": "GH1-D01"}
    # ids are data: stored exactly as given, whatever they look like
    assert template.fields("sensors/../' OR 1=1--") == {"site_id": "..", "device_id": "' OR 1=1--"}
    assert template.fields("sensors/GH1") is None  # too few levels
    assert template.fields("sensors/GH1/D/extra") is None  # too many
    assert template.fields("other/GH1/D") is None  # literal level differs
    assert template.fields("sensors//D") is None  # an empty level is no id


def test_template_wildcard_levels():
    template = TopicTemplate.parse("+/{device_id}/telemetry/#")
    assert template.fields("plant-7/pump-3/telemetry") == {"device_id": "pump-3"}
    assert template.fields("plant-7/pump-3/telemetry/a/b") == {"device_id": "pump-3"}
    assert template.fields("plant-7/pump-3/status") is None
    assert TopicTemplate.parse("{site_id}/#").fields("farm-1") == {"site_id": "farm-1"}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "it is empty"),
        ("sensors/{site}/{device_id}", "unknown placeholder {site}"),
        ("sensors/{site_id}/{site_id}", "{site_id} appears twice"),
        ("sensors/site-{site_id}", "a placeholder must be a whole level"),
        ("sensors/#/{device_id}", "'#' must be the last level"),
        ("sensors/a+/{device_id}", "'+' and '#' must be whole levels"),
        ("sensors/+/#", "it has no placeholder"),
    ],
)
def test_invalid_templates_say_why_with_an_example(bad, why):
    with pytest.raises(ValueError, match=re.escape(why)) as err:
        TopicTemplate.parse(bad)
    assert "Example: sensors/{site_id}/{device_id}" in str(err.value)


def test_template_builds_publish_topics():
    template = TopicTemplate.parse("sensors/{site_id}/{device_id}")
    assert template.topic(site_id="GH1", device_id="GH1-D01") == "sensors/GH1/GH1-D01"
    with pytest.raises(ValueError, match="cannot be a topic level"):
        template.topic(site_id="a/b", device_id="d")
    with pytest.raises(ValueError, match="wildcard levels"):
        TopicTemplate.parse("+/{device_id}").topic(site_id="s", device_id="d")


# -- settings --------------------------------------------------------------------------------------
def test_settings_never_show_the_password():
    settings = MqttSettings(username="alice", password="hunter2-secret", topic_template=None)
    for text in (repr(settings), str(settings), settings.who(), str([settings])):
        assert "hunter2-secret" not in text
    assert "password='***'" in repr(settings)
    assert "user 'alice'" in settings.who()
    assert settings.redact("broker said: hunter2-secret is wrong") == "broker said: *** is wrong"


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"topics": ()}, "at least one MQTT topic filter"),
        ({"topics": ("sensors/#/x",)}, "'#' must be a whole level"),
        ({"client_id": ""}, "fixed, non-empty id"),
        ({"protocol": "3.1"}, "protocol must be one of"),
        ({"session_expiry_seconds": 0}, "keeps messages only while the session lives"),
        ({"port": 0}, "port must be 1-65535"),
        ({"password": "p"}, "needs a username"),
        ({"topic_template": "sensors/{device}"}, "unknown placeholder"),
        ({"keepalive_seconds": 0}, "keepalive_seconds"),
    ],
)
def test_bad_settings_fail_at_configuration_time(overrides, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        MqttSettings(**overrides)


def test_settings_store_topics_as_a_tuple():
    settings = MqttSettings(topics=["a/#", "b/+"])
    assert settings.topics == ("a/#", "b/+")


# -- what a topic lends the normalizer -------------------------------------------------------------
def received(topic: str, payload: dict | list | bytes) -> ReceivedMessage:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return ReceivedMessage(topic, raw, RECEIVED, 1, False, False, 1)


def rows(table) -> list[tuple]:
    return sorted(
        zip(
            *(table[c].to_pylist() for c in ("device_id", "site_id", "metric", "source")),
            strict=True,
        )
    )


def test_topic_ids_fill_only_what_the_payload_lacks():
    template = TopicTemplate.parse("sensors/{site_id}/{device_id}")
    messages = normalizer_messages(
        [
            # no ids at all: both from the topic
            received("sensors/lab/d-1", {"metric": "pressure", "value": 1.0, "event_time": EVENT}),
            # the payload's device id and site win over the topic's
            received(
                "sensors/lab/d-1",
                {"equipment_id": "EQ1", "facility_id": "FAC1", "measured_at": EVENT, "co_level": 1},
            ),
            # device from the payload, site from the topic
            received(
                "sensors/lab/d-1",
                {"sensor_id": "S-1", "type": "humidity", "value": 40, "ts": EVENT},
            ),
            # a topic that does not fit the template lends nothing
            received("elsewhere/x", {"device_id": "D9", "metric": "m", "value": 1, "time": EVENT}),
        ],
        template,
    )
    assert messages[0] == Message(
        messages[0].payload,
        "mqtt:sensors/lab/d-1",
        RECEIVED,
        {"site_id": "lab", "device_id": "d-1"},
    )
    assert messages[3].transport_fields is None
    result = normalize_messages(messages, batch_id="b")
    assert result.quarantine.num_rows == 0
    assert rows(result.readings) == [
        ("D9", None, "m", "mqtt:elsewhere/x"),
        ("EQ1", "FAC1", "co_level", "mqtt:sensors/lab/d-1"),
        ("S-1", "lab", "humidity", "mqtt:sensors/lab/d-1"),
        ("d-1", "lab", "pressure", "mqtt:sensors/lab/d-1"),
    ]


def test_topic_ids_reach_every_element_of_an_array_and_quarantine_keeps_the_bytes():
    template = TopicTemplate.parse("sensors/{site_id}/{device_id}")
    batch = [
        {"metric": "temperature", "value": 20.5, "event_time": EVENT},
        {"device_id": "other", "metric": "temperature", "value": 21.5, "event_time": EVENT},
        {"metric": "temperature", "value": "hot", "event_time": EVENT},  # bad element
    ]
    not_json = b"\xff{not json"
    no_ids = b'{"metric": "m", "value": 1, "event_time": "2026-11-23T07:59:00Z"}'
    result = normalize_messages(
        normalizer_messages(
            [
                received("sensors/GH1/D1", batch),
                received("sensors/GH1/D1", not_json),
                received("unmatched", no_ids),
            ],
            template,
        ),
        batch_id="b",
    )
    assert rows(result.readings) == [
        ("D1", "GH1", "temperature", "mqtt:sensors/GH1/D1"),
        ("other", "GH1", "temperature", "mqtt:sensors/GH1/D1"),
    ]
    quarantine = result.quarantine.to_pylist()
    assert [(q["reason"], q["source"]) for q in quarantine] == [
        ("bad_value", "mqtt:sensors/GH1/D1"),
        ("not_utf8", "mqtt:sensors/GH1/D1"),
        ("missing_device_id", "mqtt:unmatched"),
    ]
    # the raw bytes are the bytes received, never the payload with the topic's ids added
    assert quarantine[1]["raw"] == not_json
    assert quarantine[2]["raw"] == no_ids
    assert orjson.loads(quarantine[0]["raw"]) == batch[2]


def test_an_id_from_the_topic_obeys_the_length_limit():
    template = TopicTemplate.parse("s/{device_id}")
    long_id = "d" * 300
    payload = {"metric": "m", "value": 1, "event_time": EVENT}
    result = normalize_messages(
        normalizer_messages([received(f"s/{long_id}", payload)], template),
        batch_id="b",
        limits=NormalizeLimits(max_id_length=256),
    )
    assert result.readings.num_rows == 0
    [row] = result.quarantine.to_pylist()
    assert row["reason"] == "id_too_long" and "the transport's device id" in row["detail"]


def test_messages_without_transport_fields_behave_as_before():
    # The Kafka path builds three-field messages: nothing changes for it.
    payload = orjson.dumps({"metric": "m", "value": 1, "event_time": EVENT})
    result = normalize_messages([Message(payload, "kafka:t/0/1", RECEIVED)], batch_id="b")
    [row] = result.quarantine.to_pylist()
    assert row["reason"] == "missing_device_id"
