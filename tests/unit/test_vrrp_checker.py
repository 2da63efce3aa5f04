"""The health checker against real servers on 127.0.0.1 (a TCP listener and a tiny HTTP
server), with a fake clock for the schedule and a fake director control that runs the
director's own ipvsadm front end and records every argv: failure, retries, inhibit (weight 0)
versus removal, recovery, a director that is not there yet, and a dead server that must not
stall anything."""

from __future__ import annotations

import hashlib
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testbed.check.checker import (
    BOOTSTRAP_DELAY_S,
    CheckerSetupError,
    CheckerThread,
    HealthChecker,
    validate,
)
from testbed.check.probes import Target, http_get, tcp_check
from testbed.director import ipvsadm
from testbed.keepalived_conf import parse_config
from testbed.keepalived_conf.model import HttpGet, UrlCheck
from tests.unit.check_fakes import FakeDirector

VIP = "10.0.1.100:80"


class Listener:
    """A TCP port that accepts (and closes) connections until closed; reopens on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


class WebServer:
    """HTTP on 127.0.0.1: answers GET with ``status`` and ``body``, after ``delay_s``."""

    def __init__(self) -> None:
        outer = self
        self.status = 200
        self.body = b"rs1 ok\n"
        self.delay_s = 0.0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                time.sleep(outer.delay_s)
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a checker that timed out has closed its end; that is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    srv = Listener()
    yield srv
    try:
        srv.close()
    except OSError:
        pass


@pytest.fixture
def web():
    srv = WebServer()
    yield srv
    srv.close()


def config_for(tcp_port: int, http_port: int, connect_timeout_s: float = 1.0):
    return parse_config(
        f"""
        virtual_server 10.0.1.100 80 {{
            delay_loop 5
            lb_algo rr
            lb_kind NAT
            protocol TCP
            real_server 127.0.0.1 {tcp_port} {{
                weight 2
                inhibit_on_failure
                TCP_CHECK {{
                    connect_timeout {connect_timeout_s}
                    retry 1
                    delay_before_retry 1
                }}
            }}
            real_server 127.0.0.1 {http_port} {{
                weight 1
                HTTP_GET {{
                    url {{
                        path /health
                        status_code 200
                    }}
                    connect_timeout {connect_timeout_s}
                    retry 1
                    delay_before_retry 1
                }}
            }}
        }}
        """
    ).config


def make_checker(config, director, **options) -> HealthChecker:
    """A checker whose first checks come right after the bootstrap delay (no warmup)."""
    return HealthChecker(config, director, random_fraction=lambda: 0.0, **options)


def settle(checker: HealthChecker, now: float, timeout_s: float = 10.0) -> None:
    """poll() at ``now`` until no check is running (the probes use real sockets)."""
    end = time.monotonic() + timeout_s
    checker.poll(now)
    while checker.in_flight:
        assert time.monotonic() < end, "checks did not finish"
        select.select([checker], [], [], 0.2)
        checker.poll(now)


@pytest.fixture
def setup(listener, web):
    director = FakeDirector()
    checker = make_checker(config_for(listener.port, web.port), director)
    yield checker, director, listener, web
    checker.stop()


def test_start_sets_up_the_service_with_every_real_server(setup):
    checker, director, listener, web = setup
    checker.start(0.0)
    tcp_rs, http_rs = f"127.0.0.1:{listener.port}", f"127.0.0.1:{web.port}"
    assert director.take() == [
        ["-A", "-t", VIP, "-s", "rr"],
        ["-a", "-t", VIP, "-r", tcp_rs, "-m", "-w", "2"],
        ["-a", "-t", VIP, "-r", http_rs, "-m", "-w", "1"],
    ]
    assert director.weights() == {tcp_rs: 2, http_rs: 1}
    assert checker.poll(0.5) == pytest.approx(BOOTSTRAP_DELAY_S)  # first checks after 1 s
    assert checker.in_flight == 0
    settle(checker, 1.0)
    assert director.take() == []
    assert all(rs["alive"] for rs in checker.status()[0]["real_servers"])


def test_failure_after_retries_then_recovery(setup):
    """inhibit_on_failure: weight 0 and back; without it: removed and added back."""
    checker, director, listener, web = setup
    tcp_rs, http_rs = f"127.0.0.1:{listener.port}", f"127.0.0.1:{web.port}"
    checker.start(0.0)
    settle(checker, 1.0)
    director.take()
    port = listener.port
    listener.close()
    web.status = 500
    settle(checker, 6.0)  # first failure: retry 1 of 1, delay_before_retry 1 s
    assert director.take() == []
    assert checker.poll(6.0) == pytest.approx(7.0)
    settle(checker, 7.0)  # second failure: down
    assert sorted(director.take()) == sorted(
        [
            ["-e", "-t", VIP, "-r", tcp_rs, "-m", "-w", "0"],
            ["-d", "-t", VIP, "-r", http_rs],
        ]
    )
    assert director.weights() == {tcp_rs: 0}
    status = checker.status()[0]["real_servers"]
    assert [rs["alive"] for rs in status] == [False, False]
    assert "status_code [500]" in status[1]["checks"][0]["detail"]
    assert checker.poll(7.0) == pytest.approx(12.0)  # down: once per delay_loop, no retries
    settle(checker, 12.0)
    assert director.take() == []
    reopened = Listener(port)
    try:
        web.status = 200
        settle(checker, 17.0)  # one success brings each back
        assert sorted(director.take()) == sorted(
            [
                ["-e", "-t", VIP, "-r", tcp_rs, "-m", "-w", "2"],
                ["-a", "-t", VIP, "-r", http_rs, "-m", "-w", "1"],
            ]
        )
        assert director.weights() == {tcp_rs: 2, http_rs: 1}
    finally:
        reopened.close()


def test_one_failure_within_retry_changes_nothing(setup):
    checker, director, listener, web = setup
    checker.start(0.0)
    settle(checker, 1.0)
    director.take()
    web.status = 503
    settle(checker, 6.0)
    web.status = 200
    settle(checker, 7.0)
    assert director.take() == []
    assert checker.poll(7.0) == pytest.approx(11.0)  # TCP_CHECK ran at 6; HTTP_GET next at 12
    assert all(rs["alive"] for rs in checker.status()[0]["real_servers"])


def test_stop_removes_the_services_unless_told_not_to(listener, web):
    director = FakeDirector()
    checker = make_checker(config_for(listener.port, web.port), director)
    checker.start(0.0)
    director.take()
    checker.stop()
    assert director.take() == [["-D", "-t", VIP]]
    assert director.director.services() == []
    kept = FakeDirector()
    checker = make_checker(config_for(listener.port, web.port), kept, release_on_stop=False)
    checker.start(0.0)
    kept.take()
    checker.stop()
    assert kept.take() == []


def test_existing_services_and_real_servers_are_edited_not_duplicated(listener, web):
    """The layout may have loaded the same services into the director already."""
    director = FakeDirector()
    for argv in (
        ["-A", "-t", VIP, "-s", "wlc"],
        ["-a", "-t", VIP, "-r", f"127.0.0.1:{listener.port}", "-m", "-w", "1"],
    ):
        assert director(argv).rc == 0
    director.take()
    checker = make_checker(config_for(listener.port, web.port), director)
    checker.start(0.0)
    assert [argv[0] for argv in director.take()] == ["-A", "-E", "-a", "-e", "-a"]
    assert "TCP  10.0.1.100:80 rr" in ipvsadm.run(["-L", "-n"], director.director).out
    assert director.weights()[f"127.0.0.1:{listener.port}"] == 2
    checker.stop()


def test_a_director_that_is_not_there_yet_is_retried(listener, web):
    director = FakeDirector()
    director.reachable = False
    checker = make_checker(config_for(listener.port, web.port), director)
    checker.start(0.0)
    assert director.take() == [["-A", "-t", VIP, "-s", "rr"]]
    assert checker.status()[0]["applied"] is False
    checker.poll(0.5)
    assert director.take() == []  # not before RESYNC_S
    director.reachable = True
    checker.poll(0.9)
    assert director.take() == []
    settle(checker, 1.0)
    assert [argv[0] for argv in director.take()] == ["-A", "-a", "-a"]
    assert checker.status()[0]["applied"] is True
    checker.stop()


def test_a_dead_server_never_stalls_poll(listener, web):
    """A server that accepts but never answers: the HTTP check times out in the pool."""
    web.delay_s = 3.0
    director = FakeDirector()
    checker = make_checker(config_for(listener.port, web.port, connect_timeout_s=0.5), director)
    checker.start(0.0)
    started = time.monotonic()
    checker.poll(1.0)
    assert time.monotonic() - started < 0.2
    assert checker.in_flight == 2
    settle(checker, 1.0)
    details = [rs["checks"][0]["detail"] for rs in checker.status()[0]["real_servers"]]
    assert "success" in details[0]
    assert "timeout" in details[1]
    checker.stop()


def test_checker_thread_runs_on_its_own(listener, web):
    director = FakeDirector()
    thread = CheckerThread(make_checker(config_for(listener.port, web.port), director))
    thread.start()
    try:
        deadline = time.monotonic() + 5.0
        while len(director.log) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [argv[0] for argv in director.log] == ["-A", "-a", "-a"]
        assert thread.status()[0]["applied"] is True
    finally:
        thread.stop()
    assert director.log[-1] == ["-D", "-t", VIP]


# ------------------------------------------------------------------------- the probes


def test_tcp_check_refused(listener):
    port = listener.port
    assert tcp_check(Target("127.0.0.1", port), 1.0).ok
    listener.close()
    result = tcp_check(Target("127.0.0.1", port), 1.0)
    assert not result.ok and "failed" in result.detail


def get(port: int, *urls: UrlCheck):
    return http_get(Target("127.0.0.1", port), HttpGet(urls=list(urls)), 1.0)


def test_http_status_ranges_and_digest(web):
    web.status = 204
    assert get(web.port, UrlCheck("/")).ok  # default 200-299
    web.status = 404
    assert not get(web.port, UrlCheck("/")).ok
    assert get(web.port, UrlCheck("/", ((400, 499),))).ok
    web.status = 200
    good = hashlib.md5(web.body).hexdigest()
    assert get(web.port, UrlCheck("/", digest=good.upper())).ok
    bad = get(web.port, UrlCheck("/", digest="0" * 32))
    assert not bad.ok and "MD5 digest error" in bad.detail
    assert not get(web.port, UrlCheck("/a"), UrlCheck("/b", ((301, 301),))).ok  # every url
    assert get(web.port, UrlCheck("/", regex="rs[0-9] ok")).ok
    assert not get(web.port, UrlCheck("/", regex="rs[0-9] ok", regex_no_match=True)).ok


def test_http_get_of_something_that_is_not_http():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def answer() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH\r\n")

        thread = threading.Thread(target=answer)
        thread.start()
        result = get(srv.getsockname()[1], UrlCheck("/"))
        thread.join(5)
    assert not result.ok and "not an HTTP response" in result.detail


def test_a_real_server_without_a_port_to_check_is_refused():
    config = parse_config(
        "virtual_server fwmark 5 { real_server 192.168.0.11 { TCP_CHECK { connect_timeout 1 } } }"
    ).config
    with pytest.raises(CheckerSetupError, match="connect_port"):
        validate(config)
    ok = parse_config(
        "virtual_server fwmark 5 { real_server 192.168.0.11 { TCP_CHECK { connect_port 80 } } }"
    ).config
    validate(ok)


def test_udp_real_servers_without_checkers_stay_alive(web):
    config = parse_config(
        "virtual_server 10.0.1.100 7 { protocol UDP\nlb_algo rr\n"
        "real_server 192.168.0.11 7 { weight 1 } }"
    ).config
    director = FakeDirector()
    checker = make_checker(config, director)
    checker.start(0.0)
    assert checker.poll(100.0) is None  # nothing to check, ever
    assert director.take() == [
        ["-A", "-u", "10.0.1.100:7", "-s", "rr"],
        ["-a", "-u", "10.0.1.100:7", "-r", "192.168.0.11:7", "-m", "-w", "1"],
    ]
    checker.stop()
