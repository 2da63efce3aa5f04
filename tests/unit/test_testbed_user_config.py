"""What `Testbed` starts for a director with the user's own keepalived.conf (no root: the
layout is not built; skipped where Mininet is not installed): the file is used where it
lies, the daemon gets the config id and the interface map, and the file's lvs_sync_daemon
(either spelling) sets the director's connection sync, which takes only the other director's
messages (its address on the sync segment)."""

import pytest

pytest.importorskip("mininet")

from testbed.net.daemon_configs import UserConfig  # noqa: E402 - after the skip
from testbed.net.network import Testbed  # noqa: E402
from testbed.topo.plan import LayoutParams  # noqa: E402

CONF = """\
global_defs {{ {syncd} }}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 61
    {old}
    virtual_ipaddress {{ 10.0.1.100/24 }}
}}
"""


def make_testbed(tmp_path, syncd: str = "", old: str = "", **options) -> Testbed:
    path = tmp_path / "k.conf"
    path.write_text(CONF.format(syncd=syncd, old=old))
    user = UserConfig(str(path), None, {"eth0": "d1-eth0", "eth1": "d1-eth1"})
    return Testbed("nat", LayoutParams(**options), configs={"d1": user})


def test_the_daemon_reads_the_file_where_it_lies_with_id_and_map(tmp_path):
    tb = make_testbed(tmp_path)
    assert tb.keepalived_conf("d1") == (tmp_path / "k.conf").resolve()
    assert tb.user_config_argv("d1") == [
        "--config-id",
        "d1",
        "--map-iface",
        "eth0=d1-eth0",
        "--map-iface",
        "eth1=d1-eth1",
    ]
    assert tb.user_config_argv("d2") == []


PEER = ["--sync-peer", "192.168.0.3"]  # d2's address on the inner segment: sync from it only


def test_lvs_sync_daemon_sets_the_directors_sync(tmp_path):
    assert make_testbed(tmp_path, syncd="lvs_sync_daemon eth1 VI_1 id 9").sync_args("d1") == [
        "--sync-iface",
        "d1-eth1",
        "--sync-id",
        "9",
        *PEER,
    ]
    old = make_testbed(tmp_path, old="lvs_sync_daemon_interface eth1")
    assert old.sync_args("d1") == ["--sync-iface", "d1-eth1", "--sync-id", "61", *PEER]
    layout = make_testbed(tmp_path).sync_args("d1")
    assert layout == ["--sync-iface", "d1-eth1", "--sync-id", "1", *PEER]
    assert make_testbed(tmp_path, conn_sync=False).sync_args("d1") == []


def test_the_sync_peer_is_the_other_directors_address_on_the_sync_segment(tmp_path):
    tb = Testbed("nat1", LayoutParams())
    assert tb.sync_args("d2")[-2:] == ["--sync-peer", "10.0.1.2"]  # d1's first address
    assert tb.sync_args("d1")[-2:] == ["--sync-peer", "10.0.1.3"]


def test_real_keepalived_refuses_mapped_interfaces(tmp_path):
    with pytest.raises(ValueError, match="reads the file as it is"):
        make_testbed(tmp_path, ha="keepalived")
