{#- Which person each shop customer is. docs/sources.md: a CRM contact and a shop customer
    are one person when their emails match after trimming and lower-casing. So:
    - a customer whose email belongs to a CRM contact joins that contact's person (the
      earliest created contact, should the CRM hold the email twice);
    - customers sharing an email that no contact has are one person (shops create a new
      account per guest checkout), anchored on the earliest created of them;
    - a customer without email, or known only from orders / subscriptions (not extracted
      yet), is a person of its own.
    The person's representative shop customer (`is_primary`) is its earliest created one. -#}

with

customers as (

    select * from {{ ref('stg_shop__customers') }}

),

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

subscriptions as (

    select * from {{ ref('stg_shop__subscriptions') }}

),

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

referenced_only as (

    -- ids that orders or subscriptions point at but the customers table lacks
    select shop_customer_id from orders
    where shop_customer_id is not null

    union

    select shop_customer_id from subscriptions
    where shop_customer_id is not null

    except
    select shop_customer_id from customers

),

all_customers as (

    select
        shop_customer_id,
        email_sha256,
        created_at,
        true as is_in_customers
    from customers

    union all

    select
        shop_customer_id,
        null as email_sha256,
        null as created_at,
        false as is_in_customers
    from referenced_only

),

contact_emails as (

    select
        email_sha256,
        contact_id,
        row_number() over (
            partition by email_sha256
            order by created_at asc, contact_id asc
        ) as contact_rank
    from contacts
    where email_sha256 is not null

),

matched as (

    select
        all_customers.*,
        contact_emails.contact_id,
        -- the group of customers that form one person: the contact, else the email, else itself
        coalesce(
            'contact:' || contact_emails.contact_id,
            'email:' || all_customers.email_sha256,
            'customer:' || all_customers.shop_customer_id::text
        ) as person_group
    from all_customers
    left join contact_emails
        on
            all_customers.email_sha256 = contact_emails.email_sha256
            and contact_emails.contact_rank = 1

),

ranked as (

    select
        *,
        row_number() over (
            partition by person_group
            order by created_at asc nulls last, shop_customer_id asc
        ) as group_rank,
        first_value(shop_customer_id) over (
            partition by person_group
            order by created_at asc nulls last, shop_customer_id asc
        ) as primary_shop_customer_id,
        count(*) over (partition by person_group) as group_size
    from matched

),

final as (

    select
        shop_customer_id,
        case
            when contact_id is not null then {{ person_key('crm_contact', 'contact_id') }}
            else {{ person_key('shop_customer', 'primary_shop_customer_id') }}
        end as customer_key,
        contact_id,
        email_sha256,
        created_at,
        case
            when contact_id is not null then 'crm_contact_email'
            when group_size > 1 then 'shop_customer_email'
            else 'none'
        end as match_type,
        group_rank = 1 as is_primary,
        is_in_customers
    from ranked

)

select * from final
