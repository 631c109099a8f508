#!/bin/sh
# make asset: one Sensu Go asset tarball per supported platform, its sha512, and
# the asset definition (spec.builds with filters) + .bonsai.yml, all in $1.
#
#   ASSET_ARCHES    platforms to build (default: "amd64 arm64")
#   ASSET_PYTHON    CPython X.Y the C accelerators and .pyc files are built for
#                   (default: the version of /usr/bin/python3 here)
#   ASSET_URL_BASE  where you will host the tarballs (default: a placeholder)
#
# The tarballs are reproducible (SOURCE_DATE_EPOCH, default: the last commit's
# time), so rebuilding unchanged sources keeps every sha512 in the definition.
set -eu
out=${1:?usage: build-asset.sh OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
[ -x "$py" ] || py=python3
version=$("$py" -c "import re;print(re.search(r'__version__ = \"([^\"]+)\"', open('$here/autoremedy/__init__.py').read()).group(1))")
arches=${ASSET_ARCHES:-amd64 arm64}
system_py=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
target_py=${ASSET_PYTHON:-$system_py}
url_base=${ASSET_URL_BASE:-https://assets.example.invalid/autoremedy/$version}
: "${SOURCE_DATE_EPOCH:=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sums="$out/autoremedy_${version}_sha512-checksums.txt"
: > "$sums"
builds=""
for arch in $arches; do
    name="autoremedy_${version}_linux_${arch}.tar.gz"
    compile=""
    # .pyc files only where this machine can run the target interpreter.
    if [ "$arch" = amd64 ] && [ "$(uname -m)" = x86_64 ] && [ "$target_py" = "$system_py" ]; then
        compile="--compile-with /usr/bin/python3"
    fi
    "$py" "$here/packaging/tools/stage.py" prefix "$work/$arch" --arch "$arch" --python "$target_py" $compile
    cp "$here/packaging/sensu/README.asset.md" "$work/$arch/README.md"
    sha=$("$py" "$here/packaging/tools/stage.py" tar "$work/$arch" "$out/$name")
    echo "$sha  $name" >> "$sums"
    builds="$builds
      - url: $url_base/$name
        sha512: $sha
        filters:
          - entity.system.os == 'linux'
          - entity.system.arch == '$arch'
          - entity.system.platform_family != 'alpine'"
    echo "built $out/$name"
done

# The asset definition (multi-build form; the top-level url/sha512 form is deprecated).
cat > "$out/autoremedy-asset.yaml" <<YAML
# sensuctl create -f autoremedy-asset.yaml
# Runtime needed on the agent: CPython >= 3.9 at /usr/bin/python3 (or set
# AUTOREMEDY_PYTHON in the check's env_vars) and glibc >= 2.17. The C parts
# (psutil) are per architecture; see docs/packaging.md.
type: Asset
api_version: core/v2
metadata:
  name: autoremedy
  annotations:
    io.sensu.bonsai.version: "$version"
    autoremedy/python: "CPython >= 3.9; accelerators and .pyc built for $target_py"
spec:
  builds:$builds
YAML
cp "$here/packaging/sensu/.bonsai.yml" "$out/.bonsai.yml"
echo "wrote $out/autoremedy-asset.yaml and $sums"
if [ -z "${ASSET_URL_BASE:-}" ]; then
    # Sensu downloads each build from its url: a placeholder cannot be fetched.
    echo "build-asset: warning: ASSET_URL_BASE is not set, so the asset definition's urls point at" \
         "the placeholder $url_base/; set ASSET_URL_BASE to where you will host the tarballs" \
         "(make asset ASSET_URL_BASE=https://...) before 'sensuctl create'" >&2
fi
