#!/bin/sh
# MySQL/MariaDB replication and Galera tests (tests/mysql): the server and client
# binaries the throwaway instances run (mariadbd, mariadb-install-db, mariadb-dump,
# my_print_defaults), the Galera provider and its rsync state transfer (which finds
# listening ports with ss or lsof), openssl for the test CA, setsid to start servers
# detached. Idempotent: apt only when something is missing. The tests start and stop
# their own servers on 3317/3318 and 3321/3322; the shared MariaDB on 3306 is not
# touched here (a policy-rc.d keeps the package from starting a service at install).
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs mariadb-server mariadb-client galera-4 rsync openssl iproute2 lsof util-linux
test -e /usr/lib/galera/libgalera_smm.so || { echo "galera-4 installed no provider library" >&2; exit 1; }
id mysql >/dev/null 2>&1 || { echo "the mariadb-server package created no mysql user" >&2; exit 1; }
