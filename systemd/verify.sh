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
for unit in "$here"/*.service; do
    name=$(basename "$unit")
    sed "s#^ExecStart=/opt/shelfsignal/venv/bin/[a-z-]*#ExecStart=$python#" "$unit" > "$work/$name"
    # verify exits 0 on unknown keys and unparsable values ("ignoring"), so any message fails.
    if systemd-analyze verify "$work/$name" > "$work/verify.out" 2>&1 && [ ! -s "$work/verify.out" ]; then
        echo "verify $name: ok"
    else
        sed "s#$work/##" "$work/verify.out"
        echo "verify $name: FAILED"
        status=1
    fi
    systemd-analyze security --offline=true --no-pager "$work/$name" | tail -n 1
done

# The GPIO drop-in, merged into the edge unit as installed (systemd reads NAME.service.d/).
mkdir -p "$work/edge-agent.service.d"
cp "$here/edge-agent-gpio.conf" "$work/edge-agent.service.d/gpio.conf"
if systemd-analyze verify "$work/edge-agent.service" > "$work/verify.out" 2>&1 && [ ! -s "$work/verify.out" ]; then
    echo "verify edge-agent.service + edge-agent-gpio.conf: ok"
else
    sed "s#$work/##" "$work/verify.out"
    echo "verify edge-agent.service + edge-agent-gpio.conf: FAILED"
    status=1
fi
systemd-analyze security --offline=true --no-pager "$work/edge-agent.service" | tail -n 1
exit $status
