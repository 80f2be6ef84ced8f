-- Each metric per site over the last 7 days with data (the latest day in site_daily_health and
-- the 6 before it): the "temperature of greenhouse 3 this week" question, one row per day.
{{ config(materialized='view') }}

with latest as (
    select max(day) as last_day from {{ ref('site_daily_health') }}
)

select
    h.site_id,
    h.metric,
    h.day,
    cast({{ dbt.datediff('h.day', 'l.last_day', 'day') }} as integer) as days_ago,
    h.unit,
    h.device_count,
    h.reading_count,
    h.min_value,
    h.mean_value,
    h.max_value,
    h.completeness,
    h.anomaly_count
from {{ ref('site_daily_health') }} h
cross join latest l
where h.day > {{ dbt.dateadd('day', -7, 'l.last_day') }}
