#!/bin/sh
# meshpkt set-up on a fresh Debian 12 machine (only python3 needed beforehand).
#   ./run.sh demo   install meshpkt into .venv and run `meshpkt analyze` on the shipped captures
#   ./run.sh test   install test dependencies (apt + pip) and run every test
set -eu
cd "$(dirname "$0")"
VENV=${MESHPKT_VENV:-.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    missing=""
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    echo ">> apt-get install$missing"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    echo "wireshark-common wireshark-common/install-setuid boolean false" | as_root debconf-set-selections
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        if ! python3 -c "import ensurepip, venv" 2>/dev/null; then apt_install python3-venv python3-pip; fi
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".$1"
    "$VENV/bin/python" -m meshpkt.engine.warm  # numba's cache, compiled once here rather than on first use
}

case "${1:-}" in
    demo)
        venv ""
        exec "$VENV/bin/meshpkt" analyze captures/ingress-3node
        ;;
    test)
        apt_install tcpdump tshark iptables nftables iproute2 ipvsadm curl procps ethtool openssh-server openssh-client docker.io busybox-static
        venv "[test]"
        "$VENV/bin/ruff" check meshpkt tests benchmarks notebooks
        "$VENV/bin/mypy" meshpkt
        shift
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: $0 demo|test [pytest args]" >&2
        exit 2
        ;;
esac
