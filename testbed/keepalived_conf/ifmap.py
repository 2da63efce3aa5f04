"""Interface names in a `Config`: which it uses, and the same config with them renamed.

For bringing a production keepalived.conf (``interface eth0``) to a lab host whose NICs are
``d1-eth0``: ``lvs-testbed up --map-iface eth0=d1-eth0`` and ``vrrp run --map-iface``.
Every place keepalived.conf names an interface is covered: an instance's ``interface`` and
``track_interface``, an address's ``dev`` and its ``label`` (``eth0:1`` becomes ``d1-eth0:1``:
Linux wants a label to start with its device), routes' and rules' ``dev``/``iif``/``oif``,
``default_interface``, ``lvs_sync_daemon`` and a checker's ``bind_if``.

Not for: checking that the names exist on a host (the caller knows the host).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from testbed.keepalived_conf.model import (
    Config,
    Route,
    Rule,
    TrackInterface,
    VirtualAddress,
    VrrpInstance,
)

MAX_IFNAME = 15  # IFNAMSIZ - 1
_DEVICE_WORDS = ("dev", "iif", "oif")


def _addresses(addresses: list[VirtualAddress]) -> Iterator[str]:
    for a in addresses:
        if a.dev:
            yield a.dev


def _argv_devices(argv: tuple[str, ...]) -> Iterator[str]:
    for i, word in enumerate(argv[:-1]):
        if word in _DEVICE_WORDS:
            yield argv[i + 1]


def interfaces_of(config: Config) -> set[str]:
    """Every interface name ``config`` refers to."""
    names: set[str] = set()
    for inst in config.instances.values():
        if inst.interface:
            names.add(inst.interface)
        names.update(t.name for t in inst.track_interfaces)
        names.update(_addresses(inst.virtual_ipaddresses))
        for item in [*inst.virtual_routes, *inst.virtual_rules]:
            names.update(_argv_devices(item.argv))
    names.update(_addresses(config.static_addresses))
    for item in [*config.static_routes, *config.static_rules]:
        names.update(_argv_devices(item.argv))
    g = config.global_defs
    if g.default_interface and config.static_addresses:
        names.add(g.default_interface)
    if g.lvs_sync_daemon is not None:
        names.add(g.lvs_sync_daemon.interface)
    for vs in config.virtual_servers:
        for rs in vs.real_servers:
            names.update(c.bind_if for c in rs.checkers if c.bind_if)
    return names


def rename_interfaces(config: Config, mapping: dict[str, str]) -> Config:
    """A copy of ``config`` with every interface ``mapping`` names renamed."""
    if not mapping:
        return config

    def name(ifname: str | None) -> str | None:
        return mapping.get(ifname, ifname) if ifname is not None else None

    def label(text: str | None) -> str | None:
        if text is None:
            return None
        dev, sep, rest = text.partition(":")
        return (mapping.get(dev, dev) + sep + rest) if sep else mapping.get(text, text)

    def address(a: VirtualAddress) -> VirtualAddress:
        return dataclasses.replace(a, dev=name(a.dev), label=label(a.label))

    def argv(words: tuple[str, ...]) -> tuple[str, ...]:
        out = list(words)
        for i in range(len(out) - 1):
            if out[i] in _DEVICE_WORDS:
                out[i + 1] = mapping.get(out[i + 1], out[i + 1])
        return tuple(out)

    def routes(items: list[Route]) -> list[Route]:
        return [dataclasses.replace(r, argv=argv(r.argv)) for r in items]

    def rules(items: list[Rule]) -> list[Rule]:
        return [dataclasses.replace(r, argv=argv(r.argv)) for r in items]

    def instance(inst: VrrpInstance) -> VrrpInstance:
        return dataclasses.replace(
            inst,
            interface=name(inst.interface),
            track_interfaces=[
                TrackInterface(mapping.get(t.name, t.name), t.weight, t.reverse)
                for t in inst.track_interfaces
            ],
            virtual_ipaddresses=[address(a) for a in inst.virtual_ipaddresses],
            virtual_routes=routes(inst.virtual_routes),
            virtual_rules=rules(inst.virtual_rules),
        )

    g = config.global_defs
    syncd = g.lvs_sync_daemon
    if syncd is not None:
        syncd = dataclasses.replace(syncd, interface=mapping.get(syncd.interface, syncd.interface))
    global_defs = dataclasses.replace(
        g, default_interface=name(g.default_interface), lvs_sync_daemon=syncd
    )
    virtual_servers = [
        dataclasses.replace(
            vs,
            real_servers=[
                dataclasses.replace(
                    rs,
                    checkers=[dataclasses.replace(c, bind_if=name(c.bind_if)) for c in rs.checkers],
                )
                for rs in vs.real_servers
            ],
        )
        for vs in config.virtual_servers
    ]
    return dataclasses.replace(
        config,
        global_defs=global_defs,
        instances={n: instance(i) for n, i in config.instances.items()},
        static_addresses=[address(a) for a in config.static_addresses],
        static_routes=routes(config.static_routes),
        static_rules=rules(config.static_rules),
        virtual_servers=virtual_servers,
    )


def parse_mapping(items: list[str], resolve: Callable[[str], str] | None = None) -> dict[str, str]:
    """``NAME=IFACE`` items into a mapping; ValueError naming the bad one. ``resolve`` turns
    the right-hand side into an interface name (e.g. a layout's ``outer`` into ``d1-eth0``)."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"--map-iface takes NAME=IFACE, got {item!r}")
        new = resolve(new) if resolve is not None else new
        for ifname in (old, new):
            if len(ifname) > MAX_IFNAME or "/" in ifname or ifname.strip() != ifname:
                raise ValueError(f"{ifname!r} is not an interface name (1..15 characters)")
        if mapping.get(old, new) != new:
            raise ValueError(f"--map-iface maps {old} twice ({mapping[old]} and {new})")
        mapping[old] = new
    return mapping
