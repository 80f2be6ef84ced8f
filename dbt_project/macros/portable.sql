{#- SQL that means the same on DuckDB and PostgreSQL. -#}

{#- The UTC calendar day of a timestamp with time zone. -#}
{% macro utc_date(column) -%}
  cast({{ column }} at time zone 'UTC' as date)
{%- endmacro %}


{#- Readings without a site form their own group, under a label that cannot be NULL. -#}
{% macro site_label(column) -%}
  coalesce({{ column }}, '(unassigned)')
{%- endmacro %}


{% macro ratio(numerator, denominator) -%}
  cast({{ numerator }} as double precision) / nullif(cast({{ denominator }} as double precision), 0)
{%- endmacro %}
