"""One iperf3 test per process, through iperf3-python (libiperf).

libiperf keeps global state, so each test runs in its own process (inside a Mininet host):
``python -m testbed.traffic.iperf server --port 5201`` serves exactly one test;
``python -m testbed.traffic.iperf client HOST ...`` runs one and prints a JSON summary with
rates from iperf3's own measured elapsed time. `summarize` is pure, so it is unit-tested.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def summarize(result: dict) -> dict:
    """The figures we use from an iperf3 JSON result (client side)."""
    if "error" in result:
        return {"error": result["error"]}
    end = result["end"]
    proto = result["start"]["test_start"]["protocol"]
    if proto == "TCP":
        sent, recv = end["sum_sent"], end["sum_received"]
        return {
            "protocol": "tcp",
            "seconds": recv["seconds"],
            "sent_bps": sent["bits_per_second"],
            "received_bps": recv["bits_per_second"],
            "retransmits": sent.get("retransmits"),
        }
    total = end["sum"]
    packets = total.get("packets", 0)
    lost = total.get("lost_packets", 0)
    seconds = total["seconds"]
    return {
        "protocol": "udp",
        "seconds": seconds,
        "sent_bps": total["bits_per_second"],
        "packets": packets,
        "lost_packets": lost,
        "lost_percent": total.get("lost_percent"),
        "sent_pps": packets / seconds if seconds else 0.0,
        "received_pps": (packets - lost) / seconds if seconds else 0.0,
        "jitter_ms": total.get("jitter_ms"),
    }


def run_client(
    host: str,
    port: int = 5201,
    duration_s: int = 3,
    udp: bool = False,
    bandwidth_bps: int = 0,
    blksize: int = 0,
    reverse: bool = False,
) -> dict:
    import iperf3

    client = iperf3.Client()
    client.server_hostname = host
    client.port = port
    client.duration = duration_s
    client.json_output = True
    client.reverse = reverse
    if udp:
        client.protocol = "udp"
        client.bandwidth = bandwidth_bps  # 0 = as fast as possible
    if blksize:
        client.blksize = blksize
    result = client.run()
    return summarize(result.json) if result is not None else {"error": "no result from libiperf"}


def run_server(port: int = 5201, bind: str | None = None) -> dict:
    import iperf3

    server = iperf3.Server()
    server.port = port
    if bind:
        # In DR the real server must answer from the VIP: bind to it, not to 0.0.0.0.
        server.bind_address = bind
    server.json_output = True
    result = server.run()
    return {"error": result.error} if result is not None and result.error else {"ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.traffic.iperf")
    sub = parser.add_subparsers(dest="role", required=True)
    srv = sub.add_parser("server", help="serve one test, then exit")
    srv.add_argument("--port", type=int, default=5201)
    srv.add_argument("--bind", default=None, help="listen on this address only")
    cli = sub.add_parser("client", help="run one test and print a JSON summary")
    cli.add_argument("host")
    cli.add_argument("--port", type=int, default=5201)
    cli.add_argument("--duration-s", type=int, default=3)
    cli.add_argument("--udp", action="store_true")
    cli.add_argument("--bandwidth-bps", type=int, default=0)
    cli.add_argument("--blksize", type=int, default=0, help="bytes per write (UDP: payload size)")
    cli.add_argument("--reverse", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "server":
        out = run_server(args.port, args.bind)
    else:
        out = run_client(
            args.host,
            args.port,
            args.duration_s,
            args.udp,
            args.bandwidth_bps,
            args.blksize,
            args.reverse,
        )
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())


def wait_listening(host, port: int, proto: str = "tcp", timeout_s: float = 5.0) -> bool:
    """Wait until something listens on ``port`` inside Mininet ``host``."""
    import time

    flag = "-ltn" if proto == "tcp" else "-lun"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if f":{port} " in host.cmd(f"ss -H {flag} 'sport = :{port}'"):
            return True
        time.sleep(0.05)
    return False


def iperf_between(
    server, client, dst_ip: str, port: int = 5201, server_bind: str | None = None, **client_opts
) -> dict:
    """One iperf3 test from Mininet host ``client`` to ``server`` (reached at ``dst_ip``),
    each side in its own process inside its host. Returns `summarize`'s figures."""
    argv = [sys.executable, "-m", "testbed.traffic.iperf", "server", "--port", str(port)]
    if server_bind:
        argv += ["--bind", server_bind]
    srv = server.popen(argv)
    try:
        if not wait_listening(server, port):
            return {"error": f"iperf3 server on {server.name} did not start"}
        argv = [
            sys.executable,
            "-m",
            "testbed.traffic.iperf",
            "client",
            dst_ip,
            "--port",
            str(port),
        ]
        for key, value in client_opts.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value not in (None, False):
                argv += [flag, str(value)]
        proc = client.popen(argv)
        limit_s = int(client_opts.get("duration_s") or 10) + 20
        try:
            out, err = proc.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"error": f"iperf3 client on {client.name} did not finish within {limit_s} s"}
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            return {"error": (err or out).decode(errors="replace").strip() or "no output"}
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait()
