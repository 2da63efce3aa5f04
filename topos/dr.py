"""The lvs-dr layout for Mininet's own command line:

    sudo mn --custom topos/dr.py --topo lvs-dr,3 --test pingall

(3 = real servers; more parameters as keywords, e.g. --topo lvs-dr,3,n_clients=4,bw_mbit=100).
The layout itself lives in testbed/topo/layouts.py; this file only registers it for mn.
"""

import inspect
import os
import sys

# mn runs this file with exec(), without __file__: find the checkout from the code object.
_here = os.path.dirname(os.path.abspath(inspect.currentframe().f_code.co_filename))
sys.path.insert(0, os.path.dirname(_here))

from testbed.topo.layouts import DrTopo  # noqa: E402

topos = {"lvs-dr": DrTopo}
