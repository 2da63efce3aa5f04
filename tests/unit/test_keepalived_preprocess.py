"""keepalived.conf's advanced configuration (keepalived.conf(5) "ADVANCED CONFIGURATION"):
conditional lines, parameters (plain, multi-line, predefined), ~SEQ and ~LST, include
variants; and the bounds that keep a bad file from hurting (UTF-8, nesting, expansion)."""

from __future__ import annotations

import os

import pytest

from testbed.keepalived_conf import load_config, parse_config
from testbed.keepalived_conf.model import ConfigError
from testbed.keepalived_conf.preprocess import Preprocessor, brace_expand, decomment


def lines(text: str, config_id: str | None = None, **kwargs) -> list[str]:
    pre = Preprocessor([], config_id, **kwargs)
    return [line.text for line in pre.lines(text, "<t>", ())]


def test_decomment_keeps_quoted_and_escaped_comment_characters():
    assert decomment('  a "b # c" # d') == ('a "b # c"', False)
    assert decomment(r"a \# b ! c") == ("a # b", False)
    assert decomment("value \\") == ("value", True)


def test_conditional_lines_follow_the_config_id():
    text = "@main router_id main_router\n@backup router_id backup_router\n@^main x 1\n@main\n"
    assert lines(text, "main") == ["router_id main_router"]
    assert lines(text, "backup") == ["router_id backup_router", "x 1"]
    assert lines(text, None) == ["x 1"]  # no id: no @ID line, every @^ID line


def test_parameters_are_replaced_recursively_at_use_time():
    text = (
        "$ADDRESS_BASE=10.2.${ADDRESS_BASE_SUB}\n$ADDRESS_BASE_SUB=0\n${ADDRESS_BASE}.100/32\n"
        "$ADDRESS_BASE_SUB=10\n${ADDRESS_BASE}.100/32\n"
    )
    assert lines(text) == ["10.2.0.100/32", "10.2.10.100/32"]  # the man page's example


def test_parameters_need_a_word_end_or_braces_and_undefined_ones_stay():
    text = "$P=7\nport $P\nport $Px\nport ${P}x\nscript ${UNDEF} $HOME\n"
    assert lines(text) == ["port 7", "port $Px", "port 7x", "script ${UNDEF} $HOME"]


def test_parameters_with_conditions():
    text = "@main $PRIORITY=240\n@backup $PRIORITY=200\npriority $PRIORITY\n"
    assert lines(text, "backup") == ["priority 200"]
    assert lines("$IF_MAIN=@main\n$IF_MAIN priority 240\n", "main") == ["priority 240"]
    assert lines("$IF_MAIN=@main\n$IF_MAIN priority 240\n", "other") == []


def test_multiline_definitions_expand_into_lines():
    text = (
        "$INSTANCE= \\\n"
        "vrrp_instance VI_${NUM} { \\\n"
        "    @high priority 130 \\\n"
        "    @low priority 120 \\\n"
        "}\n"
        "$NUM=0\n$INSTANCE\n$NUM=1\n$INSTANCE\n"
    )
    assert lines(text, "high") == [
        "vrrp_instance VI_0 {",
        "priority 130",
        "}",
        "vrrp_instance VI_1 {",
        "priority 130",
        "}",
    ]


def test_predefined_parameters(tmp_path):
    conf = tmp_path / "k.conf"
    conf.write_text(
        "a ${_PWD}\nb ${_INSTANCE}\nc ${_HASH}${_BANG}\nd ${_RANDOM 5 5}\ne ${_ENV X}\n"
    )
    pre = Preprocessor([], "d1", environ={"X": "from-env"})
    got = [ln.text for ln in pre.lines(conf.read_text(), str(conf), (str(conf),))]
    assert got == [f"a {tmp_path}", "b d1", "c #!", "d 5", "e from-env"]


def test_seq_and_seqx_blocks():
    assert lines("~SEQ(SUBNET, 0, 3) ip_address 10.0.${SUBNET}.1\n") == [
        f"ip_address 10.0.{i}.1" for i in range(4)
    ]
    assert lines("~SEQx(S, 0x90, 0x10, 0xc0) fe80::${S}\n") == [
        "fe80::90",
        "fe80::a0",
        "fe80::b0",
        "fe80::c0",
    ]
    assert lines("~SEQ(N, 3) n ${N}\n") == ["n 1", "n 2", "n 3"]
    assert lines("~SEQ(N, 3, 1) n ${N}\n") == ["n 3", "n 2", "n 1"]
    nested = lines("~SEQ(A, 1, 2) ~SEQ(B, 1, 2) ${A}.${B}\n")
    assert nested == ["1.1", "1.2", "2.1", "2.2"]


def test_lst_blocks():
    assert lines("~LST(IP, 1, 2) 10.0.0.${IP}\n") == ["10.0.0.1", "10.0.0.2"]
    text = "~LST({IP, IP1}, {10,1},{20,4}) 192.168.${IP}.${IP1}\n"
    assert lines(text) == ["192.168.10.1", "192.168.20.4"]
    assert lines("~LST({A, B}, {1}) x${A}y${B}z\n") == ["x1yz"]  # missing values are blank


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("~SEQ(N, 1, 0, 5) x\n", "invalid ~SEQ values"),
        ("~SEQ(N, 1, -1, 5) x\n", "invalid ~SEQ values"),
        ("~SEQ(N, a) x\n", "whole numbers"),
        ("~SEQ(N, 1, 300000) x\n", "more than"),
        ("~LST({A}, {1, 2}) x\n", "too many values"),
        ("$A=$B\n$B=$A\nx $A\n", "does not end"),
    ],
)
def test_bad_sequences_and_loops_are_errors(text, reason):
    with pytest.raises(ConfigError, match=reason):
        lines(text)


def test_a_whole_config_from_sequences_and_conditions():
    text = """
    $VIP_NET=10.0.1
    ~SEQ(ID, 51, 52) $INST
    """
    text = (
        "$INST= \\\n"
        "vrrp_instance VI_${ID} { \\\n"
        "    interface eth0 \\\n"
        "    virtual_router_id ${ID} \\\n"
        "    @d1 priority 150 \\\n"
        "    @d2 priority 100 \\\n"
        "    virtual_ipaddress { 10.0.1.${ID}/24 } \\\n"
        "}\n"
        "~SEQ(ID, 51, 52) $INST\n"
    )
    config = parse_config(text, config_id="d2").config
    assert sorted(config.instances) == ["VI_51", "VI_52"]
    assert config.instances["VI_52"].priority == 100
    assert str(config.instances["VI_52"].virtual_ipaddresses[0].address) == "10.0.1.52"


def test_include_variants_and_braces(tmp_path):
    (tmp_path / "a.conf").write_text("vrrp_script a { script /bin/true }\n")
    (tmp_path / "b.conf").write_text("vrrp_script b { script /bin/true }\n")
    main = tmp_path / "main.conf"
    main.write_text("include {a,b}.conf\n")
    assert sorted(load_config(main).config.scripts) == ["a", "b"]
    main.write_text("include nothing*.conf\n")
    assert "no file matches" in load_config(main).warnings[0].message  # plain include: warns
    for variant in ("includem", "includea", "includew"):
        main.write_text(f"{variant} nothing*.conf\n")
        with pytest.raises(ConfigError, match="no file matches"):
            load_config(main)
    main.write_text("includer missing.conf\n")
    with pytest.raises(ConfigError, match="No such file"):
        load_config(main)


def test_brace_expansion():
    assert brace_expand("/x/{a,b{c,d}}.conf") == ["/x/a.conf", "/x/bc.conf", "/x/bd.conf"]
    assert brace_expand("/x/{a}.conf") == ["/x/{a}.conf"]


def test_include_of_a_file_that_is_not_utf8_names_it_and_the_line(tmp_path):
    (tmp_path / "bad.conf").write_bytes(b"! ok\n! fine\nrouter_id caf\xe9\n")
    main = tmp_path / "main.conf"
    main.write_text("global_defs {\ninclude bad.conf\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    assert info.value.file.endswith("bad.conf") and info.value.line == 3
    assert "not UTF-8" in info.value.reason


def test_a_byte_order_mark_and_crlf_lines_are_read(tmp_path):
    conf = tmp_path / "k.conf"
    conf.write_bytes(b"\xef\xbb\xbfglobal_defs {\r\n  router_id r1\r\n}\r\n")
    result = load_config(conf)
    assert result.config.global_defs.router_id == "r1" and result.warnings == []


def test_deeply_nested_braces_are_an_error_not_a_crash():
    with pytest.raises(ConfigError, match="nested deeper"):
        parse_config("a {\n" * 100000 + "}\n" * 100000)
    with pytest.raises(ConfigError, match="line longer"):
        parse_config("a {" * 100000)


def test_includes_nested_too_deep_are_an_error(tmp_path):
    for i in range(40):
        (tmp_path / f"{i}.conf").write_text(f"include {i + 1}.conf\n")
    (tmp_path / "40.conf").write_text("")
    with pytest.raises(ConfigError, match="nested deeper"):
        load_config(tmp_path / "0.conf")


def test_an_unknown_id_says_how_to_give_one():
    with pytest.raises(ConfigError, match="@ID lines for high, low"):
        parse_config("vrrp_script s {\n@high script /a\n@low script /b\n}\n")
    config = parse_config("vrrp_script s {\n@high script /a\n@low script /b\n}\n", config_id="low")
    assert config.config.scripts["s"].script == "/b"


def test_relative_includes_resolve_from_the_including_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.conf").write_text("vrrp_script x { script /bin/true }\n")
    (tmp_path / "main.conf").write_text("include sub/x.conf\n")
    monkeypatch.chdir("/")  # keepalived resolves from the file's directory, not the cwd
    assert list(load_config(os.path.join(tmp_path, "main.conf")).config.scripts) == ["x"]
