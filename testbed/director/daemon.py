"""The director daemon: ports, the forwarding loop, timers and the control socket.

One thread, one loop: wait on the ports and the control socket, drain each port (a batch at
most), flush transmit rings, serve control requests, and run the timers (connection expiry,
the 2-second rate estimator, the table's defences, ARP refresh, route reload); with
``sync_iface``, also connection sync with the peer directors (sync.py: our updates out,
theirs in). Started inside a director host by ``lvs-testbed director run``; SIGTERM or SIGINT
stops it cleanly (the kernel bypass rules are removed, the socket too), also when it arrives
while the daemon is still opening its ports.

Nothing in the loop waits on another process: routes are re-read from /proc/net/route (a
file of this namespace, no subprocess), and a failure to read them keeps the old ones. The
subprocesses the daemon runs (``ip`` once at start, ``nft`` when the services change) have
timeouts, and a control request whose nft side fails changes nothing.
"""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.director import ipvsadm, kernel
from testbed.director.conntable import INPUT, OUTPUT, TH_ACK, TH_SYN
from testbed.director.defense import DEFAULT_CONN_MAX, Defense
from testbed.director.forwarder import Forwarder
from testbed.director.model import Director, ip_to_int
from testbed.director.neighbours import Neighbours, routes_from_proc
from testbed.director.ports import Port, RingPort, open_port
from testbed.director.sync import ConnectionSync, MulticastTransport, check_sync_id
from testbed.runtime.control import (
    ControlServer,
    check_request,
    error_reply,
    socket_path,
    write_index,
)

EXPIRE_EVERY_S = 1.0
ROUTES_EVERY_S = 5.0
MAX_SLEEP_S = 0.5
PREFILL_NET, PREFILL_MASK = 0x64400000, 0xFFC00000  # 100.64.0.0/10: no layout uses it
IP_TIMEOUT_S = 5.0
ROUTE_FILE = Path("/proc/net/route")  # this namespace's main table

CONTROL_SCHEMAS = {
    "ipvsadm": {"argv": ("list[str]", True), "stdin": ("str?", False)},
    "stats": {},
    "counters": {},
    "prefill": {"count": ("int", True)},
    "unfill": {},
    "io": {"io_mode": ("str", True), "batch": ("int", True), "wait_us": ("int", True)},
    "table": {"bits": ("int", True)},
    "states": {},
    "sysctl": {"set": ("dict[str,int]", False)},
}
"""Every control operation and its fields (runtime.control.check_request)."""


@dataclass
class DaemonConfig:
    """How the daemon runs. ``batch`` frames at most per port per wake-up; ``wait_us``: after
    a wake-up, wait this long for more frames unless a full batch is already there (the
    coalescing knob; 0 = handle frames as soon as they come). ``sync_iface``: run connection
    sync on this NIC, as master and backup at once (send updates for the connections this
    director forwards, apply its peers' updates); ``sync_id`` (0..255) marks our messages,
    and a director with sync ID 0 applies every sync ID, one with another ID only its own,
    as IPVS's sync daemon does."""

    interfaces: list[str]
    name: str = ""
    io_mode: str = "ring"
    batch: int = 64
    wait_us: int = 0
    table_bits: int = 12
    rules: str | None = None
    run_dir: Path | None = None
    kernel_bypass: bool = True
    sync_iface: str | None = None
    sync_id: int = 0
    sync_peer: str | None = None
    conn_max: int = DEFAULT_CONN_MAX
    defense: dict = field(default_factory=dict)  # Defense settings: amemthresh, drop_entry...
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.interfaces:
            raise ValueError("a director needs at least one interface (--iface)")
        if self.io_mode not in ("frame", "ring"):
            raise ValueError(f"unknown I/O mode {self.io_mode!r}: frame or ring")
        if not 1 <= self.batch <= 4096:
            raise ValueError(f"batch must be 1..4096 frames, got {self.batch}")
        if not 0 <= self.wait_us <= 1_000_000:
            raise ValueError(f"wait must be 0..1000000 us, got {self.wait_us}")
        check_sync_id(self.sync_id)
        if self.sync_iface is not None:
            name = self.sync_iface
            if not 1 <= len(name) <= 15 or "/" in name or any(c.isspace() for c in name):
                raise ValueError(
                    f"sync interface must be an interface name (1..15 characters, "
                    f"no '/' or spaces), got {name!r}"
                )
        elif self.sync_id or self.sync_peer:
            raise ValueError("a sync ID or peer needs a sync interface (--sync-iface)")
        if self.sync_peer is not None:
            ip_to_int(self.sync_peer)  # ValueError names a bad address
        Defense(self.conn_max, **self.defense)  # ValueError names a bad setting
        if not self.name:
            self.name = self.interfaces[0].split("-")[0]


def _ip_json(*args: str) -> list:
    try:
        res = subprocess.run(
            ["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=IP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"`ip -j {' '.join(args)}` did not answer in {IP_TIMEOUT_S:g} s"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"`ip -j {' '.join(args)}` failed: {exc.stderr.strip()}") from exc
    return json.loads(res.stdout or "[]")


def primary_ipv4(ifname: str) -> int:
    """The interface's first IPv4 address that is not a /32 (a VIP is usually a /32)."""
    addrs = [
        a
        for entry in _ip_json("-4", "addr", "show", "dev", ifname)
        for a in entry.get("addr_info", [])
    ]
    if not addrs:
        raise ValueError(f"interface {ifname} has no IPv4 address")
    addrs.sort(key=lambda a: a.get("prefixlen", 32) == 32)
    return int(ipaddress.IPv4Address(addrs[0]["local"]))


class DirectorDaemon:
    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        self.director = Director(cfg.table_bits, defense=Defense(cfg.conn_max, **cfg.defense))
        self.ports: list[Port] = []
        self.running = False
        self.stop_requested = False  # set by SIGTERM at any time, even before `run`
        self.route_errors = 0
        self.started_at = time.monotonic()
        self.wakeups = 0
        self.batches_full = 0
        self.control: ControlServer | None = None
        self.index_path: Path | None = None
        self.sync: ConnectionSync | None = None
        self.ports_changed = False

    # -- setup and teardown -------------------------------------------------------------
    def open(self) -> None:
        cfg = self.cfg
        run_dir = cfg.run_dir or Path(
            os.environ.get("LVS_TESTBED_RUN_DIR", f"/run/lvs-testbed/director-{os.getpid()}")
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        try:
            for name in cfg.interfaces:
                self.ports.append(open_port(name, primary_ipv4(name), cfg.io_mode))
            by_name = {p.name: p for p in self.ports}
            self.neigh = Neighbours(by_name, self._routes())
            self.forwarder = Forwarder(self.director, self.neigh)
            if cfg.sync_iface is not None:
                transport = MulticastTransport(
                    cfg.sync_iface, primary_ipv4(cfg.sync_iface), peer=cfg.sync_peer
                )
                self.sync = ConnectionSync(self.director, transport, cfg.sync_id)
                self.forwarder.sync = self.sync.sender.conn_in
            if cfg.rules:
                res = ipvsadm.run(["-R"], self.director, cfg.rules, now=time.monotonic())
                if res.rc != 0:
                    raise ValueError(f"the initial rules were refused: {res.err.strip()}")
            self.control = ControlServer(socket_path(run_dir, cfg.name))
            self.index_path = write_index(run_dir, cfg.name, os.getpid())
            self._services_changed(time.monotonic())
        except BaseException:
            self.close()
            raise
        if kernel.ip_forward_enabled():
            print(
                "warning: ip_forward=1 here: the kernel will forward NAT replies a second "
                "time (directors run with ip_forward=0)",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.cfg.kernel_bypass:
            kernel.remove()
        if self.sync is not None:
            self.sync.close()
            self.sync = None
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.index_path is not None and self.index_path.exists():
            self.index_path.unlink()
        for port in self.ports:
            port.close()
        self.ports = []

    def _routes(self):
        return routes_from_proc(ROUTE_FILE.read_text(), {p.name for p in self.ports})

    def _reload_routes(self) -> None:
        """Re-read the routes; on failure keep forwarding by the ones we have."""
        try:
            self.neigh.set_routes(self._routes())
        except (OSError, ValueError) as exc:
            self.route_errors += 1
            if self.route_errors == 1:
                print(
                    f"warning: cannot re-read the routes ({exc}); keeping the old ones",
                    file=sys.stderr,
                    flush=True,
                )

    def _services_changed(self, now: float, kernel_done: bool = False) -> None:
        self.forwarder.refresh_services()
        if self.cfg.kernel_bypass and not kernel_done:
            kernel.apply(self.director)
        # Ask for the real servers' MACs now, so the first packets need not wait.
        for svc in self.director.services():
            for dest in svc.dests:
                hop = self.neigh.hop_for(dest.addr)
                if hop is not None and hop.mac is None:
                    self.neigh.solicit(hop, now)
        for port in self.ports:
            port.flush()
        if self.sync is not None and self.director.services():
            # New services: ask the peer for its connections of them (a returning master).
            self.sync.request_resync(now)

    # -- control --------------------------------------------------------------------------
    def handle_request(self, msg: dict) -> dict:
        problem = check_request(msg, CONTROL_SCHEMAS)
        if problem is not None:
            return error_reply(f"bad control request: {problem}")
        try:
            return self._handle_request(msg)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            return error_reply(f"bad control request: {exc}")

    def _handle_request(self, msg: dict) -> dict:
        op = msg.get("op")
        now = time.monotonic()
        if op == "prefill":
            added = self.prefill(int(msg["count"]), now)
            return {"rc": 0, "out": f"{added} connections added\n", "err": ""}
        if op == "ipvsadm":
            return self._ipvsadm(msg["argv"], msg.get("stdin"), now)
        if op == "sysctl":
            return self.sysctl(msg.get("set") or {})
        if op == "stats":
            return {"rc": 0, "stats": self.stats(now)}
        if op == "counters":
            return {"rc": 0, "counters": self.counters()}
        if op == "io":
            self.set_io(str(msg["io_mode"]), int(msg["batch"]), int(msg["wait_us"]))
            return {
                "rc": 0,
                "out": f"{self.cfg.io_mode} I/O, batch {self.cfg.batch}, "
                f"wait {self.cfg.wait_us} us\n",
                "err": "",
            }
        if op == "table":
            table = self.director.conns
            if "bits" in msg:
                table.rehash(int(msg["bits"]))
            if msg.get("park") is True:
                table.park(lambda c: c.caddr & PREFILL_MASK != PREFILL_NET)
            elif msg.get("park") is False:
                table.unpark()
            return {"rc": 0, "out": f"{table.size} buckets, {len(table)} entries\n", "err": ""}
        if op == "states":
            return {
                "rc": 0,
                "states": self.director.conns.state_counts(),
                "timeouts": self.director.conns.timeouts_by_state(),
            }
        if op == "unfill":
            return {"rc": 0, "out": f"{self.unfill()} connections removed\n", "err": ""}
        return {"rc": 2, "out": "", "err": f"unknown control operation {op!r}\n"}

    def _ipvsadm(self, argv: list[str], stdin: str | None, now: float) -> dict:
        """Run ipvsadm. The kernel side (the nft bypass set) changes first, from a copy of
        the configuration the command is tried on: if nft fails, nothing has changed."""
        if self.cfg.kernel_bypass:
            twin = self.director.config_copy()
            ipvsadm.run(argv, twin, stdin, now=now)
            if kernel.ruleset(twin) != kernel.ruleset(self.director):
                try:
                    kernel.apply(twin)
                except RuntimeError as exc:
                    return error_reply(f"{exc}; nothing was changed", rc=1)
        before = self.director.snapshot()
        res = ipvsadm.run(argv, self.director, stdin, now=now)
        if self.director.snapshot() != before:
            self._services_changed(now, kernel_done=True)
        return {"rc": res.rc, "out": res.out, "err": res.err}

    def sysctl(self, values: dict[str, int]) -> dict:
        """Set the table's limit and defences (all or nothing), then show them all as
        ``sysctl net.ipv4.vs`` would."""
        defense = self.director.defense
        trial = Defense(**{k: v for k, v in defense.values().items()})
        for name, value in values.items():
            trial.set(name, value)  # ValueError names the bad one; nothing set yet
        for name, value in values.items():
            defense.set(name, value)
        out = "".join(f"net.ipv4.vs.{k} = {v}\n" for k, v in defense.values().items())
        return {"rc": 0, "out": out, "err": ""}

    def set_io(self, io_mode: str, batch: int, wait_us: int) -> None:
        """Switch the packet I/O in place (the coalescing knob): reopen every port in
        ``io_mode`` and take the new batch and wait from the next wake-up. Experiments
        alternate configurations on one director this way instead of rebuilding layouts."""
        new = dataclasses.replace(self.cfg, io_mode=io_mode, batch=batch, wait_us=wait_us)
        if new.io_mode != self.cfg.io_mode:
            opened = []
            try:
                for port in self.ports:
                    opened.append(open_port(port.name, port.ip, new.io_mode))
            except BaseException:
                for port in opened:
                    port.close()
                raise
            by_name = {p.name: p for p in opened}
            self.neigh.ports.update(by_name)
            for hop in self.neigh.by_ip.values():
                hop.port = by_name[hop.port.name]
            old, self.ports = self.ports, opened
            for port in old:
                port.flush()
                port.close()
        self.cfg = new
        self.ports_changed = True

    def unfill(self) -> int:
        """Remove the made-up connections `prefill` added (their clients are in 100.64/10)."""
        table = self.director.conns
        made_up = [c for c in table if c.caddr & PREFILL_MASK == PREFILL_NET]
        for conn in made_up:
            table.remove(conn)
        return len(made_up)

    def prefill(self, count: int, now: float) -> int:
        """Fill the table with ``count`` ESTABLISHED TCP connections from made-up clients
        (100.64.0.0/10, which no layout uses) to the first TCP service, scheduled as real
        ones would be: the connection-table experiment's load, as the seed's ~62,000 entries."""
        if not 0 <= count <= 5_000_000:
            raise ValueError(f"prefill count must be 0..5000000, got {count}")
        room = self.director.defense.conn_max - len(self.director.conns)
        if count > room:
            raise ValueError(
                f"prefill of {count} entries does not fit under the table limit (conn_max "
                f"{self.director.defense.conn_max}, {len(self.director.conns)} in use): start "
                "the director with a larger --conn-max"
            )
        svc = next((s for s in self.director.services() if s.proto == 6 and not s.fwmark), None)
        if svc is None:
            raise ValueError("prefill needs a TCP service")
        added = 0
        for i in range(count):
            caddr = PREFILL_NET | (i >> 14)  # 100.64.x.y, 2^14 ports per address
            cport = 1024 + (i & 0x3FFF)
            conn = self.director.schedule_new(svc, 6, caddr, cport, svc.addr, svc.port, now)
            if conn is None:
                break
            self.director.on_tcp_packet(conn, INPUT, TH_SYN, now)
            self.director.on_tcp_packet(conn, OUTPUT, TH_SYN | TH_ACK, now)
            self.director.on_tcp_packet(conn, INPUT, TH_ACK, now)
            added += 1
        # The made-up entries stay for minutes: keep the cyclic collector from walking them
        # all during the measurement that follows (a collection at a few percent of a core
        # stalls the loop for a second). Refcounting still frees them when they expire.
        gc.collect()
        gc.freeze()
        return added

    def stats(self, now: float) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "name": self.cfg.name,
            "io_mode": self.cfg.io_mode,
            "batch": self.cfg.batch,
            "wait_us": self.cfg.wait_us,
            "uptime_s": now - self.started_at,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "max_rss_kb": usage.ru_maxrss,
            "wakeups": self.wakeups,
            "batches_full": self.batches_full,
            "frames": self.forwarder.counters(),
            "ipvs_drops": dict(self.director.drops),
            "ipvs": self._ipvs_totals(),
            "connections": len(self.director.conns),
            "table": self.director.conns.chain_stats(),
            "defense": self.director.defense.status(len(self.director.conns)),
            "rss_kb": _rss_kb(),
            "route_errors": self.route_errors,
            "sync": self.sync.counters() if self.sync is not None else None,
            "ports": {
                p.name: {
                    "tx_frames": p.tx_frames,
                    "tx_dropped": p.tx_dropped,
                    "kernel_drops": p.kernel_drops(),
                    "ring_resyncs": getattr(p, "resyncs", 0),
                }
                for p in self.ports
            },
        }

    def counters(self) -> dict:
        """What a measurement reads around a window, and nothing more (`stats` walks the
        whole table for its chain figures: tens of milliseconds at a director's quota, which
        would land inside the window): the IPVS totals, the frames the sockets dropped, then
        the director's own clock and CPU time, read last so that the work of this request
        falls after them."""
        totals = self._ipvs_totals()
        drops = sum(p.kernel_drops() for p in self.ports)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "inpkts": totals["inpkts"],
            "outpkts": totals["outpkts"],
            "socket_drops": drops,
            "rx": self.forwarder.rx,
            "t_s": time.monotonic() - self.started_at,
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }

    def _ipvs_totals(self) -> dict:
        """The totals `ipvsadm -L -n --stats` sums over every service, at this instant."""
        self.director.refresh_stats()
        s = self.director.stats
        return {
            "conns": s.conns,
            "inpkts": s.inpkts,
            "outpkts": s.outpkts,
            "inbytes": s.inbytes,
            "outbytes": s.outbytes,
        }

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        self.running = not self.stop_requested
        self.next_expire = self.next_routes = time.monotonic()
        while self.running:
            self.ports_changed = False
            self._run_until_ports_change()

    def _run_until_ports_change(self) -> None:
        """The loop, with everything it reads per frame in locals; a control request that
        reopens the ports (`set_io`) ends it, and `run` starts it again on the new ports."""
        cfg = self.cfg
        poller = select.poll()
        port_by_fd = {port.fileno(): port for port in self.ports}
        for port in self.ports:
            poller.register(port.fileno(), select.POLLIN)
        poller.register(self.control.fileno(), select.POLLIN)
        control_fd = self.control.fileno()
        sync = self.sync
        sync_fd = -1
        if sync is not None:
            sync_fd = sync.fileno()
            poller.register(sync_fd, select.POLLIN)
        handle = self.forwarder.handle
        batch, wait_s = cfg.batch, cfg.wait_us / 1e6
        rings = all(isinstance(p, RingPort) for p in self.ports)
        next_expire, next_routes = self.next_expire, self.next_routes
        while self.running and not self.ports_changed:
            now = time.monotonic()
            wake_at = next_expire
            if sync is not None:
                deadline = sync.deadline_s()
                if deadline is not None and deadline < wake_at:
                    wake_at = deadline  # a partly filled sync message is due
            timeout_ms = max(0, min(wake_at - now, MAX_SLEEP_S)) * 1000
            # Ring ports may still hold frames from the last wake-up: do not sleep then.
            if rings and any(p.ready_frames(1) for p in self.ports):
                timeout_ms = 0
            try:
                events = poller.poll(timeout_ms)
            except InterruptedError:
                continue
            self.wakeups += 1
            if (
                wait_s
                and timeout_ms
                and events
                and not (rings and all(p.ready_frames(batch) for p in self.ports))
            ):
                time.sleep(wait_s)  # let frames accumulate, as interrupt coalescing does
            now = time.monotonic()
            ready_fds = {fd for fd, _ in events}
            for fd, ev in events:
                if ev & select.POLLERR and fd in port_by_fd:
                    port_by_fd[fd].clear_error()  # a link went down: do not spin on it
            for port in self.ports:
                got = port.drain(handle, batch, now)
                if got == batch:
                    self.batches_full += 1
                elif not got and rings and port.fileno() in ready_fds and port.resync():
                    port.drain(handle, batch, now)
            for port in self.ports:
                port.flush()
            if control_fd in ready_fds:
                self.control.serve_one(self.handle_request)
            if sync is not None:
                if sync_fd in ready_fds:
                    sync.on_readable(now)
                sync.tick(now)
            if now >= next_expire:
                self.director.expire(now)
                self.director.tick(now)
                self.neigh.refresh(now)
                next_expire = now + EXPIRE_EVERY_S
                if now >= next_routes:
                    self._reload_routes()
                    next_routes = now + ROUTES_EVERY_S
                for port in self.ports:
                    port.flush()
        self.next_expire, self.next_routes = next_expire, next_routes

    def stop(self, *_args) -> None:
        self.stop_requested = True
        self.running = False


def _rss_kb() -> int:
    """This process's resident memory now (VmRSS), KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_daemon(cfg: DaemonConfig) -> None:
    """Open, run until SIGTERM/SIGINT, close."""
    daemon = DirectorDaemon(cfg)
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    daemon.open()
    try:
        sync = (
            f"; connection sync on {cfg.sync_iface} (sync ID {cfg.sync_id})"
            if cfg.sync_iface
            else ""
        )
        print(
            f"director {cfg.name}: {', '.join(cfg.interfaces)} ({cfg.io_mode} I/O, batch "
            f"{cfg.batch}, "
            f"wait {cfg.wait_us} us); control socket {daemon.control.path}{sync}",
            flush=True,
        )
        daemon.run()
    finally:
        daemon.close()
