/*
 * HX711-bridge firmware, protocol HXB/1 (see PROTOCOL.md), for an ATmega328P at 16 MHz
 * (Arduino Uno / Nano). Reads up to 4 HX711 boards that share one clock line (SCK) and
 * have one data line (DOUT) each, and streams one "D" line per conversion over the UART.
 *
 * Pins (Arduino numbering): SCK = D2 (PD2); DOUT ch0..3 = D3..D6 (PD3..PD6);
 * RATE = D7 (PD7), wired to every HX711's RATE pin (low: 10 SPS, high: 80 SPS).
 * Plain avr-libc, no Arduino core, so Debian's gcc-avr + avr-libc build it (build.sh).
 */
#include <avr/io.h>
#include <avr/interrupt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <util/delay.h>

#ifndef CHANNELS
#define CHANNELS 4
#endif
#define FW_VERSION "1.0.0"
#define BAUD 115200UL
#define SCK_BIT PD2
#define DOUT_FIRST_BIT PD3
#define RATE_BIT PD7
/* A conversion takes 12.5 ms at 80 SPS and 100 ms at 10 SPS; 3x that without DOUT low means
 * the channel is gone (cable pulled, board dead): report X instead of blocking the others. */
#define READY_TIMEOUT_MS_80 40
#define READY_TIMEOUT_MS_10 300

static uint8_t rate_80 = 1;
static uint16_t seq = 0;
static char rx_line[24];
static uint8_t rx_len = 0;

/* ---------------------------------------------------------------- UART */

static void uart_init(void) {
    /* U2X mode: 115200 baud from 16 MHz has 2.1 % error, under the 4.5 % an UART tolerates */
    UCSR0A = _BV(U2X0);
    UBRR0 = (uint16_t)((F_CPU / (8UL * BAUD)) - 1);
    UCSR0B = _BV(RXEN0) | _BV(TXEN0);
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8N1 */
}

static void uart_put(char c) {
    while (!(UCSR0A & _BV(UDRE0))) {
    }
    UDR0 = (uint8_t)c;
}

/* Send "<body>*<XX>\n" where XX is the XOR of the body's bytes. */
static void send_line(const char *body) {
    uint8_t sum = 0;
    char tail[5];
    for (const char *p = body; *p; ++p) {
        sum ^= (uint8_t)*p;
        uart_put(*p);
    }
    snprintf(tail, sizeof tail, "*%02X", sum);
    for (const char *p = tail; *p; ++p) uart_put(*p);
    uart_put('\n');
}

/* ---------------------------------------------------------------- HX711 */

static void hx711_init(void) {
    DDRD |= _BV(SCK_BIT) | _BV(RATE_BIT);
    PORTD &= ~_BV(SCK_BIT); /* SCK low: keep the HX711s powered up */
    for (uint8_t ch = 0; ch < CHANNELS; ++ch) {
        DDRD &= ~_BV(DOUT_FIRST_BIT + ch);
        PORTD |= _BV(DOUT_FIRST_BIT + ch); /* pull-up: an unplugged DOUT reads high = never ready */
    }
    PORTD |= _BV(RATE_BIT);
}

static void set_rate(uint8_t fast) {
    rate_80 = fast;
    if (fast) PORTD |= _BV(RATE_BIT); else PORTD &= ~_BV(RATE_BIT);
}

/* Wait until every channel is ready or the timeout passes; returns the mask of ready channels. */
static uint8_t wait_ready(void) {
    uint16_t limit_ms = rate_80 ? READY_TIMEOUT_MS_80 : READY_TIMEOUT_MS_10;
    uint8_t all = (uint8_t)((1u << CHANNELS) - 1u);
    uint8_t ready = 0;
    for (uint16_t t = 0; t < limit_ms * 10u; ++t) {
        ready = 0;
        for (uint8_t ch = 0; ch < CHANNELS; ++ch) {
            if (!(PIND & _BV(DOUT_FIRST_BIT + ch))) ready |= (uint8_t)(1u << ch);
        }
        if (ready == all) break;
        _delay_us(100);
    }
    return ready;
}

/* Clock 24 data bits out of all ready channels at once, plus 1 pulse: channel A, gain 128. */
static void read_all(int32_t *values) {
    uint32_t raw[CHANNELS];
    memset(raw, 0, sizeof raw);
    cli(); /* SCK high for more than 60 us powers the HX711 down: no interrupts while clocking */
    for (uint8_t bit = 0; bit < 24; ++bit) {
        PORTD |= _BV(SCK_BIT);
        _delay_us(1);
        uint8_t pins = PIND;
        PORTD &= ~_BV(SCK_BIT);
        for (uint8_t ch = 0; ch < CHANNELS; ++ch) {
            raw[ch] = (raw[ch] << 1) | ((pins >> (DOUT_FIRST_BIT + ch)) & 1u);
        }
        _delay_us(1);
    }
    PORTD |= _BV(SCK_BIT);
    _delay_us(1);
    PORTD &= ~_BV(SCK_BIT);
    sei();
    for (uint8_t ch = 0; ch < CHANNELS; ++ch) {
        uint32_t v = raw[ch];
        if (v & 0x800000UL) v |= 0xFF000000UL; /* sign-extend the 24-bit two's complement */
        values[ch] = (int32_t)v;
    }
}

/* ---------------------------------------------------------------- protocol */

static void send_hello(void) {
    char body[48];
    snprintf(body, sizeof body, "H HXB/1 ch=%u rate=%u fw=%s", (unsigned)CHANNELS, rate_80 ? 80u : 10u, FW_VERSION);
    send_line(body);
}

static void handle_command(const char *cmd) {
    if (strcmp(cmd, "?") == 0) {
        send_hello();
    } else if (strcmp(cmd, "RATE 80") == 0 || strcmp(cmd, "RATE 10") == 0) {
        set_rate(cmd[5] == '8');
        send_line(cmd[5] == '8' ? "A RATE 80" : "A RATE 10");
    } else {
        send_line("E 1 unknown-command");
    }
}

static void poll_uart(void) {
    while (UCSR0A & _BV(RXC0)) {
        char c = (char)UDR0;
        if (c == '\r') continue;
        if (c == '\n') {
            rx_line[rx_len] = '\0';
            if (rx_len) handle_command(rx_line);
            rx_len = 0;
        } else if (rx_len < sizeof rx_line - 1) {
            rx_line[rx_len++] = c;
        } else {
            rx_len = 0; /* overlong: drop it, the host will repeat */
        }
    }
}

static void send_frame(uint8_t ready, const int32_t *values) {
    char body[16 + CHANNELS * 9];
    int n = snprintf(body, sizeof body, "D %u", seq++);
    for (uint8_t ch = 0; ch < CHANNELS; ++ch) {
        if (ready & (1u << ch)) {
            n += snprintf(body + n, sizeof body - (size_t)n, " %ld", (long)values[ch]);
        } else {
            n += snprintf(body + n, sizeof body - (size_t)n, " X");
        }
    }
    send_line(body);
}

int main(void) {
    int32_t values[CHANNELS];
    uart_init();
    hx711_init();
    sei();
    send_hello();
    for (;;) {
        poll_uart();
        uint8_t ready = wait_ready();
        if (ready) {
            read_all(values);
        }
        send_frame(ready, values);
    }
}
