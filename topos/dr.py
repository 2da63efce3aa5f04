"""The lvs-dr layout for Mininet's own command line::

    sudo mn --custom topos/dr.py --topo lvs-dr,3
    mininet> lvs start    # the real servers, the director(s): as `lvs-testbed up dr`
    mininet> c1 curl -s http://10.0.0.100/

(3 = real servers; more parameters as keywords, e.g. --topo lvs-dr,3,n_clients=4,bw_mbit=100;
``--test pingall`` checks reachability without starting anything.) The layout itself lives in
testbed/topo/layouts.py; this file registers it for mn and gives mn the testbed's CLI
(testbed/net/mn_cli.py: ``lvs start|stop|status``, ``check``, ``plan``).
"""

import inspect
import os
import sys

# mn runs this file with exec(), without __file__: find the checkout from the code object.
_here = os.path.dirname(os.path.abspath(inspect.currentframe().f_code.co_filename))
sys.path.insert(0, os.path.dirname(_here))

from testbed import use_checkout_venv  # noqa: E402

use_checkout_venv()  # mn runs the system Python: the CLI needs the .venv's packages too

from testbed.net.mn_cli import MnLvsCLI  # noqa: E402
from testbed.topo.layouts import DrTopo  # noqa: E402

topos = {"lvs-dr": DrTopo}
CLI = MnLvsCLI  # mn uses a --custom file's CLI class instead of its own
