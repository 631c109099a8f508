#!/bin/sh
# Base tools the node tests use. apt only when something is missing (CI machines are
# fresh; developer machines usually have them).
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs procps util-linux monitoring-plugins-basic
