"""Which date folders a run loads (docs/sources.md §1 and its project notes).

A run loads the folders of its own dates **and** any folder of the look-back window before
them that is new or changed since its last load, so that a folder delivered a day late is
picked up by the next scheduled run. A folder is loaded only once it is complete: it holds
a `_SUCCESS` marker, or (for a source not set up to write markers) none of its files has
changed for the settling time, so a file still being written is never loaded half-way.

Changed means: another set of data files, or a file whose size or content (SHA-256) differs
from what `raw.load_audit` recorded for the folder's latest load. Size and modification time
are compared first; a file is hashed only when they differ.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import psycopg

from lifecycle_warehouse.contract import FileEntity
from lifecycle_warehouse.ingest.records import file_format

log = logging.getLogger(__name__)

MARKER = "_SUCCESS"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Why a folder is loaded.
IN_INTERVAL = "in the run's dates"
LATE = "delivered late (new in the look-back window)"
CHANGED = "re-delivered (changed since its last load)"


@dataclass(frozen=True)
class DataFile:
    """A data file of a date folder as found on disk."""

    path: Path
    rel: str  # relative to the landing dir: raw.load_audit.file
    size: int
    modified_at: datetime  # UTC
    sha256: str | None = None  # computed when needed (sha256_of)
    refused: str | None = None  # why the file is not read at all (see `refusal`)

    def with_sha256(self) -> DataFile:
        if self.sha256 or self.refused:
            return self
        return replace(self, sha256=sha256_of(self.path))


@dataclass
class Folder:
    """A date folder a run loads, with its data files."""

    entity: FileEntity
    dt: date
    reason: str
    files: list[DataFile] = field(default_factory=list)


@dataclass(frozen=True)
class Skipped:
    """A date folder of the run's dates (or a changed one of the look-back) not loaded now."""

    entity: FileEntity
    dt: date
    reason: str


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def delivery_folder(landing_dir: Path, entity: FileEntity, dt: date) -> Path:
    return Path(landing_dir) / entity.source / entity.entity / f"dt={dt.isoformat()}"


def _visible_files(folder: Path) -> list[Path]:
    # `_SUCCESS`-style markers and dotfiles (a writer's temporary files) are not deliveries.
    # A symbolic link is one whatever it points to (a broken one is rejected, not ignored).
    return [p for p in folder.iterdir()
            if (p.is_file() or p.is_symlink()) and not p.name.startswith((".", "_"))]


def refusal(path: Path, landing_root: Path) -> str | None:
    """Why a data file of the landing zone is not read at all, or None: files are read only
    inside the landing zone (a symbolic link may point elsewhere inside it, never outside),
    and a name holding `..` looks like a path out of it."""
    if ".." in path.name:
        return "refused: the file name contains '..' (a name that reads as a path out of its folder)"
    target = path.resolve()  # through a link to the file or to one of its folders
    if not target.is_relative_to(landing_root):
        return (f"refused: a symbolic link to {target}, outside the landing zone "
                f"(LANDING_DIR {landing_root}); files are read only inside it")
    if not target.is_file():
        return f"cannot read the file: a symbolic link to {target}, which is not a file"
    return None


def delivery_files(folder: Path) -> list[Path]:
    """The data files of a date folder, sorted by name."""
    return sorted((p for p in _visible_files(folder) if file_format(p)), key=lambda p: p.name)


def ignored_files(folder: Path) -> list[Path]:
    """Visible files of a date folder that are not data files (wrong extension)."""
    return sorted(set(_visible_files(folder)) - set(delivery_files(folder)))


def data_files(landing_dir: Path, folder: Path) -> list[DataFile]:
    out = []
    root = Path(landing_dir).resolve()
    for path in delivery_files(folder):
        refused = refusal(path, root)
        stat = path.lstat() if refused else path.stat()  # a refused link is not followed
        out.append(DataFile(
            path=path,
            rel=path.relative_to(landing_dir).as_posix(),
            size=stat.st_size,
            modified_at=_EPOCH + timedelta(microseconds=stat.st_mtime_ns // 1000),
            refused=refused,
        ))
    return out


def _as_date(value: date, *, ceil: bool) -> date:
    """A date, or a datetime (naive = UTC) rounded to a date in UTC."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    day = value.date()
    return day + timedelta(days=1) if ceil and value.time() != time(0) else day


def interval_dates(start: date, end: date) -> list[date]:
    """Dates d with start <= d < end; for datetimes, those whose UTC midnight is in the interval."""
    first, stop = _as_date(start, ceil=True), _as_date(end, ceil=True)
    return [first + timedelta(days=i) for i in range((stop - first).days)]


def incomplete_reason(
    folder: Path, *, require_marker: bool, settle_seconds: float, now: float
) -> str | None:
    """Why a date folder is not complete yet, or None when it is: a `_SUCCESS` marker makes
    it complete; without one, a source that writes markers is waiting for it, and any other
    is complete once nothing in the folder (a file, a writer's temporary file, the folder's
    own entries) has changed for `settle_seconds`. `now` is a time.time() value."""
    if (folder / MARKER).is_file():
        return None
    if require_marker:
        return f"no {MARKER} marker yet (the source writes one when a delivery is complete)"
    entries = [folder, *folder.iterdir()]
    newest = max(_mtime(p) for p in entries)
    age = now - newest
    if age < settle_seconds:
        return (f"a file changed {max(age, 0):.0f} s ago: waiting until nothing has changed for "
                f"{settle_seconds:.0f} s (LW_SETTLE_SECONDS), so that no half-written file is read")
    return None


def _mtime(path: Path) -> float:
    """Modification time, of a symbolic link's target when it can be read, else of the link."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return os.lstat(path).st_mtime


def _last_loads(
    conn: psycopg.Connection, entity: FileEntity, dates: list[date]
) -> dict[date, dict[str, tuple]]:
    """For each date with a load, the files of its latest load: rel -> (size, modified_at, sha256)."""
    if not dates:
        return {}
    rows = conn.execute(
        """
        with latest as (
            select distinct on (dt) dt, batch_id from raw.load_audit
            where source = %s and entity = %s and dt = any(%s)
            order by dt, loaded_at desc
        )
        select a.dt, a.file, a.file_size, a.file_modified_at, a.file_sha256
        from raw.load_audit as a join latest using (dt, batch_id)
        where a.source = %s and a.entity = %s
        """,
        (entity.source, entity.entity, dates, entity.source, entity.entity),
    ).fetchall()
    out: dict[date, dict[str, tuple]] = {}
    for dt, rel, size, modified_at, digest in rows:
        out.setdefault(dt, {})[rel] = (size, modified_at, digest)
    return out


def _changed(files: list[DataFile], previous: dict[str, tuple]) -> tuple[bool, list[DataFile]]:
    """Whether the folder differs from its previous load, and its files (hashed where the
    comparison needed it)."""
    if {f.rel for f in files} != set(previous):
        return True, files
    checked = []
    changed = False
    for f in files:
        size, modified_at, digest = previous[f.rel]
        if size == f.size and modified_at == f.modified_at and digest is not None:
            checked.append(replace(f, sha256=digest))
            continue
        f = f.with_sha256()
        checked.append(f)
        changed = changed or size != f.size or digest != f.sha256
    return changed, checked


def plan_folders(
    conn: psycopg.Connection,
    landing_dir: Path,
    entity: FileEntity,
    start: date,
    end: date,
    *,
    lookback_days: int,
    settle_seconds: float,
    require_marker: bool,
    now: float,
) -> tuple[list[Folder], list[Skipped]]:
    """The date folders of `entity` to load for a run covering [start, end), oldest first,
    and the folders of its dates it cannot load now (with the reason)."""
    landing_dir = Path(landing_dir)
    dates = interval_dates(start, end)
    first = dates[0] if dates else _as_date(start, ceil=True)
    lookback = [first - timedelta(days=n) for n in range(lookback_days, 0, -1)]
    previous = _last_loads(conn, entity, [d for d in lookback
                                          if delivery_folder(landing_dir, entity, d).is_dir()])
    planned: list[Folder] = []
    skipped: list[Skipped] = []
    label = f"{entity.source}/{entity.entity}"
    for dt in lookback + dates:
        in_interval = dt >= first
        folder = delivery_folder(landing_dir, entity, dt)
        if not folder.is_dir():
            if in_interval:
                skipped.append(Skipped(entity, dt, f"not delivered ({folder} does not exist)"))
            continue
        files = data_files(landing_dir, folder)
        for ignored in ignored_files(folder):
            log.warning("%s dt=%s: ignoring %s (not a .csv/.jsonl[.gz] file)", label, dt, ignored.name)
        if not files:
            if in_interval:
                skipped.append(Skipped(entity, dt, "the folder holds no data file: not delivered"))
            continue
        if in_interval:
            reason = IN_INTERVAL
        elif dt not in previous:
            reason = LATE
        else:
            changed, files = _changed(files, previous[dt])
            if not changed:
                continue
            reason = CHANGED
        waiting = incomplete_reason(folder, require_marker=require_marker,
                                    settle_seconds=settle_seconds, now=now)
        if waiting:
            skipped.append(Skipped(entity, dt, f"not complete: {waiting}; a later run loads it"))
            continue
        planned.append(Folder(entity, dt, reason, files))
    return planned, skipped
