"""The OpenFlow director, as an os-ken app file: load it by path, or copy it to change it.

It answers ARP and ping for the VIP with a virtual MAC, sends each new connection's first
packet to the controller, picks a real server with the userspace IPVS's own schedulers, and
installs that connection's flows (DR: a new destination MAC; NAT: addresses and ports
rewritten both ways). Run it against a layout whose switches are Open vSwitch::

    sudo lvs-testbed controller run controllers/lb.py              # the DR layout's services
    sudo lvs-testbed controller run controllers/lb.py --mode nat   # the NAT layout's
    sudo lvs-testbed controller run controllers/lb.py --rules my.ipvsadm

Without options it serves what `OpenFlowDirector.default_config` returns: the services of
the layout named by LAYOUT with N_RS real servers (tcp 80 and udp 7 on the VIP, round robin,
as `lvs-testbed up` configures the Python director). Copy the file and change LAYOUT, N_RS or
default_config to serve something else by default; ``lvs-testbed ipvsadm --director of ...``
changes the services of a running one. docs/openflow.md says more.

The logic is `testbed.controllers.lb` (the `Balancer`, unit-tested with a fake datapath);
what a layout's services are is derived from its plan by `testbed.net.daemon_configs`.
"""

from testbed.controllers import lb
from testbed.net.daemon_configs import lb_config_for_layout

LAYOUT = "dr"
"""The layout whose default services are served: dr (VIP 10.0.0.100, -g) or nat (VIP
10.0.1.100, -m, also answering for the real servers' gateway 192.168.0.254)."""
N_RS = 3
"""Real servers rs1..rsN of that layout."""


class OpenFlowDirector(lb.OpenFlowDirector):
    """The package's OpenFlow director with a layout's services as its default."""

    @classmethod
    def default_config(cls) -> lb.LbConfig:
        return lb_config_for_layout(LAYOUT, N_RS)
