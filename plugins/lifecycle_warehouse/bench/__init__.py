"""`lw bench` (make bench): the project's performance, measured and written to files, never
asserted. Parts, each a module of this package:

- history: how a daily run's cost grows with the history already in the warehouse.

docs/benchmark.md says how to run each part and how to read the results.
"""

from lifecycle_warehouse.bench.history import (  # noqa: F401  (the package's interface)
    BenchConfig,
    BenchError,
    fastest_of,
    how_to_read,
    model_rows,
    parse_histories,
    parse_repeats,
    ratio,
    render_markdown,
    rich_table,
    run_bench,
    summarise_run_results,
    write_results,
)
