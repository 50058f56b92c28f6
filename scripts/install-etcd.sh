#!/usr/bin/env bash
# Installs Debian's etcd-server when /usr/bin/etcd is missing: the etcd backend's tests start their
# own etcd processes from it. Called by the test command only.
set -euo pipefail

# The package's own service is never left running (nothing here uses it).
if [ ! -x /usr/bin/etcd ]; then
  echo "dvs: installing etcd (Debian package etcd-server)" >&2
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      as_root=(sudo -n)
    else
      echo "dvs: /usr/bin/etcd is missing and this is not root (no sudo): run 'apt-get install etcd-server' as root" >&2
      exit 1
    fi
  fi
  # Keep maintainer scripts from starting the service during the install (policy-rc.d exit 101 =
  # "action not allowed"), unless the machine already has a policy of its own.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    own_policy=1
  fi
  install_status=0
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || install_status=$?
  if [ "$install_status" -eq 0 ]; then
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends etcd-server >&2 || install_status=$?
  fi
  if [ "$own_policy" -eq 1 ]; then "${as_root[@]}" rm -f "$policy"; fi
  if [ "$install_status" -ne 0 ] || [ ! -x /usr/bin/etcd ]; then
    echo "dvs: could not install etcd-server (apt-get exit $install_status)" >&2
    exit 1
  fi
  # The package's own service: stopped now and disabled for the next boot, under systemd or not.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    "${as_root[@]}" systemctl disable --now etcd.service >/dev/null 2>&1 || true
  else
    # (systemctl disable works on the unit files without a running systemd, SysV links included.)
    if [ -x /etc/init.d/etcd ]; then "${as_root[@]}" /etc/init.d/etcd stop >/dev/null 2>&1 || true; fi
    if command -v systemctl >/dev/null 2>&1; then
      "${as_root[@]}" systemctl disable etcd.service >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1; then
      "${as_root[@]}" update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
  fi
fi

