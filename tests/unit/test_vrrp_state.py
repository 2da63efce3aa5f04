"""VRRP state machine with a fake clock: timer formulas, failover timing, keepalived behaviours."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from testbed.keepalived_conf import parse_config
from testbed.keepalived_conf.model import VirtualAddress
from testbed.vrrp.packet import Advert, AuthType, decode, encode_ipv4
from testbed.vrrp.state import (
    AddVips,
    InstanceParams,
    Notify,
    RemoveVips,
    ScriptStatus,
    SendAdvert,
    SendGarp,
    State,
    SyncGroup,
    Tracker,
    VrrpMachine,
)

D1 = IPv4Address("10.0.1.2")
D2 = IPv4Address("10.0.1.3")
VIPS = (VirtualAddress(IPv4Address("10.0.1.100"), 24, dev="eth0"),)
INNER_VIPS = (VirtualAddress(IPv4Address("192.168.0.254"), 24, dev="eth1"),)


def params(**kw) -> InstanceParams:
    base = {"name": "VI_1", "vrid": 51, "primary_ip": D2, "priority": 100, "vips": VIPS}
    return InstanceParams(**{**base, **kw})


def machine(**kw) -> tuple[VrrpMachine, list]:
    actions: list = []
    return VrrpMachine(params(**kw), actions.append), actions


def advert(priority: int, version: int = 2, interval_cs: int = 100, vrid: int = 51) -> Advert:
    return Advert(version, vrid, priority, tuple(v.address for v in VIPS), interval_cs=interval_cs)


def run(m: VrrpMachine, until: float) -> None:
    """A punctual daemon: polls at every deadline up to ``until``."""
    while m.next_deadline is not None and m.next_deadline <= until:
        m.poll(m.next_deadline)


def states(actions: list) -> list[str]:
    return [a.state for a in actions if isinstance(a, Notify)]


class Lan:
    """A segment with no delay: each advert goes through the codec to every live node."""

    def __init__(self) -> None:
        self.nodes: dict[str, list[VrrpMachine]] = {}
        self.groups: dict[str, SyncGroup] = {}
        self.log: dict[str, list] = {}
        self.dead: set[str] = set()
        self.queue: list[tuple[str, VrrpMachine, Advert]] = []
        self.now = 0.0

    def emit_for(self, node: str):
        log = self.log.setdefault(node, [])

        def emit(action) -> None:
            log.append((self.now, action))
            if isinstance(action, SendAdvert):
                sender = next(m for m in self.nodes[node] if m.params.name == action.instance)
                self.queue.append((node, sender, action.advert))

        return emit

    def add(self, node: str, *instances: InstanceParams, group: bool = False) -> list[VrrpMachine]:
        emit = self.emit_for(node)
        machines = [VrrpMachine(p, emit) for p in instances]
        self.nodes[node] = machines
        if group:
            self.groups[node] = SyncGroup("VG", machines, emit)
        return machines

    def start(self, node: str, at: float) -> None:
        self.run_until(at)
        for m in self.nodes[node]:
            m.start(at)
        self.deliver()

    def kill(self, node: str) -> None:
        """A crash: no priority-0 advert, nothing more sent or received."""
        self.dead.add(node)

    def live(self):
        for node, machines in self.nodes.items():
            if node not in self.dead:
                for m in machines:
                    yield node, m

    def deliver(self) -> None:
        while self.queue:
            sender_node, sender, adv = self.queue.pop(0)
            if sender_node in self.dead:
                continue
            packet = encode_ipv4(adv, sender.params.primary_ip)
            for node, m in list(self.live()):
                if node != sender_node and m.params.vrid == adv.vrid:
                    received = decode(packet, m.params.expected())
                    assert isinstance(received, Advert), received
                    m.on_advert(received, sender.params.primary_ip, self.now)

    def run_until(self, end: float) -> None:
        while True:
            deadlines = [m.next_deadline for _, m in self.live() if m.next_deadline is not None]
            if not deadlines or min(deadlines) > end:
                break
            self.now = min(deadlines)
            for _, m in list(self.live()):
                m.poll(self.now)
            self.deliver()
        self.now = end

    def state(self, node: str) -> list[State]:
        return [m.state for m in self.nodes[node]]

    def became(self, node: str, state: str, name: str = "VI_1") -> list[float]:
        """Times at which ``node``'s instance ``name`` notified ``state``."""
        return [
            t
            for t, a in self.log.get(node, [])
            if isinstance(a, Notify)
            and a.kind == "INSTANCE"
            and a.name == name
            and a.state == state
        ]


# ------------------------------------------------------------------ timer formulas


def test_v2_timers_priority_100_one_second():
    m, _ = machine(priority=100)
    assert m.skew_time_s == pytest.approx(156 / 256)
    assert m.master_down_interval_s == pytest.approx(3 + 156 / 256)  # 3.609 s


def test_v2_skew_does_not_scale_with_the_interval():
    """RFC 3768: Skew_Time = (256 - Priority) / 256 seconds, whatever the Adver Int."""
    m, _ = machine(priority=100, advert_int_cs=300)
    assert m.skew_time_s == pytest.approx(156 / 256)
    assert m.master_down_interval_s == pytest.approx(9 + 156 / 256)


def test_v3_timers_priority_100_tenth_of_a_second():
    m, _ = machine(priority=100, version=3, advert_int_cs=10)
    assert m.skew_time_s == pytest.approx(156 * 0.1 / 256)
    assert m.master_down_interval_s == pytest.approx(3 * 0.1 + (256 - 100) * 0.1 / 256)  # 0.361 s


# ----------------------------------------------------------------------- backup


def test_backup_takes_over_3_609_s_after_the_last_advert():
    m, actions = machine(priority=100)
    m.start(0.0)
    assert m.state is State.BACKUP and states(actions) == ["BACKUP"]
    for t in (0.4, 1.4, 2.4):
        m.on_advert(advert(200), D1, t)
    last = 2.4
    assert m.next_deadline - last == pytest.approx(3 + 156 / 256)
    m.poll(last + 3.6)
    assert m.state is State.BACKUP
    actions.clear()
    m.poll(last + 3 + 156 / 256)
    assert m.state is State.MASTER
    assert actions == [
        SendAdvert("VI_1", advert(100)),
        AddVips("VI_1", VIPS),
        SendGarp("VI_1", VIPS, 5),
        Notify("INSTANCE", "VI_1", "MASTER", 100),
    ]


def test_priority_zero_advert_means_takeover_after_skew_time():
    m, _ = machine(priority=100)
    m.start(0.0)
    m.on_advert(advert(200), D1, 1.0)
    m.on_advert(advert(0), D1, 1.5)
    assert m.next_deadline - 1.5 == pytest.approx(156 / 256)  # ~0.61 s
    m.poll(1.5 + 0.6)
    assert m.state is State.BACKUP
    m.poll(1.5 + 156 / 256)
    assert m.state is State.MASTER


def test_v3_backup_adopts_the_masters_interval():
    m, _ = machine(priority=100, version=3, advert_int_cs=100)
    m.start(0.0)
    for i in range(1, 6):
        m.on_advert(advert(200, version=3, interval_cs=10), D1, i * 0.1)
    assert m.master_adver_int_cs == 10
    assert m.next_deadline - 0.5 == pytest.approx(3 * 0.1 + 156 * 0.1 / 256)  # 0.361 s
    m.poll(0.5 + 0.3609)
    assert m.state is State.BACKUP
    m.poll(0.5 + 0.36094)
    assert m.state is State.MASTER
    assert m.advert_interval_s == 1.0  # as master it advertises its own interval


def test_v3_failover_on_the_wire_with_tenth_second_adverts():
    lan = Lan()
    lan.add("d1", params(primary_ip=D1, priority=200, version=3, advert_int_cs=10))
    lan.add("d2", params(primary_ip=D2, priority=100, version=3, advert_int_cs=10))
    lan.start("d1", 0.0)
    lan.start("d2", 0.05)
    lan.run_until(2.0)
    assert lan.state("d1") == [State.MASTER] and lan.state("d2") == [State.BACKUP]
    last = max(t for t, a in lan.log["d1"] if isinstance(a, SendAdvert))
    lan.kill("d1")
    lan.run_until(3.0)
    assert lan.became("d2", "MASTER") == [pytest.approx(last + 0.3609375)]


def test_backup_without_any_master_takes_over_after_master_down_interval():
    m, _ = machine(priority=150)
    m.start(10.0)
    assert m.next_deadline == pytest.approx(10 + 3 + 106 / 256)


# ----------------------------------------------------------------------- master


def test_master_advertises_every_interval_and_repeats_garp_after_5_s():
    m, actions = machine(priority=255, initial_master=True)
    m.start(0.0)
    assert m.state is State.MASTER
    assert [type(a) for a in actions] == [SendAdvert, AddVips, SendGarp, Notify]
    assert actions[0].advert.priority == 255
    actions.clear()
    for t in range(1, 61):
        m.poll(float(t))
    adverts = [a for a in actions if isinstance(a, SendAdvert)]
    garps = [a for a in actions if isinstance(a, SendGarp)]
    assert len(adverts) == 60
    assert garps == [SendGarp("VI_1", VIPS, 5)]  # the delayed burst; refresh is off by default


def test_garp_refresh_when_configured():
    m, actions = machine(
        priority=255, initial_master=True, garp_master_refresh_s=20, garp_master_refresh_repeat=2
    )
    m.start(0.0)
    actions.clear()
    for t in range(1, 61):
        m.poll(float(t))
    assert [a.count for a in actions if isinstance(a, SendGarp)] == [5, 2, 2, 2]


def test_owner_priority_255_is_master_at_once():
    lan = Lan()
    lan.add("d1", params(primary_ip=D1, priority=255, initial_master=True))
    lan.add("d2", params(primary_ip=D2, priority=100))
    lan.start("d2", 0.0)
    lan.start("d1", 0.0)
    assert lan.state("d1") == [State.MASTER]
    assert lan.became("d1", "MASTER") == [0.0]
    lan.run_until(30.0)
    assert lan.state("d2") == [State.BACKUP]


def test_owner_without_state_master_waits_like_a_backup():
    """keepalived acts on priority 255 at once only with state MASTER."""
    m, _ = machine(priority=255)
    m.start(0.0)
    assert m.state is State.BACKUP
    assert m.next_deadline == pytest.approx(3 + 1 / 256)


def test_master_yields_to_higher_priority():
    m, actions = machine(priority=100, primary_ip=D2)
    m.start(0.0)
    m.poll(3.61)
    assert m.state is State.MASTER
    actions.clear()
    m.on_advert(advert(150), D1, 4.0)
    assert m.state is State.BACKUP
    assert actions == [RemoveVips("VI_1", VIPS), Notify("INSTANCE", "VI_1", "BACKUP", 100)]
    assert m.next_deadline == pytest.approx(4 + 3 + 156 / 256)


def test_master_reasserts_itself_to_a_lower_priority_master():
    """keepalived's default: an advert back and a burst of gratuitous ARPs (RFC: discard)."""
    m, actions = machine(priority=200)
    m.start(0.0)
    run(m, 9.5)  # master since 3.2 s, its own delayed GARP burst sent at 8.2 s
    actions.clear()
    m.on_advert(advert(100), D1, 9.5)
    assert m.state is State.MASTER
    assert actions == [SendAdvert("VI_1", advert(200)), SendGarp("VI_1", VIPS, 5)]
    assert m.next_deadline == pytest.approx(10.5)
    actions.clear()
    run(m, 14.5)  # and the second burst garp_master_delay later
    assert [a for a in actions if isinstance(a, SendGarp)] == [SendGarp("VI_1", VIPS, 5)]


def test_lower_prio_no_advert_follows_the_rfc():
    m, actions = machine(priority=200, lower_prio_no_advert=True, garp_lower_prio_repeat=0)
    m.start(0.0)
    m.poll(5.0)
    actions.clear()
    m.on_advert(advert(100), D1, 5.5)
    assert actions == [] and m.state is State.MASTER


def test_master_answers_priority_zero_with_an_advert():
    m, actions = machine(priority=255, initial_master=True)
    m.start(0.0)
    actions.clear()
    m.on_advert(advert(0), D1, 0.3)
    assert actions == [SendAdvert("VI_1", advert(255))]
    assert m.next_deadline == pytest.approx(1.3)


def test_shutdown_of_a_master_sends_priority_zero():
    m, actions = machine(priority=255, initial_master=True)
    m.start(0.0)
    actions.clear()
    m.shutdown(2.0)
    assert m.state is State.INIT
    assert actions == [
        SendAdvert("VI_1", advert(0)),
        RemoveVips("VI_1", VIPS),
        Notify("INSTANCE", "VI_1", "STOP", 255),
    ]
    assert m.next_deadline is None


def test_failover_after_graceful_shutdown_takes_skew_time():
    lan = Lan()
    lan.add("d1", params(primary_ip=D1, priority=150))
    lan.add("d2", params(primary_ip=D2, priority=100))
    lan.start("d1", 0.0)
    lan.start("d2", 0.5)
    lan.run_until(10.0)
    assert lan.state("d1") == [State.MASTER] and lan.state("d2") == [State.BACKUP]
    for m in lan.nodes["d1"]:
        m.shutdown(10.0)
    lan.deliver()
    lan.kill("d1")
    lan.run_until(20.0)
    assert lan.became("d2", "MASTER") == [pytest.approx(10 + 156 / 256)]


# ------------------------------------------------------------ preempt scenarios


def pair(d2_extra: dict) -> Lan:
    """d1 (priority 100) is master by t=4; d2 (priority 150) starts at t=10."""
    lan = Lan()
    lan.add("d1", params(primary_ip=D1, priority=100))
    lan.add("d2", params(primary_ip=D2, priority=150, **d2_extra))
    lan.start("d1", 0.0)
    lan.run_until(10.0)
    assert lan.state("d1") == [State.MASTER]
    lan.start("d2", 10.0)
    return lan


def test_preempt_higher_priority_backup_takes_over_lower_master():
    lan = pair({})
    lan.run_until(30.0)
    # d1's lower-priority adverts are discarded; d2's Master_Down_Timer from start fires
    assert lan.became("d2", "MASTER") == [pytest.approx(10 + 3 + 106 / 256)]
    assert lan.state("d1") == [State.BACKUP] and lan.state("d2") == [State.MASTER]


def test_nopreempt_leaves_the_lower_priority_master_alone():
    lan = pair({"preempt": False})
    lan.run_until(60.0)
    assert lan.state("d1") == [State.MASTER] and lan.state("d2") == [State.BACKUP]
    last_d1_advert = max(t for t, a in lan.log["d1"] if isinstance(a, SendAdvert))
    lan.kill("d1")
    lan.run_until(70.0)
    assert lan.became("d2", "MASTER") == [pytest.approx(last_d1_advert + 3 + 106 / 256)]


def test_preempt_delay_accepts_the_lower_master_until_the_delay_is_over():
    lan = pair({"preempt_delay_s": 10.0})
    lan.run_until(60.0)
    (takeover,) = lan.became("d2", "MASTER")
    last_accepted = max(t for t, a in lan.log["d1"] if isinstance(a, SendAdvert) and t < 20.0)
    assert takeover == pytest.approx(last_accepted + 3 + 106 / 256)
    assert 20.0 < takeover <= 20.0 + 3 + 106 / 256 + 1
    assert lan.state("d1") == [State.BACKUP]


def test_preempt_delay_does_not_delay_taking_over_an_empty_segment():
    """keepalived.conf(5): "Since it is a delay, it cannot speed up taking over as master"."""
    m, _ = machine(priority=150, preempt_delay_s=300)
    m.start(0.0)
    m.poll(3 + 106 / 256)
    assert m.state is State.MASTER


def test_equal_priority_tie_is_broken_by_the_higher_address():
    lan = Lan()
    lan.add("d1", params(primary_ip=D1, priority=100))
    lan.add("d2", params(primary_ip=D2, priority=100))
    lan.start("d1", 0.0)
    lan.start("d2", 0.0)
    lan.run_until(10.0)
    # both time out at once and become master; 10.0.1.3 > 10.0.1.2 wins
    assert (
        lan.became("d1", "MASTER") == lan.became("d2", "MASTER") == [pytest.approx(3 + 156 / 256)]
    )
    assert lan.state("d1") == [State.BACKUP] and lan.state("d2") == [State.MASTER]


def test_equal_priority_from_a_lower_address_is_answered():
    m, actions = machine(priority=100, primary_ip=D2)
    m.start(0.0)
    m.poll(4.0)
    actions.clear()
    m.on_advert(advert(100), D1, 4.5)
    assert m.state is State.MASTER
    assert isinstance(actions[0], SendAdvert)


def test_own_advert_looped_back_is_ignored():
    m, actions = machine(priority=100, primary_ip=D2)
    m.start(0.0)
    m.on_advert(advert(200), D2, 1.0)
    assert m.next_deadline == pytest.approx(3 + 156 / 256)


# ---------------------------------------------------------------------- tracking


def test_track_interface_fault_and_recovery():
    lan = Lan()
    lan.add(
        "d1",
        params(primary_ip=D1, priority=150, interface="eth0", track_interfaces=(Tracker("eth1"),)),
    )
    lan.add("d2", params(primary_ip=D2, priority=100, interface="eth0"))
    lan.start("d1", 0.0)
    lan.start("d2", 0.5)
    lan.run_until(10.0)
    (d1,) = lan.nodes["d1"]
    lan.log["d1"].clear()
    d1.track_interface("eth1", up=False, now=10.0)
    assert d1.state is State.FAULT
    assert [type(a) for _, a in lan.log["d1"]] == [SendAdvert, RemoveVips, Notify]
    assert lan.log["d1"][0][1].advert.priority == 0
    lan.deliver()
    lan.run_until(20.0)
    assert lan.became("d2", "MASTER") == [pytest.approx(10 + 156 / 256)]
    assert d1.state is State.FAULT  # adverts are ignored in FAULT
    d1.track_interface("eth1", up=True, now=20.0)
    assert d1.state is State.BACKUP
    lan.run_until(40.0)
    # and, preempting, it takes back over one Master_Down_Interval later
    assert lan.became("d1", "MASTER")[-1] == pytest.approx(20 + 3 + 106 / 256)
    assert lan.state("d2") == [State.BACKUP]


def test_own_interface_down_is_fault():
    m, actions = machine(interface="eth0")
    m.start(0.0)
    m.track_interface("eth0", up=False, now=1.0)
    assert m.state is State.FAULT and m.next_deadline is None
    m.track_interface("eth0", up=True, now=2.0)
    assert states(actions) == ["BACKUP", "FAULT", "BACKUP"]


def test_script_weight_lowers_priority_and_the_backup_preempts():
    chk = Tracker("chk_ipvs", weight=-60)
    lan = Lan()
    lan.add("d1", params(primary_ip=D1, priority=150, track_scripts=(chk,)))
    lan.add("d2", params(primary_ip=D2, priority=100))
    (d1,) = lan.nodes["d1"]
    d1.track_script("chk_ipvs", ok=True, now=0.0)
    lan.start("d1", 0.0)
    lan.start("d2", 0.5)
    lan.run_until(10.0)
    assert d1.state is State.MASTER and d1.effective_priority == 150
    d1.track_script("chk_ipvs", ok=False, now=10.0)
    assert d1.effective_priority == 90
    lan.run_until(30.0)
    assert lan.state("d1") == [State.BACKUP] and lan.state("d2") == [State.MASTER]


@pytest.mark.parametrize(
    ("weight", "reverse", "ok", "expected"),
    [
        (20, False, True, 120),
        (20, False, False, 100),
        (-20, False, False, 80),
        (-20, False, True, 100),
        (20, True, True, 80),
        (-20, True, False, 120),
        (200, False, True, 254),
        (-200, False, False, 1),
    ],
)
def test_weight_table(weight, reverse, ok, expected):
    m, _ = machine(priority=100, track_scripts=(Tracker("chk", weight, reverse),))
    m.track_script("chk", ok, now=0.0)
    assert m.effective_priority == expected


def test_owner_priority_is_not_changed_by_weights():
    m, _ = machine(priority=255, track_scripts=(Tracker("chk", -50),))
    m.track_script("chk", ok=False, now=0.0)
    assert m.effective_priority == 255


def test_priority_change_moves_the_backups_deadline():
    m, _ = machine(priority=100, track_scripts=(Tracker("chk", 50),))
    m.track_script("chk", ok=False, now=0.0)
    m.start(0.0)
    assert m.next_deadline == pytest.approx(3 + 156 / 256)
    m.track_script("chk", ok=True, now=1.0)
    assert m.next_deadline == pytest.approx(3 + 106 / 256)


def test_unweighted_script_keeps_the_instance_in_fault_until_it_has_run():
    m, actions = machine(track_scripts=(Tracker("chk"),))
    m.start(0.0)
    assert m.state is State.FAULT
    m.track_script("chk", ok=True, now=0.2)
    assert m.state is State.BACKUP
    m.track_script("chk", ok=False, now=3.0)
    assert m.state is State.FAULT
    assert states(actions) == ["FAULT", "BACKUP", "FAULT"]


def test_script_status_rise_and_fall():
    status = ScriptStatus(rise=2, fall=3)
    assert status.ok is None
    assert status.record(True) and status.ok  # the first result decides
    assert [status.record(False) for _ in range(3)] == [False, False, True]
    assert status.ok is False
    assert [status.record(s) for s in (True, False, True, True)] == [False, False, False, True]
    assert ScriptStatus(rise=2, init_fail=True).ok is False


# -------------------------------------------------------------------- sync groups


def nat_pair(d1_interface_tracking: bool = False) -> Lan:
    """The NAT layout: each director runs VI_OUTER and VI_INNER in one sync group."""
    lan = Lan()
    tracking = {"track_interfaces": (Tracker("eth1"),)} if d1_interface_tracking else {}
    for node, ip, priority in (("d1", D1, 150), ("d2", D2, 100)):
        outer = params(name="VI_OUTER", vrid=51, primary_ip=ip, priority=priority, interface="eth0")
        inner = params(
            name="VI_INNER",
            vrid=52,
            primary_ip=ip,
            priority=priority,
            vips=INNER_VIPS,
            interface="eth1",
        )
        if node == "d1":
            outer = replace(outer, **tracking)
        lan.add(node, outer, inner, group=True)
    lan.start("d1", 0.0)
    lan.start("d2", 0.5)
    lan.run_until(10.0)
    assert lan.state("d1") == [State.MASTER, State.MASTER]
    assert lan.state("d2") == [State.BACKUP, State.BACKUP]
    return lan


def test_sync_group_follows_when_the_master_dies():
    lan = nat_pair()
    last = max(t for t, a in lan.log["d1"] if isinstance(a, SendAdvert))
    lan.kill("d1")
    lan.run_until(20.0)
    assert lan.state("d2") == [State.MASTER, State.MASTER]
    assert lan.became("d2", "MASTER", "VI_OUTER") == lan.became("d2", "MASTER", "VI_INNER")
    assert lan.became("d2", "MASTER", "VI_INNER") == [pytest.approx(last + 3 + 156 / 256)]
    group_notifies = [
        a.state for _, a in lan.log["d2"] if isinstance(a, Notify) and a.kind == "GROUP"
    ]
    assert group_notifies == ["BACKUP", "MASTER"]


def test_sync_group_member_waits_until_every_member_wants_master():
    lan = Lan()
    outer, inner = lan.add(
        "d2",
        params(name="VI_OUTER", vrid=51),
        params(name="VI_INNER", vrid=52, vips=INNER_VIPS),
        group=True,
    )
    lan.start("d2", 0.0)
    inner.on_advert(advert(150, vrid=52), D1, 2.0)  # the inner master is still alive
    lan.run_until(3.61)
    assert outer.state is State.BACKUP and outer.wants_master
    lan.run_until(2.0 + 3 + 156 / 256)
    assert lan.state("d2") == [State.MASTER, State.MASTER]


def test_sync_group_follows_a_member_pushed_back_to_backup():
    lan = nat_pair()
    outer, inner = lan.nodes["d1"]
    inner.on_advert(advert(200, vrid=52), D2, 10.5)
    assert lan.state("d1") == [State.BACKUP, State.BACKUP]


def test_sync_group_faults_together_and_the_peer_takes_over_both():
    lan = nat_pair(d1_interface_tracking=True)
    outer, inner = lan.nodes["d1"]
    outer.track_interface("eth1", up=False, now=10.0)
    assert lan.state("d1") == [State.FAULT, State.FAULT]
    lan.deliver()  # the two priority-0 adverts
    lan.run_until(15.0)
    assert lan.became("d2", "MASTER", "VI_OUTER") == [pytest.approx(10 + 156 / 256)]
    assert lan.state("d2") == [State.MASTER, State.MASTER]
    outer.track_interface("eth1", up=True, now=15.0)
    assert lan.state("d1") == [State.BACKUP, State.BACKUP]
    lan.run_until(30.0)
    assert lan.state("d1") == [State.MASTER, State.MASTER]
    assert lan.state("d2") == [State.BACKUP, State.BACKUP]


def test_sync_group_ignores_tracking_weights():
    m, _ = machine(priority=100, track_scripts=(Tracker("chk", weight=-50),))
    other, _ = machine(name="VI_2", vrid=52)
    SyncGroup("VG", [m, other], lambda a: None)
    m.track_script("chk", ok=False, now=0.0)
    assert m.effective_priority == 100


# ----------------------------------------------------------------- from a config


def test_params_from_a_parsed_config():
    text = """
    global_defs {
        vrrp_garp_master_delay 2
    }
    vrrp_script chk {
        script "/bin/true"
        weight -30
    }
    vrrp_instance VI_1 {
        state MASTER
        interface eth0
        virtual_router_id 51
        priority 150
        advert_int 1.4
        nopreempt
        authentication {
            auth_type PASS
            auth_pass s3cret
        }
        virtual_ipaddress {
            10.0.1.100/24 dev eth0
        }
        track_script { chk }
        garp_master_repeat 3
    }
    """
    config, _ = parse_config(text)
    p = InstanceParams.from_config(config, "VI_1", interface_ip=D1)
    assert (p.vrid, p.priority, p.version, p.advert_int_cs) == (51, 150, 2, 100)  # v2 rounds
    assert p.initial_master and p.preempt  # nopreempt does not work with state MASTER
    assert (p.auth_type, p.auth_pass) == (AuthType.PASS, b"s3cret")
    assert p.track_scripts == (Tracker("chk", -30, False),)
    assert (p.garp_master_delay_s, p.garp_master_repeat, p.garp_master_refresh_s) == (2, 3, 0)
    expected = p.expected()
    assert (expected.vrid, expected.auth_pass, expected.check_ttl) == (51, b"s3cret", True)


def test_params_need_a_source_address():
    config, _ = parse_config(
        "vrrp_instance V {\nvirtual_router_id 1\nvirtual_ipaddress { 10.0.0.1 }\n}"
    )
    with pytest.raises(ValueError, match="address"):
        InstanceParams.from_config(config, "V")
    p = InstanceParams.from_config(config, "V", IPv4Address("10.0.0.2"))
    assert p.priority == 100 and not p.initial_master
