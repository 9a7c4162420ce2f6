{#- The blueprint's label definitions (dbt var `labels`) as a relation. -#}
{% macro label_definitions() -%}
{%- set labels = var('labels') -%}
{%- if labels | length == 0 and execute -%}
    {{ exceptions.raise_compiler_error("var 'labels' is empty: pass the blueprint's label definitions") }}
{%- endif -%}
select * from (values
{%- for l in labels %}
    ('{{ l["name"] }}', cast({{ l["window_hours"] }} as double), '{{ l["aggregation"] }}', cast({{ l.get("fill_value", 0) }} as double)){{ "," if not loop.last }}
{%- endfor %}
) as t(label, window_hours, aggregation, fill_value)
{%- endmacro %}
