-- Every first valid order is one conversion: in each month the cohort sizes of
-- cohort_retention and, for every attribution model, the conversions of
-- channel_attribution (weights sum to 1 per conversion, up to numeric rounding) equal
-- kpi_monthly's new_customers. Returns the disagreeing months.

with

kpi_monthly as (

    select * from {{ ref('kpi_monthly') }}

),

cohort_retention as (

    select * from {{ ref('cohort_retention') }}

),

channel_attribution as (

    select * from {{ ref('channel_attribution') }}

),

cohorts as (

    select
        cohort_month as month,
        cohort_size
    from cohort_retention
    where months_since_first_order = 0

),

attributed as (

    select
        month,
        attribution_model,
        sum(conversions) as conversions
    from channel_attribution
    group by month, attribution_model

),

models as (

    select attribution_model
    from (
        values ('first_touch'), ('last_touch'), ('linear'), ('position_based')
    ) as attribution_models (attribution_model)

)

select
    kpi_monthly.month,
    models.attribution_model,
    kpi_monthly.new_customers,
    coalesce(cohorts.cohort_size, 0) as cohort_size,
    coalesce(attributed.conversions, 0) as attributed_conversions
from kpi_monthly
cross join models
left join cohorts on kpi_monthly.month = cohorts.month
left join attributed
    on
        kpi_monthly.month = attributed.month
        and models.attribution_model = attributed.attribution_model
where
    kpi_monthly.new_customers <> coalesce(cohorts.cohort_size, 0)
    -- fractional weights (1/3, 0.2/3, ...) sum to 1 up to numeric rounding
    or abs(kpi_monthly.new_customers - coalesce(attributed.conversions, 0)) > 1e-9
