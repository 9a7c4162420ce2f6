{{ config(unique_key='decision_date', incremental_strategy='delete+insert') }}

-- Decisions assigned by the randomised experiment, with their assignment probability:
-- the input of causal (heterogeneous treatment effect) evaluation.
select
    decision_id,
    subject_id,
    decided_at,
    decision_date,
    features,
    experiment_arm,
    action,
    action_index,
    assignment_probability,
    {%- for l in var('labels') %}
    "{{ l['name'] }}"{{ "," if not loop.last }}
    {%- endfor %}
from {{ ref('fct_training_examples') }}
where experiment_arm is not null
  and decision_date >= {{ window_start() }} and decision_date < {{ window_end() }}
