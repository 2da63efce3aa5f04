"""keepalived's LVS side: virtual_server blocks on the director, kept up to date by health checks.

What it is for: at start, every ``virtual_server`` of the configuration is set up on the
local director (``lvsconfig`` turns it into ipvsadm argv lists, sent over the director's
control socket), with every real server alive, as keepalived does. Then each real server's
``TCP_CHECK`` (connect to ``connect_port`` within ``connect_timeout``) and ``HTTP_GET``
(``GET path``; status in ``status_code``, default 200-299; MD5 of the body equal to
``digest`` when one is given) run every ``delay_loop``. A real server whose check fails
stops getting new connections: with ``inhibit_on_failure`` its weight goes to 0
(``ipvsadm -e ... -w 0``: its connections drain), otherwise it is removed (``ipvsadm -d``).
When every check passes again it comes back with its configured weight. On stop, the
services are removed again (keepalived's default; ``release_on_stop=False`` is its
``--dont-release-ipvs``).

keepalived's timing (check_tcp.c, check_http.c): the first check runs ``BOOTSTRAP_DELAY``
(1 s) after start; a check that fails while the checker is up is retried ``retry`` times,
``delay_before_retry`` apart, before the checker goes down; a checker that is down is
tried once per ``delay_loop`` and one success brings it back. A real server is alive when
all its checkers are up; a real server with no checker is always alive (UDP services here).

Checks run in a small thread pool, so a dead real server (a connect that times out) never
stalls anything else; results are collected by :meth:`HealthChecker.poll`, which a
:class:`CheckerThread` drives apart from the VRRP loop. ``poll`` takes the time as an
argument, so the state logic is tested with a fake clock against real local servers.

What it is not: SSL_GET, MISC_CHECK, UDP_CHECK and the rest (the parser warns about them),
virtual_server groups, sorry servers, quorum, or ``alpha`` (servers start alive).
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from testbed.check import lvsconfig
from testbed.keepalived_conf.model import (
    Config,
    HttpGet,
    RealServer,
    TcpCheck,
    UrlCheck,
    VirtualServer,
    checker_timing,
)
from testbed.runtime.control import ControlError, find_director, request

LOG = logging.getLogger("testbed.check.checker")
BOOTSTRAP_DELAY_S = 1.0  # keepalived's BOOTSTRAP_DELAY: the first check, after start
RESYNC_S = 1.0  # how often to retry ipvsadm commands the director refused or never got
MAX_HTTP_RESPONSE_BYTES = 1 << 20
DIRECTOR_TIMEOUT_S = 2.0
DEFAULT_WORKERS = 8
HTTP_PORT = 80


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


# ------------------------------------------------------------------------ probes


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def tcp_check(address: str, port: int, timeout_s: float) -> CheckResult:
    """keepalived's TCP_CHECK: the connection is established within the timeout."""
    where = f"[{address}]:{port}"
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            return CheckResult(True, f"TCP connection to {where} success")
    except TimeoutError:
        return CheckResult(False, f"TCP connection to {where} timeout")
    except OSError as exc:
        return CheckResult(False, f"TCP connection to {where} failed ({exc.strerror or exc})")


def http_get(address: str, port: int, urls: Sequence[UrlCheck], timeout_s: float) -> CheckResult:
    """keepalived's HTTP_GET: every url answers with an accepted status (and digest)."""
    where = f"[{address}]:{port}"
    if not urls:
        return tcp_check(address, port, timeout_s)
    for url in urls:
        try:
            status, body = _http_fetch(address, port, url.path, timeout_s)
        except TimeoutError:
            return CheckResult(False, f"HTTP connection to {where} url({url.path}) timeout")
        except OSError as exc:
            return CheckResult(
                False, f"HTTP connection to {where} url({url.path}) failed ({exc.strerror or exc})"
            )
        except ValueError as exc:
            return CheckResult(False, f"HTTP response from {where} url({url.path}): {exc}")
        if not url.accepts(status):
            return CheckResult(
                False, f"HTTP status code error to {where} url({url.path}), status_code [{status}]"
            )
        if url.digest is not None:
            digest = hashlib.md5(body, usedforsecurity=False).hexdigest()  # keepalived's digest
            if digest != url.digest.lower():
                return CheckResult(
                    False, f"MD5 digest error to {where} url({url.path}), digest [{digest}]"
                )
    return CheckResult(True, f"HTTP check of {where} success")


def _http_fetch(address: str, port: int, path: str, timeout_s: float) -> tuple[int, bytes]:
    """One HTTP/1.0 GET within ``timeout_s`` overall; (status, body)."""
    deadline = time.monotonic() + timeout_s
    host = address if port == HTTP_PORT else f"{address}:{port}"
    request_bytes = (
        f"GET {path} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\n\r\n".encode()
    )
    chunks: list[bytes] = []
    size = 0
    with socket.create_connection((address, port), timeout=timeout_s) as sock:
        sock.sendall(request_bytes)
        while size <= MAX_HTTP_RESPONSE_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("response not complete in time")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split()
    if not sep or len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        raise ValueError("not an HTTP response")
    return int(words[1]), body


# ------------------------------------------------------------------------- state


class _Unknown:
    """What the director holds for a real server before we have set it once."""

    def __repr__(self) -> str:
        return "unknown"


UNKNOWN = _Unknown()


@dataclass
class _Check:
    """One TCP_CHECK or HTTP_GET of one real server, with keepalived's retry counter."""

    checker: TcpCheck | HttpGet
    address: str
    port: int
    next_s: float = 0.0
    is_up: bool = True
    retry_it: int = 0
    future: Future | None = None
    detail: str = "not run yet"

    @property
    def kind(self) -> str:
        return "HTTP_GET" if isinstance(self.checker, HttpGet) else "TCP_CHECK"

    def probe(self) -> CheckResult:
        timeout_s = checker_timing(self.checker).connect_timeout_s
        if isinstance(self.checker, HttpGet):
            return http_get(self.address, self.port, self.checker.urls, timeout_s)
        return tcp_check(self.address, self.port, timeout_s)


@dataclass
class _RealServer:
    rs: RealServer
    checks: list[_Check]
    alive: bool = True
    applied: int | None | _Unknown = UNKNOWN  # weight in the director; None: not there
    dirty: bool = True

    @property
    def desired(self) -> int | None:
        if self.alive:
            return self.rs.weight
        return 0 if self.rs.inhibit_on_failure else None


@dataclass
class _Service:
    vs: VirtualServer
    real_servers: list[_RealServer]
    applied: bool = False


def _service(vs: VirtualServer) -> _Service:
    servers = []
    for rs in vs.real_servers:
        port = rs.port if rs.port is not None else vs.port
        checks = []
        for checker in rs.checkers:
            connect_port = checker.connect_port if checker.connect_port is not None else port
            if not connect_port:
                raise CheckerSetupError(
                    f"virtual_server {lvsconfig.describe(vs)}: real_server {rs.address} has "
                    "no port to check; give connect_port"
                )
            checks.append(_Check(checker, str(rs.address), connect_port))
        servers.append(_RealServer(rs, checks))
    return _Service(vs, servers)


def validate(config: Config) -> None:
    """Raises CheckerSetupError for a virtual_server the checker cannot run."""
    for vs in config.virtual_servers:
        _service(vs)


class HealthChecker:
    """The checker's state and decisions; :meth:`poll` is its only clock-driven entry point.

    One thread calls start/poll/stop (the checks run in the pool). :meth:`status` may be
    called from any thread: it returns the picture taken at the end of the last poll, so a
    slow director never makes a status request wait.
    """

    def __init__(
        self,
        config: Config,
        ipvsadm: IpvsRunner,
        *,
        workers: int = DEFAULT_WORKERS,
        release_on_stop: bool = True,
    ) -> None:
        self._ipvsadm = ipvsadm
        self._release_on_stop = release_on_stop
        self._services = [_service(vs) for vs in config.virtual_servers]
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()  # no probe thread writes to the pipe once closed
        self._wake_open = True
        self._next_sync_s = 0.0
        self._snapshot: list[dict] = []
        self._take_snapshot()

    def fileno(self) -> int:
        """Readable when a check has finished: poll() then has a result to take."""
        return self._wake_r

    @property
    def in_flight(self) -> int:
        """Checks running in the pool now."""
        return sum(
            c.future is not None
            for svc in self._services
            for srv in svc.real_servers
            for c in srv.checks
        )

    # ----- lifecycle

    def start(self, now: float) -> None:
        """Set every service up with all real servers alive; the first checks in 1 s."""
        for svc in self._services:
            for srv in svc.real_servers:
                for check in srv.checks:
                    check.next_s = now + BOOTSTRAP_DELAY_S
        self._reconcile(now)
        self._take_snapshot()

    def poll(self, now: float) -> float | None:
        """Take finished checks, start due ones, push changes; the next deadline (None: idle)."""
        self._drain_wake()
        for svc in self._services:
            for srv in svc.real_servers:
                for check in srv.checks:
                    if check.future is not None and check.future.done():
                        self._finish(svc, srv, check, check.future, now)
                    if check.future is None and check.next_s <= now:
                        check.future = self._pool.submit(check.probe)
                        check.future.add_done_callback(self._wake)
        self._reconcile(now)
        self._take_snapshot()
        return self._next_deadline()

    def stop(self) -> None:
        """Stop checking; remove the services unless told to leave them (keepalived's -I)."""
        self._pool.shutdown(wait=False, cancel_futures=True)  # a probe may run out its timeout
        if self._release_on_stop:
            for svc in self._services:
                if svc.applied:
                    self._run(lvsconfig.delete_service_argv(svc.vs))
                    svc.applied = False
                    LOG.info("Removing service %s from the director", lvsconfig.describe(svc.vs))
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

    def _finish(
        self, svc: _Service, srv: _RealServer, check: _Check, future: Future, now: float
    ) -> None:
        """keepalived's tcp_epilog/http epilog: retries while up, state change, next run."""
        check.future = None
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a probe bug must not stop the checker
            result = CheckResult(False, f"check raised {exc!r}")
        check.detail = result.detail
        timing = checker_timing(check.checker)
        where = f"{check.kind} of {lvsconfig.describe_rs(srv.rs)}"
        if result.ok or not check.is_up or check.retry_it >= timing.retry:
            delay_s = svc.vs.delay_loop_s
            if result.ok and not check.is_up:
                check.is_up = True
                LOG.info("%s: %s", where, result.detail)
            elif not result.ok and check.is_up:
                check.is_up = False
                LOG.info("%s failed after %d retries: %s", where, check.retry_it, result.detail)
            check.retry_it = 0
        else:
            delay_s = timing.delay_before_retry_s
            check.retry_it += 1
            LOG.info("%s: %s; retry %d of %d", where, result.detail, check.retry_it, timing.retry)
        check.next_s = now + delay_s
        alive = all(c.is_up for c in srv.checks)
        if alive != srv.alive:
            srv.alive = alive
            srv.dirty = True
            rs_name, vs_name = lvsconfig.describe_rs(srv.rs), lvsconfig.describe(svc.vs)
            if alive and srv.rs.inhibit_on_failure:
                message = f"Enabling service {rs_name} in VS {vs_name} (weight {srv.rs.weight})"
            elif alive:
                message = f"Adding service {rs_name} to VS {vs_name}"
            elif srv.rs.inhibit_on_failure:
                message = f"Inhibiting service {rs_name} in VS {vs_name} (weight 0)"
            else:
                message = f"Removing service {rs_name} from VS {vs_name}"
            LOG.info("%s", message)

    def _next_deadline(self) -> float | None:
        deadlines = [
            c.next_s
            for svc in self._services
            for srv in svc.real_servers
            for c in srv.checks
            if c.future is None
        ]
        if self._next_sync_s:
            deadlines.append(self._next_sync_s)
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
        failed = False
        for svc in self._services:
            if not svc.applied and not self._ensure_service(svc):
                failed = True
                continue
            for srv in svc.real_servers:
                if srv.dirty and not self._apply(svc.vs, srv):
                    failed = True
        self._next_sync_s = now + RESYNC_S if failed else 0.0

    def _ensure_service(self, svc: _Service) -> bool:
        result = self._run(lvsconfig.service_argv(svc.vs))
        if result.rc != 0 and "exists" in result.err:
            result = self._run(lvsconfig.service_argv(svc.vs, edit=True))
        if result.rc != 0:
            LOG.warning(
                "cannot set up %s on the director: %s",
                lvsconfig.describe(svc.vs),
                result.err.strip(),
            )
            return False
        svc.applied = True
        return True

    def _apply(self, vs: VirtualServer, srv: _RealServer) -> bool:
        want = srv.desired
        if want is None:
            if srv.applied is not None:
                result = self._run(lvsconfig.delete_real_server_argv(vs, srv.rs))
                if result.rc != 0 and "No such destination" not in result.err:
                    return self._refused(vs, srv, result)
        elif srv.applied != want:
            edit = srv.applied is not None and srv.applied is not UNKNOWN
            result = self._run(lvsconfig.real_server_argv(vs, srv.rs, want, edit=edit))
            if result.rc != 0 and srv.applied is UNKNOWN and "exists" in result.err:
                result = self._run(lvsconfig.real_server_argv(vs, srv.rs, want, edit=True))
            if result.rc != 0:
                return self._refused(vs, srv, result)
        srv.applied = want
        srv.dirty = False
        return True

    @staticmethod
    def _refused(vs: VirtualServer, srv: _RealServer, result: IpvsResult) -> bool:
        LOG.warning(
            "cannot update %s in %s on the director: %s",
            lvsconfig.describe_rs(srv.rs),
            lvsconfig.describe(vs),
            result.err.strip(),
        )
        return False

    # ----- status

    def status(self) -> list[dict]:
        """Per service: set up or not; per real server: alive, weights, checks."""
        return self._snapshot

    def _take_snapshot(self) -> None:
        self._snapshot = [
            {
                "service": lvsconfig.describe(svc.vs),
                "applied": svc.applied,
                "real_servers": [
                    {
                        "address": lvsconfig.describe_rs(srv.rs),
                        "alive": srv.alive,
                        "weight": srv.rs.weight,
                        "director_weight": None if srv.applied is UNKNOWN else srv.applied,
                        "in_sync": not srv.dirty,
                        "checks": [
                            {"type": c.kind, "up": c.is_up, "detail": c.detail} for c in srv.checks
                        ],
                    }
                    for srv in svc.real_servers
                ],
            }
            for svc in self._services
        ]


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
