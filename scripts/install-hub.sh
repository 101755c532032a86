#!/bin/bash
# Install (or update) the ShelfSignal hub, its Mosquitto and the unit on a server. Safe to run again.
#   sudo scripts/install-hub.sh --site SITE [--config hub.toml]
# Without --config, /etc/stock-hub/hub.toml is created from firmware_config/hub.toml (site
# name filled in) unless it exists already.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/shelfsignal
VENV=$PREFIX/venv
USER_NAME=stock-hub
CONF_DIR=/etc/stock-hub
MQ_DIR=/etc/mosquitto/shelfsignal
SITE=""
CONFIG=""

usage() { echo "usage: sudo $0 --site SITE [--config hub.toml]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --site) [ $# -ge 2 ] || usage; SITE=$2; shift 2 ;;
        --config) [ $# -ge 2 ] || usage; CONFIG=$(readlink -f "$2"); shift 2 ;;
        *) usage ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0 $*" >&2; exit 1; }
[ -n "$SITE" ] || [ -f "$CONF_DIR/hub.toml" ] || [ -n "$CONFIG" ] || usage

step() { echo "==> $*"; }
have_systemd() { [ -d /run/systemd/system ]; }

step "system packages (mosquitto)"
apt-get update -qq
apt-get install -y --no-install-recommends python3 python3-venv mosquitto mosquitto-clients openssl >/dev/null

step "user $USER_NAME"
if ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/$USER_NAME --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
fi

step "virtualenv $VENV with shelfsignal[hub]"
mkdir -p "$PREFIX"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet --upgrade "${SRC}[hub]"
ln -sf "$VENV/bin/stock-hub" /usr/local/bin/stock-hub
mkdir -p "$PREFIX/src"
cp -r "$SRC/docs" "$SRC/firmware_config" "$PREFIX/src/"

step "mosquitto: password file, ACL, site config"
install -d -m 0750 -o root -g mosquitto "$MQ_DIR"
[ -f "$MQ_DIR/passwd" ] || install -m 0640 -o root -g mosquitto /dev/null "$MQ_DIR/passwd"
# The hub's own MQTT user; its password is handed to the service as a systemd credential.
install -d -m 0750 -o root -g "$USER_NAME" "$CONF_DIR"
if [ ! -s "$CONF_DIR/mqtt-password" ]; then
    ( umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$CONF_DIR/mqtt-password" )
fi
mosquitto_passwd -b "$MQ_DIR/passwd" hub "$(cat "$CONF_DIR/mqtt-password")"
chown root:mosquitto "$MQ_DIR/passwd"
chmod 0640 "$MQ_DIR/passwd"
"$VENV/bin/python" -c "from pathlib import Path; from hub.provision import ensure_acl; ensure_acl(Path('$MQ_DIR/acl'))"
chown root:mosquitto "$MQ_DIR/acl"
chmod 0640 "$MQ_DIR/acl"
install -m 0644 "$SRC/firmware_config/mosquitto/shelfsignal.conf" /etc/mosquitto/conf.d/shelfsignal.conf
MAIN=/etc/mosquitto/mosquitto.conf
# Our drop-in owns listeners and authentication; a main file that sets them too (or lacks the
# include) would conflict, so it is put back to Debian's stock content, keeping a copy.
if ! grep -q '^include_dir /etc/mosquitto/conf.d' "$MAIN" ||
   grep -Eq '^(listener|port|allow_anonymous|password_file|acl_file) ' "$MAIN"; then
    cp -n "$MAIN" "$MAIN.before-shelfsignal"
    cat > "$MAIN" <<'CONF'
# Debian's default, restored by ShelfSignal's install-hub.sh (old file: mosquitto.conf.before-shelfsignal).
pid_file /run/mosquitto/mosquitto.pid
persistence true
persistence_location /var/lib/mosquitto/
log_dest file /var/log/mosquitto/mosquitto.log
include_dir /etc/mosquitto/conf.d
CONF
fi

step "config $CONF_DIR/hub.toml"
if [ -n "$CONFIG" ]; then
    install -m 0640 -o root -g "$USER_NAME" "$CONFIG" "$CONF_DIR/hub.toml"
elif [ ! -f "$CONF_DIR/hub.toml" ]; then
    sed "s/^name = \"main-wh\"/name = \"$SITE\"/" "$SRC/firmware_config/hub.toml" > "$CONF_DIR/hub.toml"
    chown root:"$USER_NAME" "$CONF_DIR/hub.toml"
    chmod 0640 "$CONF_DIR/hub.toml"
fi
"$VENV/bin/stock-hub" check-config "$CONF_DIR/hub.toml"
install -d -m 0700 "$CONF_DIR/nodes"

step "systemd unit stock-hub.service"
install -m 0644 "$SRC/systemd/stock-hub.service" /etc/systemd/system/stock-hub.service
if have_systemd; then
    systemctl daemon-reload
    systemctl enable mosquitto.service stock-hub.service
    systemctl restart mosquitto.service
    systemctl restart stock-hub.service
    systemctl --no-pager --lines=5 status stock-hub.service || true
else
    echo "    systemd is not running here: enable mosquitto and stock-hub on the server itself"
fi

echo "done. Logs: journalctl -u stock-hub -f   Broker log: /var/log/mosquitto/mosquitto.log"
echo "First supervisor login: sudo -u stock-hub stock-hub add-user admin --role admin --config $CONF_DIR/hub.toml"
echo "Add a Pi: sudo stock-hub provision-node pi-01 --site ${SITE:-SITE} --broker-host THIS-HOST.lan --out-dir $CONF_DIR/nodes"
echo "          (--broker-host: a name or address the Pis can reach this server by)"
