#!/bin/sh
# Create a site CA and a server certificate for Mosquitto's TLS listener.
# Usage: make-certs.sh OUT_DIR BROKER_HOSTNAME [BROKER_IP]
# The CA is created once and kept (every Pi trusts it); running again re-issues only the
# server certificate, e.g. for a new host name. Keep ca.key off the broker once done.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 OUT_DIR BROKER_HOSTNAME [BROKER_IP]" >&2
    exit 2
fi
out=$1
host=$2
ip=${3:-}

mkdir -p "$out"
umask 077
cd "$out"

if [ ! -f ca.key ]; then
    openssl req -x509 -new -newkey rsa:3072 -nodes -days 3650 -sha256 \
        -subj "/CN=ShelfSignal site CA" -keyout ca.key -out ca.crt 2>/dev/null
    echo "created CA: $out/ca.crt (copy to each Pi as /etc/edge-agent/ca.crt)"
fi

# Clients check the name they connect to against subjectAltName, not the CN.
san="DNS:$host"
if [ -n "$ip" ]; then
    san="$san,IP:$ip"
fi
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > server.ext
openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$host" \
    -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
    -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext
chmod 0644 ca.crt server.crt
chmod 0640 server.key
echo "issued server certificate for $san: $out/server.crt, $out/server.key"
