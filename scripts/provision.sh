#!/usr/bin/env bash
# The one idempotent installer for lvs-testbed on Debian 12 / Ubuntu 22.04+.
# Used by `make setup`, CI (.ci/run through make) and the Vagrantfile alike.
# A second run changes nothing and takes seconds: apt runs only when a package is missing,
# pip only when pyproject.toml changed since the last install.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

APT_PACKAGES=(
  mininet openvswitch-switch openvswitch-testcontroller bridge-utils
  iperf3 libiperf0 ethtool iproute2 nftables iputils-ping iputils-arping
  tcpdump tshark hping3 keepalived cgroup-tools procps psmisc curl netcat-openbsd openssl
  python3 python3-venv python3-pip ruby
  ipvsadm kmod qemu-system-x86 busybox-static file
)

log() { printf '[provision] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "provision.sh must run as root (it installs packages): sudo $0, or \`make setup\`" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# Open vSwitch: systemd starts it on a normal machine; containers and CI have no systemd.
# ovs-ctl skips the kernel module when it cannot be loaded, leaving the userspace datapath.
# Its daemons outlive this script, so they start without the files the caller had open (else
# a lock held around `make setup` would stay held by ovs-vswitchd for good).
without_inherited_fds() (
  self=$BASHPID
  for fd in $(ls "/proc/$self/fd"); do
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
  done
  "$@"
)
if ! ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
  log "starting Open vSwitch"
  without_inherited_fds /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 \
    || without_inherited_fds /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random \
      --no-ovs-vswitchd-start >/dev/null
fi

# The venv comes from the *system* python3: Debian's mininet module lives in its site-packages.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mininet.net' 2>/dev/null; then
  log "creating .venv from /usr/bin/python3 (with system site packages)"
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi

# constraints.txt pins every Python package to the version CI tested (`make lock` regenerates
# it); pip moves an existing .venv to those versions too, up or down.
stamp=.venv/.lvs-testbed-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing the project (editable, with dev extras, versions from constraints.txt)"
  # pip's chatter goes to a log; it is shown only if the install fails.
  if ! timeout 1200 .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]' \
    >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    exit 1
  fi
  echo "$want" >"$stamp"
else
  log "python packages up to date"
fi

# Put the CLI on root's PATH (sudo's secure_path has /usr/local/bin). Another checkout's link
# is left alone; a dangling one is replaced.
link=/usr/local/bin/lvs-testbed
if [ ! -e "$link" ]; then
  ln -sfn "$here/.venv/bin/lvs-testbed" "$link"
elif [ "$(readlink -f "$link")" != "$(readlink -f "$here/.venv/bin/lvs-testbed")" ]; then
  log "note: $link belongs to another checkout ($(readlink "$link")); use $here/.venv/bin/lvs-testbed"
fi
log "ready: $(.venv/bin/lvs-testbed --version 2>/dev/null || echo 'lvs-testbed')"
