-- One row per alert notification and channel: what it was about, when delivery was first and
-- last tried, how many HTTP requests it took, and where it stands: sent, expired (too old to
-- announce), or the last delivery step (failed, unknown, attempting). Rebuilt in full from the
-- append-only ledger on every run.
{{ config(materialized='table') }}

with ledger as (
    select *
    from {{ optional_source('warehouse', 'anomaly_alert_ledger', {
        'recorded_at': 'timestamp with time zone', 'notification_id': 'varchar',
        'episode_id': 'varchar', 'event': 'varchar', 'channel': 'varchar', 'outcome': 'varchar',
        'severity': 'varchar', 'device_id': 'varchar', 'site_id': 'varchar', 'metric': 'varchar',
        'rule': 'varchar', 'episode_start': 'timestamp with time zone', 'attempts': 'integer',
        'http_status': 'integer'}) }} attempts
),

ranked as (
    select
        *,
        row_number() over (
            partition by notification_id, channel order by recorded_at desc
        ) as newest_first
    from ledger
)

select
    notification_id,
    channel,
    max(episode_id) as episode_id,
    max(event) as event,
    max(severity) as severity,
    max(device_id) as device_id,
    max(site_id) as site_id,
    max(metric) as metric,
    max(rule) as rule,
    min(episode_start) as episode_start,
    min(recorded_at) as first_attempt_at,
    max(recorded_at) as last_attempt_at,
    min(case when outcome = 'sent' then recorded_at end) as sent_at,
    cast(sum(case when outcome in ('sent', 'failed', 'unknown') then 1 else 0 end) as bigint)
        as delivery_runs,
    cast(sum(attempts) as bigint) as http_requests,
    case
        when max(case when outcome = 'sent' then 1 else 0 end) = 1 then 'sent'
        when max(case when outcome = 'expired' then 1 else 0 end) = 1 then 'expired'
        else max(case when newest_first = 1 then outcome end)
    end as outcome
from ranked
group by notification_id, channel
