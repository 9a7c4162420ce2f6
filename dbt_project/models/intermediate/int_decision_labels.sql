{{ config(unique_key='decision_date', incremental_strategy='delete+insert') }}

-- Each decision joined to the observations inside each label's window after it,
-- aggregated as the blueprint says (labels come from the dbt var `labels`).
with decisions as (
    select decision_id, decided_at, decision_date
    from {{ ref('stg_decisions') }}
    where decision_date >= {{ window_start() }} and decision_date < {{ window_end() }}
),

label_definitions as (
    {{ label_definitions() }}
),

observations as (
    select decision_id, name, value, observed_at
    from {{ ref('stg_observations') }}
),

matched as (
    -- only decisions that have observations inside a window (a small share of all pairs)
    select
        d.decision_id,
        l.label,
        l.aggregation,
        case l.aggregation when 'max' then max(o.value) when 'sum' then sum(o.value) end as aggregated,
        count(o.value) as n_observations,
        min(epoch_us(o.observed_at) - epoch_us(d.decided_at)) / 1e6 as first_delay_s
    from decisions as d
    inner join observations as o
        on o.decision_id = d.decision_id
        and o.observed_at >= d.decided_at
    inner join label_definitions as l
        on o.name = l.label
        and epoch_us(o.observed_at) < epoch_us(d.decided_at) + cast(l.window_hours * 3600e6 as bigint)
    group by d.decision_id, l.label, l.aggregation
)

select
    d.decision_id,
    d.decision_date,
    l.label,
    case l.aggregation
        when 'count' then cast(coalesce(m.n_observations, 0) as double)
        else coalesce(m.aggregated, l.fill_value)
    end as value,
    coalesce(m.n_observations, 0) as n_observations,
    m.first_delay_s
from decisions as d
cross join label_definitions as l
left join matched as m
    on m.decision_id = d.decision_id
    and m.label = l.label
