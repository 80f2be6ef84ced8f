"""The alert ledger's columns (light: read when the code location loads, for the UI)."""

import pyarrow as pa

from sensor_platform.readings.schema import UTC_MICROS

LEDGER_TABLE_NAME = "anomaly_alert_ledger"
OUTCOMES = ("attempting", "sent", "failed", "unknown", "expired")

LEDGER_COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    # name: (type, nullable, description)
    "recorded_at": (UTC_MICROS, False, "When the row was written (UTC)."),
    "notification_id": (pa.string(), False, "Id of the notification: episode and event."),
    "episode_id": (
        pa.string(),
        False,
        "The episode notified about (sensor_anomalies), or a platform notice's key "
        "(platform/<kind>/<subject>, e.g. platform/kafka-stuck/<range>).",
    ),
    "event": (pa.string(), False, "opened, escalated or closed."),
    "channel": (pa.string(), False, "Channel name: discord, slack or webhook."),
    "outcome": (
        pa.string(),
        False,
        "attempting (request about to go out), sent, failed (refused: due again), unknown "
        "(timed out or cut off after sending: sent again under the same key) or expired "
        "(too old to announce: not sent).",
    ),
    "severity": (
        pa.string(),
        False,
        "Severity of the episode when notified; platform for a platform notice.",
    ),
    "device_id": (pa.string(), False, "Device of the episode; what a platform notice is about."),
    "site_id": (pa.string(), True, "Site of the episode."),
    "metric": (pa.string(), True, "Metric of the episode (NULL for device-wide rules)."),
    "rule": (pa.string(), False, "Rule that fired; a platform notice's kind (kafka-stuck)."),
    "episode_start": (
        UTC_MICROS,
        False,
        "start_time of the episode; since when a platform notice's trouble lasts.",
    ),
    "attempts": (pa.int32(), False, "HTTP requests made for the message in that run so far."),
    "http_status": (pa.int32(), True, "Last HTTP status, NULL on timeout or connection error."),
    "detail": (pa.string(), True, "What happened, without the webhook URL."),
    "run_id": (pa.string(), True, "Dagster run that made the attempt."),
    "attempt_id": (pa.string(), True, "One message's delivery attempt in one run."),
    "message_key": (pa.string(), True, "Idempotency-Key of the message that carried it."),
    "replayed": (pa.bool_(), True, "The endpoint said it had processed that key already."),
}
