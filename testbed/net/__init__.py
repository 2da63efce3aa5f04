"""Mininet glue: the node classes (`nodes`), shaped links (`links`, `shaping`), `Testbed`, which
brings a layout up and down with everything that runs on it (`network`), out-of-process access
to a running layout's hosts (`hosts`), failure injection (`failover`), the daemons'
configurations derived from the plan (`daemon_configs`), per-link packet captures (`capture`)
and the Mininet CLI (`console`).

Imports Mininet (except `hosts`, `shaping`, `daemon_configs` and `capture`); everything below
it (the daemons, `testbed.runtime`) does not.
"""
