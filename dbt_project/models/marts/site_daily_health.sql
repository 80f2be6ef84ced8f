-- Per site, UTC day and metric: how many devices reported, min / mean / max / stddev of the
-- values, how complete the data is, and how many anomaly episodes were active.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_window('day') }}",
) }}

with daily as (
    select
        {{ utc_date('window_start') }} as day,
        {{ site_label('site_id') }} as site_id,
        device_id,
        metric,
        unit,
        reading_count,
        min_value,
        max_value,
        mean_value,
        m2,
        expected_count
    from {{ source('warehouse', 'sensor_readings_daily') }}
    where {{ in_time_window('window_start') }}
),

totals as (
    select
        day,
        site_id,
        metric,
        max(unit) as unit,
        count(distinct device_id) as device_count,
        cast(sum(reading_count) as bigint) as reading_count,
        min(min_value) as min_value,
        max(max_value) as max_value,
        -- count-weighted: never an average of averages
        sum(mean_value * reading_count) / sum(reading_count) as mean_value,
        sum(expected_count) as expected_count,
        -- a device reporting faster than its cadence must not hide a silent one
        sum(case when expected_count is not null
            then least(cast(reading_count as double precision), expected_count) end) as covered
    from daily
    group by day, site_id, metric
),

spread as (
    -- exact merge of the per-device partials (Chan et al.): sum of m2 plus the spread of the means
    select
        d.day,
        d.site_id,
        d.metric,
        sum(d.m2 + d.reading_count * (d.mean_value - t.mean_value) * (d.mean_value - t.mean_value)) as m2
    from daily d
    join totals t on t.day = d.day and t.site_id = d.site_id and t.metric = d.metric
    group by d.day, d.site_id, d.metric
),

anomalies as (
    select
        {{ utc_date('partition_hour') }} as day,
        {{ site_label('site_id') }} as site_id,
        metric,
        count(distinct episode_id) as anomaly_count,
        count(distinct case when severity = 'critical' then episode_id end) as critical_anomaly_count
    from {{ optional_source('warehouse', 'sensor_anomalies', {
        'episode_id': 'varchar', 'partition_hour': 'timestamp with time zone',
        'site_id': 'varchar', 'metric': 'varchar', 'severity': 'varchar'}) }} episodes
    where metric is not null and {{ in_time_window('partition_hour') }}
    group by {{ utc_date('partition_hour') }}, {{ site_label('site_id') }}, metric
)

select
    t.day,
    t.site_id,
    t.metric,
    t.unit,
    t.device_count,
    t.reading_count,
    t.min_value,
    t.mean_value,
    t.max_value,
    case when t.reading_count > 1
        then sqrt(greatest(s.m2, 0) / (t.reading_count - 1)) end as stddev_value,
    t.expected_count,
    {{ ratio('t.covered', 't.expected_count') }} as completeness,
    coalesce(a.anomaly_count, 0) as anomaly_count,
    coalesce(a.critical_anomaly_count, 0) as critical_anomaly_count
from totals t
join spread s on s.day = t.day and s.site_id = t.site_id and s.metric = t.metric
left join anomalies a on a.day = t.day and a.site_id = t.site_id and a.metric = t.metric
