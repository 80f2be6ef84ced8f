-- Per device and UTC day: how many of its expected readings arrived (completeness), in how many
-- hours it reported (uptime), its longest silence between reporting minutes, and its anomalies.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_window('day') }}",
) }}

with daily as (
    select
        {{ utc_date('window_start') }} as day,
        device_id,
        max(site_id) as site_id,
        count(distinct metric) as metrics_reported,
        cast(sum(reading_count) as bigint) as reading_count,
        sum(expected_count) as expected_count,
        sum(case when expected_count is not null
            then least(cast(reading_count as double precision), expected_count) end) as covered,
        min(first_event_time) as first_reading_at,
        max(last_event_time) as last_reading_at
    from {{ source('warehouse', 'sensor_readings_daily') }}
    where {{ in_time_window('window_start') }}
    group by {{ utc_date('window_start') }}, device_id
),

hours as (
    select
        {{ utc_date('window_start') }} as day,
        device_id,
        count(distinct window_start) as active_hours
    from {{ source('warehouse', 'sensor_readings_hourly') }}
    where reading_count > 0 and {{ in_time_window('window_start') }}
    group by {{ utc_date('window_start') }}, device_id
),

active_minutes as (
    select distinct device_id, window_start
    from {{ source('warehouse', 'sensor_readings_minute') }}
    where reading_count > 0 and {{ in_time_window('window_start') }}
),

minute_steps as (
    select
        device_id,
        {{ utc_date('window_start') }} as day,
        window_start,
        lag(window_start) over (
            partition by device_id, {{ utc_date('window_start') }} order by window_start
        ) as previous_start
    from active_minutes
),

minutes as (
    select
        day,
        device_id,
        count(*) as active_minutes,
        cast(max({{ dbt.datediff('previous_start', 'window_start', 'minute') }}) as integer)
            as max_minutes_between_readings
    from minute_steps
    group by day, device_id
),

anomalies as (
    select
        {{ utc_date('partition_hour') }} as day,
        device_id,
        count(distinct episode_id) as anomaly_count
    from {{ optional_source('warehouse', 'sensor_anomalies', {
        'episode_id': 'varchar', 'partition_hour': 'timestamp with time zone',
        'device_id': 'varchar'}) }} episodes
    where {{ in_time_window('partition_hour') }}
    group by {{ utc_date('partition_hour') }}, device_id
)

select
    d.day,
    d.device_id,
    d.site_id,
    d.metrics_reported,
    d.reading_count,
    d.expected_count,
    {{ ratio('d.covered', 'd.expected_count') }} as completeness,
    coalesce(h.active_hours, 0) as active_hours,
    {{ ratio('coalesce(h.active_hours, 0)', 24) }} as uptime_ratio,
    coalesce(m.active_minutes, 0) as active_minutes,
    m.max_minutes_between_readings,
    d.first_reading_at,
    d.last_reading_at,
    coalesce(a.anomaly_count, 0) as anomaly_count
from daily d
left join hours h on h.day = d.day and h.device_id = d.device_id
left join minutes m on m.day = d.day and m.device_id = d.device_id
left join anomalies a on a.day = d.day and a.device_id = d.device_id
