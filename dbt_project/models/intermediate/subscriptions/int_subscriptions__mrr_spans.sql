{#- One row per stretch of days during which one version of a subscription is recurring
    revenue (docs/kpis.md, mrr): MRR on a day is the sum of `mrr` of the spans covering it,
    each subscription as it was on that day.

    A version counts from its change (`updated_at`; the first version seen, from the
    subscription's start: nothing older is known) until the next version or the end of the
    subscription, whichever comes first, in whole UTC days: a plan changed in place on
    5 March counts at the old MRR through 4 March and at the new one from 5 March. A
    paused version is not recurring revenue; a canceled one counts until its canceled_at
    (a cancellation scheduled for the end of the billing period still counts until then),
    else until it was marked canceled. The person is the customer's
    (int_identity__shop_customers), or the customer's own key for a customer the shop's
    extract does not hold yet, so that movements are per person. -#}

with

versions as (

    select * from {{ ref('stg_shop__subscription_versions') }}

),

shop_customers as (

    select * from {{ ref('int_identity__shop_customers') }}

),

sequenced as (

    select
        *,
        row_number() over subscription_versions as version_number,
        lead(updated_at) over subscription_versions as next_version_at,
        case when status = 'canceled' then coalesce(canceled_at, updated_at) else canceled_at end as ended_at
    from versions
    window subscription_versions as (
        partition by subscription_id order by updated_at asc nulls first, _extracted_at asc
    )

),

bounded as (

    select
        *,
        case when version_number = 1 then started_at else greatest(started_at, updated_at) end as counts_from,
        -- least ignores NULL: open-ended when neither a next version nor an end is known
        least(next_version_at, ended_at) as counts_until
    from sequenced
    where status <> 'paused'

),

final as (

    select
        bounded.subscription_version_id as mrr_span_id,
        bounded.subscription_id,
        bounded.version_number,
        bounded.shop_customer_id,
        coalesce(
            shop_customers.customer_key, {{ person_key('shop_customer', 'bounded.shop_customer_id') }}
        ) as customer_key,
        bounded.plan,
        -- no MRR given is no recurring revenue; a currency without an FX rate stays NULL
        -- (and fails this model's not_null test: never a silent 0)
        case when bounded.mrr is null then 0 else bounded.mrr_reporting end as mrr,
        {{ utc_date('bounded.counts_from') }} as first_date,
        {{ utc_date('bounded.counts_until') }} as end_date
    from bounded
    left join shop_customers on bounded.shop_customer_id = shop_customers.shop_customer_id
    where
        bounded.counts_from is not null
        and bounded.shop_customer_id is not null
        and (
            bounded.counts_until is null
            or {{ utc_date('bounded.counts_until') }} > {{ utc_date('bounded.counts_from') }}
        )

)

select * from final
