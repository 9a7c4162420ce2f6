{{ config(unique_key='decision_date', incremental_strategy='delete+insert') }}

-- One row per decision: what the model saw, what was done, and the labels that followed.
with labels as (
    select
        decision_id,
        {%- for l in var('labels') %}
        max(case when label = '{{ l["name"] }}' then value end) as "{{ l['name'] }}",
        {%- endfor %}
        sum(n_observations) as n_observations
    from {{ ref('int_decision_labels') }}
    where decision_date >= {{ window_start() }} and decision_date < {{ window_end() }}
    group by decision_id
)

select
    d.decision_id,
    d.subject_id,
    d.decided_at,
    d.decision_date,
    d.features,
    d.action,
    d.action_index,
    d.propensity,
    d.scores,
    d.explored,
    d.experiment_arm,
    d.assignment_probability,
    d.model_version,
    d.blueprint_version,
    d.policy_version,
    {%- for l in var('labels') %}
    l."{{ l['name'] }}",
    {%- endfor %}
    l.n_observations
from {{ ref('stg_decisions') }} as d
inner join labels as l using (decision_id)
where d.decision_date >= {{ window_start() }} and d.decision_date < {{ window_end() }}
