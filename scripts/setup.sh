#!/usr/bin/env bash
# Set up this checkout on Debian 12 / Raspberry Pi OS: system packages, .venv, the package.
#   scripts/setup.sh demo   broker + edge + hub stacks (what ./scripts/demo needs)
#   scripts/setup.sh tryton the demo's stacks plus a local Tryton ERP (./scripts/demo --central tryton)
#   scripts/setup.sh test   the same plus test tools: Chromium, avr-gcc, simavr, systemd-analyze, shellcheck
# System packages are installed with apt-get when missing: as root directly, else with
# sudo if it works without a password; otherwise the script prints the exact command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PURPOSE="${1:-demo}"
PYTHON="${PYTHON:-python3}"

missing=()
"$PYTHON" -c 'import ensurepip, sys; assert sys.version_info >= (3, 11)' 2>/dev/null || missing+=(python3 python3-venv)
{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto)
# evdev ships no wheels: pip builds it, which needs a C compiler and the Python headers.
command -v gcc >/dev/null || missing+=(gcc)
"$PYTHON" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
    2>/dev/null || missing+=(python3-dev)
if [ "$PURPOSE" = test ]; then
    [ -x /usr/bin/chromium ] || missing+=(chromium)                 # browser tests (Playwright drives it)
    command -v avr-gcc >/dev/null || missing+=(gcc-avr avr-libc)     # the HX711-bridge firmware build
    [ -f /usr/include/simavr/sim_avr.h ] || missing+=(simavr libsimavr-dev)  # ... and running it (tests)
    command -v systemd-analyze >/dev/null || missing+=(systemd)      # unit verification
    command -v shellcheck >/dev/null || missing+=(shellcheck)        # lint of the install scripts
    command -v promtool >/dev/null || missing+=(prometheus)          # promtool: alert rule unit tests
    command -v npm >/dev/null || missing+=(nodejs npm)               # the AsyncAPI parser validates docs/asyncapi.yaml
    # PostgreSQL: the store tests' second pass (a server on 127.0.0.1:5432, which the package starts)
    # and initdb / pg_ctl / pg_basebackup for the standby tests' temporary clusters
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
fi

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    elif sudo -n true 2>/dev/null; then
        sudo apt-get update -q
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "setup: these system packages are missing and this user cannot install them." >&2
        echo "       Run:  sudo apt-get install -y ${missing[*]}" >&2
        echo "       then run this command again." >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# The install is editable, so code changes need no reinstall; only pyproject.toml does. A
# stamp skips pip when it has not changed (the test extras include the demo's).
STAMP=.venv/.shelfsignal-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $PURPOSE"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$have" = "$want" ] || { [ "$PURPOSE" != test ] && [ "$have" = "${want% *} test" ]; } \
        || { [ "$PURPOSE" = demo ] && [ "$have" = "${want% *} tryton" ]; }; then
    echo "setup: .venv is up to date with pyproject.toml"
else
    .venv/bin/python -m pip install -q --upgrade pip
    if [ "$PURPOSE" = test ]; then
        .venv/bin/python -m pip install -q -e ".[test]"
    elif [ "$PURPOSE" = tryton ]; then
        .venv/bin/python -m pip install -q -e ".[edge,hub,tryton]"
    else
        .venv/bin/python -m pip install -q -e ".[edge,hub]"
    fi
    echo "$want" > "$STAMP"
fi
if [ "$PURPOSE" = test ]; then
    # The AsyncAPI initiative's parser (npm), pinned in tests/asyncapi/package.json, kept in .venv.
    if ! cmp -s tests/asyncapi/package.json .venv/asyncapi/package.json; then
        mkdir -p .venv/asyncapi
        cp tests/asyncapi/package.json tests/asyncapi/validate.mjs .venv/asyncapi/
        npm install --prefix .venv/asyncapi --no-audit --no-fund --loglevel=error >/dev/null
    fi
    cp tests/asyncapi/validate.mjs .venv/asyncapi/
fi
echo "setup: ready (.venv)"
