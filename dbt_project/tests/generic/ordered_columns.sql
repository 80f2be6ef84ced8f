{#- Each column is <= the next one (e.g. min <= mean <= max), up to a relative float tolerance:
    a count-weighted mean may land one rounding step outside its bounds. -#}
{% test ordered_columns(model, columns, tolerance=0.000000001) %}
select {{ columns | join(', ') }}
from {{ model }}
where
{%- for i in range(columns | length - 1) %}
  {{ columns[i] }} > {{ columns[i + 1] }}
    + {{ tolerance }} * (abs({{ columns[i] }}) + abs({{ columns[i + 1] }}) + 1)
  {{ "or" if not loop.last }}
{%- endfor %}
{% endtest %}
