{{ config(unique_key='decision_date', incremental_strategy='delete+insert') }}

-- One row per decision of the use case and date window, typed and deduplicated by id.
with source as (
    select * from {{ source('looper_logs', 'decisions') }}
    where use_case = '{{ var("use_case") }}'
      and cast(date as date) >= {{ window_start() }}
      and cast(date as date) < {{ window_end() }}
)

select
    decision_id,
    use_case,
    subject_id,
    cast("timestamp" as timestamptz) as decided_at,
    cast(date as date) as decision_date,
    features,
    action,
    cast(action_index as integer) as action_index,
    cast(propensity as double) as propensity,
    scores,
    model_version,
    blueprint_version,
    policy_version,
    explored,
    experiment_arm,
    cast(assignment_probability as double) as assignment_probability
from source
qualify row_number() over (partition by decision_id order by "timestamp") = 1
