{#- A source table that may not exist yet (the anomaly and alert tables appear once detection and
    alerting have run). The dependency is always recorded, so lineage shows it; at run time a
    missing table reads as an empty result of the given columns. -#}
{% macro optional_source(source_name, table_name, columns) -%}
  {%- set relation = source(source_name, table_name) -%}
  {%- if execute and load_relation(relation) is none -%}
    {{ log("source " ~ relation ~ " does not exist yet: read as empty", info=true) }}
    (select
      {%- for name, type in columns.items() %}
      cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
      {%- endfor %}
    where 1 = 0)
  {%- else -%}
    {{ relation }}
  {%- endif -%}
{%- endmacro %}
