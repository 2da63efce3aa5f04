"""The classroom labs on kernel IPVS (`lab start N --director ipvs`): each lab's check fails on
its starting state and passes after its reference solution, with the real ipvsadm doing what
the Python director's did (tests/integration/test_labs.py is the same on the Python one)."""

from __future__ import annotations

import dataclasses

import pytest

from testbed.labs import LabContext, all_ok, format_results, get_lab
from testbed.net.hosts import TestbedHosts
from testbed.net.network import Testbed
from tests.kernel.support import record, requires_ip_vs

pytestmark = requires_ip_vs()


@pytest.mark.parametrize("number", [1, 2, 3, 5])
def test_lab_check_fails_on_the_start_and_passes_after_the_solution(number: int) -> None:
    lab = get_lab(number)
    params = dataclasses.replace(lab.params, director="ipvs")
    with Testbed(lab.layout, params, kind=lab.run_kind) as tb:
        assert tb.wait_ready(20)
        ctx = LabContext(hosts=TestbedHosts(tb), plan=tb.plan)
        lab.prepare(ctx)
        before = lab.run_check(ctx)
        lab.solve(ctx)
        after = lab.run_check(ctx)
    ok = not all_ok(before) and all_ok(after)
    record(
        "labs",
        f"lab {number} on kernel IPVS: check fails at the start, passes solved",
        "agree" if ok else "differ",
    )
    assert not all_ok(before), format_results(before)
    assert all_ok(after), format_results(after)
