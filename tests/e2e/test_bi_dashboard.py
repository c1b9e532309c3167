"""The BI tool, as a person sees it: `lw bi` (make bi) starts Apache Superset on the
end-to-end warehouse, a headless Chromium logs in and opens the Customer lifecycle
dashboard, and every chart renders with data and without error (a screenshot is kept under
reports/bi/). Through Superset's REST API, each chart's query returns rows, and a query on
`raw` through the same database connection (bi_reader) is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from lifecycle_warehouse import bi, settings

from tests.sandbox import debian_program, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.bi]

SCREENSHOT = settings.PROJECT_ROOT / "reports" / "bi" / "customer_lifecycle_dashboard.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium() -> str:
    return debian_program("chromium", "chromium", "the BI test")


def expected_charts() -> set[str]:
    return {yaml.safe_load(path.read_text())["slice_name"] for path in bi.ASSETS_DIR.glob("charts/*.yaml")}


@pytest.fixture(scope="module")
def superset(pipeline, monkeypatch_module):
    """Superset started by `lw bi` on the e2e warehouse (its own home and port; the repo's
    .venv-bi, installed by the first run), stopped at the end."""
    instance = pipeline[0]
    env = {"BI_PORT": str(free_port()), "LW_BI_HOME": str(instance.root / "superset"),
           "LW_BI_VENV": str(bi.venv_dir()), "BI_ADMIN_PASSWORD": "e2e-superset-admin"}
    instance.env.update(env)
    for key, value in env.items():
        monkeypatch_module.setenv(key, value)
    try:
        started = instance.lw("bi", "start")
        assert "Superset: http://127.0.0.1:" in started.stdout
        yield instance
    finally:
        instance.lw("bi", "stop", check=False)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_chart_of_the_dashboard_renders_with_data(superset):
    from playwright.sync_api import sync_playwright

    names = expected_charts()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(f"{bi.base_url()}/login/")
            page.fill("#username", bi.ADMIN_USER)
            page.fill("#password", os.environ["BI_ADMIN_PASSWORD"])
            page.keyboard.press("Enter")
            page.wait_for_url("**/superset/welcome/**", timeout=60_000)
            page.goto(f"{bi.base_url()}/superset/dashboard/{bi.DASHBOARD_SLUG}/?standalone=1")
            holders = page.locator(".dashboard-component-chart-holder")
            holders.first.wait_for(timeout=120_000)
            # every chart has drawn something: an svg or canvas (ECharts), or a table's cells
            page.wait_for_function(
                """n => { const hs = document.querySelectorAll('.dashboard-component-chart-holder');
                          return hs.length >= n && [...hs].every(h => h.querySelector(
                              'svg, canvas, td, .header-line, .superset-legacy-chart-big-number'));
                        }""", arg=len(names), timeout=180_000)
            page.wait_for_load_state("networkidle", timeout=120_000)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            rendered = {}
            for index in range(holders.count()):
                holder = holders.nth(index)
                title = holder.locator(".header-title, [data-test='editable-title']").first.inner_text().strip()
                rendered[title] = holder.inner_text()
                alerts = holder.locator("[role=alert], .alert").all_inner_texts()
                assert not alerts, f"chart {title!r} shows an error: {alerts}"
            assert set(rendered) == names, f"charts on the page: {sorted(rendered)}"
            for title, text in rendered.items():
                assert "No results" not in text, f"chart {title!r} has no data"
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 50_000


def test_each_chart_query_returns_rows_and_raw_is_refused(superset):
    api = bi.Api(os.environ["BI_ADMIN_PASSWORD"])
    charts = api.request("GET", "/api/v1/chart/?q=(page_size:100)")["result"]
    assert {c["slice_name"] for c in charts} == expected_charts()
    for chart in charts:
        result = api.request("GET", f"/api/v1/chart/{chart['id']}/data/")["result"][0]
        assert result.get("error") is None, (chart["slice_name"], result.get("error"))
        assert result["rowcount"] > 0, f"{chart['slice_name']}: no rows"
    database = api.request("GET", "/api/v1/database/?q=(page_size:10)")["result"]
    assert [d["database_name"] for d in database] == [bi.DATABASE_NAME]
    ok = api.request("POST", "/api/v1/sqllab/execute/", {
        "database_id": database[0]["id"], "sql": "select count(*) as n from analytics.kpi_daily",
        "runAsync": False, "schema": "analytics"})
    assert ok["data"][0]["n"] > 0
    with pytest.raises(bi.BiError, match="permission denied"):
        api.request("POST", "/api/v1/sqllab/execute/", {
            "database_id": database[0]["id"], "sql": "select * from raw.web_events limit 1",
            "runAsync": False, "schema": "analytics"})


def test_secrets_stay_out_of_the_repository_and_private(superset):
    home = Path(os.environ["LW_BI_HOME"])
    for name in ("secret_key", "admin_password", "bi_reader_password"):
        assert (home / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    exported = "\n".join(path.read_text() for path in bi.ASSETS_DIR.rglob("*.yaml"))
    assert (home / "bi_reader_password").read_text() not in exported
    assert "bi_reader:" not in exported
