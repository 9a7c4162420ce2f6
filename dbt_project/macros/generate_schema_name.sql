{#- Each use case gets its own schema: <use_case>.<model>. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ var('use_case') }}
{%- endmacro %}
