#!/bin/sh
# Zabbix 6.0 from Debian's own packages, for the Zabbix integration tests
# (tests/packaging/test_zabbix_*.py start their own server, agent and `php -S`
# frontend on 10051/10050/18080; nothing is started here, no system service is
# enabled). The package set and why each one is named (measured with Debian 12's
# zabbix 1:6.0.14+dfsg packages):
#   zabbix-server-mysql  zabbix_server, zabbix_get, zabbix_js and the schema
#   zabbix-agent         zabbix_agentd, zabbix_sender
#   zabbix-frontend-php  the API (api_jsonrpc.php)
#   php-mysql            must be named, or apt satisfies the frontend with php-pgsql
#   php8.2-cgi           satisfies php8.2 without pulling Apache
#   php-cli              `php -S`, the built-in server that serves the API
#   mariadb-client       the `mariadb` CLI that imports the schema
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs zabbix-server-mysql zabbix-agent zabbix-frontend-php php8.2-cgi php-cli php-mysql mariadb-client
# The shared MariaDB on 127.0.0.1:3306 is started by the machine; the tests only
# create their own `autoremedy_zabbix` database in it.
