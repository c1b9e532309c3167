"""The KPI registry (dbt_project/kpi_registry.yml): the files generated from it are up to
date, every KPI of ../shared/kpi-definitions.md is in it, and a registry with a mistake is
refused with a message naming the entry. No database."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from lifecycle_warehouse import kpis, settings


def test_generated_files_are_up_to_date():
    result = subprocess.run([sys.executable, "-m", "lifecycle_warehouse.generate", "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, (
        f"files generated from dbt_project/kpi_registry.yml are stale: {result.stderr.strip()}"
    )


def test_every_kpi_of_the_definitions_is_registered_with_its_grains():
    """docs/kpis.md lists the KPIs by stage: `- name: …` bullets, (monthly) when the KPI has
    no daily grain. Each is a registry entry with exactly those grains."""
    text = (settings.PROJECT_ROOT / "docs" / "kpis.md").read_text(encoding="utf-8")
    section = text[text.index("## KPIs by stage"):text.index("### Value")]
    listed = {}
    for line in section.splitlines():
        if not line.startswith("- ") or line.startswith("- (") or ":" not in line:
            continue
        head = line[2:line.index(":")]  # "churn_rate (monthly)", "ad_impressions, ad_clicks, ad_spend"
        names = re.findall(r"[a-z][a-z0-9_]*", head.split("(")[0])
        for name in names:
            listed[name] = ("month",) if "(monthly" in head else ("day", "month")
    registry = kpis.load()
    registered = {k.name: k.grains for k in registry.kpis}
    assert listed, "docs/kpis.md lists no KPI"
    missing = sorted(set(listed) - set(registered))
    assert not missing, f"KPIs of docs/kpis.md missing from the registry: {missing}"
    wrong = {n: (listed[n], registered[n]) for n in listed if set(listed[n]) != set(registered[n])}
    assert not wrong, f"grains differ (docs, registry): {wrong}"


def test_expressions_follow_the_kind():
    registry = kpis.load()
    assert registry.expression(registry.kpi("orders"), "day") == "(coalesce(orders, 0))::bigint"
    assert registry.expression(registry.kpi("aov"), "day") == "((coalesce(revenue, 0))::numeric / nullif(orders, 0))::numeric"
    assert registry.expression(registry.kpi("nps"), "month") == (
        "(100 * (coalesce(nps_promoters, 0) - coalesce(nps_detractors, 0))::numeric / nullif(nps_answers, 0))::numeric")
    assert registry.expression(registry.kpi("cart_abandonment_rate"), "day").startswith("(1 - ")
    assert registry.expression(registry.kpi("churned_customers_at_start"), "month") == (
        "(coalesce(buyers__at_start, 0) - coalesce(active_customers__at_start, 0))::bigint")
    assert registry.family(registry.kpi("reactivation_rate"), "month") == "derived"
    assert registry.family(registry.kpi("bounce_rate"), "day") == "web"
    assert registry.family(registry.kpi("mrr"), "month") == "stock"


def _document() -> dict:
    return yaml.safe_load(kpis.REGISTRY.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["kpis"].append(dict(d["kpis"][0])), "listed twice"),
    (lambda d: d["kpis"][0].update(of="no_such_measure"), "neither a measure nor a KPI"),
    (lambda d: d["kpis"][0].update(kind="median"), "`kind` must be one of"),
    (lambda d: d["kpis"][0].update(description=""), "a description is required"),
    (lambda d: d["kpis"].append({"name": "mixed", "stage": "conversion", "grains": ["day"], "kind": "ratio",
                                 "numerator": "orders", "denominator": "sessions", "unit": "rate",
                                 "description": "x"}), "different families"),
    (lambda d: d["kpis"].append({"name": "monthly_only", "stage": "retention", "grains": ["day", "month"],
                                 "kind": "sum", "of": "new_mrr", "unit": "money", "description": "x"}),
     "exists monthly only"),
    (lambda d: d["measures"].update(open_rate={"from": "somewhere"}), "`from` must be one of"),
])
def test_a_registry_with_a_mistake_is_refused_naming_it(change, message):
    document = copy.deepcopy(_document())
    change(document)
    with pytest.raises(kpis.RegistryError, match=message):
        kpis.parse(document)
