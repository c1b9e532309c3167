-- Every combination of recency, frequency and monetary scores (1-5 each) matches a rule of
-- the rfm_segments seed, so that every customer of customer_clv gets a segment. Returns
-- the combinations no rule holds.

with

rules as (

    select * from {{ ref('rfm_segments') }}

),

scores as (

    select
        r.score as r_score,
        f.score as f_score,
        m.score as m_score
    from generate_series(1, 5) as r (score)
    cross join generate_series(1, 5) as f (score)
    cross join generate_series(1, 5) as m (score)

),

matches as (

    select
        scores.r_score,
        scores.f_score,
        scores.m_score,
        count(rules.priority) as matching_rules
    from scores
    left join rules
        on
            scores.r_score between rules.r_min and rules.r_max
            and scores.f_score between rules.f_min and rules.f_max
            and scores.m_score between rules.m_min and rules.m_max
    group by scores.r_score, scores.f_score, scores.m_score

),

final as (

    select
        r_score,
        f_score,
        m_score
    from matches
    where matching_rules = 0

)

select * from final
