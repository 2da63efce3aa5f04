"""What a classroom lab is: its files, its starting layout, and its prepare/solve/check steps.

For: the `Lab` record the registry (`testbed.labs.LABS`) holds, the `LabContext` every step
receives (the hosts of a running layout through `HostAccess`, so a check works in the process
that built the lab and from another terminal alike; the results root and the answers folder
for the lab that reads experiment results), the `CheckResult` a check returns, and the text
both the CLI and the Mininet CLI print for a list of results.

Not for: building layouts (`testbed.net.network.Testbed`), or any one lab's logic (one
module per lab beside this one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed import REPO_ROOT
from testbed.net.hosts import HostAccess, HostsError
from testbed.runtime.control import ControlError
from testbed.topo.plan import LayoutParams, Plan

LABS_DIR = REPO_ROOT / "labs"
"""The labs' content (handouts, teacher notes, templates) in the checkout the package runs from."""


class LabError(RuntimeError):
    """A lab step cannot run (no layout, a daemon down, an unknown lab); the message says why
    and what to do."""


@dataclass(frozen=True)
class CheckResult:
    """One automatic check: what was checked, whether it holds, what was seen, and a hint for
    the student when it does not."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


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


Step = Callable[[LabContext], None]
Check = Callable[[LabContext], list[CheckResult]]


@dataclass(frozen=True)
class Lab:
    """A lab: numbered, with a folder ``labs/NN-slug/`` holding handout.md and teacher.md.

    ``layout`` and ``params`` are what `lvs-testbed lab start` builds (``layout`` None: the lab
    runs its own experiments and needs no layout). ``prepare`` puts the starting state on the
    running layout (also used by `lab reset`), ``solve`` applies the reference solution, and
    ``check`` says what holds.
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
    extra_files: tuple[str, ...] = ()  # further files the lab folder must hold

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


def format_results(results: list[CheckResult]) -> str:
    """Plain text, one line per check (ok/FAIL, name, detail) and the hint under a failure."""
    lines = []
    for r in results:
        lines.append(f"{'ok  ' if r.ok else 'FAIL'}  {r.name}: {r.detail}")
        if not r.ok and r.hint:
            lines.append(f"      hint: {r.hint}")
    passed = sum(r.ok for r in results)
    verdict = "all checks pass" if all_ok(results) else "not there yet"
    lines.append(f"{passed} of {len(results)} checks pass: {verdict}")
    return "\n".join(lines)
