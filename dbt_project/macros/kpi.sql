{#- Measures of the web KPIs, shared by kpi_daily and kpi_monthly: the select list of an
    aggregate over the web events (or the sessions) of one day or one month. -#}

{% macro kpi_web_event_measures() -%}
    count(distinct anonymous_id) filter (where event_name = 'page_view') as unique_visitors,
    count(distinct session_id) as sessions,
    count(distinct session_id) filter (where event_name = 'purchase') as purchase_sessions,
    avg(engagement_time_s) filter (where event_name = 'page_view') as avg_engagement_time_s,
    max(_dt) as last_dt
{%- endmacro %}


{% macro kpi_web_session_measures() -%}
    count(*) filter (where page_views > 0) as page_view_sessions,
    count(*) filter (where is_bounce) as bounced_sessions,
    count(*) filter (where has_add_to_cart) as cart_sessions,
    count(*) filter (where has_add_to_cart and has_purchase) as cart_purchase_sessions,
    max(_last_dt) as last_dt
{%- endmacro %}


{#- Columns of int_kpi__contributions, in order: (name, type). The measures are summed by
    day (or month) in kpi_daily and kpi_monthly; a contribution fills the ones its source
    feeds and leaves the others NULL. -#}

{% macro kpi_contribution_columns() -%}
    {{- return([
        ('contribution_id', 'text'), ('contribution_type', 'text'), ('date_day', 'date'),
        ('customer_key', 'text'), ('shop_customer_id', 'text'), ('channel', 'text'),
        ('attribution_model', 'text'),
        ('new_contacts', 'integer'),
        ('ad_impressions', 'bigint'), ('ad_clicks', 'bigint'), ('ad_spend', 'numeric'),
        ('delivered_pairs', 'integer'), ('opened_pairs', 'integer'), ('clicked_pairs', 'integer'),
        ('unsubscribed_pairs', 'integer'),
        ('orders', 'integer'), ('revenue', 'numeric'), ('new_customers', 'integer'),
        ('person_orders', 'integer'), ('repeat_orders', 'integer'), ('upsell_orders', 'integer'),
        ('cohort_month', 'date'), ('first_order_of_month', 'integer'), ('order_net_revenue', 'numeric'),
        ('refunds', 'numeric'), ('attributed_revenue', 'numeric'),
        ('credited_conversions', 'numeric'), ('credited_revenue', 'numeric'),
        ('nps_answers', 'integer'), ('nps_promoters', 'integer'), ('nps_detractors', 'integer'),
        ('csat_answers', 'integer'), ('csat_satisfied', 'integer'),
        ('points_earned', 'bigint'), ('points_redeemed', 'bigint'), ('referrals', 'integer'),
        ('active_customers_delta', 'integer'), ('buyers_delta', 'integer'),
        ('repeat_buyers_delta', 'integer'), ('advocates_delta', 'integer'), ('mrr_delta', 'numeric'),
        ('_last_dt', 'date'),
    ]) -}}
{%- endmacro %}


{% macro kpi_contribution(values) -%}
    {#- The select list of one kind of contribution: `values` maps column names to SQL
        expressions; every other column is NULL. -#}
    {%- for name, type in kpi_contribution_columns() %}
        ({{ values.get(name, 'null') }})::{{ type }} as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}


{% macro first_stored_period_moved(period_column, first_period_sql) -%}
    {#- At run time, for an incremental model (this) whose stored rows carry running sums
        from its first period: whether that first stored period (min of period_column)
        differs from the first period of the data (the scalar query first_period_sql). -#}
    {%- if not execute or not is_incremental() -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set result = run_query(
        "select (select min(" ~ period_column ~ ") from " ~ this ~ ") is distinct from ("
        ~ first_period_sql ~ ")"
    ) -%}
    {{- return(result.columns[0].values()[0]) -}}
{%- endmacro %}


{% macro require_stored_columns(columns) -%}
    {#- At run time, for an incremental model (this) whose logic reads its own stored
        columns: fail with a clear message if the stored table lacks one of them (it was
        built by an older version of the project). -#}
    {#- (in a unit test, this is the name of its fixture: nothing to check) -#}
    {%- if execute and is_incremental() and this is not string -%}
        {%- set stored = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
        {%- for column in columns if column not in stored -%}
            {{ exceptions.raise_compiler_error(
                this ~ " has no column " ~ column ~ ": it was built by an older version of the project. "
                ~ "Rebuild it once with `.venv/bin/lw dbt build --full-refresh --select " ~ this.identifier ~ "+` "
                ~ "(README: after upgrading)") }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}


{#- The flows of kpi_daily and kpi_monthly other than web KPIs: sums of the contributions
    (int_kpi__contributions) of one day or month, and the KPIs computed from them. -#}

{% macro kpi_flow_columns() -%}
    {#- The KPI columns kpi_flow_measures computes, in its order. -#}
    {{- return([
        'new_contacts', 'ad_impressions', 'ad_clicks', 'ad_spend', 'ad_ctr', 'email_open_rate',
        'email_click_rate', 'email_unsubscribe_rate', 'orders', 'revenue', 'refunds',
        'net_revenue', 'aov', 'new_customers', 'cac', 'roas', 'nps', 'csat',
        'reward_redemption_rate', 'referrals',
    ]) -}}
{%- endmacro %}


{% macro kpi_contribution_sums() -%}
    sum(new_contacts) as new_contacts,
    sum(ad_impressions) as ad_impressions,
    sum(ad_clicks) as ad_clicks,
    sum(ad_spend) as ad_spend,
    sum(delivered_pairs) as delivered_pairs,
    sum(opened_pairs) as opened_pairs,
    sum(clicked_pairs) as clicked_pairs,
    sum(unsubscribed_pairs) as unsubscribed_pairs,
    sum(orders) as orders,
    sum(revenue) as revenue,
    sum(new_customers) as new_customers,
    sum(person_orders) as person_orders,
    sum(repeat_orders) as repeat_orders,
    sum(upsell_orders) as upsell_orders,
    sum(refunds) as refunds,
    sum(attributed_revenue) as attributed_revenue,
    sum(nps_answers) as nps_answers,
    sum(nps_promoters) as nps_promoters,
    sum(nps_detractors) as nps_detractors,
    sum(csat_answers) as csat_answers,
    sum(csat_satisfied) as csat_satisfied,
    sum(points_earned) as points_earned,
    -- 0, not null, in a period with earnings and no redemption: the rate is then 0
    coalesce(sum(points_redeemed), 0) as points_redeemed,
    sum(referrals) as referrals
{%- endmacro %}


{% macro kpi_flow_measures() -%}
    {#- Select list over the columns of kpi_contribution_sums: the columns of
        kpi_flow_columns, in that order. -#}

    ---------- awareness
    coalesce(new_contacts, 0)::bigint as new_contacts,
    coalesce(ad_impressions, 0)::bigint as ad_impressions,
    coalesce(ad_clicks, 0)::bigint as ad_clicks,
    coalesce(ad_spend, 0) as ad_spend,
    ad_clicks::numeric / nullif(ad_impressions, 0) as ad_ctr,

    ---------- engagement
    opened_pairs::numeric / nullif(delivered_pairs, 0) as email_open_rate,
    clicked_pairs::numeric / nullif(delivered_pairs, 0) as email_click_rate,
    unsubscribed_pairs::numeric / nullif(delivered_pairs, 0) as email_unsubscribe_rate,

    ---------- conversion
    coalesce(orders, 0)::bigint as orders,
    coalesce(revenue, 0) as revenue,
    coalesce(refunds, 0) as refunds,
    coalesce(revenue, 0) - coalesce(refunds, 0) as net_revenue,
    revenue / nullif(orders, 0) as aov,
    coalesce(new_customers, 0)::bigint as new_customers,
    ad_spend / nullif(new_customers, 0) as cac,
    coalesce(attributed_revenue, 0) / nullif(ad_spend, 0) as roas,

    ---------- loyalty
    100.0 * (nps_promoters - nps_detractors) / nullif(nps_answers, 0) as nps,
    100.0 * csat_satisfied / nullif(csat_answers, 0) as csat,
    points_redeemed::numeric / nullif(points_earned, 0) as reward_redemption_rate,
    coalesce(referrals, 0)::bigint as referrals
{%- endmacro %}


{% macro channel_changed_months(contributions_model) -%}
    {#- SQL: the months (changed_key) of the attribution credits and ad spend lines changed
        since the consuming model (this, channel_attribution) last ran, as they were and are. -#}
    {{ change_log_changed_keys(
        contributions_model,
        "date_trunc('month', date_day)::date",
        "contribution_type in ('attribution_credit', 'ad_spend')",
    ) }}
{%- endmacro %}
