"""Run-time plumbing every other part stands on: the run directory and its registry of what a
run created (`registry`), the machine's one-run-at-a-time lock (`runlock`), the daemons' kept
logs (`logs`), the daemons' control channel (`control`) and host cgroups (`cgroup`).

Imports nothing else of the testbed and no Mininet: the daemons (director, VRRP, controllers)
and the Mininet glue (`testbed.net`) both build on it.
"""
