"""The KPI registry (dbt_project/kpi_registry.yml): every KPI of kpi_daily and kpi_monthly,
named once, and the files generated from it (written by `python -m
lifecycle_warehouse.generate`, with the quality gate's files).

Generated: the macro the KPI marts read their columns from
(dbt_project/macros/generated/kpi_registry.sql), the YAML of kpi_daily and kpi_monthly
(descriptions, types, range tests), and the KPI table of docs/kpis.md. The marts gate's
suites (quality/suites.py) read the registry themselves.

Each KPI is computed from measures (what a period sums or counts) by its `kind`; this
module turns that into one SQL expression per KPI and grain, and sorts the KPIs of a grain
into the families the marts compute separately (web, flow, stock, mrr) or, for a KPI of
other KPIs, `derived`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from lifecycle_warehouse import settings

REGISTRY = settings.PROJECT_ROOT / "dbt_project" / "kpi_registry.yml"
GENERATED_MACRO = settings.PROJECT_ROOT / "dbt_project" / "macros" / "generated" / "kpi_registry.sql"
MARTS_YAML = settings.PROJECT_ROOT / "dbt_project" / "models" / "marts" / "kpi" / "_kpi__models.yml"
DOCS = settings.PROJECT_ROOT / "docs" / "kpis.md"
DOCS_START = "<!-- kpi-registry:start (generated from dbt_project/kpi_registry.yml: do not edit) -->"
DOCS_END = "<!-- kpi-registry:end -->"

GRAINS = ("day", "month")
STAGES = ("awareness", "engagement", "conversion", "retention", "loyalty", "value")
KINDS = ("sum", "mean", "ratio", "difference", "stock")
UNITS = ("count", "money", "rate", "score", "seconds")
SOURCES = ("contribution", "paid_attribution", "web", "stock", "activity", "mrr")
# The family of a KPI, by the source of its measures (per grain): the marts compute each
# family in its own CTEs. Monthly, the persons' activity is part of the flows (the same
# months are recomputed); a stock of a month is kpi_daily's value at its end (or start).
FAMILY_OF_SOURCE = {"contribution": "flow", "paid_attribution": "flow", "activity": "flow", "web": "web", "stock": "stock", "mrr": "mrr"}
# Types of the KPI columns, by unit (SQL).
SQL_TYPES = {"count": "bigint", "money": "numeric", "rate": "numeric", "score": "numeric", "seconds": "numeric"}
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d+)?)|([-+*()]))")


class RegistryError(ValueError):
    """The registry is not valid; the message names the entry and the problem."""


@dataclass(frozen=True)
class Measure:
    name: str
    source: str
    type: str | None = None  # the column type in int_kpi__contributions (of `delta` for a stock)
    delta: str | None = None  # stock measures: the contribution column of daily changes


@dataclass(frozen=True)
class Kpi:
    name: str
    stage: str
    grains: tuple[str, ...]
    kind: str
    unit: str
    description: str
    of: tuple[str, ...] = ()
    numerator: str | None = None
    denominator: str | None = None
    scale: float | None = None
    complement: bool = False
    at: str = "end"
    min: float | None = None
    max: float | None = None
    max_warning: float | None = None
    extra: bool = False

    @property
    def sql_type(self) -> str:
        """A ratio or a mean is numeric whatever its unit (purchase_frequency is a count per person)."""
        return "numeric" if self.kind in ("ratio", "mean") else SQL_TYPES[self.unit]

    def operands(self) -> list[str]:
        """Every name the KPI's formula refers to (measures, or other KPIs)."""
        if self.kind == "ratio":
            return [*_identifiers(self.numerator), *_identifiers(self.denominator)]
        return list(self.of)


@dataclass(frozen=True)
class Registry:
    measures: dict[str, Measure]
    kpis: tuple[Kpi, ...]

    def kpi(self, name: str) -> Kpi:
        return next(k for k in self.kpis if k.name == name)

    def of_grain(self, grain: str) -> list[Kpi]:
        return [k for k in self.kpis if grain in k.grains]

    def family(self, kpi: Kpi, grain: str) -> str:
        """web | flow | stock | mrr | derived (a KPI of other KPIs)."""
        names = kpi.operands()
        if all(n in self.measures for n in names):
            families = {FAMILY_OF_SOURCE[self.measures[n].source] for n in names}
            return families.pop()
        return "derived"

    def expression(self, kpi: Kpi, grain: str) -> str:
        """The KPI as a SQL expression over its family's measure columns (a stock at the
        start of the period: `<measure>__at_start`), or, derived, over KPI columns."""
        suffix = "__at_start" if kpi.at == "start" else ""

        def term(name: str) -> str:
            return f"coalesce({name}{suffix}, 0)"

        if kpi.kind == "sum":
            value = term(kpi.of[0])
        elif kpi.kind == "mean":
            value = f"{kpi.of[0]}{suffix}"
        elif kpi.kind == "stock":
            value = f"{kpi.of[0]}{suffix}"
        elif kpi.kind == "difference":
            value = f"{term(kpi.of[0])} - {term(kpi.of[1])}"
        else:
            numerator = _substitute(kpi.numerator, lambda name: term(name))
            denominator = _substitute(kpi.denominator, lambda name: f"{name}{suffix}")
            scale = f"{_number(kpi.scale)} * " if kpi.scale else ""
            value = f"{scale}({numerator})::numeric / nullif({denominator}, 0)"
            if kpi.complement:
                value = f"1 - {value}"
        return f"({value})::{kpi.sql_type}"


def _identifiers(expression: str | None) -> list[str]:
    return [name for name, _, _ in _tokens(expression or "") if name]


def _tokens(expression: str) -> list[tuple[str, str, str]]:
    position, tokens = 0, []
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if not match or match.end() == position:
            raise RegistryError(f"cannot read the expression {expression!r} at {expression[position:]!r}")
        tokens.append(tuple(group or "" for group in match.groups()))
        position = match.end()
    return tokens


def _substitute(expression: str, replace) -> str:
    return " ".join(name and replace(name) or number or operator for name, number, operator in _tokens(expression))


def _number(value: float) -> str:
    return f"{value:g}"


def _measure(name: str, entry: dict) -> Measure:
    source = entry.get("from")
    if source not in SOURCES:
        raise RegistryError(f"measure {name}: `from` must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "contribution" and not entry.get("type"):
        raise RegistryError(f"measure {name}: a contribution measure needs its column `type`")
    if source == "stock" and not (entry.get("delta") and entry.get("type")):
        raise RegistryError(f"measure {name}: a stock measure needs the contribution column of its daily changes "
                            "(`delta`) and its `type`")
    return Measure(name, source, entry.get("type"), entry.get("delta"))


def _kpi(entry: dict) -> Kpi:
    name = entry.get("name") or "?"
    known = {"name", "stage", "grains", "kind", "unit", "description", "of", "numerator", "denominator",
             "scale", "complement", "at", "min", "max", "max_warning", "extra"}
    if unknown := sorted(set(entry) - known):
        raise RegistryError(f"KPI {name}: unknown key(s) {', '.join(unknown)}")
    for key, allowed in (("stage", STAGES), ("kind", KINDS), ("unit", UNITS)):
        if entry.get(key) not in allowed:
            raise RegistryError(f"KPI {name}: `{key}` must be one of {', '.join(allowed)}, got {entry.get(key)!r}")
    grains = tuple(entry.get("grains") or ())
    if not grains or any(g not in GRAINS for g in grains):
        raise RegistryError(f"KPI {name}: `grains` must be a non-empty list of {', '.join(GRAINS)}")
    if not (entry.get("description") or "").strip():
        raise RegistryError(f"KPI {name}: a description is required (it is the column's description for BI)")
    of = entry.get("of")
    of = tuple(of) if isinstance(of, list) else ((of,) if of else ())
    kind = entry["kind"]
    expected = {"sum": 1, "mean": 1, "stock": 1, "difference": 2, "ratio": 0}[kind]
    if len(of) != expected:
        raise RegistryError(f"KPI {name}: a {kind} needs {expected or 'no'} `of` operand(s), got {list(of)}")
    if kind == "ratio" and not (entry.get("numerator") and entry.get("denominator")):
        raise RegistryError(f"KPI {name}: a ratio needs a numerator and a denominator")
    if entry.get("at", "end") not in ("start", "end"):
        raise RegistryError(f"KPI {name}: `at` is start or end")
    return Kpi(
        name=name, stage=entry["stage"], grains=grains, kind=kind, unit=entry["unit"],
        description=" ".join(entry["description"].split()), of=of, numerator=entry.get("numerator"),
        denominator=entry.get("denominator"), scale=entry.get("scale"), complement=bool(entry.get("complement")),
        at=entry.get("at", "end"), min=entry.get("min"), max=entry.get("max"),
        max_warning=entry.get("max_warning"), extra=bool(entry.get("extra")),
    )


def parse(document: dict) -> Registry:
    """A registry from its YAML document, validated: every KPI's operands exist (measures,
    or KPIs of the same grains listed before it), measures of one family per KPI, names
    unique."""
    measures = {name: _measure(name, entry or {}) for name, entry in (document.get("measures") or {}).items()}
    kpis: list[Kpi] = []
    for entry in document.get("kpis") or []:
        kpi = _kpi(entry or {})
        if any(k.name == kpi.name for k in kpis):
            raise RegistryError(f"KPI {kpi.name} is listed twice")
        for operand in kpi.operands():
            if operand in measures:
                source = measures[operand].source
                if "day" in kpi.grains and source in ("activity", "mrr"):
                    raise RegistryError(f"KPI {kpi.name}: measure {operand} ({source}) exists monthly only")
                if kpi.at == "start" and source != "stock":
                    raise RegistryError(f"KPI {kpi.name}: only stocks are taken at the start of a period")
                continue
            earlier = next((k for k in kpis if k.name == operand), None)
            if earlier is None:
                raise RegistryError(f"KPI {kpi.name}: {operand} is neither a measure nor a KPI listed before it")
            if not set(kpi.grains) <= set(earlier.grains):
                raise RegistryError(f"KPI {kpi.name}: KPI {operand} does not have every grain of {kpi.name}")
        registry = Registry(measures, tuple(kpis))
        operand_measures = [m for m in kpi.operands() if m in measures]
        if operand_measures and len(operand_measures) != len(kpi.operands()):
            raise RegistryError(f"KPI {kpi.name}: mixes measures and KPIs; use one or the other")
        if len({FAMILY_OF_SOURCE[measures[m].source] for m in operand_measures}) > 1:
            raise RegistryError(f"KPI {kpi.name}: its measures come from different families "
                                f"({', '.join(operand_measures)}): make a KPI of each, then one of those")
        registry.expression(kpi, kpi.grains[0])  # the formula can be written
        kpis.append(kpi)
    for measure in measures.values():
        # daily stocks run on from the stored values of the KPI of the same name, and
        # monthly stocks are read from kpi_daily under that name
        if measure.source == "stock" and not any(
            k.name == measure.name and k.kind == "stock" and k.of == (measure.name,) and "day" in k.grains
            for k in kpis
        ):
            raise RegistryError(f"stock measure {measure.name} needs a daily KPI of the same name "
                                f"(kind: stock, of: {measure.name})")
    return Registry(measures, tuple(kpis))


@cache
def load(path: Path = REGISTRY) -> Registry:
    return parse(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- generated files


def macro_payload(registry: Registry) -> dict[str, Any]:
    """What macros/kpi_marts.sql needs, per grain: the KPI columns in order, and per family
    the (name, SQL expression) of its KPIs; the measures by source."""
    grains = {}
    for grain in GRAINS:
        kpis = registry.of_grain(grain)
        families: dict[str, list[list[str]]] = {f: [] for f in ("web", "flow", "stock", "mrr", "derived")}
        for kpi in kpis:
            families[registry.family(kpi, grain)].append([kpi.name, registry.expression(kpi, grain)])
        grains[grain] = {"columns": [k.name for k in kpis], **families}
    by_source: dict[str, list] = {s: [] for s in SOURCES}
    for measure in registry.measures.values():
        if measure.source == "contribution":
            by_source["contribution"].append([measure.name, measure.type])
        elif measure.source == "stock":
            by_source["stock"].append([measure.name, measure.delta, measure.type])
        else:
            by_source[measure.source].append(measure.name)
    return {"grains": grains, "measures": by_source}


def generated_macro(registry: Registry) -> str:
    payload = json.dumps(macro_payload(registry), indent=2, sort_keys=False)
    return (
        "{#- Generated from dbt_project/kpi_registry.yml by `python -m\n"
        "    lifecycle_warehouse.generate`: do not edit (a test fails when it is stale). The KPI columns of kpi_daily\n"
        "    and kpi_monthly, per grain and family, with their SQL expressions; the measures by\n"
        "    source. Read by macros/kpi_marts.sql. -#}\n\n"
        "{% macro kpi_registry() -%}\n"
        "{{- return(fromjson('" + payload.replace("\\", "\\\\").replace("'", "\\'") + "')) -}}\n"
        "{%- endmacro %}\n"
    )


def _range_tests(kpi: Kpi) -> list[dict]:
    tests: list[dict] = []
    if kpi.min is not None or kpi.max is not None:
        arguments = {k: v for k, v in (("min_value", kpi.min), ("max_value", kpi.max)) if v is not None}
        tests.append({"between": {"arguments": arguments}})
    if kpi.max_warning is not None:
        tests.append({"between": {"arguments": {"max_value": kpi.max_warning}, "config": {"severity": "warn"}}})
    return tests


def _column(kpi: Kpi, grain: str, registry: Registry) -> dict:
    period = "day" if grain == "day" else "month"
    description = kpi.description.replace("the period", f"the {period}").replace("The period", f"The {period}")
    counted = kpi.kind == "sum" and kpi.of[0] in registry.measures and registry.measures[kpi.of[0]].source == "web"
    how = {"sum": ("counted over the " if counted else "a sum over the ") + period, "mean": "a mean over the " + period,
           "ratio": "a ratio (NULL when its denominator is 0)", "difference": "a difference",
           "stock": "a stock at the " + ("start" if kpi.at == "start" else "end") + " of the " + period}[kpi.kind]
    column = {"name": kpi.name, "description": f"{description} ({kpi.stage}; {how}.)", "data_type": kpi.sql_type}
    tests = _range_tests(kpi)
    if kpi.kind in ("sum", "difference", "stock"):
        tests.insert(0, "not_null")
    if tests:
        column["data_tests"] = tests
    return column


_MART_DESCRIPTIONS = {
    "day": (
        "One row per UTC day from the first day with data to the as-of date (the build's "
        "planned date: a quiet day still has its row), with every daily KPI of docs/kpis.md "
        "under its own name (columns from dbt_project/kpi_registry.yml). Flows (counts, "
        "money) are 0 on a day without any, rates NULL when their denominator is 0, stocks "
        "(active_customers, buyers, repeat_buyers, advocates, mrr) the values at the end of "
        "the day. Incremental, equal to a full refresh: a run recomputes the days its changes "
        "touch (the web window, the change log of int_kpi__contributions; see the SQL). "
        "Part of the BI contract (docs/sources.md §3)."
    ),
    "month": (
        "One row per calendar month (UTC; `month` is its first day) from the first month with "
        "data to the as-of month, with every KPI of docs/kpis.md, the (monthly) ones included "
        "(columns from dbt_project/kpi_registry.yml). Flows and rates are computed over the "
        "month's own events, never as averages of daily rates; stocks are kpi_daily's values "
        "on the month's last day (the as-of date for the current month, whose row has "
        "is_complete false). Incremental, equal to a full refresh (see the SQL). Part of the "
        "BI contract (docs/sources.md §3)."
    ),
}


def marts_yaml(registry: Registry) -> str:
    models = []
    for grain, model, key in (("day", "kpi_daily", "date"), ("month", "kpi_monthly", "month")):
        columns: list[dict] = [{
            "name": key,
            "description": ("The UTC day." if grain == "day" else "First day of the calendar month (UTC)."),
            "data_type": "date",
            "constraints": [{"type": "not_null"}],
            "data_tests": ["unique", "not_null"],
        }]
        if grain == "month":
            columns.append({
                "name": "is_complete",
                "description": ("False for the month that holds the as-of date, unless the as-of date is its "
                                "last day: its flows and stocks are partial (do not compare it with complete "
                                "months)."),
                "data_type": "boolean",
                "data_tests": ["not_null"],
            })
        columns += [_column(kpi, grain, registry) for kpi in registry.of_grain(grain)]
        columns.append({
            "name": "_web_last_dt",
            "description": ("Metadata of the incremental runs: the latest web delivery (date folder) "
                            "summarised into this " + ("day" if grain == "day" else "month") + "."),
            "data_type": "date",
        })
        models.append({"name": model, "description": _MART_DESCRIPTIONS[grain],
                       "config": {"contract": {"enforced": True}}, "columns": columns})
    header = ("# Generated from dbt_project/kpi_registry.yml by `python -m lifecycle_warehouse.generate`:\n"
              "# do not edit (a test fails when it is stale). Unit tests: _kpi__unit_tests.yml.\n")
    return header + yaml.safe_dump({"version": 2, "models": models}, sort_keys=False, width=100, allow_unicode=True)


def docs_table(registry: Registry) -> str:
    lines = [
        DOCS_START,
        "",
        "| KPI | stage | grains | computed as | unit | range | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for kpi in registry.kpis:
        if kpi.kind == "ratio":
            formula = (f"{'1 − ' if kpi.complement else ''}{f'{_number(kpi.scale)} × ' if kpi.scale else ''}"
                       f"({kpi.numerator}) / {kpi.denominator}")
        elif kpi.kind == "difference":
            formula = f"{kpi.of[0]} − {kpi.of[1]}"
        else:
            formula = f"{kpi.kind} of {kpi.of[0]}"
        if kpi.at == "start":
            formula += " (at the start)"
        low = "" if kpi.min is None else _number(kpi.min)
        high = _number(kpi.max) if kpi.max is not None else (
            f"{_number(kpi.max_warning)} (warning)" if kpi.max_warning is not None else "")
        bounds = f"[{low or '−∞'}, {high or '∞'}]" if (low or high) else ""
        name = f"`{kpi.name}`" + (" (project)" if kpi.extra else "")
        lines.append(f"| {name} | {kpi.stage} | {', '.join(kpi.grains)} | {formula} | {kpi.unit} | {bounds} "
                     f"| {kpi.description} |")
    lines += ["", DOCS_END]
    return "\n".join(lines)


def _with_docs_table(text: str, table: str) -> str:
    if DOCS_START not in text or DOCS_END not in text:
        raise RegistryError(f"{DOCS}: the markers {DOCS_START!r} … {DOCS_END!r} are missing")
    before, rest = text.split(DOCS_START, 1)
    _, after = rest.split(DOCS_END, 1)
    return before + table + after


def generated_files(registry: Registry | None = None) -> dict[Path, str]:
    registry = registry or load()
    return {
        GENERATED_MACRO: generated_macro(registry),
        MARTS_YAML: marts_yaml(registry),
        DOCS: _with_docs_table(DOCS.read_text(encoding="utf-8"), docs_table(registry)),
    }


def stale_files() -> list[Path]:
    return [path for path, text in generated_files().items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]
