"""Every dbt model is documented and has its key tested, as read from dbt's manifest.

`dbt parse` needs no database, so these checks run anywhere in a few seconds. That the
YAML lists exactly the columns a model really has needs a built warehouse: see
tests/integration/test_dbt_incremental.py::test_yaml_documents_exactly_the_built_columns.
"""

from __future__ import annotations

import json
import re

import pytest

from lifecycle_warehouse import dbt_runner

# dbt parse renders the profile but never connects: a server that does not exist.
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:1/none"
# The grain comes first: "One row per order …", or "One row: …" for a single-row model.
GRAIN_FIRST = re.compile(r"^one row\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("dbt_parse")
    env = {"DBT_TARGET_PATH": str(workdir / "target"), "DBT_LOG_PATH": str(workdir / "logs")}
    returncode = dbt_runner.run(["parse", "--quiet"], url=UNREACHABLE_URL, check=False, env=env)
    assert returncode == 0, f"dbt parse failed (exit {returncode}); see its output above"
    return json.loads((workdir / "target" / "manifest.json").read_text())


def _models(manifest: dict) -> list[dict]:
    models = sorted(
        (node for node in manifest["nodes"].values() if node["resource_type"] == "model"),
        key=lambda node: node["name"],
    )
    assert len(models) > 20, f"the manifest holds only {len(models)} models: parse went wrong"
    return models


def _where(node: dict) -> str:
    """The model and the YAML file that documents it (or its SQL file, when none does)."""
    path = (node.get("patch_path") or "").split("://", 1)[-1] or node["original_file_path"]
    return f"{node['name']} ({path})"


def test_every_model_has_a_description_that_starts_with_its_grain(manifest):
    problems = []
    for node in _models(manifest):
        description = node["description"].strip()
        if not description:
            problems.append(f"{_where(node)}: no description")
        elif not GRAIN_FIRST.match(description):
            problems.append(f"{_where(node)}: description does not start with its grain ('One row per …'): "
                            f"{description[:60]!r}")
    assert not problems, "\n".join(problems)


def test_every_column_has_a_description(manifest):
    problems = []
    for node in _models(manifest):
        if not node["columns"]:
            problems.append(f"{_where(node)}: no columns documented")
        problems += [
            f"{_where(node)}: column {name} has no description"
            for name, column in node["columns"].items()
            if not column["description"].strip()
        ]
    assert not problems, "\n".join(problems)


def test_every_model_has_its_key_tested(manifest):
    """A key is a column with both `unique` and `not_null`, or a compound key tested with
    `unique_combination_of_columns`."""
    unique: dict[str, set[str]] = {}
    not_null: dict[str, set[str]] = {}
    compound: set[str] = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or not node.get("test_metadata"):
            continue
        name = node["test_metadata"]["name"]
        model = node.get("attached_node")
        if name == "unique":
            unique.setdefault(model, set()).add(node["column_name"])
        elif name == "not_null":
            not_null.setdefault(model, set()).add(node["column_name"])
        elif name == "unique_combination_of_columns":
            compound.add(model)
    missing = [
        _where(node)
        for node in _models(manifest)
        if not (unique.get(node["unique_id"], set()) & not_null.get(node["unique_id"], set()))
        and node["unique_id"] not in compound
    ]
    assert not missing, (
        "models without a tested key (unique + not_null on one column, or "
        "unique_combination_of_columns): " + ", ".join(missing)
    )
