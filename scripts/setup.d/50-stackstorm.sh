#!/bin/sh
# StackStorm area: orquesta 1.2.0 (the workflow engine StackStorm runs) in a venv
# of its own next to .venv, for tests/stackstorm. Its pins (jsonschema 2.6,
# networkx 1.11) cannot live in the bundle's venv. Idempotent: the venv is
# rebuilt only when the requirements file changes.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.venv-orquesta"
req="$root/tests/stackstorm/requirements-orquesta.txt"
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$req" "$stamp"; then
    echo "stackstorm: orquesta venv up to date"
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip --disable-pip-version-check -q install -r "$req"
cp "$req" "$stamp"
echo "stackstorm: orquesta venv ready ($("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("orquesta"))'))"
