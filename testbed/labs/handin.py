"""A lab's hand-in: one timestamped Markdown report a teacher collects.

``lvs-testbed lab check N --save`` (or ``check --save`` in the lab's CLI) writes it: who and
when, the check's results with their hints, the student's answers file as written, and the
run's figures (counters, MACs, takeover times, capacities: each lab's `Lab.figures`). Reports
go to a hand-in folder, ``./handin`` by default or ``$LVS_TESTBED_HANDIN`` (a shared folder
a teacher collects from); the name holds the lab, the student and the UTC time, so reports
never overwrite each other and sort by lab.

`report_text` is pure (tested without a layout); `save` writes the file and, under sudo,
gives it to the student who ran it.

Not for: judging answers (the labs' checks), or collecting reports (docs/teachers.md says how).
"""

from __future__ import annotations

import os
import re
import socket
from datetime import datetime, timezone
from pathlib import Path

from testbed.labs.model import CheckResult, Lab, LabContext, all_ok, format_results

HANDIN_ENV = "LVS_TESTBED_HANDIN"
DEFAULT_HANDIN_DIR = Path("handin")
MAX_ANSWERS_CHARS = 100_000  # a report stays readable; an answers file is a page or two


def handin_dir(override: Path | None = None) -> Path:
    """Where reports go: ``override``, else $LVS_TESTBED_HANDIN, else ./handin."""
    if override is not None:
        return override
    env = os.environ.get(HANDIN_ENV)
    return Path(env) if env else DEFAULT_HANDIN_DIR


def student_name(given: str | None = None) -> str:
    """The name in the report's file name: ``given``, else the user behind sudo, else the
    user; letters, digits, dot, dash and underscore only."""
    name = given or os.environ.get("SUDO_USER") or os.environ.get("USER") or "student"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "student"


def report_name(lab: Lab, student: str, when: datetime) -> str:
    return f"lab{lab.number:02d}-{student}-{when.strftime('%Y%m%dT%H%M%SZ')}.md"


def report_text(
    lab: Lab,
    results: list[CheckResult],
    answers: str | None,
    answers_path: Path,
    figures: dict[str, str],
    student: str,
    when: datetime,
    run_id: str | None = None,
) -> str:
    """The report: a header, the check as `lab check` prints it, the answers, the figures."""
    lines = [
        f"# Hand-in: lab {lab.number}, {lab.title}",
        "",
        f"- student: {student}",
        f"- time: {when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
        f"- machine: {socket.gethostname()}",
        f"- run: {run_id or 'none (this lab builds no layout)'}",
        f"- check: {'all checks pass' if all_ok(results) else 'not there yet'}",
        "",
        "## Check",
        "",
        "```",
        format_results(results),
        "```",
        "",
        "## Answers",
        "",
    ]
    if answers is None:
        lines.append(f"(no answers file: {answers_path} does not exist)")
    else:
        # Verbatim in a fence of its own (~~~~ stays clear of the ``` blocks answers may hold),
        # so the student's headings do not become the report's.
        lines += [f"From {answers_path}:", "", "~~~~markdown"]
        lines.append(answers[:MAX_ANSWERS_CHARS].rstrip())
        lines.append("~~~~")
        if len(answers) > MAX_ANSWERS_CHARS:
            lines.append(f"(cut at {MAX_ANSWERS_CHARS} characters)")
    lines += ["", "## Figures of this run", ""]
    if not figures:
        lines.append("(none recorded)")
    for title, text in figures.items():
        lines += [f"### {title}", "", "```", text.rstrip() or "(empty)", "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def save(
    lab: Lab,
    ctx: LabContext,
    results: list[CheckResult],
    folder: Path | None = None,
    student: str | None = None,
    now: datetime | None = None,
) -> Path:
    """Write the report for ``results`` (the check just run in ``ctx``); returns its path."""
    when = now or datetime.now(timezone.utc)
    name = student_name(student)
    answers_path = ctx.answers_file(lab.name)
    try:
        answers = answers_path.read_text(errors="replace")
    except FileNotFoundError:
        answers = None
    run_id = ctx.hosts.run_dir.name if ctx.hosts is not None else None
    text = report_text(
        lab, results, answers, answers_path, lab.run_figures(ctx), name, when, run_id
    )
    target = handin_dir(folder)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    path = target / report_name(lab, name, when)
    path.write_text(text)
    _give_to_sudo_user(*([target] if created else []), path)
    return path


def _give_to_sudo_user(*paths: Path) -> None:
    """Under sudo, the student owns what they hand in (to copy or delete it without root);
    a folder that was already there keeps its owner."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid:
        return
    for path in paths:
        try:
            os.chown(path, int(uid), int(gid))
        except (OSError, ValueError):
            pass  # a shared folder that refuses it: the report is written all the same
