#!/bin/sh
# make st2-pack: the StackStorm pack as a directory that `st2 pack install
# file://...` accepts (a git repository) and as a tarball, in $1/stackstorm/.
set -eu
out=${1:?usage: build-st2-pack.sh OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$out/stackstorm/autoremedy"
version=$(sed -n 's/^version: *//p' "$here/packaging/stackstorm/autoremedy/pack.yaml")
rm -rf "$dest"
mkdir -p "$out/stackstorm"
cp -r "$here/packaging/stackstorm/autoremedy" "$dest"
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
# st2 pack install clones the pack: make it a repository with one commit.
git -C "$dest" init -q
git -C "$dest" add -A
git -C "$dest" -c user.name=autoremedy -c user.email=autoremedy@example.invalid commit -qm "autoremedy pack $version"
tar -C "$out/stackstorm" --exclude=.git -czf "$out/stackstorm/autoremedy-st2-pack-$version.tar.gz" autoremedy
echo "built $dest (st2 pack install file://$dest) and $out/stackstorm/autoremedy-st2-pack-$version.tar.gz"
