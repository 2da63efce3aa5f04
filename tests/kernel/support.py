"""What the full-kernel tier shares: the skip for machines whose kernel cannot give us IPVS,
and the record of agreements and differences the differential tests write for the docs.

These tests run in `make test-kernel` (inside `lvs-testbed vm run`, Debian's kernel) and on
any Linux with ip_vs; everywhere else every test here is skipped at collection, so they never
run on a small kernel by accident.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from testbed.runtime import ipvs

REPORT_ENV = "LVS_TESTBED_DIFF_REPORT"


@functools.cache
def ip_vs_unusable() -> str | None:
    """Why kernel IPVS cannot be used here (None when it can); loads ip_vs if it is there."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, kernel IPVS)"
    try:
        ipvs.load()
    except ipvs.IpvsUnavailable as exc:
        return str(exc)
    return None


def requires_ip_vs() -> pytest.MarkDecorator:
    reason = ip_vs_unusable()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def record(area: str, item: str, outcome: str, detail: str = "") -> None:
    """Append one comparison to the report file named by $LVS_TESTBED_DIFF_REPORT (JSON
    lines: area, item, outcome "agree" or "differ: <reason>", detail), for the docs' table."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    with Path(path).open("a") as f:
        f.write(json.dumps({"area": area, "item": item, "outcome": outcome, "detail": detail}))
        f.write("\n")


def render_markdown(lines: list[str]) -> str:
    """The report file as the docs' tables: per area, how many comparisons agree, then every
    item with its outcome (differences with their reasons)."""
    rows = [json.loads(line) for line in lines if line.strip()]
    out = []
    for area in dict.fromkeys(r["area"] for r in rows):
        mine = [r for r in rows if r["area"] == area]
        agree = sum(r["outcome"] == "agree" for r in mine)
        out += [
            f"### {area}: {agree} of {len(mine)} agree",
            "",
            "| compared | outcome |",
            "|---|---|",
        ]
        for r in mine:
            item = r["item"].replace("|", "\\|")
            outcome = r["outcome"].replace("|", "\\|")
            out.append(f"| {item} | {outcome} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    print(render_markdown(Path(sys.argv[1]).read_text().splitlines()))
