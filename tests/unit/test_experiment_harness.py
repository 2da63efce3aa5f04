"""The pure parts of the layout experiments' harness: the capacity search's next rate, the
ipvsadm counters it reads, and what counts as carried."""

import pytest

from testbed.harness.trials import Trial, next_rate, service_totals
from tests.unit.definitions import definition

wire_limit_pps = definition("shaping").wire_limit_pps


def trial(offered, answered, sent=None):
    sent = offered if sent is None else sent
    return Trial(offered_pps=offered, sent_pps=sent, answered_pps=answered)


def test_search_ramps_geometrically_while_carried():
    assert next_rate([], 1000, 2, 1e6, 2) == 1000
    assert next_rate([trial(1000, 1000)], 1000, 2, 1e6, 2) == 2000
    assert next_rate([trial(1000, 1000), trial(2000, 1999)], 1000, 2, 1e6, 2) == 4000


def test_search_stops_at_the_ceiling_when_never_saturated():
    assert next_rate([trial(1000, 1000), trial(2000, 2000)], 1000, 2, 3000, 2) is None


def test_search_bisects_after_the_first_failure_then_stops():
    trials = [trial(1000, 1000), trial(2000, 2000), trial(4000, 2500)]
    assert next_rate(trials, 1000, 2, 1e6, 2) == 3000
    trials.append(trial(3000, 2500))
    assert next_rate(trials, 1000, 2, 1e6, 2) == 2500
    trials.append(trial(2500, 2500))
    assert next_rate(trials, 1000, 2, 1e6, 2) is None


def test_search_retries_a_first_rate_that_stumbled_and_ramps_on_if_it_holds():
    trials = [trial(1000, 900)]
    assert next_rate(trials, 1000, 2, 1e6, 2) == 1000  # once more
    trials.append(trial(1000, 1000))
    assert next_rate(trials, 1000, 2, 1e6, 2) == 2000  # the retry stands for the first try


def test_search_steps_down_when_the_first_rate_fails_twice_then_bisects():
    trials = [trial(1000, 900), trial(1000, 900)]
    assert next_rate(trials, 1000, 2, 1e6, 2) == 500
    trials.append(trial(500, 500))
    assert next_rate(trials, 1000, 2, 1e6, 2) == 750  # bracketed: bisect 500..1000
    trials += [trial(750, 750), trial(875, 800)]
    assert next_rate(trials, 1000, 2, 1e6, 2) is None  # two bisections done


def test_search_gives_up_when_nothing_is_carried_down_to_a_sixteenth():
    trials = [trial(r, 0) for r in (1000, 1000, 500, 250, 125)]
    assert next_rate(trials, 1000, 2, 1e6, 2) == 62.5
    assert next_rate([*trials, trial(62.5, 0)], 1000, 2, 1e6, 2) is None


def test_carried_means_98_percent_answered():
    assert trial(1000, 980).carried and not trial(1000, 979).carried
    assert not trial(1000, 0, sent=0).carried


def test_a_lossy_path_lowers_the_share_that_must_be_answered():
    lossy = trial(1000, 890)
    assert not lossy.carried
    lossy.carried_frac = 0.98 * 0.95**2  # 5 % lost each way: 0.884 of the requests
    assert lossy.carried and not Trial(1000, 1000, 880, carried_frac=lossy.carried_frac).carried


def test_client_packets_sum_each_clients_own_interface():
    from types import SimpleNamespace

    from testbed.harness.trials import client_packets

    dev = """Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
{name}:    6400      {rx}    0    0    0     0          0         0     6400     {tx}    0    0    0     0       0          0
"""  # noqa: E501

    class Host:
        def __init__(self, name, rx, tx):
            self.name, self.text = name, dev.format(name=f"{name}-eth0", rx=rx, tx=tx)

        def cmd(self, command):
            assert command == "cat /proc/net/dev"
            return self.text

        def defaultIntf(self):  # noqa: N802 (Mininet's name)
            return SimpleNamespace(name=f"{self.name}-eth0")

    hosts = {"c1": Host("c1", 90, 100), "c2": Host("c2", 40, 50)}
    tb = SimpleNamespace(
        plan=SimpleNamespace(clients=[SimpleNamespace(name="c1"), SimpleNamespace(name="c2")]),
        net=hosts,
    )
    assert client_packets(tb) == (150, 130)


def test_service_totals_sum_service_lines_only():
    text = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.1.100:80                       4       22       20     1472     1768
  -> 192.168.0.11:80                     1        5        5      342      442
UDP  10.0.1.100:7                        3        3        3       93       93
  -> 192.168.0.11:7                      1        1        1       31       31
"""
    assert service_totals(text) == (25, 23)


def test_wire_limit_of_64_byte_payloads():
    # 14 + 20 + 8 + 64 = 106-byte frames, 130 bytes on the wire: 9,615 per second at 10 Mbit/s.
    assert wire_limit_pps(10, 64) == pytest.approx(9615.4, abs=0.1)


def test_every_listed_experiment_registers_without_importing_mininet():
    import subprocess
    import sys

    code = (
        "import sys, testbed.harness as e; names = sorted(e.load_experiments()); "
        "print(' '.join(names)); print('mininet' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    for name in (
        "capacity",
        "cpu-quota",
        "shaping",
        "coalescing",
        "nic-layout",
        "conntable-size",
        "soak",
        "bench",
        "seed",
    ):
        assert name in out[0].split()
    assert out[1] == "False"


class _StubRun:
    """Just what a report hook reads: its curves."""

    def __init__(self, curves):
        self.curves = curves

    def series(self, *_args, **_kwargs):
        return self.curves


def _curve(label, xs, ys):
    from testbed.harness.results import Series

    return Series(
        label=label,
        key={"kind": label},
        x=xs,
        y=ys,
        y_min=ys,
        y_max=ys,
        n=[1] * len(xs),
        invalid_x=[],
        invalid_y=[],
    )


def test_cpu_quota_finding_fits_a_sweep_and_reports_a_single_quota_as_measured():
    cpu_quota = definition("cpu-quota")

    run = _StubRun(
        [_curve("nat", [0.05, 0.1, 0.2], [1000.0, 2000.0, 4000.0]), _curve("dr", [0.1], [16211.8])]
    )
    figure = cpu_quota.report(run)[0]
    assert "nat: 20,000 requests/s per core" in figure.finding
    assert "R² 1.000" in figure.finding
    assert (
        "dr: 16,212 requests/s at 0.1 of a core (one quota: sweep several for a fit)"
        in figure.finding
    )
    assert not figure.finding.endswith("..")


class _BusyDirector:
    """A stand-in testbed whose director works off a backlog: its rx count moves, then stops."""

    def __init__(self, counts):
        self.counts = list(counts)
        self.asked = 0

    def director_request(self, msg, _director):
        self.asked += 1
        rx = self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]
        return (
            {"counters": {"rx": rx}}
            if msg["op"] == "counters"
            else {"stats": {"frames": {"rx": rx}}}
        )


def test_wait_drained_returns_once_the_director_stops_receiving():
    from testbed.harness.trials import wait_drained

    tb = _BusyDirector([100, 250, 300, 300])
    wait_drained(tb, "d1", timeout_s=5, quiet_s=0.001)
    assert tb.asked == 4  # 100 -> 250 -> 300 -> 300: quiet
    idle = _BusyDirector([7])
    wait_drained(idle, "d1", timeout_s=5, quiet_s=0.001)
    assert idle.asked == 2
    wait_drained(None, None)  # kernel forwarding: nothing to wait for


def test_the_senders_count_as_started_after_a_tenth_of_a_second_of_requests():
    from testbed.harness.trials import senders_started

    assert not senders_started(1, 500)  # one stray packet (ARP, IPv6) is not the senders
    assert not senders_started(49, 500) and senders_started(50, 500)
    assert not senders_started(4, 10) and senders_started(5, 10)


def test_client_packets_are_read_between_two_cpu_readings_and_the_midpoints_kept(monkeypatch):
    """The clients' counters take a while to read (a shell command per client): the time and
    the CPU counters that go with them are the midpoints of readings on either side, so a
    window counts packets and CPU over the same time."""
    from types import SimpleNamespace

    from testbed.harness import trials

    clock = iter([10.0, 10.4])  # the read of the clients' counters took 0.4 s
    cpu = iter([(100, 0, 50, 1000, 0, 0, 10, 0), (104, 0, 52, 1036, 0, 0, 10, 0)])
    monkeypatch.setattr(trials.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(trials, "read_proc_stat", lambda: {"cpu": next(cpu)})
    net_dev = (
        "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed"
        " multicast|bytes packets errs drop fifo colls carrier compressed\n"
        "c1-eth0: 6400 100 0 0 0 0 0 0 6400 120 0 0 0 0 0 0\n"
    )
    host = SimpleNamespace(
        cmd=lambda _: net_dev, defaultIntf=lambda: SimpleNamespace(name="c1-eth0")
    )
    tb = SimpleNamespace(
        plan=SimpleNamespace(clients=[SimpleNamespace(name="c1")]), net={"c1": host}
    )
    at, cpu_at, packets = trials._packets_with_cpu(tb)
    assert at == pytest.approx(10.2)
    assert cpu_at == (102, 0, 51, 1018, 0, 0, 10, 0)
    assert packets == (120, 100)
