"""``lvs-testbed up --config DIRECTOR=FILE`` with ``--map-iface`` and ``--config-id``: the
user's file is read where it lies (relative includes work), its interface names are mapped
to the director's, and mistakes are refused before anything is built (``--show-config``
prints what each director would run, without root)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from testbed.cli.main import app
from testbed.net.daemon_configs import UserConfig

runner = CliRunner()

PAIR = """\
vrrp_instance VI_OUT {
    @d1 state MASTER
    @d2 state BACKUP
    interface eth0
    virtual_router_id 61
    @d1 priority 150
    @d2 priority 100
    virtual_ipaddress { 10.0.1.100/24 dev eth0 label eth0:vip }
    track_interface { eth1 }
}
include services/*.conf
"""
SERVICES = """\
virtual_server 10.0.1.100 80 {
    lb_kind NAT
    real_server 192.168.0.11 80 { TCP_CHECK { connect_timeout 1 } }
}
"""


@pytest.fixture
def conf(tmp_path):
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "web.conf").write_text(SERVICES)
    path = tmp_path / "keepalived.conf"
    path.write_text(PAIR)
    return path


def up(*args: str):
    return runner.invoke(app, ["up", "nat", *args, "--show-config"])


def test_roles_map_each_directors_nics_and_the_id_defaults_to_its_name(conf):
    result = up(
        "--config",
        f"d1={conf}",
        "--config",
        f"d2={conf}",
        "--map-iface",
        "eth0=outer",
        "--map-iface",
        "eth1=inner",
    )
    assert result.exit_code == 0, result.output
    d1, d2 = result.stdout.split("# ---- d2:")
    assert "config id d1; interfaces mapped: eth0->d1-eth0, eth1->d1-eth1" in d1
    assert "interface d1-eth0" in d1 and "state MASTER" in d1 and "priority 150" in d1
    assert "label d1-eth0:vip" in d1 and "d1-eth1" in d1
    assert "interface d2-eth0" in d2 and "priority 100" in d2
    assert "virtual_server 10.0.1.100 80" in d1  # the relative include, from the file's dir


def test_an_interface_of_one_director_maps_for_that_director_only(conf):
    result = up(
        "--config",
        f"d1={conf}",
        "--map-iface",
        "eth0=d1-eth0",
        "--map-iface",
        "eth1=d1-eth1",
        "--config-id",
        "d1=d1",
    )
    assert result.exit_code == 0, result.output
    assert "(generated)" in result.stdout.split("# ---- d2:")[1]


def test_an_unmapped_interface_is_refused_with_the_fix(conf):
    result = up("--config", f"d1={conf}", "--map-iface", "eth0=outer")
    assert result.exit_code == 2
    assert "eth1" in result.output and "--map-iface" in result.output
    assert "d1-eth1 (inner" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map-iface", "eth0=d9-eth0"], "neither outer, inner"),
        (["--map-iface", "eth0"], "NAME=IFACE"),
        (["--config-id", "d3=x"], "DIRECTOR=ID"),
    ],
)
def test_bad_options_are_refused(conf, args, message):
    result = up("--config", f"d1={conf}", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_map_iface_needs_a_config_file():
    result = up("--map-iface", "eth0=outer")
    assert result.exit_code == 2 and "--config" in result.output


def test_real_keepalived_cannot_have_its_interfaces_mapped(conf):
    result = up("--ha", "keepalived", "--config", f"d1={conf}", "--map-iface", "eth0=outer")
    assert result.exit_code == 2 and "keepalived reads the file as it is" in result.output


def test_a_bad_file_names_its_line(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b"vrrp_instance VI_1 {\n  \xff\n}\n")
    result = up("--config", f"d1={bad}")
    assert result.exit_code == 2
    assert "bad.conf:2: not UTF-8" in " ".join(result.output.split())


def test_user_config_runs_as_written_and_mapped(conf):
    user = UserConfig(str(conf), None, {"eth0": "d2-eth0", "eth1": "d2-eth1"})
    config = user.effective("d2")
    inst = config.instances["VI_OUT"]
    assert (inst.interface, inst.priority, inst.state) == ("d2-eth0", 100, "BACKUP")
    assert [t.name for t in inst.track_interfaces] == ["d2-eth1"]
