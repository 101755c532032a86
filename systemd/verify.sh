#!/bin/sh
# Check the units as CI does: systemd-analyze verify, then print the offline security score.
# ExecStart points at /opt/shelfsignal/venv, which exists only on an installed machine, so the
# units are checked from a copy whose ExecStart binary is swapped for one that exists here.
# Usage: systemd/verify.sh [PYTHON]   (default: the python3 on PATH)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
python=$(readlink -f "${1:-$(command -v python3)}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
# check UNIT LABEL: verify (any message fails: verify exits 0 on unknown keys and unparsable
# values, "ignoring"), then print the offline security score.
check() {
    if systemd-analyze verify "$1" > "$work/verify.out" 2>&1 && [ ! -s "$work/verify.out" ]; then
        echo "verify $2: ok"
    else
        sed "s#$work/##" "$work/verify.out"
        echo "verify $2: FAILED"
        status=1
    fi
    systemd-analyze security --offline=true --no-pager "$1" | tail -n 1
}

for unit in "$here"/*.service; do
    name=$(basename "$unit")
    sed "s#^ExecStart=/opt/shelfsignal/venv/bin/[a-z-]*#ExecStart=$python#" "$unit" > "$work/$name"
    check "$work/$name" "$name"
done

# The GPIO drop-in, merged into the edge unit as installed (systemd reads NAME.service.d/).
mkdir -p "$work/edge-agent.service.d"
cp "$here/edge-agent-gpio.conf" "$work/edge-agent.service.d/gpio.conf"
check "$work/edge-agent.service" "edge-agent.service + edge-agent-gpio.conf"
exit $status
