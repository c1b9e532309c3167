"""The console of `lw pipeline` (`make pipeline`): progress per DAG and per task, one line per
finished task with its duration, the DAG's result; the full Airflow output goes to a log file.

The Airflow process (`airflow_runs`) reports its tasks through an Airflow listener
(`TaskReporter`, registered by airflow_runs): a JSON line per event on a pipe whose file
descriptor the parent passes in `LW_PIPELINE_EVENTS_FD`, and a readable `[lw] task …` marker
line in its own output (so the log file shows where each task starts and ends, and the
failing task's lines can be cut out of it). Events:

    {"event": "dag_started", "dag": …, "tasks": 12, "width": 28, "date_from": …, "date_to": …}
    {"event": "task_started", "dag": …, "task": …, "map_index": -1, "try": 1}
    {"event": "task_finished", … , "state": "success" | "failed" | "up_for_retry" | "skipped",
     "seconds": 2.1, "max_tries": 2, "error": "ValueError: …" | null}
    {"event": "dag_finished", "dag": …, "state": …, "seconds": …, "problem": … | null,
     "not_succeeded": [{"task": …, "map_index": …, "state": …}, …]}

`LW_VERBOSE=1` (or `lw pipeline --verbose`) streams Airflow's whole output to the console
instead, as before. Log files: AIRFLOW_HOME/logs/pipeline/<timestamp>.log, the newest
KEEP_LOGS kept.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

EVENTS_FD_ENV = "LW_PIPELINE_EVENTS_FD"
VERBOSE_ENV = "LW_VERBOSE"
KEEP_LOGS = 20
TAIL_LINES = 30
MAX_TAIL_LINES = 80
MAX_LINE_CHARS = 400
LABEL_WIDTH = 44

MARKER_PREFIX = "[lw] task "


# ---------------------------------------------------------------- pure helpers


def verbose_requested(flag: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """The --verbose flag, or LW_VERBOSE set to anything but empty/0/false/no."""
    value = (os.environ if environ is None else environ).get(VERBOSE_ENV, "")
    return flag or value.strip().lower() not in ("", "0", "false", "no", "off")


def task_label(task_id: str, map_index: int | None = -1) -> str:
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"


def marker_line(event: Mapping[str, Any]) -> str:
    """The `[lw] task …` line the Airflow process writes to its own output for a task event."""
    name = f"{event['dag']}.{task_label(event['task'], event.get('map_index'))} (try {event['try']})"
    if event["event"] == "task_started":
        return f"{MARKER_PREFIX}started: {name}"
    seconds = event.get("seconds")
    took = "" if seconds is None else f" in {seconds:.1f} s"
    return f"{MARKER_PREFIX}{event['state']}: {name}{took}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


SYMBOLS = {"success": ("✓", "green"), "failed": ("✗", "red"), "up_for_retry": ("↻", "yellow"),
           "skipped": ("–", "dim")}


def task_line(event: Mapping[str, Any], done: int, total: int, width: int = LABEL_WIDTH) -> tuple[str, str]:
    """The console line of a finished task, and its colour: `  ✓ load_contacts   2.1 s   3/5`
    (the label padded to `width`, the DAG's longest task id)."""
    state = event["state"]
    symbol, colour = SYMBOLS.get(state, ("?", "yellow"))
    label = task_label(event["task"], event.get("map_index"))
    line = f"  {symbol} {label:<{width}} {format_seconds(event.get('seconds')):>10}"
    if state == "up_for_retry":
        line += f"   failed on try {event['try']}, will retry"
        if event.get("max_tries") is not None:
            line += f" (at most {int(event['max_tries']) + 1} tries)"
    elif state == "failed":
        line += f"   failed on try {event['try']}"
    elif state == "skipped":
        line += "   skipped"
    else:
        line += f"   {done}/{total}"
    return line, colour


def dag_header(event: Mapping[str, Any]) -> str:
    """Same words as airflow_runs' own `==> dag: one run for …` line."""
    return f"==> {event['dag']}: one run for {event['date_from']} … {event['date_to']} ({event['tasks']} tasks)"


def dag_result(event: Mapping[str, Any]) -> list[str]:
    """The `==> dag: state in s` line (what scripts and tests read), after the reason of an
    `incomplete` run, exactly as airflow_runs prints them."""
    lines = []
    if event.get("problem"):
        lines.append(f"==> {event['dag']}: the run says success, but {event['problem']}")
    lines.append(f"==> {event['dag']}: {event['state']} in {event['seconds']:.1f} s")
    return lines


def not_run_summary(event: Mapping[str, Any], reported: set[str]) -> str | None:
    """One line for the tasks of a failed run that did not succeed and were not reported as
    finished tasks (upstream_failed, never ran, …): `12 task(s) did not run: …`."""
    left = [t for t in event.get("not_succeeded") or []
            if task_label(t["task"], t.get("map_index")) not in reported]
    if not left:
        return None
    by_state: dict[str, list[str]] = {}
    for t in left:
        by_state.setdefault(t.get("state") or "never ran", []).append(task_label(t["task"], t.get("map_index")))
    parts = []
    for state, labels in sorted(by_state.items()):
        shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
        parts.append(f"{state}: {shown}")
    return f"  {len(left)} task(s) did not run or did not finish — " + "; ".join(parts)


def _is_boundary(line: str) -> bool:
    """A line that ends the log of the task before (another task's end, a DAG's start)."""
    return (line.startswith(MARKER_PREFIX) and not line.startswith(f"{MARKER_PREFIX}started:")) \
        or line.startswith("==> ")


def task_log_section(lines: Sequence[str], dag_id: str, label: str, try_number: int) -> list[str] | None:
    """The lines the Airflow process wrote while running one try of a task: from its
    `[lw] task started:` marker (or, when it failed before starting, the end of the task
    before or the DAG's start) to this try's `[lw] task <state>:` marker. DAG.test runs one
    task at a time, so everything in between is this task's. None when the log has no
    marker of it."""
    name = f": {dag_id}.{label} (try {try_number})"
    end = None
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line.startswith(MARKER_PREFIX) and not line.startswith(f"{MARKER_PREFIX}started:") \
                and (line.endswith(name) or f"{name} in " in line):
            end = index
            break
    if end is None:
        return None
    start = end
    while start > 0 and not _is_boundary(lines[start - 1]):
        start -= 1
        if lines[start] == f"{MARKER_PREFIX}started{name}":
            break
    return [line for line in lines[start:end] if not line.startswith(MARKER_PREFIX)]


_FRAME = re.compile(r'^\s+File "(?P<path>[^"]+)", line \d+, in ')


def collapse_library_frames(lines: Sequence[str]) -> list[str]:
    """Tracebacks with each run of frames in installed packages (Airflow's task runner, …)
    shortened to one `… n frames in installed packages …` line; the last frame before an
    exception's message is always kept (the error may come from a library)."""
    frames: list[tuple[int, int, bool]] = []  # (first line, end, in site-packages)
    index = 0
    while index < len(lines):
        match = _FRAME.match(lines[index])
        if not match:
            index += 1
            continue
        indent = len(lines[index]) - len(lines[index].lstrip())
        end = index + 1
        while end < len(lines) and not _FRAME.match(lines[end]) \
                and len(lines[end]) - len(lines[end].lstrip()) > indent and lines[end].strip():
            end += 1
        frames.append((index, end, "site-packages" in match["path"] or "dist-packages" in match["path"]))
        index = end
    keep = list(lines)
    run: list[tuple[int, int, bool]] = []

    def flush() -> None:
        if len(run) >= 2:
            indent = lines[run[0][0]][:len(lines[run[0][0]]) - len(lines[run[0][0]].lstrip())]
            keep[run[0][0]] = f"{indent}… {len(run)} frames in installed packages …"
            for first, end, _ in run:
                for line in range(first, end):
                    if line != run[0][0]:
                        keep[line] = None
        run.clear()

    for number, frame in enumerate(frames):
        last_of_traceback = number + 1 == len(frames) or frames[number + 1][0] != frame[1]
        if frame[2] and not last_of_traceback:
            if run and run[-1][1] != frame[0]:
                flush()
            run.append(frame)
        else:
            flush()
    flush()
    return [line for line in keep if line is not None]


def tail(lines: Sequence[str], error: str | None = None, max_lines: int = TAIL_LINES,
         hard_max: int = MAX_TAIL_LINES) -> list[str]:
    """The last `max_lines` lines (tracebacks shortened by collapse_library_frames), reaching
    further back (up to `hard_max`) so that they start before the error message when the
    lines contain it; long lines are shortened."""
    lines = collapse_library_frames([line.rstrip("\r\n") for line in lines])
    while lines and not lines[-1].strip():
        lines.pop()
    start = max(len(lines) - max_lines, 0)
    first = (error or "").strip().splitlines()[0][:200] if (error or "").strip() else ""
    if first:
        for index in range(len(lines) - 1, -1, -1):
            if first in lines[index]:
                start = min(start, max(index - 2, 0))
                break
    start = max(start, len(lines) - hard_max)
    return [line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 1] + "…" for line in lines[start:]]


def error_shown(error: str | None, shown: Sequence[str]) -> bool:
    """Whether the lines shown already contain the error message's first line."""
    if not error or not error.strip():
        return True
    first = error.strip().splitlines()[0][:200]
    return any(first in line for line in shown)


def rerun_commands(date_from: date, date_to: date, dag_args: Sequence[str] | None, ingest_only: bool,
                   dags: Sequence[str], finished: Mapping[str, str], via_make: bool,
                   program: str = "lw") -> list[str]:
    """The command that reruns the same pipeline (`make pipeline FROM=… TO=…` when it came
    from make and has no DAG selection, else `lw pipeline …`), and, when DAGs before the
    failed one succeeded, the command that runs only the failed DAG and those after it."""
    def lw(selected: Sequence[str] | None, only_ingest: bool) -> str:
        words = [program, "pipeline", "--from", date_from.isoformat(), "--to", date_to.isoformat()]
        if only_ingest:
            words.append("--ingest-only")
        for dag in selected or ():
            words += ["--dag", dag]
        return " ".join(words)

    if via_make and not dag_args and not ingest_only:
        same = f"make pipeline FROM={date_from.isoformat()} TO={date_to.isoformat()}"
    else:
        same = lw(dag_args, ingest_only)
    commands = [same]
    rest = [dag for dag in dags if finished.get(dag) != "success"]
    if rest and len(rest) < len(dags):
        commands.append(lw(rest, False))
    return commands


def new_log_file(folder: Path, now: datetime | None = None) -> Path:
    """A new file in `folder` named after the time: 20261030-142501.log (-2, -3 … when taken)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}.log"
    suffix = 1
    while path.exists():
        suffix += 1
        path = folder / f"{stamp}-{suffix}.log"
    return path


def prune_logs(folder: Path, keep: int = KEEP_LOGS) -> list[Path]:
    """Delete all but the `keep` newest pipeline logs of `folder`; the deleted paths."""
    logs = sorted(folder.glob("*.log"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    removed = []
    for path in logs[keep:]:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def parse_events(buffer: bytes) -> tuple[list[dict], bytes]:
    """Complete JSON lines of `buffer` as events (malformed ones dropped), and the rest."""
    *complete, rest = buffer.split(b"\n")
    events = []
    for raw in complete:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events, rest


# ---------------------------------------------------------------- rendering


@dataclass
class DagProgress:
    total: int  # the DAG's tasks (a mapped task once, whatever its expansion)
    width: int = LABEL_WIDTH
    done: set[str] = field(default_factory=set)  # task ids with a finished instance
    reported: set[str] = field(default_factory=set)  # labels (task[i]) of the finished instances
    progress_id: Any = None


@dataclass
class FailedTask:
    dag: str
    task: str
    map_index: int
    try_number: int
    error: str | None


class Renderer:
    """Turns events into console lines; with a terminal, also a live progress line per DAG."""

    def __init__(self, console, live: bool | None = None):
        self.console = console
        self.live = console.is_terminal and not console.is_dumb_terminal if live is None else live
        self.progress = None
        self.starting = None
        self.dags: dict[str, DagProgress] = {}
        self.finished: dict[str, str] = {}
        self.failed: list[FailedTask] = []
        self.explained = False  # a DAG's result line says why it failed (e.g. no task ran)

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
                TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TextColumn("[dim]{task.fields[current]}"),
                console=self.console, transient=True,
            )
            self.progress.start()
            self.starting = self.progress.add_task("Airflow", total=None, count="",
                                                   current="starting (imports, DAG files)")
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _print(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, highlight=False)

    def handle(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        try:
            if kind == "dag_started":
                self._dag_started(event)
            elif kind == "task_started":
                self._task_started(event)
            elif kind == "task_finished":
                self._task_finished(event)
            elif kind == "dag_finished":
                self._dag_finished(event)
        except (KeyError, TypeError, ValueError):
            pass  # a malformed event costs its line, never the run

    def _dag_started(self, event) -> None:
        width = min(int(event.get("width") or LABEL_WIDTH), LABEL_WIDTH)
        state = self.dags[event["dag"]] = DagProgress(total=int(event["tasks"]), width=width)
        self._print(dag_header(event), "bold")
        if self.progress is not None:
            if self.starting is not None:
                self.progress.remove_task(self.starting)
                self.starting = None
            state.progress_id = self.progress.add_task(event["dag"], total=state.total, current="preparing the run",
                                                       count=f"0/{state.total} tasks")

    def _task_started(self, event) -> None:
        state = self.dags.get(event["dag"])
        if self.progress is not None and state and state.progress_id is not None:
            label = task_label(event["task"], event.get("map_index"))
            self.progress.update(state.progress_id, current=f"running {label}")

    def _task_finished(self, event) -> None:
        state = self.dags.setdefault(event["dag"], DagProgress(total=0))
        label = task_label(event["task"], event.get("map_index"))
        if event["state"] in ("success", "failed", "skipped"):
            state.done.add(event["task"])  # a mapped task counts once: the total is the DAG's tasks
            state.reported.add(label)
        total = max(state.total, len(state.done))
        line, colour = task_line(event, len(state.done), total, state.width)
        self._print(line, colour)
        if event["state"] == "failed":
            self.failed.append(FailedTask(event["dag"], event["task"], event.get("map_index", -1),
                                          int(event["try"]), event.get("error")))
        if self.progress is not None and state.progress_id is not None:
            self.progress.update(state.progress_id, completed=len(state.done), total=total,
                                 count=f"{len(state.done)}/{total} tasks", current=f"{label} {event['state']}")

    def _dag_finished(self, event) -> None:
        state = self.dags.get(event["dag"])
        if self.progress is not None and state and state.progress_id is not None:
            self.progress.remove_task(state.progress_id)
        self.finished[event["dag"]] = event["state"]
        self.explained = self.explained or bool(event.get("problem"))
        summary = not_run_summary(event, state.reported if state else set())
        if summary and event["state"] != "success":
            self._print(summary, "dim")
        colour = "green" if event["state"] == "success" else "red"
        for line in dag_result(event):
            self._print(line, f"bold {colour}")

    def report_failure(self, log_file: Path) -> None:
        """The failing tasks' last lines (or the log's, when no task failed: the process
        itself did); the log file's path is printed by the caller."""
        try:
            lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        for failed in self.failed[:3]:
            label = task_label(failed.task, failed.map_index)
            section = task_log_section(lines, failed.dag, label, failed.try_number)
            shown = tail(section or [], failed.error)
            heading = f"✗ {failed.dag}.{label} failed (try {failed.try_number})"
            if shown:
                self._print(f"{heading}; the last lines of its log:", "bold red")
                for line in shown:
                    self._print(f"    {line}")
            if not error_shown(failed.error, shown):
                self._print("  its error:" if shown else f"{heading}; its error:", "bold red")
                for line in (failed.error or "").splitlines()[:MAX_TAIL_LINES]:
                    self._print(f"    {line}")
        if not self.failed and not self.explained:
            self._print("The last lines of the Airflow output:", "bold red")
            for line in tail(lines):
                self._print(f"    {line}")


# ---------------------------------------------------------------- running


@dataclass
class PipelineRun:
    code: int
    log_file: Path | None
    finished: dict[str, str]


def _read_events(read_fd: int, proc: subprocess.Popen) -> Iterator[dict]:
    """Events from the pipe until the Airflow process exits (then what is left in the pipe:
    a process it started that kept the pipe open must not hold the console)."""
    selector = selectors.DefaultSelector()
    selector.register(read_fd, selectors.EVENT_READ)
    os.set_blocking(read_fd, False)
    buffer = b""
    open_ = True
    try:
        while open_:
            exited = proc.poll() is not None
            if not exited:
                selector.select(timeout=0.5)
            while True:
                try:
                    chunk = os.read(read_fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    open_ = False
                    break
                buffer += chunk
                events, buffer = parse_events(buffer)
                yield from events
            if exited:
                break
    finally:
        selector.close()
        os.close(read_fd)


def run(command: Sequence[str], env: Mapping[str, str], console, verbose: bool = False,
        log_dir: Path | None = None) -> PipelineRun:
    """Run the Airflow process (airflow_runs): verbose, its output on the console as is;
    else its output in a log file and the console renders its task events."""
    if verbose:
        console.print("[dim]LW_VERBOSE: Airflow's whole output follows[/]")
        return PipelineRun(subprocess.call(list(command), env=dict(env)), None, {})
    folder = log_dir or Path(env.get("AIRFLOW_HOME", ".")) / "logs" / "pipeline"
    folder.mkdir(parents=True, exist_ok=True)
    prune_logs(folder, KEEP_LOGS - 1)
    log_file = new_log_file(folder)
    console.print(f"Airflow's full output: {log_file}  (LW_VERBOSE=1 or --verbose to see it here)",
                  markup=False, highlight=False)
    read_fd, write_fd = os.pipe()
    child_env = {**env, EVENTS_FD_ENV: str(write_fd), "PYTHONUNBUFFERED": "1"}
    renderer = Renderer(console)
    interrupted = False
    with open(log_file, "wb") as log:
        log.write(f"# {' '.join(command)}\n# started {datetime.now().isoformat(timespec='seconds')}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(list(command), env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                    pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        with renderer:
            try:
                for event in _read_events(read_fd, proc):
                    renderer.handle(event)
            except KeyboardInterrupt:
                interrupted = True
        try:
            code = proc.wait(timeout=30) if interrupted else proc.wait()
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.terminate()
            code = proc.wait()
    if interrupted:
        code = code or 130
        console.print("[yellow]interrupted[/]")
    if code != 0:
        renderer.report_failure(log_file)
    console.print(f"Airflow's full output: {log_file}", markup=False, highlight=False)
    return PipelineRun(code, log_file, renderer.finished)


def lw_program() -> str:
    """How to call `lw` in a rerun hint: the venv's `lw`, relative to the current folder
    when it is below it (`.venv/bin/lw`), else its absolute path; `lw` when there is none."""
    candidate = Path(sys.executable).with_name("lw")
    if not candidate.exists():
        return "lw"
    try:
        return str(candidate.relative_to(Path.cwd()))
    except ValueError:
        return str(candidate)
