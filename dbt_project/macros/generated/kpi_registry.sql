{#- Generated from dbt_project/kpi_registry.yml by `python -m
    lifecycle_warehouse.generate`: do not edit (a test fails when it is stale). The KPI columns of kpi_daily
    and kpi_monthly, per grain and family, with their SQL expressions; the measures by
    source. Read by macros/kpi_marts.sql. -#}

{% macro kpi_registry() -%}
{{- return(fromjson('{
  "grains": {
    "day": {
      "columns": [
        "unique_visitors",
        "sessions",
        "new_contacts",
        "ad_impressions",
        "ad_clicks",
        "ad_spend",
        "ad_ctr",
        "bounce_rate",
        "avg_engagement_time_s",
        "email_open_rate",
        "email_click_rate",
        "email_unsubscribe_rate",
        "orders",
        "revenue",
        "refunds",
        "net_revenue",
        "aov",
        "new_customers",
        "session_conversion_rate",
        "cart_abandonment_rate",
        "cac",
        "roas",
        "active_customers",
        "buyers",
        "repeat_buyers",
        "repeat_purchase_rate",
        "mrr",
        "nps",
        "csat",
        "reward_redemption_rate",
        "referrals",
        "advocates"
      ],
      "web": [
        [
          "unique_visitors",
          "(coalesce(unique_visitors, 0))::bigint"
        ],
        [
          "sessions",
          "(coalesce(sessions, 0))::bigint"
        ],
        [
          "bounce_rate",
          "((coalesce(bounced_sessions, 0))::numeric / nullif(page_view_sessions, 0))::numeric"
        ],
        [
          "avg_engagement_time_s",
          "(avg_engagement_time_s)::numeric"
        ],
        [
          "session_conversion_rate",
          "((coalesce(purchase_sessions, 0))::numeric / nullif(sessions, 0))::numeric"
        ],
        [
          "cart_abandonment_rate",
          "(1 - (coalesce(cart_purchase_sessions, 0))::numeric / nullif(cart_sessions, 0))::numeric"
        ]
      ],
      "flow": [
        [
          "new_contacts",
          "(coalesce(new_contacts, 0))::bigint"
        ],
        [
          "ad_impressions",
          "(coalesce(ad_impressions, 0))::bigint"
        ],
        [
          "ad_clicks",
          "(coalesce(ad_clicks, 0))::bigint"
        ],
        [
          "ad_spend",
          "(coalesce(ad_spend, 0))::numeric"
        ],
        [
          "ad_ctr",
          "((coalesce(ad_clicks, 0))::numeric / nullif(ad_impressions, 0))::numeric"
        ],
        [
          "email_open_rate",
          "((coalesce(opened_pairs, 0))::numeric / nullif(delivered_pairs, 0))::numeric"
        ],
        [
          "email_click_rate",
          "((coalesce(clicked_pairs, 0))::numeric / nullif(delivered_pairs, 0))::numeric"
        ],
        [
          "email_unsubscribe_rate",
          "((coalesce(unsubscribed_pairs, 0))::numeric / nullif(delivered_pairs, 0))::numeric"
        ],
        [
          "orders",
          "(coalesce(orders, 0))::bigint"
        ],
        [
          "revenue",
          "(coalesce(revenue, 0))::numeric"
        ],
        [
          "refunds",
          "(coalesce(refunds, 0))::numeric"
        ],
        [
          "net_revenue",
          "(coalesce(revenue, 0) - coalesce(refunds, 0))::numeric"
        ],
        [
          "aov",
          "((coalesce(revenue, 0))::numeric / nullif(orders, 0))::numeric"
        ],
        [
          "new_customers",
          "(coalesce(new_customers, 0))::bigint"
        ],
        [
          "cac",
          "((coalesce(ad_spend, 0))::numeric / nullif(new_customers, 0))::numeric"
        ],
        [
          "roas",
          "((coalesce(attributed_revenue, 0))::numeric / nullif(ad_spend, 0))::numeric"
        ],
        [
          "nps",
          "(100 * (coalesce(nps_promoters, 0) - coalesce(nps_detractors, 0))::numeric / nullif(nps_answers, 0))::numeric"
        ],
        [
          "csat",
          "(100 * (coalesce(csat_satisfied, 0))::numeric / nullif(csat_answers, 0))::numeric"
        ],
        [
          "reward_redemption_rate",
          "((coalesce(points_redeemed, 0))::numeric / nullif(points_earned, 0))::numeric"
        ],
        [
          "referrals",
          "(coalesce(referrals, 0))::bigint"
        ]
      ],
      "stock": [
        [
          "active_customers",
          "(active_customers)::bigint"
        ],
        [
          "buyers",
          "(buyers)::bigint"
        ],
        [
          "repeat_buyers",
          "(repeat_buyers)::bigint"
        ],
        [
          "repeat_purchase_rate",
          "((coalesce(repeat_buyers, 0))::numeric / nullif(buyers, 0))::numeric"
        ],
        [
          "mrr",
          "(mrr)::numeric"
        ],
        [
          "advocates",
          "(advocates)::bigint"
        ]
      ],
      "mrr": [],
      "derived": []
    },
    "month": {
      "columns": [
        "unique_visitors",
        "sessions",
        "new_contacts",
        "ad_impressions",
        "ad_clicks",
        "ad_spend",
        "ad_ctr",
        "bounce_rate",
        "avg_engagement_time_s",
        "email_open_rate",
        "email_click_rate",
        "email_unsubscribe_rate",
        "orders",
        "revenue",
        "refunds",
        "net_revenue",
        "aov",
        "new_customers",
        "session_conversion_rate",
        "cart_abandonment_rate",
        "cac",
        "roas",
        "active_customers",
        "buyers",
        "repeat_buyers",
        "repeat_purchase_rate",
        "active_customers_at_start",
        "churn_rate",
        "churned_customers",
        "customer_retention_rate",
        "reactivated_customers",
        "churned_customers_at_start",
        "reactivation_rate",
        "purchase_frequency",
        "mrr",
        "new_mrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
        "nps",
        "csat",
        "reward_redemption_rate",
        "referrals",
        "upsell_rate",
        "advocates"
      ],
      "web": [
        [
          "unique_visitors",
          "(coalesce(unique_visitors, 0))::bigint"
        ],
        [
          "sessions",
          "(coalesce(sessions, 0))::bigint"
        ],
        [
          "bounce_rate",
          "((coalesce(bounced_sessions, 0))::numeric / nullif(page_view_sessions, 0))::numeric"
        ],
        [
          "avg_engagement_time_s",
          "(avg_engagement_time_s)::numeric"
        ],
        [
          "session_conversion_rate",
          "((coalesce(purchase_sessions, 0))::numeric / nullif(sessions, 0))::numeric"
        ],
        [
          "cart_abandonment_rate",
          "(1 - (coalesce(cart_purchase_sessions, 0))::numeric / nullif(cart_sessions, 0))::numeric"
        ]
      ],
      "flow": [
        [
          "new_contacts",
          "(coalesce(new_contacts, 0))::bigint"
        ],
        [
          "ad_impressions",
          "(coalesce(ad_impressions, 0))::bigint"
        ],
        [
          "ad_clicks",
          "(coalesce(ad_clicks, 0))::bigint"
        ],
        [
          "ad_spend",
          "(coalesce(ad_spend, 0))::numeric"
        ],
        [
          "ad_ctr",
          "((coalesce(ad_clicks, 0))::numeric / nullif(ad_impressions, 0))::numeric"
        ],
        [
          "email_open_rate",
          "((coalesce(opened_pairs, 0))::numeric / nullif(delivered_pairs, 0))::numeric"
        ],
        [
          "email_click_rate",
          "((coalesce(clicked_pairs, 0))::numeric / nullif(delivered_pairs, 0))::numeric"
        ],
        [
          "email_unsubscribe_rate",
          "((coalesce(unsubscribed_pairs, 0))::numeric / nullif(delivered_pairs, 0))::numeric"
        ],
        [
          "orders",
          "(coalesce(orders, 0))::bigint"
        ],
        [
          "revenue",
          "(coalesce(revenue, 0))::numeric"
        ],
        [
          "refunds",
          "(coalesce(refunds, 0))::numeric"
        ],
        [
          "net_revenue",
          "(coalesce(revenue, 0) - coalesce(refunds, 0))::numeric"
        ],
        [
          "aov",
          "((coalesce(revenue, 0))::numeric / nullif(orders, 0))::numeric"
        ],
        [
          "new_customers",
          "(coalesce(new_customers, 0))::bigint"
        ],
        [
          "cac",
          "((coalesce(ad_spend, 0))::numeric / nullif(new_customers, 0))::numeric"
        ],
        [
          "roas",
          "((coalesce(attributed_revenue, 0))::numeric / nullif(ad_spend, 0))::numeric"
        ],
        [
          "active_customers_at_start",
          "(coalesce(active_at_start, 0))::bigint"
        ],
        [
          "churn_rate",
          "((coalesce(churned_persons, 0))::numeric / nullif(active_at_start, 0))::numeric"
        ],
        [
          "churned_customers",
          "(coalesce(churns, 0))::bigint"
        ],
        [
          "customer_retention_rate",
          "((coalesce(active_at_end, 0) - coalesce(new_customers, 0))::numeric / nullif(active_at_start, 0))::numeric"
        ],
        [
          "reactivated_customers",
          "(coalesce(reactivations, 0))::bigint"
        ],
        [
          "purchase_frequency",
          "((coalesce(person_orders, 0))::numeric / nullif(ordering_persons, 0))::numeric"
        ],
        [
          "nps",
          "(100 * (coalesce(nps_promoters, 0) - coalesce(nps_detractors, 0))::numeric / nullif(nps_answers, 0))::numeric"
        ],
        [
          "csat",
          "(100 * (coalesce(csat_satisfied, 0))::numeric / nullif(csat_answers, 0))::numeric"
        ],
        [
          "reward_redemption_rate",
          "((coalesce(points_redeemed, 0))::numeric / nullif(points_earned, 0))::numeric"
        ],
        [
          "referrals",
          "(coalesce(referrals, 0))::bigint"
        ],
        [
          "upsell_rate",
          "((coalesce(upsell_orders, 0))::numeric / nullif(repeat_orders, 0))::numeric"
        ]
      ],
      "stock": [
        [
          "active_customers",
          "(active_customers)::bigint"
        ],
        [
          "buyers",
          "(buyers)::bigint"
        ],
        [
          "repeat_buyers",
          "(repeat_buyers)::bigint"
        ],
        [
          "repeat_purchase_rate",
          "((coalesce(repeat_buyers, 0))::numeric / nullif(buyers, 0))::numeric"
        ],
        [
          "churned_customers_at_start",
          "(coalesce(buyers__at_start, 0) - coalesce(active_customers__at_start, 0))::bigint"
        ],
        [
          "mrr",
          "(mrr)::numeric"
        ],
        [
          "advocates",
          "(advocates)::bigint"
        ]
      ],
      "mrr": [
        [
          "new_mrr",
          "(coalesce(new_mrr, 0))::numeric"
        ],
        [
          "expansion_mrr",
          "(coalesce(expansion_mrr, 0))::numeric"
        ],
        [
          "contraction_mrr",
          "(coalesce(contraction_mrr, 0))::numeric"
        ],
        [
          "churned_mrr",
          "(coalesce(churned_mrr, 0))::numeric"
        ]
      ],
      "derived": [
        [
          "reactivation_rate",
          "((coalesce(reactivated_customers, 0))::numeric / nullif(churned_customers_at_start, 0))::numeric"
        ]
      ]
    }
  },
  "measures": {
    "contribution": [
      [
        "new_contacts",
        "integer"
      ],
      [
        "ad_impressions",
        "bigint"
      ],
      [
        "ad_clicks",
        "bigint"
      ],
      [
        "ad_spend",
        "numeric"
      ],
      [
        "delivered_pairs",
        "integer"
      ],
      [
        "opened_pairs",
        "integer"
      ],
      [
        "clicked_pairs",
        "integer"
      ],
      [
        "unsubscribed_pairs",
        "integer"
      ],
      [
        "orders",
        "integer"
      ],
      [
        "revenue",
        "numeric"
      ],
      [
        "new_customers",
        "integer"
      ],
      [
        "person_orders",
        "integer"
      ],
      [
        "repeat_orders",
        "integer"
      ],
      [
        "upsell_orders",
        "integer"
      ],
      [
        "refunds",
        "numeric"
      ],
      [
        "nps_answers",
        "integer"
      ],
      [
        "nps_promoters",
        "integer"
      ],
      [
        "nps_detractors",
        "integer"
      ],
      [
        "csat_answers",
        "integer"
      ],
      [
        "csat_satisfied",
        "integer"
      ],
      [
        "points_earned",
        "bigint"
      ],
      [
        "points_redeemed",
        "bigint"
      ],
      [
        "referrals",
        "integer"
      ],
      [
        "churns",
        "integer"
      ],
      [
        "reactivations",
        "integer"
      ]
    ],
    "paid_attribution": [
      "attributed_revenue"
    ],
    "web": [
      "unique_visitors",
      "sessions",
      "purchase_sessions",
      "avg_engagement_time_s",
      "page_view_sessions",
      "bounced_sessions",
      "cart_sessions",
      "cart_purchase_sessions"
    ],
    "stock": [
      [
        "active_customers",
        "active_customers_delta",
        "integer"
      ],
      [
        "buyers",
        "buyers_delta",
        "integer"
      ],
      [
        "repeat_buyers",
        "repeat_buyers_delta",
        "integer"
      ],
      [
        "advocates",
        "advocates_delta",
        "integer"
      ],
      [
        "mrr",
        "mrr_delta",
        "numeric"
      ]
    ],
    "activity": [
      "active_at_start",
      "active_at_end",
      "churned_persons",
      "ordering_persons"
    ],
    "mrr": [
      "new_mrr",
      "expansion_mrr",
      "contraction_mrr",
      "churned_mrr"
    ]
  }
}')) -}}
{%- endmacro %}
