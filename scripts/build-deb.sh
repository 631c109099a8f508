#!/bin/sh
# make deb: build the autoremedy .deb with dpkg-buildpackage into $1.
# packaging/debian/ becomes debian/ at the top of a scratch copy of the source
# tree (the repository's top level is fixed by the design card); its rules stage
# the private prefix /usr/lib/autoremedy with packaging/tools/stage.py.
set -eu
out=${1:?usage: build-deb.sh OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
[ -x "$py" ] || py=python3
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$here/autoremedy/__init__.py")
debversion=$(sed -n '1s/^autoremedy (\([^)-]*\)-.*/\1/p' "$here/packaging/debian/changelog")
if [ "$version" != "$debversion" ]; then
    echo "build-deb: autoremedy is $version but packaging/debian/changelog says $debversion" >&2
    exit 1
fi
: "${SOURCE_DATE_EPOCH:=$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/autoremedy-$version"
mkdir -p "$src" "$out"
tar -C "$here" --exclude=./.git --exclude=./.venv --exclude=./out --exclude=./build \
    --exclude='*.egg-info' --exclude=.pytest_cache --exclude=__pycache__ -cf - . | tar -C "$src" -xf -
cp -r "$here/packaging/debian" "$src/debian"
(cd "$src" && PYTHON="$py" dpkg-buildpackage -b -us -uc --no-sign >"$work/build.log" 2>&1) || {
    tail -40 "$work/build.log" >&2
    exit 1
}
for f in "$work"/*.deb; do
    cp "$f" "$out/"
    echo "built $out/$(basename "$f")"
done
