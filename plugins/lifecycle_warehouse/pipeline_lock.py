"""One `lw pipeline` at a time per warehouse: the second waits for the first, then runs.

Why two at once cannot both run: `DAG.test` names a run after its logical date, so two runs
over the same range get the same run id, and the second *deletes* the first's run (with its
task instances) to create its own; the warehouse DAG's runs must be serialised (a run's plan
ends an earlier run that never ended as interrupted, and the dbt change logs assume one
build at a time); and both would rewrite dbt's `target/` (manifest, partial parse) while
the other reads it.

The lock is a session-level advisory lock on the warehouse database, held by the `lw
pipeline` process's own connection: a process that dies, even by SIGKILL, releases it with
its connection, so a crash never leaves the warehouse locked. A second `lw pipeline` says
which one it waits for (its range and process id, from the holder's `application_name`),
waits, then runs the same steps again; every step is idempotent, so two at once end as one
run followed by a rerun: the same `analytics`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lifecycle_warehouse import connections

PIPELINE_LOCK = "lifecycle_warehouse.pipeline"
APPLICATION = "lw pipeline"
# While waiting, a reminder line this often (the holder may be a run of hours).
REMIND_SECONDS = 600.0


def _holder(conn) -> str:
    row = conn.execute(
        "select a.application_name, a.backend_start from pg_locks l"
        " join pg_stat_activity a on a.pid = l.pid"
        " where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database"
        "   where datname = current_database())"
        " and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)"
        " limit 1",
        (PIPELINE_LOCK,),
    ).fetchone()
    if row is None:
        return "a run that just ended"
    name, since = row
    return f"{name or 'another session'}, since {since:%Y-%m-%d %H:%M:%S %Z}"


@contextmanager
def one_pipeline_at_a_time(warehouse_url: str, label: str, say: Callable[[str], None] = print,
                           poll_seconds: float = 1.0) -> Iterator[None]:
    """Hold the warehouse's pipeline lock for the block, waiting for another `lw pipeline`
    that holds it (`label`, e.g. the range, names this one to the others)."""
    application = f"{APPLICATION} {label} (pid {os.getpid()})"[:63]
    conn = connections.connect(warehouse_url, autocommit=True, application_name=application)
    try:
        def take() -> bool:
            return conn.execute("select pg_try_advisory_lock(hashtextextended(%s, 0))",
                                (PIPELINE_LOCK,)).fetchone()[0]

        if not take():
            started = time.monotonic()
            say(f"another `lw pipeline` runs on this warehouse ({_holder(conn)}): waiting for it to end, "
                "then this one runs (Ctrl-C gives up)")
            reminded = started
            try:
                while not take():
                    if time.monotonic() - reminded >= REMIND_SECONDS:
                        reminded = time.monotonic()
                        say(f"still waiting ({(reminded - started) / 60:.0f} min) for {_holder(conn)}")
                    time.sleep(poll_seconds)
            except KeyboardInterrupt:
                say("gave up waiting: nothing was run")
                raise SystemExit(130) from None
            say(f"the other `lw pipeline` ended after {time.monotonic() - started:.0f} s of waiting: running")
        yield
    finally:
        conn.close()  # ends the session, and with it the lock
