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

# The suite runs in parallel workers: a real Nova (each service keeps a connection pool),
# the Zabbix server (a connection per server process) and the fleet ledger tests can meet
# on the shared MariaDB at once, past its default 151 connections ("Too many connections").
# Raising the limit at run time takes nothing from anyone else and is not persisted.
if command -v mysql >/dev/null 2>&1 && mysql -uroot -h127.0.0.1 -e 'SELECT 1' >/dev/null 2>&1; then
    current=$(mysql -uroot -h127.0.0.1 -N -e 'SELECT @@max_connections')
    if [ "$current" -lt 600 ]; then
        mysql -uroot -h127.0.0.1 -e 'SET GLOBAL max_connections = 600'
        echo "mysql: shared MariaDB max_connections $current -> 600 (this boot only)"
    fi
fi
