"""What the layout experiments share: one measured trial at an offered rate, a capacity
search, and the director-side counters read around a trial.

A *trial* offers small UDP requests at a set rate (open loop, split over the clients), each
echoed by a real server, for a few seconds, and reads around it: the clients' own figures
(sent and answered, RTT), the director's CPU (its cgroup), its service counters as
``ipvsadm --stats`` keeps them (InPkts = client to server, OutPkts = server to client, the
seed's "3000 in / 3000 out"), the drops its packet sockets saw (the analogue of a NIC's
overruns), and the host's CPU for the fidelity check. Rates use measured elapsed time.

A *capacity search* ramps the offered rate geometrically until answers fall short, then
bisects between the last carried and the first failed rate; the capacity is the highest
answered rate seen, and the knee comes from `testbed.measure.analysis.find_knee`.

Runs inside an experiment's point process (root, Mininet); pure helpers are split out so the
arithmetic is unit-tested.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from testbed.measure.analysis import check_fidelity, cpu_busy_fraction, find_knee
from testbed.measure.host import parse_net_dev, read_proc_stat
from testbed.runtime.control import request, socket_path
from testbed.topo.plan import spare_addresses

KIND_TO_LAYOUT = {"dr": "dr", "tun": "dr", "nat": "nat", "nat1": "nat1"}
KIND_TO_FWD = {"dr": "-g", "tun": "-i", "nat": "-m", "nat1": "-m"}
KINDS = tuple(KIND_TO_LAYOUT)
CARRIED_FRAC = 0.98  # a rate is carried when this share of the requests is answered
KNEE_TOLERANCE_FRAC = 0.05  # find_knee's default: answered within 5% of offered
PREFILL_TIMEOUT_S = 900.0


@dataclass
class Trial:
    """One offered rate, measured. Rates in packets/s over measured time."""

    offered_pps: float
    sent_pps: float = 0.0
    answered_pps: float = 0.0
    loss_frac: float = 1.0
    rtt_p50_ms: float = float("nan")
    rtt_p99_ms: float = float("nan")
    director_cores: float = 0.0  # the director cgroup's CPU over the whole trial
    director_us_per_pkt: float | None = None  # that CPU over the packets it carried meanwhile
    director_in_pps: float = 0.0
    director_out_pps: float = 0.0
    director_socket_drops: int = 0
    host_busy_frac: float = 0.0
    elapsed_s: float = 0.0  # the whole trial, start-up and drain included (CPU is read over it)
    send_s: float = 0.0  # the senders' measured sending time (rates are over it)
    invalid_reasons: list[str] = field(default_factory=list)
    # The share of the requests that must be answered: less than CARRIED_FRAC where the
    # path itself loses some (netem loss on the clients' links), or no rate would be carried.
    carried_frac: float = CARRIED_FRAC

    @property
    def carried(self) -> bool:
        return self.sent_pps > 0 and self.answered_pps >= self.carried_frac * self.sent_pps

    def row(self) -> dict:
        out = asdict(self)
        out["invalid_reasons"] = "; ".join(self.invalid_reasons)
        out["carried"] = self.carried
        return out


def set_forwarding(tb, kind: str) -> None:
    """Switch every real server of every service to the forwarding method of ``kind``."""
    fwd = KIND_TO_FWD[kind]
    for svc in tb.plan.services:
        flag = "-t" if svc.proto == "tcp" else "-u"
        for rs in tb.plan.realservers:
            rc, out = tb.ipvsadm(
                f"-e {flag} {tb.plan.vip}:{svc.port} -r {rs.ip}:{svc.port} {fwd} -w 1"
            )
            if rc != 0:
                raise RuntimeError(f"could not switch {rs.name} to {kind}: {out.strip()}")


def service_totals(stats_text: str) -> tuple[int, int]:
    """(InPkts, OutPkts) summed over the service lines of `ipvsadm -L -n --stats --exact`."""
    in_pkts = out_pkts = 0
    for line in stats_text.splitlines():
        m = re.match(r"(TCP|UDP|FWM)\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)", line)
        if m:
            in_pkts += int(m.group(3))
            out_pkts += int(m.group(4))
    return in_pkts, out_pkts


def director_socket_drops(stats: dict) -> int:
    return sum(int(p.get("kernel_drops", 0)) for p in stats.get("ports", {}).values())


def _kernel_ipvs(tb) -> bool:
    plan = getattr(tb, "plan", None)
    return bool(plan is not None and plan.kernel_ipvs)


def _director_stats(tb, director: str) -> dict:
    if _kernel_ipvs(tb):
        return {}  # kernel IPVS has no daemon: its counters are ipvsadm's alone
    return tb.director_request({"op": "stats"}, director).get("stats", {})


def _received(tb, director: str) -> int | None:
    """Frames the director has read so far (the cheap `counters` request where the director
    has it; the OpenFlow director answers only `stats`; kernel IPVS has no daemon)."""
    if _kernel_ipvs(tb):
        return None
    reply = tb.director_request({"op": "counters"}, director)
    if "counters" in reply:
        return reply["counters"]["rx"]
    return _director_stats(tb, director).get("frames", {}).get("rx")


def wait_drained(tb, director: str | None, timeout_s: float = 10.0, quiet_s: float = 0.3) -> None:
    """Wait until the director has worked off what an overloaded trial left queued in its
    socket buffers or ring: its received-frame count stops moving. Otherwise the next trial
    starts behind, spends its first second answering the last trial's requests, and a
    director at a few percent of a core looks slower with every trial."""
    if director is None:
        return
    deadline = time.monotonic() + timeout_s
    last = _received(tb, director)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = _received(tb, director)
        if now == last:
            return
        last = now


def udp_trial(
    tb,
    rate_pps: float,
    duration_s: float = 2.0,
    payload_bytes: int = 64,
    director: str | None = "d1",
    target: str | None = None,
) -> Trial:
    """Offer ``rate_pps`` UDP echo requests from every client for ``duration_s`` to the VIP
    (or ``target``). ``director`` names whose counters to read: a director host ("d1"), the
    OpenFlow director ("of"), or None (kernel forwarding: nothing to read)."""
    host = tb.net[director] if director in (tb.net.nameToNode if tb.net else {}) else None
    # Kernel IPVS works in softirq, which the director host's cgroup does not see.
    cgroup = host.cgroup if host is not None and not _kernel_ipvs(tb) else None

    def counters() -> tuple[dict, tuple[int, int]]:
        if director is None:
            return {}, (0, 0)
        return _director_stats(tb, director), service_totals(
            tb.ipvsadm("-L -n --stats --exact", director)[1]
        )

    stats0, ipvs0 = counters()
    cpu0, host0, t0 = cgroup.usage_s() if cgroup else 0.0, read_proc_stat()["cpu"], time.monotonic()
    procs = _udp_senders(tb, rate_pps, duration_s, payload_bytes, target)
    outs = [json.loads(p.communicate(timeout=duration_s + 30)[0] or b"{}") for p in procs]
    elapsed = time.monotonic() - t0
    cpu1, host1 = cgroup.usage_s() if cgroup else 0.0, read_proc_stat()["cpu"]
    stats1, ipvs1 = counters()
    trial = Trial(offered_pps=rate_pps, elapsed_s=elapsed)
    sent = sum(o.get("sent", 0) for o in outs)
    answered = sum(o.get("received", 0) for o in outs)
    send_s = max((o.get("elapsed_s", 0.0) for o in outs), default=0.0) or duration_s
    trial.send_s = send_s
    trial.sent_pps = sent / send_s
    trial.answered_pps = answered / send_s
    trial.loss_frac = 1 - answered / sent if sent else 1.0
    rtts = [o["rtt_ms"] for o in outs if "rtt_ms" in o]
    if rtts:
        trial.rtt_p50_ms = max(r["p50"] for r in rtts)
        trial.rtt_p99_ms = max(r["p99"] for r in rtts)
    # The director's packet counters move only while requests flow: rate them over the
    # senders' measured sending time, not over the whole trial with its start-up and drain.
    # Its CPU is read over the whole trial, so it is rated over that (over the sending time
    # alone a quota of 0.25 would seem to give 0.35 cores).
    packets = (ipvs1[0] - ipvs0[0]) + (ipvs1[1] - ipvs0[1])
    trial.director_cores = (cpu1 - cpu0) / elapsed
    trial.director_us_per_pkt = (cpu1 - cpu0) / packets * 1e6 if cgroup and packets else None
    trial.director_in_pps = (ipvs1[0] - ipvs0[0]) / send_s
    trial.director_out_pps = (ipvs1[1] - ipvs0[1]) / send_s
    trial.director_socket_drops = director_socket_drops(stats1) - director_socket_drops(stats0)
    trial.host_busy_frac = cpu_busy_fraction(host0, host1)
    trial.invalid_reasons = list(
        check_fidelity(
            target_pps=rate_pps,
            achieved_pps=trial.sent_pps,
            host_cpu_busy_frac=trial.host_busy_frac,
        ).reasons
    )
    return trial


def _udp_senders(
    tb,
    rate_pps: float,
    duration_s: float,
    payload_bytes: int = 64,
    target: str | None = None,
    drain_s: float = 0.5,
) -> list:
    per_client = rate_pps / len(tb.plan.clients)
    argv = [
        sys.executable,
        "-m",
        "testbed.traffic.loadgen",
        "udp-rr",
        target or tb.plan.vip,
        "--rate-pps",
        f"{per_client:.3f}",
        "--duration-s",
        f"{duration_s:g}",
        "--payload-bytes",
        str(payload_bytes),
        "--drain-s",
        f"{drain_s:g}",
    ]
    return [tb.net[c.name].popen(argv) for c in tb.plan.clients]


def director_snapshot(tb, director: str = "d1") -> dict:
    """The director's own view at one instant: its clock, its CPU time and its packet
    counters, read by the director in the same step (so their differences are exact, however
    long the request waited for a director busy at its quota), and nothing that would cost it
    CPU inside a measured window."""
    return tb.director_request({"op": "counters"}, director)["counters"]


def windowed_trial(
    tb,
    rate_pps: float,
    window_s: float,
    warmup_s: float = 0.6,
    director: str = "d1",
    payload_bytes: int = 64,
    slices: int = 6,
) -> dict:
    """Offer ``rate_pps`` UDP echo requests and measure the director over a window of
    ``window_s`` in the middle of the load: after ``warmup_s`` (the senders start, queues
    fill) and before the senders stop (nothing of the drain after them). The window is cut
    into ``slices`` by `director_snapshot`s; each slice's figures are returned (``slices``:
    seconds, CPU seconds, packets in and out), so a caller can take a median that a burst
    of other work on the machine during one slice does not move. The totals are over the
    whole window; the clients' own counts give the sent rate and loss for the fidelity check."""
    duration_s = warmup_s + window_s + 0.4
    host0, t0 = read_proc_stat()["cpu"], time.monotonic()
    # The director's counters measure the window; the clients' replies only check fidelity,
    # so they are not waited for long after the last request.
    procs = _udp_senders(tb, rate_pps, duration_s, payload_bytes, drain_s=0.1)
    snaps = []
    try:
        for i in range(slices + 1):
            time.sleep(max(0.0, t0 + warmup_s + i * window_s / slices - time.monotonic()))
            snaps.append(director_snapshot(tb, director))
        host1 = read_proc_stat()["cpu"]
    finally:
        outs = [json.loads(p.communicate(timeout=duration_s + 30)[0] or b"{}") for p in procs]
    sent = sum(o.get("sent", 0) for o in outs)
    answered = sum(o.get("received", 0) for o in outs)
    send_s = max((o.get("elapsed_s", 0.0) for o in outs), default=0.0) or duration_s
    a, b = snaps[0], snaps[-1]
    busy = cpu_busy_fraction(host0, host1)
    return {
        "window_s": b["t_s"] - a["t_s"],
        "cpu_s": b["cpu_s"] - a["cpu_s"],
        "inpkts": b["inpkts"] - a["inpkts"],
        "outpkts": b["outpkts"] - a["outpkts"],
        "socket_drops": b["socket_drops"] - a["socket_drops"],
        "slices": [
            {
                "s": y["t_s"] - x["t_s"],
                "cpu_s": y["cpu_s"] - x["cpu_s"],
                "inpkts": y["inpkts"] - x["inpkts"],
                "outpkts": y["outpkts"] - x["outpkts"],
            }
            for x, y in itertools.pairwise(snaps)
        ],
        "sent_pps": sent / send_s,
        "client_loss_frac": 1 - answered / sent if sent else 1.0,
        "host_busy_frac": busy,
        "invalid_reasons": list(
            check_fidelity(
                target_pps=rate_pps, achieved_pps=sent / send_s, host_cpu_busy_frac=busy
            ).reasons
        ),
    }


def client_packets(tb) -> tuple[int, int]:
    """(sent, received) packets so far, summed over the clients' own interfaces (each
    client's /proc/net/dev, read in its namespace): what crossed them, whatever the switch."""
    sent = received = 0
    for c in tb.plan.clients:
        host = tb.net[c.name]
        counters = parse_net_dev(host.cmd("cat /proc/net/dev"))[host.defaultIntf().name]
        sent += counters["tx_packets"]
        received += counters["rx_packets"]
    return sent, received


def senders_started(sent_since: int, rate_pps: float) -> bool:
    """Whether the clients' sent-packet count shows the senders at work: a tenth of a second's
    worth of requests (at least 5), not one stray packet (an ARP or IPv6 neighbour message; a
    single one opened CPU windows before the senders had started, under TCG)."""
    return sent_since >= max(5.0, 0.1 * rate_pps)


def _packets_with_cpu(tb) -> tuple[float, tuple[float, ...], tuple[int, int]]:
    """The clients' packet counters with the time and the machine's CPU counters taken at the
    same moment: reading every client's counters takes a while (a tenth of a second under
    software emulation), so time and CPU are read on both sides of it and the midpoints kept.
    Read on one side only, the packets were counted over a longer time than the CPU (CPU per
    request came out 9-21% low in the full-kernel runner)."""
    time_a, cpu_a = time.monotonic(), read_proc_stat()["cpu"]
    packets = client_packets(tb)
    cpu_b, time_b = read_proc_stat()["cpu"], time.monotonic()
    return (time_a + time_b) / 2, midpoint(cpu_a, cpu_b), packets


def midpoint(before: Sequence[float], after: Sequence[float]) -> tuple[float, ...]:
    """The counters halfway between two readings (pure)."""
    return tuple((a + b) / 2 for a, b in zip(before, after, strict=True))


def machine_cpu_trial(
    tb,
    rate_pps: float,
    window_s: float,
    warmup_s: float = 0.5,
    target: str | None = None,
    payload_bytes: int = 64,
    start_timeout_s: float = 60.0,
) -> dict:
    """Offer ``rate_pps`` UDP echo requests and measure, over a window of ``window_s`` in the
    middle of the load, the whole machine's busy CPU (/proc/stat) and the packets the clients
    sent and received meanwhile (`client_packets`).

    For CPU per request where no cgroup sees the director (kernel IPVS and kernel forwarding
    work in softirq), with the same senders, servers and switches for every director. The
    window leaves out the senders' start-up and drain, which under software emulation (a
    Python sender takes seconds to start under TCG) cost more CPU than the requests: it opens
    ``warmup_s`` after the clients' packet counters first move, watched rather than assumed.
    Returns the window's figures (``busy_frac``: the whole machine, 1.0 = every core) and the
    fidelity check's reasons (sender short of its rate in the window, machine saturated)."""
    duration_s = warmup_s + window_s + 1.0  # 1 s spare: the start is seen a poll late
    sent0, _ = client_packets(tb)
    procs = _udp_senders(tb, rate_pps, duration_s, payload_bytes, target, drain_s=0.1)
    try:
        deadline = time.monotonic() + start_timeout_s
        while not senders_started(client_packets(tb)[0] - sent0, rate_pps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the clients sent nothing in {start_timeout_s:g} s")
            time.sleep(0.1)
        time.sleep(warmup_s)
        t0, host0, (tx0, rx0) = _packets_with_cpu(tb)
        time.sleep(window_s)
        t1, host1, (tx1, rx1) = _packets_with_cpu(tb)
    finally:
        outs = [json.loads(p.communicate(timeout=duration_s + 60)[0] or b"{}") for p in procs]
    measured_s = t1 - t0
    busy = cpu_busy_fraction(host0, host1)
    sent_pps, answered_pps = (tx1 - tx0) / measured_s, (rx1 - rx0) / measured_s
    sent = sum(o.get("sent", 0) for o in outs)
    answered = sum(o.get("received", 0) for o in outs)
    return {
        "window_s": measured_s,
        "busy_frac": busy,
        "sent_pps": sent_pps,
        "answered_pps": answered_pps,
        "client_loss_frac": 1 - answered / sent if sent else 1.0,
        "invalid_reasons": list(
            check_fidelity(
                target_pps=rate_pps, achieved_pps=sent_pps, host_cpu_busy_frac=busy
            ).reasons
        ),
    }


def next_rate(
    trials: list[Trial], start_pps: float, factor: float, max_pps: float, bisections: int
) -> float | None:
    """The next rate a capacity search offers, or None when it is done (pure).

    Geometric ramp from ``start_pps`` while rates are carried. A first rate that fails is
    tried once more (a fresh layout's first second can stumble: ARP, new flows, a collector
    pass), and if the retry is carried it stands for both; if it fails too, the ramp steps
    down (to ``start_pps`` / 16 at most) until a rate is carried. Once a carried rate lies
    below a failed one, ``bisections`` more trials, each halving the interval between the best
    carried rate and the lowest failed one."""
    if not trials:
        return start_pps
    if not trials[0].carried:
        if len(trials) == 1:
            return trials[0].offered_pps
        if trials[1].offered_pps == trials[0].offered_pps:
            trials = trials[1:]
    if all(t.carried for t in trials):
        nxt = trials[-1].offered_pps * factor
        return nxt if nxt <= max_pps else None
    bracketed_at = None
    for i in range(len(trials)):
        seen = trials[: i + 1]
        failed = [t.offered_pps for t in seen if not t.carried]
        if failed and any(t.carried and t.offered_pps < min(failed) for t in seen):
            bracketed_at = i
            break
    hi = min(t.offered_pps for t in trials if not t.carried)
    if bracketed_at is None:
        nxt = hi / factor
        return nxt if nxt >= start_pps / 16 else None
    if len(trials) - 1 - bracketed_at >= bisections:
        return None
    lo = max(t.offered_pps for t in trials if t.carried and t.offered_pps < hi)
    return (lo + hi) / 2


@dataclass
class Capacity:
    trials: list[Trial]
    capacity_pps: float  # highest answered request rate seen
    knee_offered_pps: float | None
    fitted_capacity_pps: float | None

    @property
    def valid_trials(self) -> list[Trial]:
        return [t for t in self.trials if not t.invalid_reasons]

    def at_capacity(self) -> Trial:
        """The trial with the highest answered rate."""
        return max(self.trials, key=lambda t: t.answered_pps)


def find_capacity(
    tb,
    start_pps: float = 1000,
    factor: float = 2.0,
    max_pps: float = 200_000,
    duration_s: float = 2.0,
    bisections: int = 2,
    payload_bytes: int = 64,
    log=None,
    director: str | None = "d1",
    target: str | None = None,
    carried_frac: float = CARRIED_FRAC,
) -> Capacity:
    """Ramp, then bisect, until the director stops answering what it is offered (a rate is
    carried when ``carried_frac`` of its requests are answered)."""
    if not 0 < carried_frac <= 1:
        raise ValueError(f"carried_frac must be in (0, 1], got {carried_frac}")
    trials: list[Trial] = []
    while (rate := next_rate(trials, start_pps, factor, max_pps, bisections)) is not None:
        if not trials or not trials[-1].carried:
            wait_drained(tb, director)
        trial = udp_trial(tb, rate, duration_s, payload_bytes, director, target)
        trial.carried_frac = carried_frac
        if log is not None:
            log.info(
                "offered %.0f pps: sent %.0f, answered %.0f (loss %.1f%%), director %.2f cores",
                rate,
                trial.sent_pps,
                trial.answered_pps,
                100 * trial.loss_frac,
                trial.director_cores,
            )
        trials.append(trial)
    knee = find_knee(
        [t.offered_pps for t in trials],
        [t.answered_pps for t in trials],
        # What the path loses by design widens the knee's tolerance by as much.
        tolerance_frac=KNEE_TOLERANCE_FRAC + (CARRIED_FRAC - carried_frac),
        loss_frac=[t.loss_frac for t in trials],
        max_loss_frac=1 - carried_frac,
    )
    return Capacity(
        trials, max(t.answered_pps for t in trials), knee.knee_offered_pps, knee.capacity_pps
    )


@contextmanager
def layout_up(kind: str, point_id: str, quota_cores: float | None = None, **layout_kw):
    """A fresh layout for ``kind`` (dr, tun, nat, nat1) with the director's knobs set; the
    real servers switched to TUN for ``tun``. Torn down on exit whatever happens."""
    from testbed.net.network import Testbed
    from testbed.topo.plan import LayoutParams

    layout_kw.setdefault("n_rs", 3)
    layout_kw.setdefault("n_clients", 2)
    params = LayoutParams(director_cpu=quota_cores, **layout_kw)
    with Testbed(KIND_TO_LAYOUT[kind], params, kind=f"exp-{point_id}"[:60]) as tb:
        tb.wait_ready()
        if kind == "tun":
            set_forwarding(tb, "tun")
        yield tb


def capacity_summary(cap: Capacity) -> dict:
    """The figures every capacity-search point reports (answered = requests/s echoed)."""
    best = cap.at_capacity()
    in_out = best.director_in_pps + best.director_out_pps
    return {
        "capacity_pps": cap.capacity_pps,
        "knee_offered_pps": cap.knee_offered_pps,
        "fitted_capacity_pps": cap.fitted_capacity_pps,
        "director_in_pps": best.director_in_pps,
        "director_out_pps": best.director_out_pps,
        "director_total_pps": in_out,
        "director_cores": best.director_cores,
        "director_us_per_pkt": best.director_us_per_pkt,
        "director_socket_drops": sum(t.director_socket_drops for t in cap.trials),
        "rtt_p99_ms_at_capacity": best.rtt_p99_ms,
        "host_busy_frac": best.host_busy_frac,
        "trials": len(cap.trials),
    }


def capacity_invalid(cap: Capacity) -> list[str]:
    """A capacity is invalid when the trial that set it was (the sender short of its target,
    or the host saturated): then the emulator, not the director, may have set the figure."""
    return cap.at_capacity().invalid_reasons


def capacity_point(
    ctx,
    kind: str,
    quota_cores: float | None,
    start_pps: float = 1000,
    duration_s: float = 2.0,
    payload_bytes: int = 64,
    **layout_kw,
):
    """The body of a capacity-search point: a fresh layout, a search, the standard figures."""
    from testbed.harness import PointResult

    with layout_up(kind, ctx.point_id, quota_cores, **layout_kw) as tb:
        cap = find_capacity(
            tb, start_pps=start_pps, duration_s=duration_s, payload_bytes=payload_bytes, log=ctx.log
        )
    return PointResult(
        summary=capacity_summary(cap),
        samples=[t.row() for t in cap.trials],
        invalid_reasons=capacity_invalid(cap),
    )


def director_pid(tb, name: str = "d1") -> int:
    return json.loads((tb.run.dir / f"{name}.director.json").read_text())["pid"]


def rss_kb(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_tcp_load(
    tb, rate_cps: float, duration_s: float, sources: dict[str, list[str]] | None = None
) -> list:
    """Start short TCP connections to the VIP at ``rate_cps`` (split over the clients) for
    ``duration_s``, each client from its ``sources`` in turn when given (`client_sources`);
    returns the clients' load generator processes (see `tcp_load_results`)."""
    per_client = rate_cps / len(tb.plan.clients)
    argv = [
        sys.executable,
        "-m",
        "testbed.traffic.loadgen",
        "tcp-crr",
        tb.plan.vip,
        "--rate-cps",
        f"{per_client:g}",
        "--duration-s",
        f"{duration_s:g}",
    ]
    return [
        tb.net[c.name].popen(argv + [f"--src={a}" for a in (sources or {}).get(c.name, ())])
        for c in tb.plan.clients
    ]


@contextmanager
def client_sources(tb, per_client: int) -> Iterator[dict[str, list[str]]]:
    """Each client with ``per_client`` source addresses, its own and spare ones of its subnet
    (`spare_addresses`), for ``start_tcp_load``, whose connections take them in turn, each
    address with its ports in sequence (loadgen's ``--src``): a client port, and the
    director's entry for it, comes round again only after ``per_client`` x 64,512
    connections. From one address the kernel's choice of port repeats within about 30 s at
    1,000 connections/s, and a repeated port takes over its old connection's entry. The
    addresses are removed on exit."""
    clients = tb.plan.clients
    extra = per_client - 1
    spare = spare_addresses(tb.plan, clients[0].intfs[0].addrs[0], len(clients) * extra)
    added: list[tuple[str, str]] = []
    try:
        out = {}
        for i, c in enumerate(clients):
            host, intf = tb.net[c.name], c.intfs[0]
            prefix = intf.addrs[0].split("/")[1]
            mine = spare[i * extra : (i + 1) * extra]
            for addr in mine:
                host.cmd(f"ip addr add {addr}/{prefix} dev {intf.name}")
                added.append((c.name, f"{addr}/{prefix} dev {intf.name}"))
            out[c.name] = [c.ip, *mine]
        yield out
    finally:
        for name, spec in added:
            tb.net[name].cmd(f"ip addr del {spec}")


def tcp_load_results(procs: list, timeout_s: float = 60.0) -> list[dict]:
    """Each load generator's summary (completed_cps, ...), once it has finished."""
    return [json.loads(proc.communicate(timeout=timeout_s)[0] or b"{}") for proc in procs]


def tcp_load(
    tb, rate_cps: float, duration_s: float, sample_every_s: float, sample
) -> tuple[list[dict], list[dict]]:
    """Short TCP connections to the VIP at ``rate_cps`` for ``duration_s``; ``sample(t_s) ->
    dict`` is called every ``sample_every_s`` while they run. Returns the sampled rows and each
    client's load summary."""
    procs = start_tcp_load(tb, rate_cps, duration_s)
    rows = []
    t0 = time.monotonic()
    while any(proc.poll() is None for proc in procs):
        time.sleep(sample_every_s)
        rows.append({"t_s": time.monotonic() - t0, **sample(time.monotonic() - t0)})
    return rows, tcp_load_results(procs)


PREFILL_HEADROOM = 1 << 16
"""Entries left free beside a prefill, for the traffic a point then measures."""


def table_room(count: int) -> dict:
    """Layout knobs giving the director's table room for ``count`` prefilled entries plus
    the measured traffic: a larger limit (and memory) than the default when needed."""
    from testbed.director.defense import DEFAULT_CONN_MAX, memory_needed_bytes
    from testbed.topo.plan import DEFAULT_DIRECTOR_MEM_MIB

    conn_max = count + PREFILL_HEADROOM
    if conn_max <= DEFAULT_CONN_MAX:
        return {}
    need_mib = -(-memory_needed_bytes(conn_max) // (1 << 20))
    return {"conn_max": conn_max, "director_mem_mib": max(need_mib, DEFAULT_DIRECTOR_MEM_MIB)}


def prefill(tb, count: int, director: str = "d1") -> None:
    """Put ``count`` made-up ESTABLISHED connections in the director's table (the table
    experiments' 62,000 or 1,000,000), with its CPU quota lifted: filling is set-up."""
    if count:
        with tb.net[director].quota_lifted():
            reply = request(
                socket_path(tb.run.dir, director),
                {"op": "prefill", "count": count},
                timeout_s=PREFILL_TIMEOUT_S,
            )
        if reply.get("rc") != 0:
            raise RuntimeError(f"prefill failed: {reply.get('err')}")


def table_stats(tb, director: str = "d1") -> dict:
    """The director's connection table figures: entries, buckets, chain lengths."""
    return request(socket_path(tb.run.dir, director), {"op": "stats"})["stats"]["table"]
