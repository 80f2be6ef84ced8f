"""Deliver messages to webhooks with retries, one thread per channel so a failing one blocks none.

Timeouts, connection errors, 408 and 5xx are retried with exponential backoff; 429 waits what the
server asks (Discord's JSON `retry_after`, else the `Retry-After` header), unless that is longer
than the policy allows: the message then stays pending for the next run. Any other status is not
retried in this run. After a message fails for good, the channel's remaining messages wait for the
next run too, so a dead endpoint costs one message's retries, not one per message.

Every outcome goes to `record` as soon as it is known (the ledger writes it at once), which keeps
the window for a duplicate after a crash as short as a single request.
"""

import email.utils
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from sensor_platform.notify.channels import Channel, redact
from sensor_platform.notify.messages import Notice, Outgoing, build_messages

# httpx logs every request with its full URL at INFO; the URL is a secret.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # requests per message and run
    timeout_s: float = 5.0
    backoff_s: float = 0.5  # first wait after a failure, doubled each time
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0  # a longer 429 wait leaves the message for the next run


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    attempts: int
    http_status: int | None
    detail: str  # never contains the webhook URL


@dataclass(frozen=True)
class ChannelReport:
    channel: str
    kind: str
    masked_url: str
    notices_due: int
    notices_sent: int
    messages_sent: int
    requests: int
    failure: str | None  # the reason the channel stopped, when it did

    @property
    def pending(self) -> int:
        return self.notices_due - self.notices_sent


Recorder = Callable[[Channel, Outgoing, DeliveryResult], None]


def dispatch(
    plan: dict[Channel, list[Notice]],
    record: Recorder,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ChannelReport]:
    """Send every channel's notices (batched into messages), channels in parallel."""
    policy = policy or RetryPolicy()
    work = [(channel, notices) for channel, notices in plan.items() if notices]
    if not work:
        return []
    with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="notify") as pool:
        futures = [
            pool.submit(_deliver_channel, channel, notices, record, policy, sleep)
            for channel, notices in work
        ]
        return [f.result() for f in futures]


def _deliver_channel(
    channel: Channel,
    notices: list[Notice],
    record: Recorder,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> ChannelReport:
    sent = messages_sent = requests = 0
    failure = None
    with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client:
        for message in build_messages(channel.kind, notices):
            result = post_message(client, channel, message, policy=policy, sleep=sleep)
            requests += result.attempts
            record(channel, message, result)
            if not result.ok:
                failure = result.detail
                break
            sent += len(message.notices)
            messages_sent += 1
    return ChannelReport(
        channel=channel.name,
        kind=channel.kind,
        masked_url=channel.masked_url,
        notices_due=len(notices),
        notices_sent=sent,
        messages_sent=messages_sent,
        requests=requests,
        failure=failure,
    )


def post_message(
    client: httpx.Client,
    channel: Channel,
    message: Outgoing,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """POST one message, retrying what can be retried. Never raises for HTTP or network errors."""
    policy = policy or RetryPolicy()
    headers = {"Idempotency-Key": message.idempotency_key}
    status: int | None = None
    detail = ""
    for attempt in range(1, policy.attempts + 1):
        wait = _backoff(policy, attempt)
        try:
            response = client.post(channel.url, json=message.payload, headers=headers)
        except httpx.TimeoutException:
            status, detail = None, f"timed out after {policy.timeout_s:g} s"
        except httpx.TransportError as exc:
            status, detail = None, f"connection failed ({type(exc).__name__})"
        else:
            status = response.status_code
            if 200 <= status < 300:
                return DeliveryResult(True, attempt, status, f"HTTP {status}")
            if status == 429:
                wait = retry_after(response)
                detail = f"HTTP 429: rate limited for {wait:g} s"
                if wait > policy.max_retry_after_s:
                    return DeliveryResult(False, attempt, status, detail + " (left for next run)")
            elif status >= 500 or status == 408:
                detail = f"HTTP {status}"
            else:
                body = redact(response.text[:200], [channel])
                return DeliveryResult(False, attempt, status, f"HTTP {status}: {body}".strip())
        if attempt < policy.attempts:
            sleep(wait)
    return DeliveryResult(False, policy.attempts, status, redact(detail, [channel]))


def retry_after(response: httpx.Response) -> float:
    """Seconds to wait after a 429: Discord's JSON body, else the headers, else one second."""
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
            return max(float(body["retry_after"]), 0.0)
    except ValueError:
        pass
    header = response.headers.get("Retry-After") or response.headers.get("X-RateLimit-Reset-After")
    if not header:
        return 1.0
    try:
        return max(float(header), 0.0)
    except ValueError:
        pass
    try:  # Retry-After may also be an HTTP date
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return 1.0
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.backoff_s * 2 ** (attempt - 1), policy.max_backoff_s)
