"""The CRM export (HubSpot-like CSV files): contacts as they are created and change,
campaigns, email events of the welcome series, newsletters and promotions, NPS / CSAT
survey answers after deliveries, and loyalty-programme points.

The email part also decides who clicks when: those clicks become web sessions tagged
with the email campaign (see `web.py`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lifecycle_warehouse import contract
from lifecycle_warehouse.simulator import catalog
from lifecycle_warehouse.simulator.clock import DAY, HOUR, MINUTE
from lifecycle_warehouse.simulator.config import Rates
from lifecycle_warehouse.simulator.model import Person, World, stream, vary_digits
from lifecycle_warehouse.simulator.writers import DayFiles, check_fields

# The column order each row builder below produces; checked against the contract.
CONTACT_FIELDS = (
    "contact_id", "email", "first_name", "last_name", "phone", "country", "city", "lead_source",
    "lifecycle_stage", "created_at", "updated_at",
)
EMAIL_EVENT_FIELDS = ("event_id", "contact_id", "campaign_id", "event_type", "occurred_at", "url")
CAMPAIGN_FIELDS = ("campaign_id", "name", "channel", "start_date", "end_date", "budget", "currency")
SURVEY_FIELDS = ("response_id", "contact_id", "survey_type", "score", "submitted_at", "comment")
LOYALTY_FIELDS = ("loyalty_event_id", "contact_id", "event_type", "points", "occurred_at", "reference")


@dataclass
class EmailClick:
    """A click in an email: the web session it starts is tagged with the campaign."""

    at: float
    person: Person
    campaign: catalog.Campaign


@dataclass
class CrmOutput:
    files: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    clicks: list[EmailClick] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def write_crm(world: World, rates: Rates, seed: int, landing_dir: Path) -> CrmOutput:
    clock = world.clock
    out = CrmOutput()
    writers = {}
    for name, fields in (
        ("contacts", CONTACT_FIELDS), ("email_events", EMAIL_EVENT_FIELDS), ("campaigns", CAMPAIGN_FIELDS),
        ("survey_responses", SURVEY_FIELDS), ("loyalty_events", LOYALTY_FIELDS),
    ):
        entity = contract.file_entity("crm", name)
        check_fields(entity, fields)
        writers[name] = DayFiles(landing_dir, entity, clock)

    out.stats["contacts"] = _contacts(world, rates, stream(seed, "crm-contacts"), writers["contacts"])
    _campaigns(world, writers["campaigns"])
    out.stats["email"] = _emails(world, rates, stream(seed, "crm-email"), writers["email_events"], out.clicks)
    out.stats["surveys"] = _surveys(world, rates, stream(seed, "crm-surveys"), writers["survey_responses"])
    out.stats["loyalty"] = _loyalty(world, writers["loyalty_events"])
    for name, writer in writers.items():
        writer.close()
        out.files[f"crm/{name}"] = writer.files
        out.rows[f"crm/{name}"] = writer.total_rows
    return out


# --- contacts -------------------------------------------------------------------------


def _contacts(world: World, rates: Rates, rng: random.Random, files: DayFiles) -> dict:
    """Each contact's versions: created, marketing-qualified, customer, evangelist, and
    profile edits. Contacts that exist before the window come in the first day's file as
    the initial export (their state at the start); every later version goes to the file
    of the day it was made."""
    clock = world.clock
    cities: dict[str, list[str]] = {}
    for person in world.persons:
        cities.setdefault(person.country.code, []).append(person.city)
    stats = Counter()
    iso = clock.iso
    for person in world.persons:
        if not person.has_contact or person.acquired_at >= clock.end:
            continue
        stats["contacts"] += 1
        changes: list[tuple[float, str, str]] = []  # (time, field, value)
        stage = "subscriber" if person.kind == "web" and rng.random() < rates.p_subscriber_only else "lead"
        first_paid = next(
            (o.paid_at for o in person.orders if not o.cancelled_attempt and o.paid_at is not None), None
        )
        if person.engaged:
            t = person.acquired_at + rng.uniform(1, 7) * DAY
            if t < person.engaged_until and (first_paid is None or t < first_paid):
                changes.append((t, "lifecycle_stage", "marketingqualifiedlead"))
        if first_paid is not None:
            changes.append((first_paid, "lifecycle_stage", "customer"))
            evangelist_at = _evangelist_since(person)
            if evangelist_at is not None:
                changes.append((max(evangelist_at, first_paid), "lifecycle_stage", "evangelist"))
        t = person.acquired_at
        rate = rates.profile_updates_per_year / 365.0
        while rate > 0:
            t += rng.expovariate(rate) * DAY
            if t >= clock.end:
                break
            if person.phone and rng.random() < 0.5:
                changes.append((t, "phone", vary_digits(person.phone, rng)))
            else:
                changes.append((t, "city", rng.choice(cities[person.country.code])))
        changes.sort(key=lambda c: c[0])

        state = {
            "phone": person.phone or "",
            "city": person.city,
            "lifecycle_stage": stage,
        }
        created = iso(person.acquired_at)

        def row(updated_at: float) -> tuple:
            return (
                person.contact_id, person.email_crm, person.first_name, person.last_name, state["phone"],
                person.country.code, state["city"], person.channel, state["lifecycle_stage"], created,
                iso(updated_at),
            )

        updated = person.acquired_at
        pending = list(changes)
        if person.acquired_at < clock.start:
            while pending and pending[0][0] < clock.start:
                t, name, value = pending.pop(0)
                state[name], updated = value, t
            files.write_row(0, row(updated))
            stats["initial_export"] += 1
        else:
            files.write_row(clock.day_index(person.acquired_at), row(updated))
            stats["created_in_window"] += 1
        for t, name, value in pending:
            if t >= clock.end:
                break
            state[name] = value
            files.write_row(clock.day_index(t), row(t))
            stats["updates_in_window"] += 1
        stats[f"stage_at_end:{state['lifecycle_stage']}"] += 1
        if person.email_variant and person.email_variant.startswith("crm"):
            stats["email_variants_in_crm"] += 1
    return dict(sorted(stats.items()))


def _evangelist_since(person: Person) -> float | None:
    """When the person first counted as an advocate: a 4th paid order within 365 days, or
    a referral that brought in a new contact."""
    paid = sorted(o.paid_at for o in person.orders if not o.cancelled_attempt and o.paid_at is not None)
    candidates = [paid[i] for i in range(3, len(paid)) if paid[i] - paid[i - 3] <= 365 * DAY]
    candidates += [r.acquired_at for r in person.referred]
    return min(candidates) if candidates else None


# --- campaigns ------------------------------------------------------------------------


def _campaigns(world: World, files: DayFiles) -> None:
    clock = world.clock
    for c in world.campaigns:
        day = max(0, (c.created_on - clock.start_date).days)
        if day >= clock.days:
            continue
        files.write_row(day, (
            c.campaign_id, c.name, c.channel, c.start_date.isoformat(),
            c.end_date.isoformat() if c.end_date else "", f"{c.budget:.2f}" if c.budget else "", c.spec.currency,
        ))


# --- email ----------------------------------------------------------------------------


def _emails(world: World, rates: Rates, rng: random.Random, files: DayFiles, clicks: list[EmailClick]) -> dict:
    """The welcome email to every new contact, newsletters to every subscribed contact,
    promotions to engaged contacts and alive customers; per recipient: sent, delivered or
    bounce, opens, clicks, unsubscribes and spam reports."""
    clock = world.clock
    by_key = {c.spec.key: c for c in world.campaigns}
    welcome = by_key["welcome_series"]
    bulk = []
    for send_day, kind in catalog.email_sends(clock.start_date, clock.days):
        campaign = by_key[f"{kind}_{send_day:%Y%m%d}"]
        bulk.append((clock.start + (send_day - clock.start_date).days * DAY + 9 * HOUR, kind, campaign))
    stats = Counter()
    iso = clock.iso
    end = clock.end
    open_mean = rates.open_delay_mean_hours * HOUR

    def emit(t: float, contact_id: str, campaign: catalog.Campaign, event_type: str, url: str = "") -> bool:
        if t >= end:
            return False
        files.write_row(clock.day_index(t), (f"{rng.getrandbits(64):016x}", contact_id, campaign.campaign_id,
                                             event_type, iso(t), url))
        stats[f"events:{event_type}"] += 1
        return True

    for person in world.persons:
        if not person.has_contact or person.acquired_at >= end:
            continue
        sends = []
        if person.acquired_at >= clock.start:
            sends.append((person.acquired_at + rng.uniform(1, 10) * MINUTE, "welcome", welcome))
        for t, kind, campaign in bulk:
            if t > person.acquired_at:
                sends.append((t + rng.uniform(0, HOUR), kind, campaign))
        sends.sort(key=lambda s: s[0])
        blocked_from = end + DAY  # unsubscribed, bounced or spam-reported from this time on
        if person.acquired_at < clock.start and rng.random() < rates.p_unsubscribed_before_start:
            blocked_from = clock.start
            stats["unsubscribed_before_start"] += 1
        for t, kind, campaign in sends:
            if t >= blocked_from or t >= end:
                continue
            engaged = person.engaged_at(t) or person.alive_at(t)
            if kind == "promo" and not engaged:
                continue
            cid = person.contact_id
            emit(t, cid, campaign, "sent")
            if rng.random() < rates.p_email_bounce:
                if emit(t + rng.uniform(1, 30), cid, campaign, "bounce"):
                    blocked_from = t
                continue
            delivered_at = t + rng.uniform(1, 60)
            if not emit(delivered_at, cid, campaign, "delivered"):
                continue
            stats["pairs_delivered"] += 1
            stats[f"pairs_delivered:{'engaged' if engaged else 'other'}"] += 1
            opened_at = None
            if rng.random() < (rates.p_open_engaged if engaged else rates.p_open_other):
                opened_at = delivered_at + rng.expovariate(1.0 / open_mean)
                if emit(opened_at, cid, campaign, "open"):
                    stats["pairs_opened"] += 1
                    if rng.random() < rates.p_reopen:
                        emit(opened_at + rng.expovariate(1.0 / DAY), cid, campaign, "open")
                    if rng.random() < rates.p_click_given_open:
                        clicked_at = opened_at + rng.expovariate(1.0 / (2 * MINUTE))
                        spec = campaign.spec
                        url = (f"{catalog.SITE}/?utm_source={spec.utm_source}&utm_medium={spec.utm_medium}"
                               f"&utm_campaign={campaign.utm_campaign}")
                        if emit(clicked_at, cid, campaign, "click", url):
                            stats["pairs_clicked"] += 1
                            clicks.append(EmailClick(clicked_at, person, campaign))
                else:
                    opened_at = None
            if rng.random() < rates.p_unsubscribe:
                unsub_at = (opened_at or delivered_at) + rng.uniform(10, 600)
                if emit(unsub_at, cid, campaign, "unsubscribe"):
                    stats["pairs_unsubscribed"] += 1
                    blocked_from = unsub_at
            if rng.random() < rates.p_spam_report:
                spam_at = delivered_at + rng.expovariate(1.0 / DAY)
                if emit(spam_at, cid, campaign, "spam_report"):
                    blocked_from = min(blocked_from, spam_at)
    delivered = stats["pairs_delivered"]
    for name in ("opened", "clicked", "unsubscribed"):
        stats[f"{name}_rate"] = round(stats[f"pairs_{name}"] / delivered, 6) if delivered else None
    return dict(sorted(stats.items()))


# --- surveys --------------------------------------------------------------------------


def _surveys(world: World, rates: Rates, rng: random.Random, files: DayFiles) -> dict:
    """NPS and CSAT answers after a delivered order, and a relationship NPS survey once in
    the window for every contact who has bought; scores come from the planted
    distributions (the loyal one from the person's `loyal_min_orders`-th order on)."""
    clock = world.clock
    answers = []
    nps_scores = list(range(11))
    csat_scores = list(range(1, 6))
    for person in world.persons:
        if not person.has_contact:
            continue
        n_valid = 0
        for order in person.orders:
            if order.cancelled_attempt or order.delivered_at is None:
                continue
            n_valid += 1
            for survey, p in (("nps", rates.p_nps_response), ("csat", rates.p_csat_response)):
                if rng.random() >= p:
                    continue
                at = order.delivered_at + HOUR + rng.expovariate(1.0 / (2 * DAY if survey == "nps" else DAY))
                if survey == "nps":
                    dist = rates.nps_loyal if n_valid >= rates.loyal_min_orders else rates.nps_other
                    score = rng.choices(nps_scores, dist)[0]
                else:
                    score = rng.choices(csat_scores, rates.csat)[0]
                comment = rng.choice(catalog.SURVEY_COMMENTS) if rng.random() < rates.p_survey_comment else ""
                if clock.start <= at < clock.end:
                    answers.append((at, person.contact_id, survey, score, comment))
        # relationship NPS: one survey per buyer, sent at a random moment of the window
        asked_at = clock.start + rng.random() * (clock.end - clock.start)
        if rng.random() < rates.p_nps_relationship_response:
            n_before = sum(1 for o in person.orders if o.valid and o.ordered_at < asked_at)
            if n_before:
                at = asked_at + rng.expovariate(1.0 / DAY)
                dist = rates.nps_loyal if n_before >= rates.loyal_min_orders else rates.nps_other
                if at < clock.end:
                    answers.append((at, person.contact_id, "nps", rng.choices(nps_scores, dist)[0], ""))
    answers.sort(key=lambda a: (a[0], a[1], a[2]))
    stats = Counter()
    for n, (at, contact_id, survey, score, comment) in enumerate(answers, start=1):
        files.write_row(clock.day_index(at), (f"SR-{n:07d}", contact_id, survey, score, clock.iso(at), comment))
        stats[f"{survey}_responses"] += 1
        if survey == "nps":
            stats["nps_promoters"] += score >= 9
            stats["nps_detractors"] += score <= 6
        else:
            stats["csat_satisfied"] += score >= 4
    if stats["nps_responses"]:
        stats["nps"] = round(100 * (stats["nps_promoters"] - stats["nps_detractors"]) / stats["nps_responses"], 4)
    if stats["csat_responses"]:
        stats["csat"] = round(100 * stats["csat_satisfied"] / stats["csat_responses"], 4)
    return dict(sorted(stats.items()))


# --- loyalty --------------------------------------------------------------------------


def _loyalty(world: World, files: DayFiles) -> dict:
    """The loyalty events of the window (drawn with the orders in model.py), numbered in time order."""
    clock = world.clock
    events = []
    for person in world.persons:
        for e in person.loyalty:
            if clock.start <= e.occurred_at < clock.end:
                ref = e.reference
                if ref is None:
                    reference = ""
                elif isinstance(ref, Person):
                    reference = ref.contact_id or ""
                else:
                    reference = str(ref.order_id)
                events.append((e.occurred_at, person.contact_id, e.event_type, e.points, reference))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    stats = Counter()
    for n, (at, contact_id, event_type, points, reference) in enumerate(events, start=1):
        files.write_row(clock.day_index(at), (f"LE-{n:08d}", contact_id, event_type, points, clock.iso(at), reference))
        stats[f"events:{event_type}"] += 1
        stats[f"points:{event_type}"] += points
    earned = stats["points:earned"]
    stats["redemption_rate"] = round(stats["points:redeemed"] / earned, 6) if earned else None
    return dict(sorted(stats.items()))
