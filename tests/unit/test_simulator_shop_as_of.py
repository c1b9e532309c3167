"""The shop as it was at the end of a day (`shop_as_of`) and a shop-only run (`shop_only`):
the same world as a full run, only which rows and which version of each row is written
changes. Most checks build the world in memory (no database); a few write the shop into
a throwaway PostgreSQL database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from lifecycle_warehouse import contract
from lifecycle_warehouse.simulator import SimulationConfig, SimulationResult, catalog, model, shop, simulate
from lifecycle_warehouse.simulator.__main__ import main as cli_main
from lifecycle_warehouse.simulator.clock import Clock

# Small, but with history long enough that subscriptions are upgraded, downgraded, paused
# and canceled in place.
SMALL = SimulationConfig(start=date(2026, 9, 1), days=4, customers=800, seed=11, history_days=400)
PLAN_NAMES = tuple(name for name, _, _ in SMALL.rates.plans)
TABLES = [t.table for t in contract.SHOP_TABLES]
KEYS = {t.table: [t.columns.index(next(c for c in t.columns if c.name == k)) for k in t.primary_key]
        for t in contract.SHOP_TABLES}
UPDATED_AT = {t: shop.FIELDS[t].index("updated_at") for t in TABLES}


def build(cfg: SimulationConfig) -> model.World:
    return model.build_world(cfg, Clock(cfg.start, cfg.days, cfg.history_days))


def rows(world: model.World, as_of: float | None = None) -> dict[str, dict[tuple, tuple]]:
    """Shop rows per table, by primary key."""
    out = {}
    for table, it in shop.shop_rows(world, PLAN_NAMES, as_of=as_of).items():
        out[table] = {tuple(r[i] for i in KEYS[table]): r for r in it}
    return out


def pg_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


@pytest.fixture(scope="module")
def world() -> model.World:
    return build(SMALL)


@pytest.fixture(scope="module")
def as_of_day(world) -> date:
    """The day before the latest in-place plan change (upgrade or downgrade): after its end
    that subscription changes plan, and orders of the last days change status."""
    changes = [b.at for s in world.subscriptions for a, b in zip(s.versions, s.versions[1:])
               if a.plan_index != b.plan_index]
    assert changes, "some subscription changes plan in place"
    return world.clock.date_of(max(changes)) - timedelta(days=1)


# --- the model's version history ------------------------------------------------------


def test_subscription_versions_record_every_change_and_end_in_the_final_state(world):
    rates = SMALL.rates
    kinds = set()
    for s in world.subscriptions:
        first, last = s.versions[0], s.versions[-1]
        assert (first.at, first.status, first.canceled_at) == (s.started_at, "active", None)
        assert (last.at, last.status, last.plan_index, last.mrr_cents, last.canceled_at) == (
            s.updated_at, s.status, s.plan_index, s.mrr_cents, s.canceled_at)
        for a, b in zip(s.versions, s.versions[1:]):
            assert b.at > a.at and b.at < world.clock.end
            assert (a.status, a.plan_index) != (b.status, b.plan_index), "a version is a change"
            if b.plan_index != a.plan_index:
                kinds.add("upgrade" if b.plan_index > a.plan_index else "downgrade")
            elif b.status != a.status:
                kinds.add({"paused": "pause", "canceled": "cancel", "active": "resume"}[b.status])
        for v in s.versions:
            assert v.mrr_cents == catalog.list_price_cents(rates.plans[v.plan_index][2], s.currency)
            assert (v.canceled_at is not None) == (v.status == "canceled")
    assert kinds >= {"upgrade", "downgrade", "pause", "cancel"}, kinds


def test_order_steps_give_the_final_state_at_the_end(world):
    for o in world.orders:
        assert o.state_before(world.clock.end) == (o.status, o.updated_at)
        assert o.steps[0] == (o.ordered_at, "pending")


# --- the shop as of a day -------------------------------------------------------------


def test_shop_as_of_holds_rows_created_before_t_in_their_version_of_then(world, as_of_day):
    t = shop.as_of_cutoff(as_of_day)
    assert at(t) == datetime.combine(as_of_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    final, then = rows(world), rows(world, t)

    for table in TABLES:
        assert set(then[table]) <= set(final[table]), f"{table}: the same ids as the final state"
        assert len(then[table]) < len(final[table]), f"{table}: rows created after T are left out"
        for key, row in then[table].items():
            assert pg_time(row[UPDATED_AT[table]]) < at(t), (table, row)
            final_row = final[table][key]
            if pg_time(final_row[UPDATED_AT[table]]) < at(t):
                assert row == final_row, f"{table}: a row not changed after T is its final row"
            else:
                assert row != final_row or table == "order_items", f"{table}: the version before T"
    # creation times: nothing created at or after T
    created = {"customers": "created_at", "orders": "ordered_at", "order_items": "updated_at",
               "refunds": "refunded_at", "subscriptions": "started_at"}
    for table, column in created.items():
        i = shop.FIELDS[table].index(column)
        assert all(pg_time(r[i]) < at(t) for r in then[table].values())
        missing = set(final[table]) - set(then[table])
        assert all(pg_time(final[table][k][i]) >= at(t) for k in missing), f"{table}: only later rows are left out"

    # a subscription upgraded / downgraded after T holds its earlier plan, mrr, status and updated_at
    sub_fields = shop.FIELDS["subscriptions"]
    plan, mrr, status, updated = (sub_fields.index(c) for c in ("plan", "mrr", "status", "updated_at"))
    replanned = [s for s in world.subscriptions if s.started_at < t and s.version_before(t).plan_index != s.plan_index]
    assert replanned
    for s in replanned:
        v = s.version_before(t)
        row, last = then["subscriptions"][(s.subscription_id,)], final["subscriptions"][(s.subscription_id,)]
        assert (row[plan], row[status], row[mrr]) == (PLAN_NAMES[v.plan_index], v.status, shop.money(v.mrr_cents))
        assert row[mrr] != last[mrr] and row[plan] != last[plan]
        assert pg_time(row[updated]) < at(t) <= pg_time(last[updated])

    # an order whose status moved on after T: its status and updated_at of then
    o_fields = shop.FIELDS["orders"]
    o_status, o_updated = o_fields.index("status"), o_fields.index("updated_at")
    moved = [(k, r) for k, r in then["orders"].items() if r[o_status] != final["orders"][k][o_status]]
    assert moved, "some order changed status after T"
    by_id = {o.order_id: o for o in world.orders}
    for (order_id,), row in moved:
        order = by_id[order_id]
        step_time, step_status = max((s for s in order.steps if s[0] < t and s[1] is not None), key=lambda s: s[0])
        assert row[o_status] == step_status
        assert pg_time(row[o_updated]) <= at(t) and pg_time(row[o_updated]) >= at(int(step_time))

    # a customer edited after T: the row as created
    c_fields = shop.FIELDS["customers"]
    for p in world.persons:
        if p.customer_id is not None and p.customer_created_at < t <= p.customer_updated_at:
            row = then["customers"][(p.customer_id,)]
            assert row[c_fields.index("updated_at")] == row[c_fields.index("created_at")]


def test_as_of_the_last_day_is_the_final_state_and_as_of_does_not_change_the_world(world, as_of_day):
    final = rows(world)
    assert rows(world, shop.as_of_cutoff(SMALL.last_day)) == final
    # the config's shop_as_of / shop_only play no part in the world: same rows as without
    again = build(replace(SMALL, shop_as_of=as_of_day, shop_only=True))
    assert rows(again) == final
    assert rows(again, shop.as_of_cutoff(as_of_day)) == rows(world, shop.as_of_cutoff(as_of_day))


def test_shop_as_of_the_first_history_day_holds_at_most_that_day():
    tiny = replace(SMALL, customers=300, history_days=30)
    w = build(tiny)
    then = rows(w, shop.as_of_cutoff(tiny.history_start_date))
    t = shop.as_of_cutoff(tiny.history_start_date)
    assert len(then["orders"]) == sum(1 for o in w.orders if o.ordered_at < t)


@pytest.mark.parametrize(
    ("as_of", "ok"),
    [
        (date(2025, 7, 28), True),  # history start: 2026-09-01 - 400 days
        (date(2025, 7, 27), False),
        (date(2026, 9, 4), True),  # the last day of the window
        (date(2026, 9, 5), False),
    ],
)
def test_shop_as_of_must_fall_within_history_and_window(as_of, ok):
    cfg = replace(SMALL, shop_as_of=as_of)
    if ok:
        cfg.validate()
    else:
        with pytest.raises(ValueError, match="shop_as_of must fall within the simulated clock"):
            cfg.validate()


def test_a_datetime_is_not_a_shop_as_of_day():
    with pytest.raises(ValueError, match="shop_as_of must be a date"):
        replace(SMALL, shop_as_of=datetime(2026, 9, 2, 12)).validate()


# --- the e2e's shape has teeth --------------------------------------------------------

# tests/e2e/scenario.py: the scenario runs in 1998 with uuid shop ids; the shop is written as
# of T1 (end of 1998-09-10), ingested, then as of T2 (end of 1998-09-21) or its final state.
E2E = SimulationConfig(start=date(1998, 9, 1), days=22, customers=1500, seed=7, shop_ids="uuid")
E2E_T1, E2E_T2 = date(1998, 9, 10), date(1998, 9, 21)


def test_the_e2e_shape_has_a_subscription_changing_plan_in_place_between_the_two_shops():
    w = build(E2E)
    t1, t2 = shop.as_of_cutoff(E2E_T1), shop.as_of_cutoff(E2E_T2)
    existing = [s for s in w.subscriptions if s.started_at < t1]
    changed = [s for s in existing if s.version_before(t1) != s.version_before(t2)]
    replanned = [s for s in changed if s.version_before(t1).mrr_cents != s.version_before(t2).mrr_cents]
    assert any(len({v.plan_index for v in s.versions}) > 1 for s in w.subscriptions)
    assert changed and replanned, "a subscription changes plan in place between T1 and T2"
    t1_rows, t2_rows = rows(w, t1), rows(w, t2)
    for s in replanned:
        key = (s.subscription_id,)
        assert t1_rows["subscriptions"][key] != t2_rows["subscriptions"][key]


# --- through the database and the command line ----------------------------------------


def shop_dump(url: str) -> dict[str, list[tuple]]:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url) as conn:
        return {
            t.table: conn.execute(sql.SQL("select * from public.{} order by {}").format(
                sql.Identifier(t.table), sql.SQL(", ").join(map(sql.Identifier, t.primary_key)))).fetchall()
            for t in contract.SHOP_TABLES
        }


def new_database(admin_url: str) -> str:
    import uuid

    import psycopg
    from psycopg import sql

    name = f"simasof_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return admin_url.replace("/postgres?", f"/{name}?")


def test_shop_only_writes_the_same_shop_as_a_full_run_and_nothing_else(pg_server, tmp_path, as_of_day):
    paths = {"landing_dir": tmp_path / "landing", "truth_file": tmp_path / "truth.json"}
    full_url, only_url, as_of_url = (new_database(pg_server) for _ in range(3))
    simulate(replace(SMALL, shop_url=full_url, **paths))
    assert paths["truth_file"].exists()

    only = replace(SMALL, shop_url=only_url, shop_only=True, landing_dir=tmp_path / "l2", truth_file=tmp_path / "t2")
    result = simulate(only)
    assert result.shop_only and result.truth_file is None
    assert "shop only" in result.summary()
    assert not (tmp_path / "l2").exists() and not (tmp_path / "t2").exists()
    assert shop_dump(only_url) == shop_dump(full_url)

    result = simulate(replace(only, shop_url=as_of_url, shop_as_of=as_of_day))
    assert result.shop_as_of == as_of_day and f"as of the end of {as_of_day}" in result.summary()
    then, final = shop_dump(as_of_url), shop_dump(full_url)
    expected = rows(build(SMALL), shop.as_of_cutoff(as_of_day))
    t = at(shop.as_of_cutoff(as_of_day))
    for table in TABLES:
        assert len(then[table]) == len(expected[table]) == result.rows[f"shop/{table}"]
        assert max(r[UPDATED_AT[table]] for r in then[table]) < t
        final_by_key = {tuple(str(r[i]) for i in KEYS[table]): r for r in final[table]}
        for r in then[table]:
            last = final_by_key[tuple(str(r[i]) for i in KEYS[table])]
            assert (r == last) == (last[UPDATED_AT[table]] < t), (table, r, last)


def test_cli_shop_only_as_of(shop_url, tmp_path, capsys):
    args = [
        "--start", "2026-09-01", "--days", "2", "--customers", "40", "--seed", "3", "--history-days", "60",
        "--landing-dir", str(tmp_path / "landing"), "--shop-url", shop_url, "--truth-file", str(tmp_path / "t.json"),
        "--no-progress", "--shop-only", "--shop-as-of", "2026-08-20", "--i-know-this-drops-tables",
    ]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "shop only" in out and "as of the end of 2026-08-20" in out and "web/events" not in out
    assert not (tmp_path / "landing").exists() and not (tmp_path / "t.json").exists()
    with_bad_day = [a if a != "2026-08-20" else "2026-06-01" for a in args]
    assert cli_main(with_bad_day) == 2
    assert "shop_as_of must fall within" in capsys.readouterr().err


def test_lw_sources_passes_the_shop_options_into_the_config(tmp_path, monkeypatch, capsys):
    import lifecycle_warehouse.simulator as simulator_pkg
    from lifecycle_warehouse import cli

    monkeypatch.setenv("LW_PGDATA", str(tmp_path / "pgdata"))
    monkeypatch.setenv("LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("SHOP_DB_URL", "postgresql://sim@shop.example.com/shop")
    seen = []

    def fake_simulate(config):
        seen.append(config)
        return SimulationResult(rows={"shop/orders": 1}, shop_only=config.shop_only, shop_as_of=config.shop_as_of)

    monkeypatch.setattr(simulator_pkg, "simulate", fake_simulate)
    base = ["sources", "--days", "3", "--customers", "10", "--i-know-this-drops-tables"]
    assert cli.main([*base, "--shop-only", "--shop-as-of", "2026-09-02"]) == 0
    assert (seen[-1].shop_only, seen[-1].shop_as_of) == (True, date(2026, 9, 2))
    assert "shop only" in capsys.readouterr().out
    assert cli.main(base) == 0
    assert (seen[-1].shop_only, seen[-1].shop_as_of) == (False, None)
    assert cli.main([*base, "--shop-as-of", "2026-09-04"]) == 2, "after the window (2026-09-01 .. 09-03)"
    assert "shop_as_of must fall within" in capsys.readouterr().out
    assert len(seen) == 2
