{#- The partition window as DATE literals. -#}
{% macro window_start() -%} date '{{ var("start_date") }}' {%- endmacro %}
{% macro window_end() -%} date '{{ var("end_date") }}' {%- endmacro %}

{#- Observations can arrive up to the longest label window after the last decision day. -#}
{% macro max_window_days() -%}
{%- set hours = [0] -%}
{%- for l in var('labels') -%}{%- do hours.append(l['window_hours']) -%}{%- endfor -%}
{{ ((hours | max) / 24) | round(0, 'ceil') | int + 1 }}
{%- endmacro %}
