#!/usr/bin/env bash
# The Debian packages vmlb needs from the system, in one place: `make setup` (so `make demo` and
# `make test`) and `.ci/run` both run this script.
#
# Each line below pairs a check that passes when the thing is present with the package that
# brings it; add a line to add a package. As root (CI, our machines) the missing ones are
# installed with apt-get; otherwise the script prints the one command to run and fails, since
# nothing after it can work without them.
#
#   tools/system-packages.sh           install what is missing (or say how)
#   tools/system-packages.sh --list    print the missing packages, install nothing
set -euo pipefail

need=()
# The checks: a command on the PATH, or (for a package that brings no command) dpkg's record.
have() { command -v "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have java || need+=(openjdk-17-jdk-headless)          # the local Kafka broker
have mvn || need+=(maven)                             # installs Kafka's jars from Maven Central
have cc || need+=(gcc)                                # builds libvirt-python
have pkg-config || need+=(pkg-config)                 # ... against
pkg-config --exists libvirt 2>/dev/null || need+=(libvirt-dev)  # ... Debian's libvirt
have kcat || need+=(kcat)                             # an external Kafka client, in tests
have node || need+=(nodejs)                           # the web page's browser test
have npm || need+=(npm)
have chromium || need+=(chromium)                     # ... drives Debian's chromium
have prometheus || need+=(prometheus)                 # scrapes a worker in tests (with promtool)
# The real-QEMU test (tests/integration/producers/qemu_host.py): QEMU, a libvirt daemon without
# systemd (so not libvirt-daemon-system), and a static busybox for the guest; the guest kernel
# is fetched by the test itself (apt-get download, not installed).
for package in qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients busybox-static; do
  installed "$package" || need+=("$package")
done

if [ "${1:-}" = "--list" ]; then
  echo "${need[*]}"
  exit 0
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "vmlb needs these system packages: ${need[*]}" >&2
  echo "install them, then run make again:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "setup: installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
