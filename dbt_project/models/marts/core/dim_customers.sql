{#- One row per person (after identity resolution), with order totals and the current
    lifecycle stage. Holds no plain email or phone: only email_sha256. -#}

with

persons as (

    select * from {{ ref('int_identity__persons') }}

),

orders as (

    select * from {{ ref('int_orders__orders') }}

),

stage_intervals as (

    select * from {{ ref('int_lifecycle__stage_intervals') }}

),

valid_orders_by_person as (

    select
        customer_key,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        count(*) as orders_count,
        sum(revenue) as revenue,
        sum(refunded_amount) as refunded_amount,
        sum(net_revenue) as net_revenue
    from orders
    where is_valid and customer_key is not null
    group by customer_key

),

current_stages as (

    select
        customer_key,
        stage,
        valid_from
    from stage_intervals
    where is_current

),

final as (

    select
        ---------- ids
        persons.customer_key,
        persons.contact_id,
        persons.shop_customer_id,
        persons.email_sha256,
        persons.identity_type,

        ---------- attributes
        persons.country,
        persons.acquisition_channel,
        persons.first_seen_at,

        ---------- orders (valid orders only, reporting currency)
        valid_orders_by_person.first_order_at,
        valid_orders_by_person.last_order_at,
        coalesce(valid_orders_by_person.orders_count, 0) as orders_count,
        coalesce(valid_orders_by_person.revenue, 0) as revenue,
        coalesce(valid_orders_by_person.refunded_amount, 0) as refunded_amount,
        coalesce(valid_orders_by_person.net_revenue, 0) as net_revenue,

        ---------- lifecycle
        current_stages.stage as lifecycle_stage,
        current_stages.valid_from as lifecycle_stage_since

    from persons
    left join valid_orders_by_person
        on persons.customer_key = valid_orders_by_person.customer_key
    left join current_stages
        on persons.customer_key = current_stages.customer_key

)

select * from final
