#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as real parts when they are missing: curl
# (an HTTP client against NWEB) and chromium (a real browser, through playwright-core). Called by
# the test command only; util-linux (mkfs.minix, fsck.minix, unshare, nsenter) is part of Debian.
set -euo pipefail

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "dvs: installing ${missing[*]} (Debian packages)" >&2
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo -n)
  else
    echo "dvs: ${missing[*]} missing and this is not root (no sudo): run 'apt-get install ${missing[*]}' as root" >&2
    exit 1
  fi
fi
if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
