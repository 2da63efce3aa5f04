"""os-ken (OpenFlow 1.3) controller apps for the layouts built with ``switch="ovs"``.

- ``l2_learning``: a learning switch, for OVS switches in ``failMode="secure"`` that carry
  the ordinary layouts.
- ``lb``: the OpenFlow director (``director="openflow"``): answers ARP for the VIPs, picks a
  real server per new connection with the userspace IPVS's schedulers and installs
  per-connection DR or NAT flows; everything else it switches like ``l2_learning``.
- ``flows``: the OpenFlow messages both send (flow installation, deletion, packet-out).
- ``runner``: starts one of them, or an app file given by its path (the top-level
  ``controllers/`` folder holds app files users load and copy), with os-ken's AppManager
  (``lvs-testbed controller run``).

The logic lives in plain classes driven by thin ``@set_ev_cls`` handlers, so tests drive it
with a fake datapath and no switch.
"""
