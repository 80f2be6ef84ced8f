"""`platform_notice_job`: one platform notice (the platform's own trouble, e.g. a stuck Kafka range)
to every alert channel. Ingest sensors ask for it with the notice's ledger key as run key, so
Dagster launches it once per notice however many ticks ask; the ledger keeps a retry or a re-run
from sending it again where it was sent (notify/platform.py)."""

import dagster as dg

from sensor_platform.defs.alerts import ALERT_LOCK, NO_CHANNEL
from sensor_platform.defs.resources import AlertsResource, WarehouseResource

NOTICE_JOB = "platform_notice_job"
NOTICE_OP = "send_platform_notice"
NOTICE_TAG = "sensor_platform/notice"
# A channel that is down: the op is tried again after waits of 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5
# minutes (Dagster's exponential backoff: (2^n - 1) x 30 s), an hour in all, each try with the
# delivery's own request retries, before the run fails.
NOTICE_RETRIES = dg.RetryPolicy(max_retries=6, delay=30, backoff=dg.Backoff.EXPONENTIAL)


class NoticeConfig(dg.Config):
    """A platform notice (notify.messages.PlatformNotice) as run config."""

    kind: str
    subject: str
    title: str
    text: str
    since: str  # ISO 8601
    facts: dict[str, str] = {}


@dg.op(name=NOTICE_OP, retry_policy=NOTICE_RETRIES, tags={"kind": "webhook"})
def send_platform_notice(
    context: dg.OpExecutionContext,
    config: NoticeConfig,
    warehouse: WarehouseResource,
    alerts: AlertsResource,
) -> None:
    """Send the notice to every configured channel that has not taken it yet (the alert ledger
    says which), holding the alert lock; fail while a channel did not take it, so it is tried
    again."""
    from sensor_platform.notify.ledger import AlertLedger
    from sensor_platform.notify.messages import PlatformNotice
    from sensor_platform.notify.platform import send_platform_notice as send

    notice = PlatformNotice.from_config(config.model_dump())
    setup = alerts.channel_setup()
    if not setup.configured:
        context.log.warning(f"{NO_CHANNEL}: platform notice {notice.key} not sent")
        return
    wh = warehouse.warehouse()
    with wh.exclusive(ALERT_LOCK):
        result = send(
            notice, AlertLedger(wh), setup.channels, policy=alerts.policy(), run_id=context.run_id
        )
    context.log.info(
        f"platform notice {notice.key}: sent to {result.sent or 'none'}, "
        f"sent before to {result.already or 'none'}"
    )
    problems = {**setup.errors, **result.undelivered}
    if problems:
        text = "; ".join(f"{name}: {why}" for name, why in sorted(problems.items()))
        # a misconfigured channel needs a person, not another try
        raise dg.Failure(
            f"platform notice {notice.key} not delivered: {text}",
            allow_retries=bool(result.undelivered),
        )


@dg.job(
    name=NOTICE_JOB,
    description="Sends one platform notice (e.g. a stuck Kafka range) to every alert channel, "
    "once; asked for by the ingestion sensors.",
    executor_def=dg.in_process_executor,
)
def platform_notice_job():
    send_platform_notice()


def notice_request(notice) -> dg.RunRequest:
    """The run that announces `notice` (a notify.messages.PlatformNotice): keyed by its ledger
    key, so a sensor may ask on every tick and Dagster launches it once."""
    return dg.RunRequest(
        job_name=NOTICE_JOB,
        run_key=notice.key,
        run_config={"ops": {NOTICE_OP: {"config": notice.config()}}},
        tags={NOTICE_TAG: notice.key},
    )
