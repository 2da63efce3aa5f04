"""nopreempt: a returning master stays backup (its own module: one layout at a time)."""

from __future__ import annotations

import time

from testbed.net.failover import inject, vrrp_status
from testbed.net.hosts import TestbedHosts
from testbed.net.network import Testbed, generated_keepalived_conf
from testbed.topo.plan import LayoutParams, make_plan

from .failover_helpers import (
    wait_until,
)


def test_nopreempt_keeps_the_backup_master_when_the_old_master_returns(tmp_path):
    params = LayoutParams(n_rs=1, n_clients=1)
    text = generated_keepalived_conf(make_plan("nat", params), "d1")
    conf = tmp_path / "d1.conf"
    conf.write_text(text.replace("state MASTER", "state BACKUP\n    nopreempt"))
    with Testbed("nat", params, configs={"d1": str(conf)}) as tb:
        tb.wait_ready()
        inject(TestbedHosts(tb), tb.plan, "kill", "d1")
        assert wait_until(lambda: tb.vip_holder() == "d2", 8)
        tb.restore("kill", "d1")
        time.sleep(6)  # well past Master_Down_Interval
        assert tb.vip_holder() == "d2"
        assert all(i["state"] == "BACKUP" for i in vrrp_status(tb.run.dir, "d1")["instances"])
