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

in_window as (
    select
        d.decision_id,
        d.decision_date,
        l.label,
        l.aggregation,
        l.fill_value,
        o.value,
        epoch_us(o.observed_at) - epoch_us(d.decided_at) as delay_us
    from decisions as d
    cross join label_definitions as l
    left join observations as o
        on o.decision_id = d.decision_id
        and o.name = l.label
        and o.observed_at >= d.decided_at
        and epoch_us(o.observed_at) < epoch_us(d.decided_at) + cast(l.window_hours * 3600e6 as bigint)
)

select
    decision_id,
    decision_date,
    label,
    case aggregation
        when 'max' then coalesce(max(value), any_value(fill_value))
        when 'sum' then coalesce(sum(value), any_value(fill_value))
        else cast(count(value) as double)
    end as value,
    count(value) as n_observations,
    min(delay_us) / 1e6 as first_delay_s
from in_window
group by decision_id, decision_date, label, aggregation
