-- Every device the aggregates have seen: its current site, when it first and last reported, and
-- how much. Rebuilt in full on every run (one row per device and day is read).
{{ config(materialized='table') }}

with device_days as (
    select
        device_id,
        site_id,
        {{ utc_date('window_start') }} as day,
        metric,
        reading_count
    from {{ source('warehouse', 'sensor_readings_daily') }}
),

latest_site as (
    select device_id, site_id
    from (
        select
            device_id,
            site_id,
            row_number() over (partition by device_id order by day desc, site_id) as recency
        from device_days
        where site_id is not null
    ) ranked
    where recency = 1
)

select
    d.device_id,
    s.site_id as current_site_id,
    min(d.day) as first_day,
    max(d.day) as last_day,
    count(distinct d.day) as days_reporting,
    count(distinct d.metric) as metric_count,
    cast(sum(d.reading_count) as bigint) as reading_count
from device_days d
left join latest_site s on s.device_id = d.device_id
group by d.device_id, s.site_id
