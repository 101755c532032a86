#!/bin/sh
# Compile the HX711-bridge firmware for the ATmega328P, and the simavr harness that runs it
# with simulated HX711 boards (sim/hx711_part.c); CI runs this, the tests use both.
#   BUILD_DIR=DIR sh build.sh     (default: a fresh temporary directory)
# Outputs newer than their sources are kept (one build per test session). Skips (exit 0,
# with a clear message) what it lacks the tools for:
#   apt-get install -y gcc-avr avr-libc simavr libsimavr-dev
set -eu
cd "$(dirname "$0")"
if ! command -v avr-gcc >/dev/null 2>&1; then
    echo "SKIP hx711-bridge firmware: avr-gcc not found (apt-get install -y gcc-avr avr-libc)"
    exit 0
fi
out="${BUILD_DIR:-$(mktemp -d)}"
mkdir -p "$out"
# up_to_date TARGET SOURCE...: the target exists and no source is newer
up_to_date() {
    target=$1; shift
    [ -e "$target" ] || return 1
    for source in "$@"; do [ "$source" -nt "$target" ] && return 1; done
    return 0
}
for channels in 1 4; do
    elf="$out/hx711_bridge_$channels.elf"
    if ! up_to_date "$elf" hx711_bridge.c build.sh; then
        avr-gcc -mmcu=atmega328p -DF_CPU=16000000UL -DCHANNELS=$channels -Os -std=c11 -Wall -Wextra -Werror \
            -o "$elf" hx711_bridge.c
        avr-objcopy -O ihex -R .eeprom "$elf" "$out/hx711_bridge_$channels.hex"
    fi
    avr-size "$elf" | tail -1
done
echo "OK hx711-bridge firmware built for atmega328p in $out"
if [ ! -f /usr/include/simavr/sim_avr.h ]; then
    echo "SKIP hx711-bridge simulator: libsimavr-dev not found (apt-get install -y simavr libsimavr-dev)"
    exit 0
fi
if ! up_to_date "$out/hx711_part" sim/hx711_part.c build.sh; then
    # The shared libsimavr already links libelf; Debian ships no libelf.so for -lelf without libelf-dev.
    cc -O2 -std=c11 -Wall -Wextra -Werror -I/usr/include/simavr -I/usr/include/simavr/parts \
        -o "$out/hx711_part" sim/hx711_part.c -lsimavrparts -lsimavr -lpthread -lutil
fi
echo "OK hx711-bridge simulator (simavr + simulated HX711s) built in $out"
