# Helpers for setup.d parts (sourced, not run).
# need_pkgs PKG...: apt-get install the packages that are not installed yet.
need_pkgs() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # A policy-rc.d that refuses service starts keeps postinst scripts from starting
    # system daemons on ports the tests use (Debian starts them on install).
    policy=/usr/sbin/policy-rc.d
    created=""
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
    apt-get -o DPkg::Lock::Timeout=600 update -qq || true
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
    [ -n "$created" ] && rm -f "$policy"
    return 0
}
