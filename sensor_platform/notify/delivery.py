"""Deliver messages to webhooks with retries, one thread per channel so a failing one blocks none.

The guarantee is at least once per channel, and no duplicate goes unrecorded. `attempting` is
recorded before a message's first request (the ledger writes it at once), so a worker killed
mid-request leaves a trace the next run acts on. A timeout, a connection lost after the request
went out, or a gateway's 502/504 means the endpoint may have acted: `unknown` is recorded before
the retry. A 2xx is `sent`; a refusal is `failed`, and the notice is simply due again. A message
whose outcome was unknown, or left attempting, goes out again with the same notices under the same
`Idempotency-Key`: an endpoint that honours the key (a generic webhook may; it can say so with
`Idempotent-Replayed: true`) takes it once, while Discord and Slack have no such means and may
show it twice. A notice sent after an unknown outcome is counted as a possible duplicate; that is
the only way one arises, as long as one alert run runs at a time. Discord is asked to
`wait=true`, so its 200 means the message exists.

Timeouts, connection errors, 408 and 5xx are retried with exponential backoff; 429 waits what the
server asks (Discord: its JSON `retry_after`; Slack and generic webhooks: the larger of that and
the `Retry-After` header), unless that is longer than the policy allows: the message then stays
pending for the next run. Any other status is not retried in this run. After a message fails for
good, the channel's remaining messages wait for the next run, so a dead endpoint costs one
message's retries, not one per message.
"""

import email.utils
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from sensor_platform.notify.channels import Channel, redact
from sensor_platform.notify.messages import Outgoing

# httpx logs every request with its full URL at INFO; the URL is a secret.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

# What an endpoint answers when it recognised an Idempotency-Key it had already processed
# (the convention of Stripe and others): the notice arrived once, whatever came before.
REPLAYED_HEADER = "Idempotent-Replayed"
# A gateway's "the origin did not answer in time / broke off": the origin may have acted.
_UNCERTAIN_STATUSES = {502, 504}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # requests per message and run
    timeout_s: float = 5.0
    backoff_s: float = 0.5  # first wait after a failure, doubled each time
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0  # a longer 429 wait leaves the message for the next run


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # attempting, sent, failed or unknown
    attempts: int  # requests made so far for the message in this run
    http_status: int | None
    detail: str  # never contains the webhook URL
    uncertain: bool = False  # a request of this attempt may have been acted on unseen
    replayed: bool = False  # the endpoint said it had processed this idempotency key before

    @property
    def ok(self) -> bool:
        return self.outcome == "sent"


ATTEMPTING = DeliveryResult("attempting", 0, None, "request about to be sent")


@dataclass(frozen=True)
class ChannelDelivery:
    """What one channel's thread did: each message tried with its final result, in order, and
    the messages it left for the next run after a failure."""

    channel: Channel
    results: list[tuple[Outgoing, DeliveryResult]]
    not_tried: list[Outgoing]
    requests: int
    failure: str | None  # the reason the channel stopped, when it did


# Called with every state of a message's attempt, in order: attempting, unknown (each uncertain
# request, before its retry), then sent or failed (or nothing more after a final unknown).
Recorder = Callable[[Channel, Outgoing, str, DeliveryResult], None]


def dispatch(
    plan: dict[Channel, list[Outgoing]],
    record: Recorder,
    *,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ChannelDelivery]:
    """Send every channel's messages, channels in parallel. One channel's failure, of any kind,
    stops that channel only."""
    policy = policy or RetryPolicy()
    work = [(channel, messages) for channel, messages in plan.items() if messages]
    if not work:
        return []
    with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="notify") as pool:
        futures = [
            pool.submit(_deliver_channel, channel, messages, record, policy, sleep)
            for channel, messages in work
        ]
        return [f.result() for f in futures]


def _deliver_channel(
    channel: Channel,
    messages: list[Outgoing],
    record: Recorder,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> ChannelDelivery:
    results: list[tuple[Outgoing, DeliveryResult]] = []
    requests, failure = 0, None
    try:
        with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client:
            for message in messages:
                attempt = uuid.uuid4().hex
                record(channel, message, attempt, ATTEMPTING)  # before anything goes out
                result = post_message(
                    client,
                    channel,
                    message,
                    policy=policy,
                    sleep=sleep,
                    on_unknown=lambda r, m=message, a=attempt: record(channel, m, a, r),
                )
                requests += result.attempts
                if result.outcome != "unknown":  # a final unknown was recorded already
                    record(channel, message, attempt, result)
                results.append((message, result))
                if not result.ok:
                    failure = result.detail
                    break
    except Exception as exc:  # noqa: BLE001 - whatever breaks here must not stop other channels
        failure = redact(f"stopped by {type(exc).__name__}: {exc}", [channel])
    done = {id(m) for m, _ in results}
    return ChannelDelivery(
        channel=channel,
        results=results,
        not_tried=[m for m in messages if id(m) not in done],
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
    on_unknown: Callable[[DeliveryResult], None] | None = None,
) -> DeliveryResult:
    """POST one message, retrying what can be retried; `on_unknown` hears of each request whose
    outcome is unknown before the retry. Never raises for HTTP or network errors."""
    policy = policy or RetryPolicy()
    headers = {"Idempotency-Key": message.idempotency_key}
    status: int | None = None
    detail, uncertain, outcome = "", False, "failed"
    for attempt in range(1, policy.attempts + 1):
        wait = _backoff(policy, attempt)
        try:
            response = client.post(channel.post_url, json=message.payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the endpoint.
            status, detail, outcome = None, f"connection failed ({type(exc).__name__})", "failed"
        except httpx.TimeoutException:
            status, detail, outcome = None, f"timed out after {policy.timeout_s:g} s", "unknown"
        except httpx.TransportError as exc:
            status, outcome = None, "unknown"
            detail = f"connection lost after sending ({type(exc).__name__})"
        else:
            status = response.status_code
            if 200 <= status < 300:
                replayed = response.headers.get(REPLAYED_HEADER, "").lower() == "true"
                detail = f"HTTP {status}" + (" (already processed: key replayed)" * replayed)
                return DeliveryResult("sent", attempt, status, detail, uncertain, replayed)
            outcome = "unknown" if status in _UNCERTAIN_STATUSES else "failed"
            if status == 429:
                wait = retry_after(response, channel.kind)
                detail = f"HTTP 429: rate limited for {wait:g} s"
                if wait > policy.max_retry_after_s:
                    detail += " (left for next run)"
                    return DeliveryResult("failed", attempt, status, detail, uncertain)
            elif status >= 500 or status == 408:
                detail = f"HTTP {status}"
            else:
                body = redact(response.text[:200], [channel])
                detail = f"HTTP {status}: {body}".strip()
                return DeliveryResult("failed", attempt, status, detail, uncertain)
        detail = redact(detail, [channel])
        if outcome == "unknown":
            uncertain = True
            if on_unknown is not None:
                on_unknown(DeliveryResult("unknown", attempt, status, detail, True))
        if attempt < policy.attempts:
            sleep(wait)
    return DeliveryResult(outcome, policy.attempts, status, detail, uncertain)


def retry_after(response: httpx.Response, kind: str = "webhook") -> float:
    """Seconds to wait after a 429. Discord: its JSON `retry_after` (seconds), else its headers.
    Slack and generic webhooks: the larger of the JSON `retry_after` and `Retry-After`, so neither
    is cut short. One second when the server gives no figure."""
    body = _body_retry_after(response)
    header = _header_retry_after(response)
    if kind == "discord":
        wait = body if body is not None else header
    else:
        wait = max((w for w in (body, header) if w is not None), default=None)
    return 1.0 if wait is None else wait


def _body_retry_after(response: httpx.Response) -> float | None:
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("retry_after") if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return _seconds(float(value))


def _header_retry_after(response: httpx.Response) -> float | None:
    header = response.headers.get("Retry-After") or response.headers.get("X-RateLimit-Reset-After")
    if not header:
        return None
    try:
        return _seconds(float(header))
    except ValueError:
        pass
    try:  # Retry-After may also be an HTTP date
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _seconds(value: float) -> float | None:
    return max(value, 0.0) if math.isfinite(value) else None  # "nan" parses as a float


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.backoff_s * 2 ** (attempt - 1), policy.max_backoff_s)
