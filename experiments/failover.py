"""failover: how long the NAT pair is out, and what is lost, when the master dies, against the
VRRP advertisement interval, with and without connection sync.

The backup takes over Master_Down_Interval (3 intervals plus Skew_Time) after a silent
master: ~3.6 s at VRRPv2's 1 s, ~0.36 s at VRRPv3's 0.1 s. A UDP probe measures the outage
and its loss; a TCP stream through the VIP shows whether established connections survive,
which they do only if the backup learnt them by connection sync.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

from testbed.harness import Experiment, PointContext, PointResult, register
from testbed.harness.results import RunData
from testbed.report import Figure, Section
from testbed.topo.plan import layout_field

STREAM_PORT = 5201


@dataclass(frozen=True)
class Params:
    advert_int_s: float = layout_field("advert_int_s")
    conn_sync: bool = layout_field("conn_sync")
    how: Literal["kill", "link", "shutdown"] = field(
        default="kill", metadata={"help": "How the master fails."}
    )
    layout: Literal["nat", "nat1"] = field(
        default="nat", metadata={"help": "nat (two NICs) or nat1 (one NIC)."}
    )
    probe_pps: float = field(
        default=200.0, metadata={"help": "UDP probe rate through the VIP, requests/s."}
    )

    def __post_init__(self) -> None:
        # Not check_layout_knobs: the interval picks the VRRP version (v3 below 1 s) itself.
        if not 0.01 <= self.advert_int_s <= 10:
            raise ValueError(f"advert_int_s must be 0.01..10, got {self.advert_int_s}")
        if self.advert_int_s >= 1 and self.advert_int_s != int(self.advert_int_s):
            raise ValueError("intervals of 1 s and more must be whole seconds (VRRPv2)")


def run_point(p: Params, ctx: PointContext) -> PointResult:
    from testbed.harness.trials import layout_up
    from testbed.net.failover import measure
    from testbed.net.hosts import TestbedHosts

    version = 2 if p.advert_int_s >= 1 else 3
    window_s = max(8.0, 6 * p.advert_int_s + 5)
    with layout_up(
        p.layout,
        ctx.point_id,
        None,
        n_rs=2,
        n_clients=1,
        advert_int_s=p.advert_int_s,
        vrrp_version=version,
        conn_sync=p.conn_sync,
    ) as tb:
        rip = tb.plan.realservers[0].ip
        for d in tb.plan.directors:
            tb.ipvsadm(f"-A -t {tb.plan.vip}:{STREAM_PORT} -s rr", d.name)
            tb.ipvsadm(f"-a -t {tb.plan.vip}:{STREAM_PORT} -r {rip}:{STREAM_PORT} -m", d.name)
        rs1, c1 = tb.net["rs1"], tb.net["c1"]
        server = rs1.popen(
            [sys.executable, "-m", "testbed.traffic.iperf", "server", "--port", str(STREAM_PORT)]
        )
        time.sleep(0.5)
        stream = c1.popen(
            [
                sys.executable,
                "-m",
                "testbed.traffic.iperf",
                "client",
                tb.plan.vip,
                "--port",
                str(STREAM_PORT),
                "--duration-s",
                str(int(window_s) + 2),
            ]
        )
        time.sleep(1.0)
        result = measure(
            TestbedHosts(tb),
            tb.plan,
            p.how,
            "d1",
            "d2",
            probe_pps=p.probe_pps,
            settle_s=2.0,
            window_s=window_s,
        )
        try:
            out, _ = stream.communicate(timeout=window_s + 20)
            tcp = json.loads(out or b"{}")
        except Exception as exc:  # noqa: BLE001 - a stream that hangs has not survived
            stream.kill()
            tcp = {"error": f"stream did not finish: {exc}"}
        server.kill()
        server.wait()
    ctx.log.info(result.text())
    summary = {
        **{k: v for k, v in result.as_dict().items() if k not in ("how", "master", "backup")},
        "vrrp_version": version,
        "tcp_survived": "error" not in tcp,
        "tcp_error": tcp.get("error"),
    }
    reasons = [] if result.takeover_s is not None else ["the backup never became master"]
    return PointResult(summary=summary, invalid_reasons=reasons)


def report(run: RunData) -> list[Figure | Section]:
    from testbed.report import style

    rows = []
    for pt in run.measured():
        s = pt.summary
        rows.append(
            f"advert {pt.params.advert_int_s:g} s (v{s['vrrp_version']}), sync "
            f"{'on' if pt.params.conn_sync else 'off'}: takeover "
            f"{s['takeover_s'] if s['takeover_s'] is not None else float('nan'):.3f} s "
            f"(bound {s['rfc_bound_s']:.3f}), outage {s['outage_ms']:.0f} ms, "
            f"{s['probe_lost']} lost, TCP stream {'survived' if s['tcp_survived'] else 'broke'}"
        )
    outage = run.series("advert_int_s", "outage_ms", by=["conn_sync"])
    takeover = run.series("advert_int_s", "takeover_s", by=["conn_sync"])

    def draw(fig) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        for s in takeover:
            style.plot_series(ax1, s, label=f"sync {s.label}")
        for s in outage:
            style.plot_series(ax2, s, label=f"sync {s.label}")
        xs = sorted({pt.params.advert_int_s for pt in run.measured()})
        ax1.plot(
            xs,
            [3 * x + (156 / 256) * (x if x < 1 else 1) for x in xs],
            color="0.5",
            linestyle=":",
            label="Master_Down_Interval",
        )
        for ax, label in ((ax1, "takeover (s)"), (ax2, "probe outage (ms)")):
            ax.set_xscale("log")
            ax.set_xlabel("advert interval (s)")
            ax.set_ylabel(label)
            ax.legend()

    return [
        Figure(
            "failover",
            "Takeover and outage against the advert interval",
            draw,
            "; ".join(rows) + ".",
        ),
        Section(
            "Method",
            "Per point: a fresh NAT pair, a TCP stream and a UDP probe through the VIP, "
            "the master killed after 2 s; takeover from the backup's own transition time.",
        ),
    ]


EXPERIMENT = register(
    Experiment(
        name="failover",
        description="Outage and loss against the VRRP advert interval, with and without sync.",
        params=Params,
        run_point=run_point,
        report=report,
        timeout_s=300,
    )
)
