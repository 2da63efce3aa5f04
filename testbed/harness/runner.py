"""Running a sweep: make the run directory, run each point in a fresh process, resume.

For: the parent side of a sweep. `create_run` writes params.json and env.json; `execute`
runs every point that has no ``ok`` record yet (so the same call resumes an interrupted or
partly failed run), each as ``python -m testbed.harness.point RUN_DIR POINT_ID`` in its own
session, so no state (sockets, libiperf globals, Mininet objects, signal handlers) leaks from
one configuration to the next. A point that raises, crashes or times out is recorded as failed
with its error and the sweep goes on. Ctrl-C or SIGTERM stops the running point (SIGTERM,
then SIGKILL of its process group after a grace period, so a point that builds a layout can
tear it down), records it as interrupted, writes summary.json and re-raises.

Not for: measuring (the experiment's `run_point`, in the child) or reading runs for reports
(`testbed.harness.results`). The parent never imports Mininet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from testbed import REPO_ROOT
from testbed.harness.environment import collect_env, git_facts
from testbed.harness.framework import Experiment, Sweep, experiment_from_module
from testbed.harness.results import (
    CAPTURES_DIR,
    ENV_FILE,
    INDEX_FILE,
    LOG_FILE,
    PARAMS_FILE,
    POINTS_DIR,
    RESULT_FILE,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    SUMMARY_FILE,
    TABLE_FILE,
    append_jsonl,
    count_statuses,
    load_spec,
    point_dir,
    point_record,
    read_json,
    read_results,
    summary_rows,
    utc_now,
    write_json,
    write_table,
)
from testbed.net.capture import CAPTURE_DIR_ENV

RESULTS_ENV = "LVS_TESTBED_RESULTS"
DEFAULT_RESULTS_ROOT = Path("results")
STOP_GRACE_S = 20.0  # long enough for a point to tear a layout down after SIGTERM
POLL_S = 0.1
LOG_TAIL_LINES = 3
LOG_TAIL_LINE_CHARS = 200
CONSOLE_ERROR_CHARS = 160


def default_results_root() -> Path:
    return Path(os.environ.get(RESULTS_ENV, DEFAULT_RESULTS_ROOT))


def make_run_id(sweep: Sweep, now: datetime) -> str:
    """UTC start time and a short hash of what was asked (experiment, values, repeat)."""
    asked = {"experiment": sweep.experiment.name, "values": sweep.values, "repeat": sweep.repeat}
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%SZ}-{digest}"


def create_run(sweep: Sweep, results_root: Path, capture: bool = False) -> Path:
    """Make ``<results_root>/<experiment>/<run-id>/`` with params.json and env.json. With
    ``capture`` every layout a point builds captures its links into the point's
    ``pcaps/`` directory (recorded in params.json, so a resume captures too)."""
    now = datetime.now(timezone.utc)
    base = results_root / sweep.experiment.name
    base.mkdir(parents=True, exist_ok=True)
    run_id = make_run_id(sweep, now)
    run_dir = base / run_id
    suffix = 1
    while True:  # the same sweep started twice within a second
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            suffix += 1
            run_dir = base / f"{run_id}-{suffix}"
    spec = {
        "experiment": sweep.experiment.name,
        "module": sweep.experiment.module,
        "description": sweep.experiment.description,
        "run_id": run_dir.name,
        "created_at": now.isoformat(timespec="seconds"),
        "command": sweep.command(),
        "values": sweep.values,
        "repeat": sweep.repeat,
        "capture": capture,
        "points": [
            {"point_id": p.point_id, "repeat": p.repeat, "params": p.params} for p in sweep.points
        ],
    }
    write_json(run_dir / PARAMS_FILE, spec)
    write_json(run_dir / ENV_FILE, collect_env())
    (run_dir / POINTS_DIR).mkdir()
    return run_dir


# ---------------------------------------------------------------------------------------------
# Execution


@dataclass
class RunOutcome:
    """What `execute` did: points run now, the run's counts after it, failures (id, error)."""

    run_dir: Path
    ran: int = 0
    interrupted: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)


def _import_root(module: str) -> Path | None:
    """The sys.path entry ``module`` was imported from, so a child can import it too (a test
    module is importable in pytest's process only because pytest put its root on sys.path)."""
    file = getattr(sys.modules.get(module), "__file__", None)
    if file is None:
        return None
    depth = module.count(".") + (2 if Path(file).name == "__init__.py" else 1)
    return Path(file).resolve().parents[depth - 1]


def _child_env(experiment: Experiment) -> dict[str, str]:
    env = dict(os.environ)
    root = _import_root(experiment.module)
    if root is not None:
        paths = [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (and SIGHUP) in the parent stop the sweep as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _exited(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the child to exit WITHOUT reaping it: while it is a zombie
    its pid, and so its process group id, cannot be reused, so killing the group is safe."""
    deadline = time.monotonic() + timeout_s
    while True:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def _kill_group_and_reap(proc: subprocess.Popen) -> int:
    """SIGKILL what is left in the child's process group (stragglers it started), reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def _stop(proc: subprocess.Popen) -> int:
    """SIGTERM the child; SIGKILL its group after the grace period or a second Ctrl-C."""
    if proc.returncode is not None:  # already stopped and reaped
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        _exited(proc, STOP_GRACE_S)
    finally:
        rc = _kill_group_and_reap(proc)
    return rc


def _log_tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(line[:LOG_TAIL_LINE_CHARS] for line in lines[-LOG_TAIL_LINES:])


def _with_tail(message: str, pdir: Path) -> str:
    tail = _log_tail(pdir / LOG_FILE)
    return f"{message}; log: {tail}" if tail else message


def _exit_text(rc: int) -> str:
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"the point process was killed by {name}"
    return f"the point process exited with code {rc} without a result"


def _child_record(pdir: Path, point_id: str) -> dict[str, Any] | None:
    try:
        record = json.loads((pdir / RESULT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ok = record.get("point_id") == point_id and record.get("status") in (STATUS_OK, STATUS_FAILED)
    return record if ok else None


def run_one(
    run_dir: Path,
    point: dict[str, Any],
    timeout_s: float,
    env: dict[str, str],
    console: Console | None = None,
    capture: bool = False,
) -> dict[str, Any]:
    """Run one point in a fresh process; write and return its final record. With
    ``capture`` its layouts write per-link pcaps under the point's ``pcaps/``."""
    pdir = point_dir(run_dir, point["point_id"])
    if pdir.exists():
        shutil.rmtree(pdir)  # a failed or interrupted attempt: start the point clean
    pdir.mkdir(parents=True)
    if capture:
        env = {**env, CAPTURE_DIR_ENV: str(pdir / CAPTURES_DIR)}
    argv = [sys.executable, "-m", "testbed.harness.point", str(run_dir), point["point_id"]]
    started = time.monotonic()
    with (pdir / LOG_FILE).open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        finished = _exited(proc, timeout_s)
        rc = _kill_group_and_reap(proc) if finished else _stop(proc)
    except BaseException:  # Ctrl-C or SIGTERM in the parent: stop the point, then stop
        if console is not None:
            console.print(
                f"stopping {point['point_id']} (up to {STOP_GRACE_S:g} s for its "
                "teardown; Ctrl-C again kills it now)",
                highlight=False,
            )
        _stop(proc)
        write_json(
            pdir / RESULT_FILE,
            point_record(
                point,
                status=STATUS_INTERRUPTED,
                error="interrupted: the sweep was stopped",
                elapsed_s=round(time.monotonic() - started, 3),
            ),
        )
        raise
    elapsed_s = round(time.monotonic() - started, 3)
    record = _child_record(pdir, point["point_id"]) if finished else None
    if not finished:
        record = point_record(
            point, status=STATUS_FAILED, error=_with_tail(f"timed out after {timeout_s:g} s", pdir)
        )
    elif record is None:
        record = point_record(point, status=STATUS_FAILED, error=_with_tail(_exit_text(rc), pdir))
    record["elapsed_s"] = elapsed_s
    write_json(pdir / RESULT_FILE, record)
    append_jsonl(run_dir / INDEX_FILE, record)
    return record


def write_summary(
    run_dir: Path,
    spec: dict[str, Any],
    attempts: list[dict[str, Any]],
    interrupted: bool,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """summary.json from the points' records (one row per point, counts, attempts, and what
    the experiment's ``summarize`` adds: ``extra``) and results.csv, the same rows as a flat
    table."""
    rows = summary_rows(spec, read_results(run_dir, spec))
    write_table(run_dir / TABLE_FILE, rows)
    counts = count_statuses(rows)
    if interrupted:
        status = "interrupted"
    else:
        status = "complete" if counts["n_ok"] == counts["n_points"] else "incomplete"
    write_json(
        run_dir / SUMMARY_FILE,
        {
            "experiment": spec["experiment"],
            "description": spec["description"],
            "run_id": spec["run_id"],
            "command": spec["command"],
            "created_at": spec["created_at"],
            "status": status,
            **counts,
            "attempts": attempts,
            "points": rows,
            **(extra or {}),
        },
    )
    return counts


def _summarized(experiment: Experiment, run_dir: Path) -> dict[str, Any]:
    """The experiment's own run-level figures; a failure there is recorded, not raised (the
    points' records must still be written)."""
    if experiment.summarize is None:
        return {}
    from testbed.harness.results import load_run

    try:
        return dict(experiment.summarize(load_run(run_dir)))
    except Exception as exc:  # the summary must be written whatever the hook did
        return {"summarize_error": f"{type(exc).__name__}: {exc}"}


def _previous_attempts(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / SUMMARY_FILE
    if not path.exists():
        return []
    return list(read_json(path).get("attempts", []))


def _progress(console: Console | None, show: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        speed_estimate_period=7 * 24 * 3600.0,  # average over the whole sweep, not 30 s
    )


def execute(
    run_dir: Path,
    *,
    timeout_s: float | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunOutcome:
    """Run every point of ``run_dir`` that has no ``ok`` record, in sweep order.

    A fresh run and a resume are the same call. ``timeout_s`` limits each point (default: the
    experiment's). On Ctrl-C/SIGTERM the running point is stopped and recorded as interrupted,
    summary.json is written, and the outcome says ``interrupted`` (no exception escapes).
    """
    run_dir = run_dir.resolve()
    spec = load_spec(run_dir)
    experiment = experiment_from_module(spec["module"], spec["experiment"])
    limit_s = timeout_s if timeout_s is not None else experiment.timeout_s
    if not limit_s > 0:
        raise ValueError(f"the timeout must be positive, got {limit_s!r}")
    done = {pid for pid, r in read_results(run_dir, spec).items() if r["status"] == STATUS_OK}
    todo = [p for p in spec["points"] if p["point_id"] not in done]
    env = _child_env(experiment)
    attempts = _previous_attempts(run_dir)
    attempt = {
        "started_at": utc_now(),
        "timeout_s": limit_s,
        **git_facts(REPO_ROOT),
        "kernel": os.uname().release,
    }
    outcome = RunOutcome(run_dir)
    try:
        with _sigterm_interrupts(), _progress(console, show_progress) as bar:
            task = bar.add_task(experiment.name, total=len(spec["points"]), completed=len(done))
            for point in todo:
                bar.update(task, description=point["point_id"])
                record = run_one(
                    run_dir, point, limit_s, env, bar.console, bool(spec.get("capture"))
                )
                outcome.ran += 1
                if record["status"] != STATUS_OK:
                    outcome.failures.append((point["point_id"], record["error"]))
                    bar.console.print(
                        f"[red]failed[/] {point['point_id']}: "
                        f"{escape(record['error'][:CONSOLE_ERROR_CHARS])}",
                        highlight=False,
                    )
                bar.advance(task)
            bar.update(task, description=experiment.name)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        attempt.update(
            finished_at=utc_now(),
            points_run=outcome.ran,
            outcome="interrupted" if outcome.interrupted else "finished",
        )
        outcome.counts = write_summary(run_dir, spec, [*attempts, attempt], outcome.interrupted)
        extra = _summarized(experiment, run_dir)
        if extra:
            write_summary(run_dir, spec, [*attempts, attempt], outcome.interrupted, extra)
    return outcome
