#!/bin/bash
# Install (or update) the ShelfSignal edge agent on a Raspberry Pi. Safe to run again.
#   sudo scripts/install-edge.sh [--config NODE.toml]
# NODE.toml is the file `stock-hub provision-node NAME` wrote on the hub. Without it an
# existing /etc/edge-agent/edge.toml is kept; the agent starts once a config is in place.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/shelfsignal
VENV=$PREFIX/venv
USER_NAME=edge-agent
CONF_DIR=/etc/edge-agent
CONFIG=""

usage() { echo "usage: sudo $0 [--config NODE.toml]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --config) [ $# -ge 2 ] || usage; CONFIG=$(readlink -f "$2"); shift 2 ;;
        -h|--help) usage ;;
        *) usage ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0 $*" >&2; exit 1; }
if [ -n "$CONFIG" ] && [ ! -f "$CONFIG" ]; then
    echo "no such config file: $CONFIG" >&2; exit 1
fi

step() { echo "==> $*"; }

step "system packages"
# evdev builds against the kernel headers' input.h; python3-venv for the venv.
apt-get update -qq
# udev: the device rules below, and the input group a minimal Debian lacks without it.
apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc udev >/dev/null

step "user $USER_NAME (groups input, dialout)"
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/$USER_NAME --no-create-home --shell /usr/sbin/nologin \
        --groups input,dialout "$USER_NAME"
else
    usermod --append --groups input,dialout "$USER_NAME"
fi

step "virtualenv $VENV with shelfsignal[edge]"
mkdir -p "$PREFIX"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet --upgrade "${SRC}[edge]"
ln -sf "$VENV/bin/edge-agent" /usr/local/bin/edge-agent
# Docs and examples next to the venv, where the unit's Documentation= points.
mkdir -p "$PREFIX/src"
cp -r "$SRC/docs" "$SRC/firmware_config" "$PREFIX/src/"

step "udev rules"
install -m 0644 "$SRC/firmware_config/udev/99-shelfsignal.rules" /etc/udev/rules.d/99-shelfsignal.rules
if command -v udevadm >/dev/null 2>&1; then
    # Fails harmlessly where udevd is not running (a chroot, an image build): rules load at boot.
    udevadm control --reload-rules 2>/dev/null || echo "    udevd is not running: the rules apply at next boot"
    udevadm trigger --subsystem-match=tty --subsystem-match=input --action=change || true
fi

step "config $CONF_DIR/edge.toml"
install -d -m 0750 -o root -g "$USER_NAME" "$CONF_DIR"
if [ -n "$CONFIG" ]; then
    # The file holds the node's MQTT password: readable by the agent, not by everyone.
    install -m 0640 -o root -g "$USER_NAME" "$CONFIG" "$CONF_DIR/edge.toml"
fi
if [ -f "$CONF_DIR/edge.toml" ]; then
    # The password moves out of the config into a root-only file that systemd hands the
    # service as a credential (LoadCredential=); the config points at that file instead, so
    # that `sudo edge-agent doctor` logs in with it too. Idempotent: no password, no change.
    "$VENV/bin/python" - "$CONF_DIR/edge.toml" "$CONF_DIR/mqtt-password" <<'PY'
import os, re, sys, tomllib
config, secret = sys.argv[1], sys.argv[2]
text = open(config).read()
password = tomllib.loads(text).get("mqtt", {}).get("password")
if password:
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, password.encode() + b"\n")
    os.close(fd)
    text = re.sub(r'(?m)^password\s*=.*$', f'password_file = "{secret}"', text, count=1)
    open(config, "w").write(text)
    print(f"    MQTT password moved from {config} to {secret} (root only)")
PY
fi
if [ ! -e "$CONF_DIR/mqtt-password" ]; then
    # LoadCredential= needs the file; an empty one makes the broker refuse the node, which
    # `edge-agent doctor` reports with the fix.
    install -m 0600 -o root -g root /dev/null "$CONF_DIR/mqtt-password"
fi
HAVE_CONFIG=no
if [ -f "$CONF_DIR/edge.toml" ]; then
    # The same code the agent runs validates it; one line names the file, key and problem.
    "$VENV/bin/edge-agent" check-config "$CONF_DIR/edge.toml"
    HAVE_CONFIG=yes
else
    echo "    no config yet: run 'stock-hub provision-node NAME' on the hub, copy the file here and" \
         "run: sudo $0 --config NAME.toml"
fi

step "systemd unit edge-agent.service"
install -m 0644 "$SRC/systemd/edge-agent.service" /etc/systemd/system/edge-agent.service
DROPIN_DIR=/etc/systemd/system/edge-agent.service.d
if [ "$HAVE_CONFIG" = yes ] && "$VENV/bin/python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    doc = tomllib.load(f)
sys.exit(0 if any(s.get("feedback") == "gpio" for s in doc.get("scanner", [])) else 1)' "$CONF_DIR/edge.toml"; then
    # feedback = "gpio": the unit keeps /sys read-only unless this drop-in opens the GPIO files.
    install -d -m 0755 "$DROPIN_DIR"
    install -m 0644 "$SRC/systemd/edge-agent-gpio.conf" "$DROPIN_DIR/gpio.conf"
    if ! getent group gpio >/dev/null; then
        # Raspberry Pi OS has it and gives exported lines to it; elsewhere the unit would not
        # start with SupplementaryGroups=gpio, and the value files need a udev rule for it.
        groupadd --system gpio
        echo "    created group gpio: make the exported GPIO value files writable by it (docs/scanning.md)"
    fi
    usermod --append --groups gpio "$USER_NAME"
    echo "    GPIO feedback: installed $DROPIN_DIR/gpio.conf (sysfs GPIO files writable, group gpio)"
else
    rm -f "$DROPIN_DIR/gpio.conf"
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable edge-agent.service
    if [ "$HAVE_CONFIG" = yes ]; then
        systemctl restart edge-agent.service
        systemctl --no-pager --lines=5 status edge-agent.service || true
    fi
else
    echo "    systemd is not running here: enable the unit on the Pi itself"
fi

echo "done. Check: sudo edge-agent doctor    Logs: journalctl -u edge-agent -f"
