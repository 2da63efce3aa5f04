"""A spoofed SYN flood against the director: 10^6 SYNs from random sources, while a real client
keeps opening connections through the VIP. The table stays at its limit, the defences drop
what they must (counted by reason), the director's host stays under its memory limit, the
director keeps running and the client keeps getting answers.

The flood comes from a client on the directors' outer segment, straight to the master's MAC
(NAT layout): through the DR firewall it would also fill the machine's conntrack table. It is
paced at what the director can handle: faster, the kernel drops frames before the director
sees them (the client's as much as the flood's), and the test would measure the machine's
CPU, not the table's defences.
The figures are printed (run with -s to see them) and written to
``$LVS_TESTBED_FLOOD_REPORT`` when that names a file.
"""

import json
import os
import sys
import time

from testbed.net.network import Testbed
from testbed.topo.plan import LayoutParams

FLOOD_SYNS = 1_000_000
FLOOD_PPS = 20_000  # about what this machine's director takes (each SYN is answered: 2 frames)
CONN_MAX = 1 << 16
MEM_MIB = 256
CLIENT_CPS = 20
CLIENT_CHUNK_S = 5.0
MIN_CLIENT_SUCCESS = 0.9


def run_json(proc, timeout_s: float) -> dict:
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_a_spoofed_syn_flood_leaves_the_director_serving_within_its_memory(no_leftovers):
    params = LayoutParams(n_rs=2, n_clients=2, conn_max=CONN_MAX, director_mem_mib=MEM_MIB)
    with Testbed("nat", params) as tb:
        assert tb.wait_ready(10)
        plan, d1 = tb.plan, tb.net["d1"]
        flood = tb.net["c2"].popen(
            [
                sys.executable,
                "-m",
                "testbed.traffic.rawsend",
                "--iface",
                "c2-eth0",
                "--dst-mac",
                d1.intf("d1-eth0").MAC(),
                "--dst-ip",
                plan.vip,
                "--kind",
                "syn-flood",
                "--count",
                str(FLOOD_SYNS),
                "--rate-pps",
                str(FLOOD_PPS),
            ],
            text=True,
        )
        client = {"started": 0, "completed": 0, "failed": 0}
        peak_entries = peak_mem = 0
        started = time.monotonic()
        while flood.poll() is None:
            chunk = tb.net["c1"].popen(
                [
                    sys.executable,
                    "-m",
                    "testbed.traffic.loadgen",
                    "tcp-crr",
                    plan.vip,
                    "--rate-cps",
                    str(CLIENT_CPS),
                    "--duration-s",
                    str(CLIENT_CHUNK_S),
                ],
                text=True,
            )
            while chunk.poll() is None:
                stats = tb.director_request({"op": "stats"})["stats"]
                peak_entries = max(peak_entries, stats["connections"])
                peak_mem = max(peak_mem, d1.cgroup.memory_stats()["current_bytes"])
                time.sleep(0.5)
            got = run_json(chunk, 30)
            for key in client:
                client[key] += got[key]
        flood_out = run_json(flood, 30)
        memory = d1.cgroup.memory_stats()
        stats = tb.director_request({"op": "stats"})["stats"]
        director_alive = tb.procs[("d1", "director")].poll() is None

    defense = stats["defense"]
    figures = {
        "flood_sent": flood_out["sent"],
        "flood_rate_pps": flood_out["rate_pps"],
        "flood_elapsed_s": flood_out["elapsed_s"],
        "director_rx_frames": stats["frames"]["rx"],
        "director_kernel_drops": sum(p["kernel_drops"] for p in stats["ports"].values()),
        "conn_max": CONN_MAX,
        "peak_entries": peak_entries,
        "defense_drops": defense["drops"],
        "frames_dropped": stats["frames"]["dropped"],
        "client_started": client["started"],
        "client_completed": client["completed"],
        "client_success": client["completed"] / max(client["started"], 1),
        "mem_limit_mib": MEM_MIB,
        "mem_peak_mib": round(max(memory["peak_bytes"], peak_mem) / 2**20, 1),
        "director_rss_mib": round(stats["rss_kb"] / 1024, 1),
        "oom_kills": memory["oom_kills"],
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(figures, indent=2))
    if os.environ.get("LVS_TESTBED_FLOOD_REPORT"):
        with open(os.environ["LVS_TESTBED_FLOOD_REPORT"], "w") as f:
            json.dump(figures, f, indent=2)
    assert flood_out["sent"] == FLOOD_SYNS
    assert director_alive and memory["oom_kills"] == 0
    assert figures["mem_peak_mib"] < MEM_MIB
    assert peak_entries <= CONN_MAX
    assert defense["drops"].get("evicted", 0) + defense["drops"].get("table_full", 0) > 0, (
        "the flood never reached the limit: the test did not test it"
    )
    assert figures["client_success"] >= MIN_CLIENT_SUCCESS, figures
