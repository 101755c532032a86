/*
 * The shipped HX711-bridge firmware, run in simavr, with simulated HX711 boards on its pins.
 *
 *   hx711_part FIRMWARE.elf CHANNELS
 *
 * Runs the compiled firmware on a simulated ATmega328P at 16 MHz, in step with the wall
 * clock (so the agent sees 10 or 80 lines a second, as from a board). Its UART0 is on a
 * pty (simavr's uart_pty); the pty's path is printed on stdout as "PTY /dev/pts/N".
 *
 * Each channel is one HX711 as the datasheet describes it: DOUT (PD3 + ch) goes low when a
 * conversion is ready (every 12.5 ms with RATE high, 100 ms with it low, read from PD7);
 * each SCK (PD2) rising edge shifts out the next of 24 bits, MSB first, two's complement;
 * the 25th pulse ends the read (gain 128) and DOUT goes high until the next conversion.
 *
 * The weight script arrives on stdin, one command a line, applied at once:
 *   set CH COUNTS     the raw reading of channel CH (the host turns grams into counts)
 *   noise COUNTS      +-COUNTS of uniform noise on every conversion (default 0)
 *   unplug CH         the load cell's cable is pulled: DOUT floats high (the pull-up), never ready
 *   plug CH           reconnected
 *   garbage TEXT      TEXT and a newline are put on the serial line as if line noise (no checksum)
 *   quit
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"
#include "sim_time.h"
#include "uart_pty.h"

#define MAX_CHANNELS 4
#define SCK_PIN 2
#define DOUT_FIRST_PIN 3
#define RATE_PIN 7
#define ADC_MAX 8388607L
#define ADC_MIN (-8388608L)

typedef struct {
    long raw;           /* what the next conversion reads, before noise */
    int plugged;
    int ready;          /* a conversion waits to be clocked out */
    uint32_t shifting;  /* the 24-bit word being clocked out */
    int bits_out;       /* SCK pulses seen in this read */
    avr_irq_t *dout;
} hx711_t;

static avr_t *avr;
static hx711_t cells[MAX_CHANNELS];
static int channels;
static long noise_counts;
static int rate_80 = 1;
static avr_irq_t *uart_out;  /* the AVR's UART output: bytes raised here reach the pty */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char pending[64][96];  /* commands from stdin, applied by the simulation thread */
static int pending_count;
static volatile int quit;

static long clamp24(long v) { return v > ADC_MAX ? ADC_MAX : (v < ADC_MIN ? ADC_MIN : v); }

/* The level each DOUT line is driven to, declared to the port as "external" too: simavr
 * otherwise lets the firmware's pull-ups win on every write to PORTD (each SCK edge). */
static uint8_t dout_levels;

static void set_dout(hx711_t *c, int level) {
    uint8_t bit = (uint8_t)(1u << (DOUT_FIRST_PIN + (c - cells)));
    dout_levels = level ? (uint8_t)(dout_levels | bit) : (uint8_t)(dout_levels & ~bit);
    avr_ioport_external_t external = {.name = 'D', .mask = (uint8_t)(((1u << channels) - 1u) << DOUT_FIRST_PIN),
                                      .value = dout_levels};
    avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL('D'), &external);
    avr_raise_irq(c->dout, level);
}

static avr_cycle_count_t convert(avr_t *a, avr_cycle_count_t when, void *param) {
    (void)param;
    for (int ch = 0; ch < channels; ++ch) {
        hx711_t *c = &cells[ch];
        if (!c->plugged || c->bits_out) continue; /* a read in progress keeps its word */
        long noise = noise_counts ? (random() % (2 * noise_counts + 1)) - noise_counts : 0;
        c->shifting = (uint32_t)clamp24(c->raw + noise) & 0xFFFFFFu;
        c->ready = 1;
        set_dout(c, 0);
    }
    return when + avr_usec_to_cycles(a, rate_80 ? 12500 : 100000);
}

static void sck_changed(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq; (void)param;
    static uint32_t sck_level;
    /* simavr notifies on every write to the port, not only on a change: act on edges only */
    int rising = value && !sck_level;
    sck_level = value;
    if (!rising) return; /* data moves on the rising edge */
    for (int ch = 0; ch < channels; ++ch) {
        hx711_t *c = &cells[ch];
        if (!c->plugged || !c->ready) continue;
        if (c->bits_out < 24) {
            set_dout(c, (c->shifting >> (23 - c->bits_out)) & 1u);
            c->bits_out++;
        } else { /* 25th pulse: gain 128 for the next conversion; DOUT high until it is ready */
            c->ready = 0;
            c->bits_out = 0;
            set_dout(c, 1);
        }
    }
}

static void rate_changed(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq; (void)param;
    rate_80 = value ? 1 : 0;
}

static void apply(const char *line) {
    int ch;
    long v;
    char text[96];
    if (sscanf(line, "set %d %ld", &ch, &v) == 2 && ch >= 0 && ch < channels) {
        cells[ch].raw = v;
    } else if (sscanf(line, "noise %ld", &v) == 1) {
        noise_counts = v < 0 ? 0 : v;
    } else if (sscanf(line, "unplug %d", &ch) == 1 && ch >= 0 && ch < channels) {
        cells[ch].plugged = 0;
        cells[ch].ready = 0;
        cells[ch].bits_out = 0;
        set_dout(&cells[ch], 1);
    } else if (sscanf(line, "plug %d", &ch) == 1 && ch >= 0 && ch < channels) {
        cells[ch].plugged = 1;
    } else if (sscanf(line, "garbage %95[^\n]", text) == 1) {
        for (const char *p = text; *p; ++p) avr_raise_irq(uart_out, (uint8_t)*p);
        avr_raise_irq(uart_out, '\n');
    } else if (strncmp(line, "quit", 4) == 0) {
        quit = 1;
    } else {
        fprintf(stderr, "hx711_part: unknown command: %s", line);
    }
}

static void *read_stdin(void *arg) {
    (void)arg;
    char line[96];
    while (fgets(line, sizeof line, stdin)) {
        pthread_mutex_lock(&lock);
        if (pending_count < 64) strcpy(pending[pending_count++], line);
        pthread_mutex_unlock(&lock);
    }
    quit = 1; /* stdin closed: the test is over */
    return NULL;
}

static uint64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIRMWARE.elf CHANNELS\n", argv[0]);
        return 2;
    }
    channels = atoi(argv[2]);
    if (channels < 1 || channels > MAX_CHANNELS) {
        fprintf(stderr, "hx711_part: CHANNELS must be 1..%d\n", MAX_CHANNELS);
        return 2;
    }
    elf_firmware_t firmware;
    memset(&firmware, 0, sizeof firmware);
    if (elf_read_firmware(argv[1], &firmware) != 0) {
        fprintf(stderr, "hx711_part: cannot read %s\n", argv[1]);
        return 1;
    }
    strcpy(firmware.mmcu, "atmega328p");
    firmware.frequency = 16000000;
    avr = avr_make_mcu_by_name(firmware.mmcu);
    if (!avr) return 1;
    avr_init(avr);
    avr_load_firmware(avr, &firmware);
    avr->log = LOG_ERROR;

    for (int ch = 0; ch < channels; ++ch) {
        cells[ch].plugged = 1;
        cells[ch].dout = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), DOUT_FIRST_PIN + ch);
        set_dout(&cells[ch], 1);
    }
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), SCK_PIN), sck_changed, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), RATE_PIN), rate_changed, NULL);
    avr_cycle_timer_register_usec(avr, 12500, convert, NULL);

    static uart_pty_t pty;
    uart_pty_init(avr, &pty);
    uart_pty_connect(&pty, '0');
    uart_out = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT);
    printf("PTY %s\n", pty.pty.slavename);
    fflush(stdout);

    pthread_t reader;
    pthread_create(&reader, NULL, read_stdin, NULL);
    uint64_t start_ns = wall_ns();
    for (unsigned long step = 0; !quit; ++step) {
        int state = avr_run(avr);
        if (state == cpu_Done || state == cpu_Crashed) {
            fprintf(stderr, "hx711_part: firmware stopped (state %d)\n", state);
            return 1;
        }
        if (step % 4096 == 0) {
            pthread_mutex_lock(&lock);
            for (int i = 0; i < pending_count; ++i) apply(pending[i]);
            pending_count = 0;
            pthread_mutex_unlock(&lock);
            /* Stay in step with the wall clock: never run ahead of it by more than 2 ms. */
            uint64_t sim_ns = avr_cycles_to_nsec(avr, avr->cycle);
            uint64_t real_ns = wall_ns() - start_ns;
            if (sim_ns > real_ns + 2000000ull) usleep((useconds_t)((sim_ns - real_ns) / 1000));
        }
    }
    uart_pty_stop(&pty);
    return 0;
}
