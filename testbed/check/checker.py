"""keepalived's LVS side: virtual_server blocks on the director, kept up to date by health checks.

What it is for: at start, every ``virtual_server`` of the configuration is set up on the
local director (``lvsconfig`` turns it into ipvsadm argv lists, sent over the director's
control socket; a ``virtual_server group`` is one service per member of its group). Then
each real server's checkers (``probes``: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK,
UDP_CHECK, PING_CHECK, DNS_CHECK, SMTP_CHECK) run and decide what the director holds, as
keepalived's check/ipwrapper.c does:

* a real server is alive while all its checkers are up; a failed one stops getting new
  connections: with ``inhibit_on_failure`` its weight goes to 0 (its connections drain),
  otherwise it is removed; it comes back with its weight when every checker is up again.
  ``notify_up``/``notify_down`` run on each change;
* MISC_CHECK with ``misc_dynamic``: an exit status of 2..255 is up with the real server's
  weight changed by (status - 2 - configured weight), i.e. weight status - 2 with one such
  checker;
* **quorum**: the sum of the alive real servers' weights. Below ``quorum - hysteresis``
  (when up) the virtual server loses quorum: ``quorum_down`` runs and, with a
  ``sorry_server``, the alive real servers leave the pool and the sorry server enters it;
  at ``quorum + hysteresis`` (when down) it gains quorum: ``quorum_up`` runs and the sorry
  server gives way to the real servers. ``quorum`` defaults to 1, so a sorry server comes in
  when every real server is down and leaves when one returns. ``sorry_server_inhibit``
  keeps the sorry server in the pool with weight 0 while it is not needed;
* ``alpha``: the real servers start down (checkers failed) until a check passes; without
  it they start alive and one failure of the first check is enough to take one down;
* ``omega``: at stop, ``notify_down`` of each alive real server and ``quorum_down`` run.

Timing (check_tcp.c and the other epilogs): a checker's first check runs ``BOOTSTRAP_DELAY``
(1 s) plus a random part of ``warmup`` (default: its delay_loop) after start; a check that
fails while the checker is up is retried ``retry`` times, ``delay_before_retry`` apart,
before the checker goes down; a checker that is down is tried once per ``delay_loop`` and
one success brings it back. Timings are the checker's, else its real server's, else its
virtual server's, else keepalived's default for that checker (`check_model.check_timing`).

Checks run in a small thread pool, so a dead real server (a connect that times out) never
stalls anything else; results are collected by :meth:`HealthChecker.poll`, which a
:class:`CheckerThread` drives apart from the VRRP loop. ``poll`` takes the time as an
argument, so the state logic is tested with a fake clock against real local servers.
Scripts (MISC_CHECK, notify, quorum) go through a `ScriptHost`, which prepares them once
(user, path security: `testbed.runtime.scripts`) and runs them.

What it is not: FILE_CHECK, BFD_CHECK (the parser warns about them), ``ha_suspend`` or
config reload.
"""

from __future__ import annotations

import logging
import os
import random
import select
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from testbed.check import lvsconfig, probes
from testbed.check.lvsconfig import Dest, Service
from testbed.check.probes import CheckResult, Target
from testbed.keepalived_conf.model import (
    MAX_WEIGHT,
    Checker,
    CheckTiming,
    Config,
    DnsCheck,
    HttpGet,
    MiscCheck,
    PingCheck,
    RealServer,
    Script,
    SmtpCheck,
    SslGet,
    UdpCheck,
    VirtualServer,
    check_timing,
    describe,
    rs_inhibit,
    rs_port,
)
from testbed.runtime import ipvs, scripts
from testbed.runtime.control import ControlError, find_director, request

LOG = logging.getLogger("testbed.check.checker")
BOOTSTRAP_DELAY_S = 1.0  # keepalived's BOOTSTRAP_DELAY: the first check, after start
RESYNC_S = 1.0  # how often to retry ipvsadm commands the director refused or never got
DIRECTOR_TIMEOUT_S = 2.0
DEFAULT_WORKERS = 8
SCRIPT_POLL_S = 0.1  # how often running notify scripts are reaped
STOP_SCRIPTS_WAIT_S = 1.0  # keepalived gives scripts run at shutdown TIMER_HZ


class IpvsResult(NamedTuple):
    rc: int
    out: str
    err: str


IpvsRunner = Callable[[list[str]], IpvsResult]


class CheckerSetupError(ValueError):
    """A virtual_server the checker cannot run (e.g. no port to connect to)."""


def director_ipvsadm(director: str | None = None) -> IpvsRunner:
    """ipvsadm on the director ``director`` (default: the one in this network namespace)."""

    def run(argv: list[str]) -> IpvsResult:
        try:
            reply = request(
                find_director(director),
                {"op": "ipvsadm", "argv": argv, "stdin": None},
                timeout_s=DIRECTOR_TIMEOUT_S,
            )
        except (ControlError, OSError) as exc:
            return IpvsResult(-1, "", str(exc))
        return IpvsResult(int(reply.get("rc", 1)), reply.get("out", ""), reply.get("err", ""))

    return run


def kernel_ipvsadm() -> IpvsRunner:
    """The real ipvsadm on this network namespace's kernel IPVS (``--director ipvs``), as
    keepalived's checker drives it through libipvs."""

    def run(argv: list[str]) -> IpvsResult:
        return IpvsResult(*ipvs.run_ipvsadm(argv, timeout_s=DIRECTOR_TIMEOUT_S))

    return run


# --------------------------------------------------------------------------- scripts


class ScriptHost(Protocol):
    """How the checker prepares, starts and runs scripts (fakes in the unit tests)."""

    def prepare(self, script: Script) -> scripts.Preparation: ...

    def start(self, prepared: scripts.PreparedScript) -> scripts.Child: ...

    def run(self, prepared: scripts.PreparedScript, timeout_s: float) -> tuple[int | None, str]: ...


class _Started:
    def __init__(self, proc) -> None:
        self.proc = proc

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        scripts.kill_group(self.proc, grace_s=0.1)


class LinuxScripts:
    """`ScriptHost` on this machine, with ``global_defs``'s script user and security."""

    def __init__(self, policy: scripts.ScriptPolicy) -> None:
        self.policy = policy
        self.system = scripts.LinuxScriptSystem()

    def prepare(self, script: Script) -> scripts.Preparation:
        return scripts.prepare(script.command, script.user, script.group, self.policy, self.system)

    def start(self, prepared: scripts.PreparedScript) -> scripts.Child:
        return _Started(scripts.spawn(prepared, quiet=False))

    def run(self, prepared: scripts.PreparedScript, timeout_s: float) -> tuple[int | None, str]:
        return scripts.run(prepared, timeout_s)


def check_scripts(config: Config) -> list[tuple[Script, str]]:
    """Every script of the LVS side, with what it is for (for warnings)."""
    out: list[tuple[Script, str]] = []
    for vs in config.virtual_servers:
        for keyword in ("quorum_up", "quorum_down"):
            if (script := getattr(vs, keyword)) is not None:
                out.append((script, f"{keyword} of {describe(vs)}"))
        for rs in vs.real_servers:
            where = lvsconfig.rs_dest(vs, rs).describe()
            for keyword in ("notify_up", "notify_down"):
                if (script := getattr(rs, keyword)) is not None:
                    out.append((script, f"{keyword} of {where}"))
            for checker in rs.checkers:
                if isinstance(checker, MiscCheck) and checker.script is not None:
                    out.append((checker.script, f"MISC_CHECK of {where}"))
    return out


def policy_of(config: Config) -> scripts.ScriptPolicy:
    g = config.global_defs
    return scripts.ScriptPolicy(g.script_user, g.script_group, g.enable_script_security)


# ------------------------------------------------------------------------- state


class _Unknown:
    """What the director holds for a destination before we have set it once."""

    def __repr__(self) -> str:
        return "unknown"


UNKNOWN = _Unknown()


@dataclass
class _Check:
    """One checker of one real server, with keepalived's retry counter."""

    checker: Checker
    target: Target | None  # None: MISC_CHECK
    timing: CheckTiming
    run: Callable[[], CheckResult]
    is_up: bool = True
    has_run: bool = False
    retry_it: int = 0
    next_s: float = 0.0
    started_s: float = 0.0
    future: Future | None = None
    detail: str = "not run yet"
    cur_weight: int = 0  # MISC_CHECK misc_dynamic: this checker's change to the weight
    last_exit: int | None = None

    @property
    def kind(self) -> str:
        return self.checker.KIND


@dataclass
class _Server:
    rs: RealServer
    dest: Dest
    checks: list[_Check]
    inhibit: bool
    notify_up: scripts.PreparedScript | None = None
    notify_down: scripts.PreparedScript | None = None
    alive: bool = True

    @property
    def effective_weight(self) -> int:
        return self.rs.weight + sum(c.cur_weight for c in self.checks)

    @property
    def real_weight(self) -> int:
        return max(0, min(MAX_WEIGHT, self.effective_weight))


@dataclass
class _Pool:
    """One virtual_server: its director services, real servers, sorry server and quorum."""

    vs: VirtualServer
    services: list[Service]
    servers: list[_Server]
    sorry: Dest | None = None
    quorum_up: bool = True
    sorry_active: bool = False
    on_quorum_up: scripts.PreparedScript | None = None
    on_quorum_down: scripts.PreparedScript | None = None
    applied_services: set[Service] = field(default_factory=set)
    applied: dict[tuple[Service, str], int | None | _Unknown] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return describe(self.vs)

    def weight_sum(self) -> int:
        return sum(s.real_weight for s in self.servers if s.alive)

    def desired(self) -> dict[str, tuple[Dest, int | None]]:
        """Destination -> (dest, weight in the director; None: not there)."""
        want: dict[str, tuple[Dest, int | None]] = {}
        if self.sorry is not None and self.vs.sorry_server is not None:
            sorry = self.vs.sorry_server
            if self.sorry_active:
                want[self.sorry.where] = (self.sorry, sorry.weight)
            elif sorry.inhibit:
                want[self.sorry.where] = (self.sorry, 0)
            else:
                want[self.sorry.where] = (self.sorry, None)
        for srv in self.servers:
            if srv.alive and not self.sorry_active:
                weight: int | None = srv.real_weight
            else:
                weight = 0 if srv.inhibit else None
            if srv.dest.where in want and self.sorry_active:
                continue  # keepalived: a sorry server that is also a real server (duplicate)
            want[srv.dest.where] = (srv.dest, weight)
        return want


def _target(vs: VirtualServer, rs: RealServer, checker: Checker) -> Target | None:
    if isinstance(checker, MiscCheck):
        return None
    port = checker.connect_port if checker.connect_port is not None else rs_port(vs, rs)
    if isinstance(checker, PingCheck):
        port = port or 0
    elif not port:
        raise CheckerSetupError(
            f"virtual_server {describe(vs)}: real_server {rs.address} has no port to check "
            f"with {checker.KIND}; give connect_port"
        )
    return Target(
        str(checker.connect_ip or rs.address),
        port,
        checker.bindto,
        checker.bind_port,
        checker.bind_if,
        checker.fwmark,
    )


def validate(config: Config) -> None:
    """Raises CheckerSetupError for a virtual_server the checker cannot run."""
    for vs in config.virtual_servers:
        for rs in vs.real_servers:
            for checker in rs.checkers:
                _target(vs, rs, checker)


class HealthChecker:
    """The checker's state and decisions; :meth:`poll` is its only clock-driven entry point.

    One thread calls start/poll/stop (the checks run in the pool). :meth:`status` may be
    called from any thread: it returns the picture taken at the end of the last poll, so a
    slow director never makes a status request wait. ``warnings`` says which scripts were
    disabled or are unsafe.
    """

    def __init__(
        self,
        config: Config,
        ipvsadm: IpvsRunner,
        *,
        workers: int = DEFAULT_WORKERS,
        release_on_stop: bool = True,
        script_host: ScriptHost | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._ipvsadm = ipvsadm
        self._release_on_stop = release_on_stop
        self._scripts = script_host or LinuxScripts(policy_of(config))
        self._random = random_fraction
        self._config = config
        self.warnings: list[str] = []
        self._tls: ssl.SSLContext | None = None
        self._pools = [self._pool(vs) for vs in config.virtual_servers]
        self._pool_exec = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()  # no probe thread writes to the pipe once closed
        self._wake_open = True
        self._next_sync_s = 0.0
        self._globals_applied = False
        self._children = scripts.RunningScripts(LOG)
        self._snapshot: list[dict] = []
        self._take_snapshot()

    # ----- building

    def _prepare(self, script: Script | None, what: str) -> scripts.PreparedScript | None:
        if script is None:
            return None
        outcome = self._scripts.prepare(script)
        for message in outcome.warnings:
            self.warnings.append(f"{what}: {message}")
        return outcome.script

    def _pool(self, vs: VirtualServer) -> _Pool:
        servers = []
        for rs in vs.real_servers:
            dest = lvsconfig.rs_dest(vs, rs)
            checks = []
            for checker in rs.checkers:
                check = self._check(vs, rs, checker)
                if check is not None:
                    checks.append(check)
            servers.append(
                _Server(
                    rs,
                    dest,
                    checks,
                    rs_inhibit(vs, rs),
                    self._prepare(rs.notify_up, f"notify_up of {dest.describe()}"),
                    self._prepare(rs.notify_down, f"notify_down of {dest.describe()}"),
                    alive=all(c.is_up for c in checks),
                )
            )
        pool = _Pool(
            vs,
            lvsconfig.services(vs, self._config),
            servers,
            lvsconfig.sorry_dest(vs, vs.sorry_server) if vs.sorry_server else None,
            on_quorum_up=self._prepare(vs.quorum_up, f"quorum_up of {describe(vs)}"),
            on_quorum_down=self._prepare(vs.quorum_down, f"quorum_down of {describe(vs)}"),
        )
        # keepalived's set_quorum_states(): up when the alive weight reaches quorum+hysteresis.
        pool.quorum_up = pool.weight_sum() >= vs.quorum + vs.hysteresis
        return pool

    def _check(self, vs: VirtualServer, rs: RealServer, checker: Checker) -> _Check | None:
        timing = check_timing(vs, rs, checker)
        target = _target(vs, rs, checker)
        timeout_s = timing.connect_timeout_s
        run: Callable[[], CheckResult]
        if isinstance(checker, MiscCheck):
            where = f"MISC_CHECK of {lvsconfig.rs_dest(vs, rs).describe()}"
            prepared = self._prepare(checker.script, where)
            if prepared is None:
                self.warnings.append(f"{where} disabled: its script cannot run")
                return None
            misc_timeout_s = checker.timeout_s or vs.delay_loop_s
            dynamic = checker.dynamic

            def run() -> CheckResult:
                status, what = self._scripts.run(prepared, misc_timeout_s)
                ok = status == 0 or (dynamic and status is not None and 2 <= status <= 255)
                return CheckResult(ok, f"misc check {prepared.command!r} {what}", status)

        else:
            assert target is not None
            run = self._probe(vs, rs, checker, target, timeout_s)
        check = _Check(checker, target, timing, run)
        if timing.alpha:
            check.is_up = False
        # "For non alpha mode, one failure is enough initially" (check_data.c)
        check.retry_it = timing.retry
        return check

    def _probe(
        self, vs: VirtualServer, rs: RealServer, checker: Checker, target: Target, timeout_s: float
    ) -> Callable[[], CheckResult]:
        if isinstance(checker, HttpGet):
            tls = None
            if isinstance(checker, SslGet):
                if self._tls is None:
                    self._tls = probes.ssl_context(self._config.ssl)
                tls = self._tls
            vhost = rs.virtualhost or vs.virtualhost
            return lambda: probes.http_get(target, checker, timeout_s, virtualhost=vhost, tls=tls)
        if isinstance(checker, UdpCheck):
            return lambda: probes.udp_check(target, checker, timeout_s)
        if isinstance(checker, PingCheck):
            return lambda: probes.ping_check(target, timeout_s)
        if isinstance(checker, DnsCheck):
            return lambda: probes.dns_check(target, checker, timeout_s)
        if isinstance(checker, SmtpCheck):
            return lambda: probes.smtp_check(target, checker, timeout_s)
        return lambda: probes.tcp_check(target, timeout_s)

    def fileno(self) -> int:
        """Readable when a check has finished: poll() then has a result to take."""
        return self._wake_r

    def _all_checks(self):
        for pool in self._pools:
            for srv in pool.servers:
                for check in srv.checks:
                    yield pool, srv, check

    @property
    def in_flight(self) -> int:
        """Checks running in the pool now."""
        return sum(c.future is not None for _, _, c in self._all_checks())

    # ----- lifecycle

    def start(self, now: float) -> None:
        """Set every service up as keepalived's init_services() does; the first checks after
        the bootstrap delay and a random part of the warmup."""
        for _, _, check in self._all_checks():
            check.next_s = now + BOOTSTRAP_DELAY_S + self._random() * check.timing.warmup_s
        for pool in self._pools:
            self._update_quorum(pool, init=True)
        self._reconcile(now)
        self._take_snapshot()

    def poll(self, now: float) -> float | None:
        """Take finished checks, start due ones, push changes; the next deadline (None: idle)."""
        self._drain_wake()
        for pool, srv, check in self._all_checks():
            if check.future is not None and check.future.done():
                self._finish(pool, srv, check, check.future, now)
            if check.future is None and check.next_s <= now:
                check.started_s = now
                check.future = self._pool_exec.submit(check.run)
                check.future.add_done_callback(self._wake)
        self._children.reap()
        self._reconcile(now)
        self._take_snapshot()
        return self._next_deadline(now)

    def stop(self) -> None:
        """Stop checking (omega: the down notifies first); remove the services unless told
        to leave them (keepalived's -I)."""
        self._pool_exec.shutdown(wait=False, cancel_futures=True)  # a probe may run out
        for pool in self._pools:
            if pool.vs.omega:
                for srv in pool.servers:
                    if srv.alive:
                        self._notify(srv.notify_down, f"notify_down of {srv.dest.describe()}")
                if pool.quorum_up:
                    self._notify(pool.on_quorum_down, f"quorum_down of {pool.name}")
        if self._release_on_stop:
            for pool in self._pools:
                for service in sorted(pool.applied_services):
                    self._run(lvsconfig.delete_service_argv(service))
                    LOG.info("Removing service %s from the director", pool.name)
                pool.applied_services.clear()
        self._children.wait(STOP_SCRIPTS_WAIT_S)
        with self._wake_lock:
            self._wake_open = False
            os.close(self._wake_r)
            os.close(self._wake_w)

    # ----- checks

    def _wake(self, _future: Future) -> None:
        with self._wake_lock:
            if not self._wake_open:
                return
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # a full pipe wakes the reader anyway

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _finish(self, pool: _Pool, srv: _Server, check: _Check, future: Future, now: float) -> None:
        """keepalived's checker epilogs: retries while up, state change, next run."""
        check.future = None
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a probe bug must not stop the checker
            result = CheckResult(False, f"check raised {exc!r}")
        check.detail = result.detail
        timing = check.timing
        where = f"{check.kind} of {srv.dest.describe()}"
        if result.ok and isinstance(check.checker, MiscCheck):
            self._misc_weight(pool, srv, check, result.exit_status or 0)
        if result.ok or ((check.is_up or not check.has_run) and check.retry_it >= timing.retry):
            delay_s = timing.delay_loop_s
            if result.ok and (not check.is_up or not check.has_run):
                LOG.info("%s: %s", where, result.detail)
            elif not result.ok and (check.is_up or not check.has_run):
                retries = f" after {timing.retry} retries" if check.has_run and timing.retry else ""
                LOG.info("%s failed%s: %s", where, retries, result.detail)
            check.retry_it = 0
            if not result.ok:
                self._misc_weight(pool, srv, check, None)
            self._set_check_state(pool, srv, check, result.ok)
        elif check.is_up:
            delay_s = timing.delay_before_retry_s
            check.retry_it += 1
            LOG.info("%s: %s; retry %d of %d", where, result.detail, check.retry_it, timing.retry)
        else:
            delay_s = timing.delay_loop_s
        check.has_run = True
        # MISC_CHECK is scheduled from when it started (keepalived's last_ran), the others
        # from when they ended.
        since = check.started_s if isinstance(check.checker, MiscCheck) else now
        check.next_s = max(now, since + delay_s)

    def _misc_weight(self, pool: _Pool, srv: _Server, check: _Check, status: int | None) -> None:
        """misc_dynamic: exit status 2..255 sets this checker's share of the weight; a
        failure (``status`` None) takes it back (check_misc.c)."""
        checker = check.checker
        if not isinstance(checker, MiscCheck) or not checker.dynamic:
            return
        before = srv.real_weight
        if status is None:
            check.cur_weight = 0
            check.last_exit = None  # the next success sets its weight again
        elif status != check.last_exit:
            check.cur_weight = status - 2 - srv.rs.weight if status else 0
            check.last_exit = status
        if srv.real_weight != before:
            LOG.info(
                "Changing weight from %d to %d for %sactive service %s of VS %s",
                before,
                srv.real_weight,
                "" if srv.alive else "in",
                srv.dest.describe(),
                pool.name,
            )
            self._update_quorum(pool, init=False)

    def _set_check_state(self, pool: _Pool, srv: _Server, check: _Check, up: bool) -> None:
        """keepalived's update_svr_checker_state() and perform_svr_state()."""
        if check.is_up == up:
            if not check.has_run and (check.timing.alpha or not up):
                self._rs_notify(srv)
            return
        check.is_up = up
        alive = all(c.is_up for c in srv.checks)
        if alive == srv.alive:
            return
        srv.alive = alive
        rs_name = srv.dest.describe()
        verb = (
            ("Enabling" if alive else "Disabling")
            if srv.inhibit
            else ("Adding" if alive else "Removing")
        )
        preposition = "of" if srv.inhibit else ("to" if alive else "from")
        LOG.info("%s service %s %s VS %s", verb, rs_name, preposition, pool.name)
        self._rs_notify(srv)
        self._update_quorum(pool, init=False)

    def _rs_notify(self, srv: _Server) -> None:
        script, what = (
            (srv.notify_up, "notify_up") if srv.alive else (srv.notify_down, "notify_down")
        )
        self._notify(script, f"{what} of {srv.dest.describe()}")

    def _update_quorum(self, pool: _Pool, init: bool) -> None:
        """keepalived's update_quorum_state(): gain or lose quorum, swap the sorry server."""
        vs = pool.vs
        weight = pool.weight_sum()
        threshold = vs.quorum + (-1 if pool.quorum_up else 1) * vs.hysteresis
        if not pool.quorum_up and weight >= threshold:
            pool.quorum_up = True
            LOG.info(
                "Gained quorum %d+%d=%d <= %d for VS %s",
                vs.quorum,
                vs.hysteresis,
                threshold,
                weight,
                pool.name,
            )
            if pool.sorry_active and pool.sorry is not None:
                verb = "Disabling" if vs.sorry_server and vs.sorry_server.inhibit else "Removing"
                LOG.info("%s sorry server %s from VS %s", verb, pool.sorry.describe(), pool.name)
                pool.sorry_active = False
            self._notify(pool.on_quorum_up, f"quorum_up of {pool.name}")
        elif (pool.quorum_up and (not weight or weight < threshold)) or (
            init and not pool.quorum_up and pool.sorry is not None and not pool.sorry_active
        ):
            pool.quorum_up = False
            LOG.info(
                "%s %d-%d=%d > %d for VS %s",
                "Starting with quorum down" if init else "Lost quorum",
                vs.quorum,
                vs.hysteresis,
                threshold,
                weight,
                pool.name,
            )
            if pool.sorry is not None and not pool.sorry_active:
                verb = "Enabling" if vs.sorry_server and vs.sorry_server.inhibit else "Adding"
                LOG.info("%s sorry server %s to VS %s", verb, pool.sorry.describe(), pool.name)
                pool.sorry_active = True
            self._notify(pool.on_quorum_down, f"quorum_down of {pool.name}")

    # ----- scripts

    def _notify(self, prepared: scripts.PreparedScript | None, what: str) -> None:
        if prepared is None:
            return
        try:
            child = self._scripts.start(prepared)
        except OSError as exc:
            LOG.error("cannot run %s (%s): %s", what, prepared.command, exc)
            return
        LOG.info("running %s: %s", what, prepared.command)
        self._children.add(child, what)

    def _next_deadline(self, now: float) -> float | None:
        deadlines = [c.next_s for _, _, c in self._all_checks() if c.future is None]
        if self._next_sync_s:
            deadlines.append(self._next_sync_s)
        if self._children:
            deadlines.append(now + SCRIPT_POLL_S)
        return min(deadlines, default=None)

    # ----- the director

    def _run(self, argv: list[str]) -> IpvsResult:
        result = self._ipvsadm(argv)
        if result.rc != 0:
            LOG.debug("ipvsadm %s: rc %d: %s", " ".join(argv), result.rc, result.err.strip())
        return result

    def _reconcile(self, now: float) -> None:
        """Bring the director to the wanted state; on any failure, try again RESYNC_S later."""
        if self._next_sync_s and now < self._next_sync_s:
            return
        failed = not self._apply_globals()
        for pool in self._pools:
            want = pool.desired()
            for service in pool.services:
                if service not in pool.applied_services and not self._ensure_service(pool, service):
                    failed = True
                    continue
                for dest, weight in want.values():
                    if not self._apply(pool, service, dest, weight):
                        failed = True
        self._next_sync_s = now + RESYNC_S if failed else 0.0

    def _apply_globals(self) -> bool:
        """``lvs_flush`` (-C) and ``lvs_timeouts`` (--set), once, before any service."""
        if self._globals_applied:
            return True
        g = self._config.global_defs
        commands = []
        if g.lvs_flush:
            commands.append(["-C"])
        if g.lvs_timeouts is not None:
            commands.append(lvsconfig.timeouts_argv(g.lvs_timeouts))
        for argv in commands:
            result = self._run(argv)
            if result.rc != 0:
                LOG.warning("ipvsadm %s: %s", " ".join(argv), result.err.strip())
                return False
        self._globals_applied = True
        return True

    def _ensure_service(self, pool: _Pool, service: Service) -> bool:
        result = self._run(lvsconfig.service_argv(pool.vs, service))
        if result.rc != 0 and "exists" in result.err:
            result = self._run(lvsconfig.service_argv(pool.vs, service, edit=True))
        if result.rc != 0:
            LOG.warning(
                "cannot set up %s on the director: %s",
                lvsconfig.describe_service(service),
                result.err.strip(),
            )
            return False
        pool.applied_services.add(service)
        return True

    def _apply(self, pool: _Pool, service: Service, dest: Dest, weight: int | None) -> bool:
        key = (service, dest.where)
        applied = pool.applied.get(key, UNKNOWN)
        if applied == weight:
            return True
        if weight is None:
            if applied is not UNKNOWN:  # never set: assume absent, as keepalived does
                result = self._run(lvsconfig.delete_dest_argv(service, dest))
                if result.rc != 0 and "No such destination" not in result.err:
                    return self._refused(service, dest, result)
        else:
            edit = applied is not None and applied is not UNKNOWN
            result = self._run(lvsconfig.dest_argv(service, dest, weight, edit=edit))
            if result.rc != 0 and applied is UNKNOWN and "exists" in result.err:
                result = self._run(lvsconfig.dest_argv(service, dest, weight, edit=True))
            if result.rc != 0:
                return self._refused(service, dest, result)
        pool.applied[key] = weight
        return True

    @staticmethod
    def _refused(service: Service, dest: Dest, result: IpvsResult) -> bool:
        LOG.warning(
            "cannot update %s in %s on the director: %s",
            dest.describe(),
            lvsconfig.describe_service(service),
            result.err.strip(),
        )
        return False

    # ----- status

    def status(self) -> list[dict]:
        """Per virtual server: set up or not, quorum, sorry server; per real server: alive,
        weights, checks."""
        return self._snapshot

    def _take_snapshot(self) -> None:
        self._snapshot = [self._pool_status(pool) for pool in self._pools]

    @staticmethod
    def _pool_status(pool: _Pool) -> dict:
        first = pool.services[0] if pool.services else None

        def in_director(dest: Dest) -> int | None:
            value = pool.applied.get((first, dest.where), UNKNOWN) if first else UNKNOWN
            return None if value is UNKNOWN else value  # type: ignore[return-value]

        return {
            "service": pool.name,
            "services": [lvsconfig.describe_service(s) for s in pool.services],
            "applied": bool(pool.services) and set(pool.services) <= pool.applied_services,
            "quorum": {
                "up": pool.quorum_up,
                "quorum": pool.vs.quorum,
                "hysteresis": pool.vs.hysteresis,
                "alive_weight": pool.weight_sum(),
            },
            "sorry_server": None
            if pool.sorry is None
            else {
                "address": pool.sorry.describe(),
                "active": pool.sorry_active,
                "director_weight": in_director(pool.sorry),
            },
            "real_servers": [
                {
                    "address": srv.dest.describe(),
                    "alive": srv.alive,
                    "weight": srv.rs.weight,
                    "effective_weight": srv.real_weight,
                    "director_weight": in_director(srv.dest),
                    "in_sync": all(
                        pool.applied.get((s, srv.dest.where), UNKNOWN) is not UNKNOWN
                        for s in pool.services
                    ),
                    "checks": [
                        {"type": c.kind, "up": c.is_up, "detail": c.detail} for c in srv.checks
                    ],
                }
                for srv in pool.servers
            ],
        }


class CheckerThread:
    """Runs a HealthChecker in its own thread, so checks and ipvsadm calls never delay VRRP."""

    def __init__(self, checker: HealthChecker, clock: Callable[[], float] = time.monotonic) -> None:
        self.checker = checker
        self._clock = clock
        self._stop = threading.Event()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._loop, name="checker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        try:
            self.checker.start(self._clock())
            while not self._stop.is_set():
                deadline = self.checker.poll(self._clock())
                timeout_s = None if deadline is None else max(0.0, deadline - self._clock())
                select.select([self.checker, self._stop_r], [], [], timeout_s)
        except Exception:
            LOG.exception("the health checker stopped")  # VRRP goes on without it

    def status(self) -> list[dict]:
        return self.checker.status()

    def stop(self) -> None:
        """Stop the thread (if it ever started), then the checker (see HealthChecker.stop)."""
        self._stop.set()
        os.write(self._stop_w, b"\0")
        if self._thread.ident is not None:
            self._thread.join()
        self.checker.stop()
        os.close(self._stop_r)
        os.close(self._stop_w)
