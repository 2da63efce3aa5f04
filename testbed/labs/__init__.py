"""Classroom labs: each a handout, an answers template and teacher notes under
``labs/NN-slug/``, a starting layout, a starting state put on it (`Lab.prepare`), a reference
solution (`Lab.solve`), an automatic check (`Lab.check`) and the run's figures a hand-in
records (`Lab.figures`).

`LABS` is the registry, numbered from 1; `lvs-testbed lab list|start|check|reset` and the lab
CLI's ``check`` read it. The model is in `testbed.labs.model`, the pure parsers in
`testbed.labs.parse`, the commands run on a layout in `testbed.labs.actions`, the hand-in
report in `testbed.labs.handin`, and one module per lab (``labNN_slug.py``) holds that lab's
steps.

Not for: building layouts (`testbed.net.network`) or running experiments
(`testbed.experiments`); lab 4 runs its sweeps through the experiment command.
"""

from __future__ import annotations

from testbed.labs import (
    lab01_dr,
    lab02_nat,
    lab03_schedulers,
    lab04_bottleneck,
    lab05_failover,
    lab06_openflow,
)
from testbed.labs.model import (
    LABS_DIR,
    CheckResult,
    Lab,
    LabContext,
    LabError,
    all_ok,
    format_results,
)

LABS: dict[int, Lab] = {
    m.LAB.number: m.LAB
    for m in (
        lab01_dr,
        lab02_nat,
        lab03_schedulers,
        lab04_bottleneck,
        lab05_failover,
        lab06_openflow,
    )
}


def get_lab(number: int) -> Lab:
    if number not in LABS:
        raise LabError(
            f"there is no lab {number}; the labs are {', '.join(map(str, sorted(LABS)))}"
        )
    return LABS[number]


__all__ = [
    "LABS",
    "LABS_DIR",
    "CheckResult",
    "Lab",
    "LabContext",
    "LabError",
    "all_ok",
    "format_results",
    "get_lab",
]
