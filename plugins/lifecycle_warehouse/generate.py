"""Write every file the project generates from its own definitions, or check them:

    python -m lifecycle_warehouse.generate          # (make generate) rewrite what is stale
    python -m lifecycle_warehouse.generate --check  # exit 1, naming the stale files

- from the KPI registry (dbt_project/kpi_registry.yml, lifecycle_warehouse.kpis): the
  columns of kpi_daily and kpi_monthly (dbt_project/macros/generated/kpi_registry.sql),
  their YAML (descriptions, types, range tests) and the KPI table of docs/kpis.md;
- from the quality suites (lifecycle_warehouse.quality.suites, which read the registry
  too): the Great Expectations project under expectations/gx/.

A test fails when one of them is stale, so an edit of the registry or of the suites is
followed by this command.
"""

from __future__ import annotations

import argparse
import sys

from lifecycle_warehouse import kpis, settings
from lifecycle_warehouse.quality import suites


def stale() -> list[str]:
    """Generated files that differ from what their definitions give (paths from the
    project root)."""
    root = settings.PROJECT_ROOT
    return ([str(path.relative_to(root)) for path in kpis.stale_files()]
            + [f"expectations/gx/{path}" for path in suites.stale_files()])


def write() -> list[str]:
    """Rewrite the stale generated files; returns their paths."""
    root = settings.PROJECT_ROOT
    written = []
    for path, text in kpis.generated_files().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(str(path.relative_to(root)))
    written += [f"expectations/gx/{path}" for path in suites.write_project()]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle_warehouse.generate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    try:
        paths = stale() if args.check else write()
    except kpis.RegistryError as error:
        print(f"dbt_project/kpi_registry.yml: {error}", file=sys.stderr)
        return 2
    if args.check:
        for path in paths:
            print(f"stale: {path}", file=sys.stderr)
        if paths:
            print("run `python -m lifecycle_warehouse.generate` (make generate)", file=sys.stderr)
        return 1 if paths else 0
    for path in paths:
        print(f"wrote {path}")
    if not paths:
        print("every generated file is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
