"""The full-kernel runner: Debian's stock kernel under qemu (virtme-ng) on the host's own root.

For machines whose kernel lacks ip_vs, sch_netem or the OVS module. `config` is the pure part
(command line, guest script, result parsing, KVM decision); `runner` does the I/O (kernel cache,
booting, cleanup). Not for provisioning packages: scripts/provision.sh installs qemu and vng.
"""
