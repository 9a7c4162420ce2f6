{{ config(unique_key='observation_date', incremental_strategy='delete+insert') }}

-- Observations that can fall inside a label window of the decisions in the date window,
-- deduplicated by observation id (observations are idempotent).
with source as (
    select * from {{ source('looper_logs', 'observations') }}
    where use_case = '{{ var("use_case") }}'
      and cast(date as date) >= {{ window_start() }}
      and cast(date as date) < {{ window_end() }} + {{ max_window_days() }}
)

select
    observation_id,
    decision_id,
    use_case,
    name,
    cast(value as double) as value,
    cast("timestamp" as timestamptz) as observed_at,
    cast(date as date) as observation_date
from source
qualify row_number() over (partition by observation_id order by "timestamp") = 1
