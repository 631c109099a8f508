#!/bin/sh
# The users the agents run as, for the privilege tests (tests/privilege/):
#   group autoremedy   owns the state directory (root:autoremedy 2770), as the
#                      packages' postinst creates it
#   sensu              the Sensu agent's user (the sensu-go-agent package
#                      creates it; not installed here, so made the same way)
#   zabbix             the Zabbix agent's and server's user (zabbix-agent /
#                      zabbix-server packages create it; 40-zabbix.sh installs them)
# Both join the group, as the packages' postinst does on a node. Idempotent:
# nothing is changed when the users and the membership are there.
# util-linux gives runuser and setpriv; sudo the real sudoers gate.
set -eu
. "$(dirname "$0")/../setup-lib.sh"
need_pkgs util-linux sudo passwd

getent group autoremedy >/dev/null || groupadd --system autoremedy
for user in sensu zabbix; do
    if ! getent passwd "$user" >/dev/null; then
        # What the vendor packages do: a system user with its own group and a
        # home under /var/lib, no login shell.
        useradd --system --user-group --home-dir "/var/lib/$user" --no-create-home \
            --shell /usr/sbin/nologin --comment "$user (autoremedy tests)" "$user"
    fi
    id -nG "$user" | tr ' ' '\n' | grep -qx autoremedy || usermod -a -G autoremedy "$user"
done
echo "users: $(id sensu); $(id zabbix)"
