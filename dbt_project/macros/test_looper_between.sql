{#- Values of a column within [min_value, max_value] (nulls pass; bounds optional). -#}
{% test looper_between(model, column_name, min_value=none, max_value=none, min_exclusive=false) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and (
    false
    {%- if min_value is not none %}
    or {{ column_name }} {{ "<=" if min_exclusive else "<" }} {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
    or {{ column_name }} > {{ max_value }}
    {%- endif %}
  )
{% endtest %}
