"""The ad platforms' daily reports (marketing/ad_spend): one row per paid campaign and
day while it runs. Clicks follow the landing sessions the web export actually holds for
that campaign and day (plus clicks that never loaded the page), so spend, sessions and
conversions tell one consistent story for CAC and ROAS."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from lifecycle_warehouse import contract
from lifecycle_warehouse.simulator.model import World, stream
from lifecycle_warehouse.simulator.writers import DayFiles, check_fields

AD_SPEND_FIELDS = (
    "date", "channel", "campaign_id", "utm_source", "utm_medium", "utm_campaign", "impressions", "clicks",
    "spend", "currency",
)
LOST_CLICKS = (0.05, 0.25)  # share of clicks on top of landings: the page never loaded


def write_ad_spend(world: World, landings: Counter, seed: int, landing_dir: Path) -> tuple[DayFiles, dict]:
    clock = world.clock
    entity = contract.file_entity("marketing", "ad_spend")
    check_fields(entity, AD_SPEND_FIELDS)
    rng = stream(seed, "ad-spend")
    files = DayFiles(landing_dir, entity, clock, name="ad_spend")
    paid = [c for c in world.campaigns if c.spec.cpc > 0]
    spend = Counter()
    clicks_total = impressions_total = 0
    for day in range(clock.days):
        date = clock.date_of_index(day)
        for c in paid:
            if date < c.start_date or (c.end_date is not None and date > c.end_date):
                continue
            landed = landings.get((c.campaign_id, day), 0)
            clicks = landed + round(landed * rng.uniform(*LOST_CLICKS))
            if clicks:
                impressions = round(clicks / c.spec.ctr * rng.uniform(0.85, 1.15))
            else:
                impressions = int(rng.uniform(20, 400))
            cents = round(clicks * c.spec.cpc * rng.uniform(0.85, 1.15) * 100)
            files.write_row(day, (
                date.isoformat(), c.channel, c.campaign_id, c.spec.utm_source, c.spec.utm_medium, c.utm_campaign,
                impressions, clicks, f"{cents // 100}.{cents % 100:02d}", c.spec.currency,
            ))
            spend[c.spec.currency] += cents
            clicks_total += clicks
            impressions_total += impressions
    files.close()
    stats = {
        "rows": files.total_rows,
        "impressions": impressions_total,
        "clicks": clicks_total,
        "paid_landing_sessions": sum(v for (cid, _), v in landings.items() if cid in {c.campaign_id for c in paid}),
        "spend_by_currency": {k: v / 100 for k, v in sorted(spend.items())},
    }
    return files, stats
