"""The dbt models and data tests follow the project's SQL style (.sqlfluff: dbt Labs' style guide).

Runs `sqlfluff lint dbt_project/models dbt_project/tests`, as `make lint` does, with the repository's
.sqlfluff and .sqlfluffignore. sqlfluff also lints template branches that a default
render does not reach (e.g. `{% if is_incremental() %}`). About a minute on two cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lifecycle_warehouse import settings


def test_dbt_models_pass_sqlfluff():
    sqlfluff = Path(sys.executable).with_name("sqlfluff")
    command = [str(sqlfluff) if sqlfluff.exists() else "sqlfluff", "lint", "dbt_project/models", "dbt_project/tests", "--processes", "2"]
    # The jinja templater loads macros from a path relative to the working directory.
    result = subprocess.run(command, cwd=settings.PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"`{' '.join(command[1:])}` found style violations (fix with `sqlfluff fix <file>` and "
        f"check the diff):\n{result.stdout[-20000:]}\n{result.stderr[-2000:]}"
    )
