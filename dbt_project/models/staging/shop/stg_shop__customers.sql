with

source as (

    select * from {{ source('shop', 'customers') }}

),

renamed as (

    select
        ---------- ids
        customer_id as shop_customer_id,
        {{ hash_email('email') }} as email_sha256,

        ---------- timestamps
        created_at,
        updated_at,

        ---------- load metadata
        _extracted_at

    from source

)

select * from renamed
