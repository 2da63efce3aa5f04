"""keepalived's checks (testbed.check.probes) against the real servers' own services
(testbed.traffic.servers, run here on 127.0.0.1 with free ports): each check passes against
the service it checks and fails, with a reason, against what is not that service."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Address

import pytest

from testbed.check import probes
from testbed.check.probes import Target
from testbed.keepalived_conf.model import DnsCheck, HttpGet, SmtpCheck, SslGet, UdpCheck, UrlCheck
from testbed.traffic.servers import dns_answer, smtp_reply


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def services():
    ports = {
        "http": free_port(),
        "https": free_port(),
        "smtp": free_port(),
        "echo": free_port(socket.SOCK_DGRAM),
        "dns": free_port(socket.SOCK_DGRAM),
    }
    argv = [sys.executable, "-m", "testbed.traffic.servers", "--name", "rs9", "--bind"]
    argv += ["127.0.0.1", "--http-port", str(ports["http"]), "--https-port", str(ports["https"])]
    argv += ["--smtp-port", str(ports["smtp"]), "--echo-port", str(ports["echo"])]
    argv += ["--dns-port", str(ports["dns"])]
    if shutil.which("openssl") is None:
        argv[argv.index("--https-port") + 1] = "0"
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    wanted = ["http", "smtp"] + (["https"] if shutil.which("openssl") else [])
    while not all(probes.tcp_check(Target("127.0.0.1", ports[p]), 0.2).ok for p in wanted):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the servers did not come up"
        time.sleep(0.05)
    yield ports
    proc.terminate()
    proc.wait(timeout=10)


def at(port: int) -> Target:
    return Target("127.0.0.1", port)


def test_http_get_checks_status_digest_and_regex(services):
    ok = probes.http_get(at(services["http"]), HttpGet(urls=[UrlCheck("/", regex="^rs9 ")]), 2)
    assert ok.ok, ok.detail
    wrong = probes.http_get(at(services["http"]), HttpGet(urls=[UrlCheck("/", regex="rs1")]), 2)
    assert not wrong.ok and "regex did not match" in wrong.detail


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_ssl_get_passes_on_https_and_fails_on_plain_http(services):
    tls = probes.ssl_context(None)
    check = SslGet(urls=[UrlCheck("/", status_codes=((200, 200),))], enable_sni=True)
    result = probes.http_get(at(services["https"]), check, 2, virtualhost="www.lab", tls=tls)
    assert result.ok, result.detail
    plain = probes.http_get(at(services["http"]), check, 2, tls=tls)
    assert not plain.ok and "SSL handshake" in plain.detail


def test_udp_check_wants_a_reply_or_no_icmp_error(services):
    echo = at(services["echo"])
    assert probes.udp_check(echo, UdpCheck(require_reply=True), 1).ok
    exact = UdpCheck(payload=b"\x01\x02", require_reply=True, reply_data=b"\x01\x02")
    assert probes.udp_check(echo, exact, 1).ok
    other = UdpCheck(payload=b"\x01\x02", require_reply=True, reply_data=b"\x09")
    assert "mismatch" in probes.udp_check(echo, other, 1).detail
    closed = probes.udp_check(at(free_port(socket.SOCK_DGRAM)), UdpCheck(), 1)
    assert not closed.ok and "port unreachable" in closed.detail


def test_udp_check_without_require_reply_passes_on_silence():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        result = probes.udp_check(at(silent.getsockname()[1]), UdpCheck(), 0.3)
        assert result.ok and "no ICMP error" in result.detail
        strict = probes.udp_check(at(silent.getsockname()[1]), UdpCheck(require_reply=True), 0.3)
        assert not strict.ok and "no reply" in strict.detail


def test_smtp_check_runs_the_dialogue(services):
    assert probes.smtp_check(at(services["smtp"]), SmtpCheck(), 2).ok
    not_smtp = probes.smtp_check(at(services["http"]), SmtpCheck(), 1)
    assert not not_smtp.ok


def test_smtp_greeter_replies():
    assert smtp_reply(b"HELO foo.bar.com\r\n", "rs1") == (b"250 rs1 Hello\r\n", False)
    assert smtp_reply(b"quit\r\n", "rs1")[1] is True
    assert smtp_reply(b"MAIL FROM:<a@b>\r\n", "rs1")[0].startswith(b"502")


def test_dns_check_wants_rcode_zero(services):
    assert probes.dns_check(at(services["dns"]), DnsCheck(), 1).ok
    assert probes.dns_check(at(services["dns"]), DnsCheck(type="A", name="www.lab."), 1).ok
    quiet = probes.dns_check(at(services["echo"]), DnsCheck(), 0.5)  # echo: QR never set
    assert not quiet.ok and "timeout" in quiet.detail


def test_dns_answer_echoes_the_question_and_answers_a():
    query = probes.dns_query(0x1234, "www.lab", "A")
    answer = dns_answer(query, "10.0.0.11")
    assert answer is not None and answer[:2] == b"\x12\x34" and answer[2] & 0x80
    assert answer.endswith(socket.inet_aton("10.0.0.11"))
    assert dns_answer(answer, "10.0.0.11") is None  # a response is not a query
    assert dns_answer(b"\x00" * 5, "10.0.0.11") is None


def ping_allowed() -> bool:
    for kind, proto in ((socket.SOCK_DGRAM, socket.IPPROTO_ICMP), (socket.SOCK_RAW, 1)):
        try:
            socket.socket(socket.AF_INET, kind, proto).close()
            return True
        except PermissionError:
            continue
    return False


@pytest.mark.skipif(not ping_allowed(), reason="no ICMP socket for this user")
def test_ping_check():
    assert probes.ping_check(at(0), 1).ok


def test_tcp_check_of_a_server_that_never_accepts_times_out():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))  # bound, not listening: refused at once
        result = probes.tcp_check(at(srv.getsockname()[1]), 1)
    assert not result.ok and "refused" in result.detail.lower()


def test_probes_bind_the_source_when_told():
    seen: list[str] = []
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def accept() -> None:
            conn, peer = srv.accept()
            seen.append(peer[0])
            conn.close()

        thread = threading.Thread(target=accept)
        thread.start()
        target = Target("127.0.0.1", srv.getsockname()[1], bindto=IPv4Address("127.0.0.7"))
        assert probes.tcp_check(target, 1).ok
        thread.join(5)
    assert seen == ["127.0.0.7"]
