{#- The partition window [min_date, max_date) that Dagster passes as vars. Only validated
    YYYY-MM-DD strings ever reach the SQL text. -#}

{% macro window_date(name) -%}
  {%- set value = var(name) | string -%}
  {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value) -%}
    {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a date YYYY-MM-DD, got '" ~ value ~ "'") }}
  {%- endif -%}
  {{ value }}
{%- endmacro %}


{#- Rows of a timestamp column inside the window. Compared with UTC timestamp literals, so an
    index on the column is used and the session time zone does not matter. -#}
{% macro in_time_window(column) -%}
  {{ column }} >= cast('{{ window_date("min_date") }} 00:00:00+00' as timestamp with time zone)
  and {{ column }} < cast('{{ window_date("max_date") }} 00:00:00+00' as timestamp with time zone)
{%- endmacro %}


{% macro in_date_window(column) -%}
  {{ column }} >= cast('{{ window_date("min_date") }}' as date)
  and {{ column }} < cast('{{ window_date("max_date") }}' as date)
{%- endmacro %}


{#- pre_hook of the daily incremental models: a run replaces exactly its window's days (inside
    the same transaction as the insert), so re-running a partition never duplicates rows and a
    day whose source rows disappeared is emptied. -#}
{% macro delete_window(column='day') -%}
  {%- if is_incremental() -%}
    delete from {{ this }} where {{ in_date_window(column) }}
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
