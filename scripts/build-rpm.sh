#!/bin/sh
# make rpm: build the autoremedy rpm with rpmbuild (Debian's `rpm` package) into $1.
#
#   RPM_ARCH     amd64 (x86_64, default) or arm64 (aarch64)
#   RPM_PYTHON   the target's python3 (default 3.9: RHEL 9 and its rebuilds)
#
# The private prefix is staged here with packaging/tools/stage.py (wheels for the
# target Python and architecture) and handed to rpmbuild as Source0 with the
# packaging files; packaging/rpm/autoremedy.spec installs it.
set -eu
out=${1:?usage: build-rpm.sh OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
[ -x "$py" ] || py=python3
arch=${RPM_ARCH:-amd64}
case $arch in amd64) rpmarch=x86_64 ;; arm64) rpmarch=aarch64 ;; *) echo "build-rpm: unknown arch $arch" >&2; exit 1 ;; esac
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$here/autoremedy/__init__.py")
: "${SOURCE_DATE_EPOCH:=$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/$(printf 'autoremedy-%s' "$version")"
mkdir -p "$src/docs" "$work/rpmbuild/SOURCES" "$work/rpmbuild/SPECS" "$out"
"$py" "$here/packaging/tools/stage.py" prefix "$src/prefix" --arch "$arch" --python "${RPM_PYTHON:-3.9}"
cp -r "$here/packaging" "$src/packaging"
rm -rf "$src/packaging/debian" "$src/packaging/rpm"
find "$src/packaging" -name __pycache__ -prune -exec rm -rf {} +
cp "$here/docs/packaging.md" "$src/docs/"
tar -C "$work" -czf "$work/rpmbuild/SOURCES/autoremedy-$version.tar.gz" "autoremedy-$version"
sed "s/@VERSION@/$version/" "$here/packaging/rpm/autoremedy.spec" > "$work/rpmbuild/SPECS/autoremedy.spec"
rpmbuild -bb --quiet --target "$rpmarch" --define "_topdir $work/rpmbuild" \
    --define "_build_id_links none" "$work/rpmbuild/SPECS/autoremedy.spec" >"$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    exit 1
}
for f in "$work"/rpmbuild/RPMS/*/*.rpm; do
    cp "$f" "$out/"
    echo "built $out/$(basename "$f")"
done
