#!/bin/sh
# make zabbix: everything a Zabbix 6.0 installation needs, in $1/zabbix/:
#   autoremedy_template.yaml   the templates, one per role (regenerated from packaging/zabbix/template.py
#                              and checked against the committed copy)
#   zabbix_agentd.d/           the agent UserParameter drop-in
#   externalscripts/ alertscripts/   the scripts (copy to ExternalScripts / AlertScriptsPath)
#   mediatypes.yaml st2_webhook.js action.yaml   what `autoremedy zabbix-setup --source` imports
set -eu
out=${1:?usage: build-zabbix.sh OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
[ -x "$py" ] || py=python3
dest="$out/zabbix"
rm -rf "$dest"
mkdir -p "$dest"
"$py" "$here/packaging/zabbix/template.py" > "$dest/autoremedy_template.yaml"
if ! cmp -s "$dest/autoremedy_template.yaml" "$here/packaging/zabbix/autoremedy_template.yaml"; then
    echo "build-zabbix: packaging/zabbix/autoremedy_template.yaml is stale;" \
         "run: make generate" >&2
    exit 1
fi
for part in zabbix_agentd.d externalscripts alertscripts mediatypes.yaml st2_webhook.js action.yaml; do
    cp -r "$here/packaging/zabbix/$part" "$dest/"
done
echo "built $dest (import: autoremedy zabbix-setup --source $dest ...)"
