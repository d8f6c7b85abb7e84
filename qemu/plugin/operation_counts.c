/*
 * operation_counts: a QEMU TCG plugin that counts the guest's executed instructions and the
 * instructions between the firmware's operation marks, without -icount (guest time keeps
 * following the host's clock, so real network peers keep working).
 *
 * Built by host-tools/setup.sh against qemu-plugin.h of Debian's QEMU 7.2 (plugin API
 * version 1: no register reads, no memory-value reads); loaded by the harness
 * (qemu/src/instructions.rs) with
 *
 *     -plugin libhomemx_operation_counts.so,marks=0xADDRESS,count=N,out=PATH
 *
 * marks  the address of the firmware's mark sled (ELF symbol `homemx_instrument_marks`,
 *        Thumb bit ignored): N entries of one 2-byte `bx lr` each. Entry i stands for
 *        operation i / 3 and mark kind i % 3: 0 begin, 1 end, 2 cancel (an operation that
 *        was abandoned: error path, dropped future). See firmware/app/src/instrument.rs.
 * count  N, the number of sled entries.
 * out    the file the marks are written to (truncated at start).
 *
 * How it counts: every translated block gets an inline "add its instruction count" to one
 * 64-bit counter (cheap: no call per block). A block whose start lies in the sled (each entry
 * is a block of its own: `bx lr` ends a block) also gets an execution callback with its entry
 * index, which reads the counter. A block is counted when it starts, whole: an exception in
 * its middle (rare; semihosting's BKPT ends a block anyway) counts its rest too.
 *
 * The file, one line per mark, flushed at once (the harness reads it while QEMU runs):
 *
 *     begin OP ABSOLUTE
 *     end OP INSTRUCTIONS ABSOLUTE MICROSECONDS
 *                                      instructions since the matching begin, and the host
 *                                      time it took (guest time follows the host's clock
 *                                      without -icount; idle guest time costs timer ticks)
 *     cancel OP ABSOLUTE
 *     overlap OP ABSOLUTE              an end while another operation of the same kind ran
 *     exit ABSOLUTE                    at QEMU's exit
 *
 * ABSOLUTE is the count since the machine started (its reset handler's first instruction).
 * MICROSECONDS is a diagnostic (it depends on the host's load), not a count.
 *
 * Nesting and unmatched marks: each operation kind has its own state, so different kinds
 * nest freely (a DynDNS check contains TLS handshakes). Within one kind the plugin counts how
 * many are open: a begin while one is open marks the kind overlapped, and every end until
 * none is open again is written as `overlap` (the instructions of two interleaved sessions
 * cannot be told apart); a cancel closes one without a count. An end with none open is
 * measured from the machine's start (INSTRUCTIONS = ABSOLUTE): that is how the firmware marks
 * "boot to ready", with an end only.
 *
 * One vCPU (mps2-an386): the counter is not per vCPU.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum mark_kind { MARK_BEGIN = 0, MARK_END = 1, MARK_CANCEL = 2, MARKS_PER_OPERATION = 3 };

/* Bytes per sled entry (one 16-bit Thumb `bx lr`). */
#define ENTRY_BYTES 2

/* Guest instructions executed since the machine started. */
static uint64_t executed;

static uint64_t sled_start;
static uint64_t sled_entries;
static FILE *out;

struct operation_state {
    uint64_t open;       /* begun and neither ended nor cancelled */
    uint64_t since;      /* the count at the begin of the first open one */
    uint64_t since_us;   /* the host time then */
    bool overlapped;     /* more than one was open since `open` was last 0 */
};

static struct operation_state *operations;
/* The host's monotonic clock when the plugin was installed, in microseconds. */
static uint64_t started_us;

static uint64_t host_microseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

static void write_line(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void write_line(const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    vfprintf(out, format, arguments);
    va_end(arguments);
    fflush(out);
}

static void on_mark(unsigned int vcpu_index, void *userdata)
{
    uint64_t entry = (uint64_t)(uintptr_t)userdata;
    uint64_t operation = entry / MARKS_PER_OPERATION;
    struct operation_state *state = &operations[operation];
    uint64_t now = executed;
    uint64_t now_us = host_microseconds();
    (void)vcpu_index;

    switch (entry % MARKS_PER_OPERATION) {
    case MARK_BEGIN:
        if (state->open == 0) {
            state->since = now;
            state->since_us = now_us;
            state->overlapped = false;
        } else {
            state->overlapped = true;
        }
        state->open++;
        write_line("begin %" PRIu64 " %" PRIu64 "\n", operation, now);
        break;
    case MARK_END:
        if (state->open == 0) {
            write_line("end %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", operation, now, now, now_us - started_us);
            break;
        }
        state->open--;
        if (state->overlapped) {
            write_line("overlap %" PRIu64 " %" PRIu64 "\n", operation, now);
        } else {
            write_line("end %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", operation, now - state->since, now, now_us - state->since_us);
        }
        if (state->open == 0) {
            state->overlapped = false;
        }
        break;
    default:
        if (state->open > 0) {
            state->open--;
            if (state->open == 0) {
                state->overlapped = false;
            }
        }
        write_line("cancel %" PRIu64 " %" PRIu64 "\n", operation, now);
        break;
    }
}

static void on_translation(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uint64_t address = qemu_plugin_tb_vaddr(tb);
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, qemu_plugin_tb_n_insns(tb));
    if (address >= sled_start && address < sled_start + sled_entries * ENTRY_BYTES && (address - sled_start) % ENTRY_BYTES == 0) {
        uint64_t entry = (address - sled_start) / ENTRY_BYTES;
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_mark, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)entry);
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    write_line("exit %" PRIu64 "\n", executed);
    fclose(out);
    out = NULL;
}

static bool parse_number(const char *text, uint64_t *value)
{
    char *end = NULL;
    if (*text == '\0') {
        return false;
    }
    *value = strtoull(text, &end, 0);
    return *end == '\0';
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    bool have_marks = false;
    (void)info;
    for (int index = 0; index < argc; index++) {
        const char *argument = argv[index];
        if (strncmp(argument, "marks=", 6) == 0 && parse_number(argument + 6, &sled_start)) {
            sled_start &= ~(uint64_t)1; /* a Thumb function address has bit 0 set */
            have_marks = true;
        } else if (strncmp(argument, "count=", 6) == 0 && parse_number(argument + 6, &sled_entries)) {
        } else if (strncmp(argument, "out=", 4) == 0 && argument[4] != '\0') {
            path = argument + 4;
        } else {
            fprintf(stderr, "operation_counts: unknown or malformed argument %s (want marks=ADDRESS, count=N, out=PATH)\n", argument);
            return -1;
        }
    }
    if (!have_marks || sled_entries == 0 || sled_entries % MARKS_PER_OPERATION != 0 || path == NULL) {
        fprintf(stderr, "operation_counts: needs marks=ADDRESS, count=N (a multiple of %d) and out=PATH\n", MARKS_PER_OPERATION);
        return -1;
    }
    operations = calloc(sled_entries / MARKS_PER_OPERATION, sizeof *operations);
    out = fopen(path, "w");
    if (operations == NULL || out == NULL) {
        fprintf(stderr, "operation_counts: cannot open %s\n", path);
        return -1;
    }
    started_us = host_microseconds();
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translation);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
