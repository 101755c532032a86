#!/bin/sh
# Compile the HX711-bridge firmware for the ATmega328P; CI runs this.
# Skips (exit 0, with a clear message) when avr-gcc is not installed:
#   apt-get install -y gcc-avr avr-libc
set -eu
cd "$(dirname "$0")"
if ! command -v avr-gcc >/dev/null 2>&1; then
    echo "SKIP hx711-bridge firmware: avr-gcc not found (apt-get install -y gcc-avr avr-libc)"
    exit 0
fi
out="${BUILD_DIR:-$(mktemp -d)}"
for channels in 1 4; do
    avr-gcc -mmcu=atmega328p -DF_CPU=16000000UL -DCHANNELS=$channels -Os -std=c11 -Wall -Wextra -Werror \
        -o "$out/hx711_bridge_$channels.elf" hx711_bridge.c
    avr-objcopy -O ihex -R .eeprom "$out/hx711_bridge_$channels.elf" "$out/hx711_bridge_$channels.hex"
    avr-size "$out/hx711_bridge_$channels.elf" | tail -1
done
echo "OK hx711-bridge firmware built for atmega328p in $out"
