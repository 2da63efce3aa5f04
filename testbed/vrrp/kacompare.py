"""Real keepalived's configuration test beside ours: ``keepalived -t -f FILE`` and where the
two disagree (``lvs-testbed vrrp check-config`` prints it).

keepalived -t exits 0 when it has nothing to say and non-zero (5 in 2.2.7) as soon as it
reports anything, warnings included; it also looks at this host (an interface that does
not exist here is a complaint). So the comparison is line by line rather than by exit
status alone:

* a file this testbed refuses and keepalived accepts (exit 0), or the other way round, is
  a disagreement about the verdict;
* each keepalived message that names a line this testbed said nothing about is listed as
  "keepalived only" (messages without a line are listed as "keepalived"); messages about
  interfaces missing on this host are marked so, since they say more about the machine
  than the file.

Not for: our own check (`testbed.keepalived_conf`, `testbed.vrrp.daemon.check_runnable`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

KEEPALIVED_TEST_TIMEOUT_S = 20.0
MAX_MESSAGES = 200
_LINE = re.compile(r"\(([^:()]+): Line (\d+)\)\s*(.*)")
_HOST_SPECIFIC = re.compile(r"doesn't exist|Non-existent interface", re.I)


@dataclass(frozen=True)
class KeepalivedVerdict:
    rc: int
    messages: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return self.rc == 0


def run_keepalived_test(
    path: str, config_id: str | None = None, timeout_s: float = KEEPALIVED_TEST_TIMEOUT_S
) -> KeepalivedVerdict | None:
    """``keepalived -t -f PATH [-i ID]``; None when keepalived is not installed."""
    binary = shutil.which("keepalived")
    if binary is None:
        return None
    argv = [binary, "-t", "-l", "-n", "-f", path]
    if config_id:
        argv += ["-i", config_id]
    try:
        res = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return KeepalivedVerdict(-1, (f"keepalived -t did not finish in {timeout_s:g} s",))
    lines = [line.strip() for line in (res.stderr + res.stdout).splitlines() if line.strip()]
    return KeepalivedVerdict(res.returncode, tuple(lines[:MAX_MESSAGES]))


def message_line(message: str) -> int | None:
    """The line a keepalived message names (``(file: Line 20) ...``), if any."""
    match = _LINE.search(message)
    return int(match.group(2)) if match else None


def compare(
    our_error: str | None,
    our_lines: set[int],
    verdict: KeepalivedVerdict,
) -> list[str]:
    """Lines saying where keepalived -t and this testbed agree or disagree.

    ``our_error`` is our refusal (None: accepted); ``our_lines`` the lines of the top-level
    file we warned about or refused.
    """
    out = [
        f"keepalived -t: exit {verdict.rc} ("
        + ("accepted, nothing to report" if verdict.accepted else "it reports problems")
        + ")"
    ]
    if our_error is not None and verdict.accepted:
        out.append(f"disagree: keepalived accepts the file; this testbed refuses it: {our_error}")
    elif our_error is None and not verdict.accepted and verdict.rc != 5:
        out.append(f"disagree: keepalived fails (exit {verdict.rc}); this testbed accepts it")
    for message in verdict.messages:
        line = message_line(message)
        if line is not None and line in our_lines:
            continue  # both said something about this line
        note = " (about this host, not the file)" if _HOST_SPECIFIC.search(message) else ""
        label = "keepalived only" if line is not None else "keepalived"
        out.append(f"{label}: {message}{note}")
    if len(out) == 1:
        out.append("agree")
    return out
