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
