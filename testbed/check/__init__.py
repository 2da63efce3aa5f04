"""keepalived's check side: health checks of real servers (`checker`) and the IPVS commands a
configuration's ``virtual_server`` blocks stand for (`lvsconfig`).

Kept apart from VRRP as keepalived keeps its ``check/`` beside ``vrrp/``: the VRRP daemon runs
the checker in a thread of its own, and the OpenFlow director reads the same blocks.
"""
