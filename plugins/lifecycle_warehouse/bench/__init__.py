"""`lw bench` (make bench): the project's performance, measured and written to files, never
asserted. `run` runs the parts on the bench's own server and writes bench/results.json and
bench/results.md; each part is a module of this package:

- history: how a daily `dbt build`'s cost grows with the history already in the warehouse;
- daily_run: one daily run end to end through Airflow; the warehouse DAG's dbt step
  against one plain `dbt build`;
- gates: the quality gates (Great Expectations) against the same checks as SQL;
- loads: raw file loads against `psql \\copy`, dlt and pandas `to_sql`.

docs/benchmark.md says how to run each part and how to read the results.
"""
