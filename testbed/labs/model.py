"""What a classroom lab is: its files, its starting layout, and its prepare/solve/check steps.

For: the `Lab` record the registry (`testbed.labs.LABS`) holds (with what a student is told
up front: time, prerequisites, learning outcomes), the `LabContext` every step receives (the
hosts of a running layout through `HostAccess`, so a check works in the process that built the
lab and from another terminal alike; the results root and the answers folder), the
`CheckResult` a check returns, `Checks` (a check that needs an earlier one that failed is
reported as not run, naming that one, so one mistake gives one FAIL and one hint), and the text
both the CLI and the Mininet CLI print for a list of results.

Not for: building layouts (`testbed.net.network.Testbed`), or any one lab's logic (one
module per lab beside this one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed import REPO_ROOT
from testbed.net.hosts import HostAccess, HostsError
from testbed.runtime.control import ControlError
from testbed.topo.plan import LayoutParams, Plan

LABS_DIR = REPO_ROOT / "labs"
"""The labs' content (handouts, teacher notes, templates) in the checkout the package runs from."""
ANSWERS_FILE = "answers.md"
TEMPLATE_FILE = "answers.template.md"
"""Each lab folder holds the template; a student copies it to the answers file beside it."""


class LabError(RuntimeError):
    """A lab step cannot run (no layout, a daemon down, an unknown lab); the message says why
    and what to do."""


@dataclass(frozen=True)
class CheckResult:
    """One automatic check: what was checked, whether it holds, what was seen, and a hint for
    the student when it does not. ``not_run_because`` names the failed check that kept this
    one from running (it would only have failed for the same reason)."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    not_run_because: str = ""

    @property
    def ran(self) -> bool:
        return not self.not_run_because


class Checks:
    """A lab check's results in order. `after` runs a check only if the ones it needs passed;
    otherwise it records it as not run, naming the first failure behind it."""

    def __init__(self) -> None:
        self.results: list[CheckResult] = []

    def add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        return result

    def after(
        self, needs: Sequence[CheckResult], name: str, run: Callable[[], CheckResult]
    ) -> CheckResult:
        failed = next((r for r in needs if not r.ok), None)
        if failed is None:
            return self.add(run())
        cause = failed.not_run_because or failed.name
        return self.add(CheckResult(name, False, f'not run: "{cause}" failed', "", cause))


@dataclass(frozen=True)
class LabContext:
    """What a lab step works on. ``hosts`` and ``plan`` describe a running layout (None for a
    lab that needs none); ``results_root`` holds experiment runs; ``answers_dir`` is the folder
    with the labs' subfolders, where students write their answers files."""

    hosts: HostAccess | None = None
    plan: Plan | None = None
    results_root: Path = Path("results")
    answers_dir: Path = LABS_DIR

    def need_layout(self) -> tuple[HostAccess, Plan]:
        if self.hosts is None or self.plan is None:
            raise LabError(
                "this lab needs its layout running: start it with `sudo lvs-testbed lab start N`"
            )
        return self.hosts, self.plan

    def answers_file(self, lab_name: str) -> Path:
        """Where the student's answers to lab ``lab_name`` (``NN-slug``) are."""
        return self.answers_dir / lab_name / ANSWERS_FILE


Step = Callable[[LabContext], None]
Check = Callable[[LabContext], list[CheckResult]]
Figures = Callable[[LabContext], dict[str, str]]
"""Titled blocks of text: the counters, times and rates a run produced, for a hand-in."""


@dataclass(frozen=True)
class Lab:
    """A lab: numbered, with a folder ``labs/NN-slug/`` holding handout.md and teacher.md.

    ``layout`` and ``params`` are what `lvs-testbed lab start` builds (``layout`` None: the lab
    runs its own experiments and needs no layout). ``prepare`` puts the starting state on the
    running layout (also used by `lab reset`), ``solve`` applies the reference solution, and
    ``check`` says what holds. ``minutes``, ``prerequisites`` and ``outcomes`` are what the
    handout and `lab list` tell a student before starting; ``figures`` reads what a hand-in
    records of the run beside the check's results.
    """

    number: int
    slug: str
    title: str
    summary: str
    layout: str | None
    params: LayoutParams | None
    prepare: Step
    solve: Step
    check: Check
    minutes: str = ""  # how long it takes, e.g. "30-45"
    prerequisites: str = ""
    outcomes: tuple[str, ...] = ()  # "After this lab you can ..." items
    figures: Figures | None = None  # the run's figures a hand-in records

    @property
    def name(self) -> str:
        return f"{self.number:02d}-{self.slug}"

    @property
    def dir(self) -> Path:
        return LABS_DIR / self.name

    @property
    def handout(self) -> Path:
        return self.dir / "handout.md"

    @property
    def teacher_notes(self) -> Path:
        return self.dir / "teacher.md"

    @property
    def answers_template(self) -> Path:
        return self.dir / TEMPLATE_FILE

    @property
    def run_kind(self) -> str:
        """The run registry's kind for this lab's layout; run ids start with it and a dash."""
        return f"lab{self.number:02d}"

    @property
    def needs_layout(self) -> bool:
        return self.layout is not None

    def up_command(self) -> str:
        """The `lvs-testbed up` command that builds the same layout (for the lab list)."""
        if self.layout is None or self.params is None:
            return "none (each experiment builds its own)"
        defaults = LayoutParams()
        options = [self.layout]
        for name, flag in (("switch", "--switch"), ("director", "--director"), ("ha", "--ha")):
            value = getattr(self.params, name)
            if value != getattr(defaults, name):
                options.append(f"{flag} {value}")
        return "up " + " ".join(options)

    def run_figures(self, ctx: LabContext) -> dict[str, str]:
        """The run's figures for a hand-in; what cannot be read says why instead."""
        if self.figures is None:
            return {}
        try:
            return self.figures(ctx)
        except (LabError, ControlError, HostsError, OSError) as exc:
            return {"figures": f"could not be read: {exc}"}

    def run_check(self, ctx: LabContext) -> list[CheckResult]:
        """The lab's check; a check that cannot run at all becomes one failed result."""
        try:
            return self.check(ctx)
        except (LabError, ControlError, HostsError, OSError) as exc:
            return [
                CheckResult(
                    "the check could run",
                    False,
                    str(exc),
                    f"is lab {self.number} running? `sudo lvs-testbed lab start {self.number}`",
                )
            ]


def all_ok(results: list[CheckResult]) -> bool:
    return bool(results) and all(r.ok for r in results)


def first_failure(results: list[CheckResult]) -> CheckResult | None:
    """The first check that ran and failed: the one whose hint names the cause."""
    return next((r for r in results if not r.ok and r.ran), None)


def format_results(results: list[CheckResult]) -> str:
    """Plain text, one line per check (ok/FAIL/skip, name, detail) and the hint under a
    failure."""
    lines = []
    for r in results:
        mark = "ok  " if r.ok else ("FAIL" if r.ran else "skip")
        lines.append(f"{mark}  {r.name}: {r.detail}")
        if not r.ok and r.hint:
            lines.append(f"      hint: {r.hint}")
    passed = sum(r.ok for r in results)
    not_run = sum(not r.ran for r in results)
    verdict = "all checks pass" if all_ok(results) else "not there yet"
    lines.append(
        f"{passed} of {len(results)} checks pass"
        + (f" ({not_run} not run until the first failure is fixed)" if not_run else "")
        + f": {verdict}"
    )
    return "\n".join(lines)
