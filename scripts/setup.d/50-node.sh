#!/bin/sh
# The disk tests age files with libfaketime: a file's age is the newest of its
# mtime and ctime, and ctime cannot be set back, so the command runs "in the
# future" (FAKETIME=+10d) instead. Idempotent: apt only when it is missing.
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs faketime libfaketime gcc libc6-dev   # gcc: a vfork() helper shows a process in D state
