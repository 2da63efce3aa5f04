"""keepalived.conf's LVS side, keyword by keyword, against the parser and the model: every
checker with its options, timings inherited virtual server -> real server -> checker, sorry
servers, groups, quorum and its corrections, virtualhost, SSL; each renders back unchanged."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from testbed.keepalived_conf import parse_config, render_config
from testbed.keepalived_conf.model import (
    ConfigError,
    DnsCheck,
    GroupEntry,
    MiscCheck,
    PingCheck,
    Script,
    SmtpCheck,
    SorryServer,
    SslGet,
    UdpCheck,
    check_timing,
    rs_inhibit,
)


def vs_of(body: str, head: str = "10.0.1.100 80", before: str = ""):
    result = parse_config(f"{before}\nvirtual_server {head} {{\n{body}\n}}\n")
    again = parse_config(render_config(result.config)).config
    assert again == result.config, render_config(result.config)
    return result.config.virtual_servers[0], result.warnings


def one_checker(checker: str, vs_body: str = ""):
    vs, warnings = vs_of(f"{vs_body}\nreal_server 192.168.0.11 80 {{\n{checker}\n}}")
    return vs, vs.real_servers[0], vs.real_servers[0].checkers[0], warnings


def test_misc_check_with_arguments_dynamic_timeout_and_user():
    _, _, check, _ = one_checker(
        'MISC_CHECK {\n misc_path "/usr/local/bin/check.sh arg1 arg2"\n misc_timeout 4\n'
        " misc_dynamic\n user nobody nogroup\n}"
    )
    assert isinstance(check, MiscCheck)
    assert check.script == Script("/usr/local/bin/check.sh arg1 arg2", "nobody", "nogroup")
    assert (check.timeout_s, check.dynamic) == (4.0, True)


def test_misc_check_defaults_to_no_retries_and_keeps_no_connection_keywords():
    vs, rs, check, warnings = one_checker("MISC_CHECK {\n misc_path /bin/true\n connect_port 9\n}")
    assert check_timing(vs, rs, check).retry == 0  # MISC_CHECK's own default
    assert check.connect_port is None and "connect_port" in warnings[0].message


def test_misc_check_without_a_script_is_dropped():
    vs, warnings = vs_of("real_server 192.168.0.11 80 { MISC_CHECK { misc_timeout 3 } }")
    assert vs.real_servers[0].checkers == []
    assert "no misc_path" in warnings[0].message


def test_udp_check_payload_and_reply_in_keepalived_hex():
    _, _, check, _ = one_checker(
        "UDP_CHECK {\n payload Ab12f 3 456\n require_reply 12Xx\n min_reply_length 2\n"
        " max_reply_length 64\n}"
    )
    assert isinstance(check, UdpCheck)
    assert check.payload == bytes.fromhex("ab120f034506")  # the man page's reading
    assert (check.reply_data, check.reply_mask) == (b"\x12\x00", b"\x00\xff")
    assert check.reply_ok(b"\x12\x77\x00") and not check.reply_ok(b"\x13\x00")
    assert not check.reply_ok(b"\x12")  # shorter than min_reply_length


def test_ping_dns_and_smtp_checks():
    _, _, ping, _ = one_checker("PING_CHECK { retry 4 }")
    assert isinstance(ping, PingCheck) and ping.retry == 4
    vs, rs, dns, _ = one_checker("DNS_CHECK { type A\n name www.example.com }")
    assert isinstance(dns, DnsCheck) and (dns.type, dns.name) == ("A", "www.example.com")
    timing = check_timing(vs, rs, dns)
    assert (timing.retry, timing.delay_before_retry_s) == (3, 60.0)  # DNS: 3, delay_loop
    _, _, smtp, _ = one_checker('SMTP_CHECK { helo_name "foo.bar.com" }')
    assert isinstance(smtp, SmtpCheck) and smtp.helo_name == "foo.bar.com"
    _, _, smtp, _ = one_checker("SMTP_CHECK { }")
    assert smtp.helo_name == "smtpchecker.keepalived.org"


def test_smtp_host_blocks_become_checkers_of_their_own():
    vs, warnings = vs_of(
        "real_server 172.16.1.12 25 {\n SMTP_CHECK {\n  connect_timeout 10\n  retry 2\n"
        "  helo_name foo\n  host {\n   connect_ip 172.16.1.12\n   bindto 172.16.1.2\n  }\n"
        "  host {\n   connect_ip 64.233.167.100\n   connect_port 587\n  }\n }\n}"
    )
    checks = vs.real_servers[0].checkers
    assert [(str(c.connect_ip), c.connect_port, c.helo_name, c.retry) for c in checks] == [
        ("None", None, "foo", 2),
        ("172.16.1.12", None, "foo", 2),
        ("64.233.167.100", 587, "foo", 2),
    ]
    assert checks[1].bindto == IPv4Address("172.16.1.2")
    assert "deprecated" in warnings[0].message


def test_ssl_get_with_sni_virtualhost_and_the_ssl_block():
    vs, rs, check, _ = one_checker(
        "SSL_GET {\n url { path /\n status_code 200-299 400-499 503\n virtualhost url.lab }\n"
        " enable_sni\n http_protocol 1.1\n}",
        vs_body="virtualhost www.firewall.loc",
    )
    assert isinstance(check, SslGet) and check.enable_sni and check.http_protocol == "1.1"
    assert check.urls[0].status_codes == ((200, 299), (400, 499), (503, 503))
    assert (check.urls[0].virtualhost, vs.virtualhost) == ("url.lab", "www.firewall.loc")
    assert check_timing(vs, rs, check).delay_before_retry_s == 3.0
    config = parse_config("SSL {\n certificate /c.pem\n key /k.pem\n password x\n}\n").config
    assert (config.ssl.certificate, config.ssl.key) == ("/c.pem", "/k.pem")


def test_timings_are_inherited_from_the_real_and_virtual_server():
    vs, rs, check, _ = one_checker(
        "TCP_CHECK { delay_before_retry 0.5 }\n retry 5\n delay_loop 2\n",
        vs_body="connect_timeout 1.5\nretry 2\nwarmup 0\ndelay_loop 10\nalpha",
    )
    timing = check_timing(vs, rs, check)
    assert timing == (1.5, 5, 0.5, 2.0, 0.0, True)


def test_sorry_server_and_its_options():
    vs, _ = vs_of(
        "lb_kind DR\nsorry_server 192.168.200.200 1358\nsorry_server_inhibit\n"
        "sorry_server_lvs_method NAT\nreal_server 192.168.200.2 1358 { weight 1 }",
        head="10.10.10.2 1358",
    )
    assert vs.sorry_server == SorryServer(IPv4Address("192.168.200.200"), 1358, True, "NAT")


def test_sorry_server_inhibit_without_a_sorry_server_warns():
    _, warnings = vs_of("sorry_server_inhibit\nreal_server 10.0.0.2 80 {}")
    assert "without sorry_server" in warnings[0].message


def test_virtual_server_group_entries_ranges_and_marks():
    config = parse_config(
        "virtual_server_group VSG_1 {\n 10.0.0.1 8080\n 192.168.200.3-10 80\n"
        " 10.1.0.0/30 80\n 192.168.200.250-192.168.201.2 81\n fwmark 1\n}\n"
        "virtual_server group VSG_1 { real_server 192.168.200.1 1358 {} }\n"
    ).config
    entries = config.virtual_server_groups["VSG_1"].entries
    assert entries[0] == GroupEntry(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.1"), 8080)
    assert len(entries[1].addresses()) == 8 and len(entries[2].addresses()) == 4
    assert len(entries[3].addresses()) == 9
    assert entries[4] == GroupEntry(fwmark=1)
    assert config.virtual_servers[0].group == "VSG_1"
    assert parse_config(render_config(config)).config == config


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("virtual_server group NOPE { real_server 10.0.0.1 80 {} }", "no virtual_server_group"),
        ("virtual_server_group G { 10.0.0.0/16 80 }", "at most 1024"),
        ("virtual_server_group G { ae00::1 80 }", "IPv6"),
        ("virtual_server 10.0.0.1 80 { ip_family inet6 }", "only inet"),
    ],
)
def test_group_and_family_errors(text, reason):
    with pytest.raises(ConfigError, match=reason):
        parse_config(text)


def test_quorum_hysteresis_scripts_alpha_omega():
    vs, _ = vs_of(
        "alpha\nomega\nquorum 3\nhysteresis 1\nquorum_up /usr/local/sbin/quorum-up.sh\n"
        'quorum_down "/usr/local/sbin/quorum-down.sh now" nobody\n'
        + "".join(f"real_server 10.0.0.{i} 80 {{ weight 1 }}\n" for i in range(1, 5))
    )
    assert (vs.alpha, vs.omega, vs.quorum, vs.hysteresis) == (True, True, 3, 1)
    assert vs.quorum_down == Script("/usr/local/sbin/quorum-down.sh now", "nobody")


def test_quorum_corrections_follow_keepalived():
    """validate_check_config(): quorum above the total weight is lowered; a hysteresis not
    below the quorum is lowered to quorum - 1."""
    vs, warnings = vs_of("quorum 7\nhysteresis 9\nreal_server 10.0.0.1 80 { weight 2 }")
    assert (vs.quorum, vs.hysteresis) == (2, 1)
    assert "lowered to 2" in warnings[0].message and "lowered to 1" in warnings[1].message


def test_real_server_options():
    vs, _ = vs_of(
        "inhibit_on_failure\nweight 3\nreal_server 10.0.0.1 80 {\n inhibit_on_failure off\n"
        " notify_up /bin/up.sh\n notify_down /bin/down.sh\n lvs_method DR\n virtualhost rs.lab\n}\n"
        "real_server 10.0.0.2 80 {}"
    )
    rs1, rs2 = vs.real_servers
    assert (rs_inhibit(vs, rs1), rs_inhibit(vs, rs2)) == (False, True)
    assert (rs1.weight, rs2.weight) == (3, 3)  # the virtual server's weight is the default
    assert rs1.notify_up == Script("/bin/up.sh") and rs1.lb_kind == "DR"


def test_dr_real_servers_take_the_service_port_and_fwmark_ones_none():
    vs, warnings = vs_of("lb_kind DR\nreal_server 10.0.0.1 8080 {}")
    assert vs.real_servers[0].port == 80 and "reset to 80" in warnings[0].message
    vs, _ = vs_of("lb_kind DR\nreal_server 10.0.0.1 8080 {}", head="fwmark 4")
    assert vs.real_servers[0].port is None


def test_a_virtual_server_without_real_servers_is_dropped():
    config = parse_config("virtual_server 10.0.0.1 80 { lb_algo rr }").config
    assert config.virtual_servers == []


def test_keywords_a_lab_has_no_use_for_are_ignored_with_the_reason():
    _, warnings = vs_of(
        "smtp_alert\nha_suspend\nops\nreal_server 10.0.0.1 80 { smtp_alert\nFILE_CHECK { } }"
    )
    messages = [w.message for w in warnings]
    assert "SMTP alerts: a lab sends no mail" in messages[0]
    assert "ha_suspend" in messages[1] and "'ops' is not implemented" in messages[2]
    assert "FILE_CHECK ignored (track files" in messages[4]
