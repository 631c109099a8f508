#!/bin/sh
# Tools for `make rpm`, `make deb` and the packaging tests:
#   rpm         rpmbuild and `rpm -qp` (Debian's build of RPM)
#   debhelper   dh, used by packaging/debian/rules under dpkg-buildpackage
#   dpkg-dev    dpkg-buildpackage
#   fakeroot    root-owned files in the .deb without building as root
#   sudo        visudo -c, to validate the sudoers drop-in
#   systemd     systemd-analyze verify for the replay service and timer (the
#               binary works without systemd running as PID 1)
#   python3     /usr/bin/python3, the interpreter the asset and the packages
#               run with (and precompile for)
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs rpm debhelper dpkg-dev fakeroot sudo systemd python3
