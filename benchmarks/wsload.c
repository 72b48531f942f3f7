/* wsload: the benchmark suite's WebSocket load generator (C11, Linux, epoll, one thread).
 *
 *   wsload --mode stream --port P [--connections N] [--in-flight K] [--size S]
 *          [--text | --binary] [--warmup S] [--duration S]
 *          [--json] [--deflate]
 *   wsload --mode handshakes --port P [--connections N] [--size S] ...
 *   wsload --print-json --size S    the --json messages of S bytes, one a line, and exit
 *   wsload --self-test
 *
 * It only ever connects to 127.0.0.1. Every connection starts with a real RFC 6455 upgrade
 * (a random 16-byte key per connection; status 101 and Sec-WebSocket-Accept are checked).
 *
 * stream: N connections, each keeps K messages of S bytes outstanding. Each echo is checked
 *   in full, as it arrives: type, length and content. Payloads differ per connection and per
 *   message: the first 16 bytes are the message's counter and the connection's number in hex,
 *   the rest one of a pool of random bodies chosen by both. Pings are answered; fragmented
 *   echoes are reassembled (checked piece by piece, never buffered whole).
 *   Masking: a frame of up to PREMASK_MIN bytes is copied and masked with a fresh random key.
 *   A larger one is not copied at all: each pooled body is masked once, at start, with a random
 *   key of its own, and a message goes out with one sendmsg of two pieces, its header and
 *   masked stamp from the connection's buffer and the pooled masked body. Without that, a
 *   1 MiB echo cost the client two more passes over the message than the server's work.
 * --json: text messages that are JSON objects of exactly S bytes (S >= 32), generated from a
 *   fixed seed (the same messages every run): ids, timestamps, user names, words; from
 *   4 KiB on, an array of such items. The stamp is the value of the first field, "seq".
 * --deflate (stream mode): the upgrade offers permessage-deflate the way browsers do
 *   (`permessage-deflate; client_max_window_bits`, RFC 7692). When the server accepts, each
 *   message is compressed with zlib (raw deflate, Z_SYNC_FLUSH, the trailing 00 00 ff ff
 *   stripped, RSV1 set), with the window and context takeover the response allows; every
 *   server message with RSV1 is inflated (00 00 ff ff appended) and checked as it inflates.
 *   When the server declines, the run goes on uncompressed. The result says which, with the
 *   response's extension header, and the compressed and plain byte counts.
 * handshakes: N workers, each looping: connect, upgrade, one S-byte echo, Close (1000),
 *   wait for the server's Close, wait for the server to end TCP, close. One op is one loop.
 *
 * Warm-up traffic first, then the measured window; messages (loops) and their latencies
 * (CLOCK_MONOTONIC) count only inside it. Output on stdout, one JSON object a line:
 *   {"event":"start","t":..,"utime":..,"stime":..}  the window opens (t: CLOCK_MONOTONIC s;
 *   {"event":"end",...}                              utime/stime: this process's CPU s)
 *   {"ok":true,"ops":..,"latency_ms":{..},...}       last line: the result
 * A failure (refused connection, bad upgrade, protocol error, wrong echo, timeout) ends the
 * run at once: {"ok":false,"error":"..","wrong_echo":..} on stdout, the error on stderr,
 * exit status 1. Exit 2: bad usage. Exit 3: the hard deadline passed (it never should).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define NS_PER_S 1000000000ULL
#define MS_NS 1000000ULL
#define HEAD_MAX 16384                 /* bytes of upgrade response head accepted */
#define MAX_EVENTS 256                 /* events per epoll_wait */
#define READS_MAX 8                    /* reads per readable event */
#define CONNECTING_MAX 64              /* stream: connects and upgrades in progress at once */
#define SCAN_NS (50 * MS_NS)           /* how often per-connection deadlines are checked */
#define STAMP 16                       /* per-message stamp: hex counter + hex connection */
#define PREMASK_MIN 4096               /* larger messages are sent from pre-masked bodies */
#define LATENCY_CAP (1u << 25)         /* latency samples kept (256 MiB); more are dropped */
#define MAX_CONNECTIONS 100000
#define JSON_MIN 32                    /* --json: the smallest message */
#define JSON_ITEMS_MIN 256             /* --json: from this size on, an array of items */
#define JSON_SEED 0x6a736f6e2d736565ULL /* --json: the same messages every run */
#define STAMP_AT_JSON 8                /* --json: the stamp is the value of "seq" */
#define INFLATE_CHUNK 16384            /* bytes inflated at a time, checked as they come */
#define DEFLATE_LEVEL Z_DEFAULT_COMPRESSION /* what browsers use */

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- options -------------------------------------------------------------------------- */

static struct {
    int stream;               /* 1: stream, 0: handshakes */
    int port;
    int connections;
    int in_flight;
    size_t size;
    int text;
    double warmup, duration;
    double connect_timeout;   /* connect + upgrade (handshakes: the whole loop) */
    double drain_timeout;     /* in-flight echoes after the window (handshakes: loops) */
    double close_timeout;     /* close handshakes at the end of a stream run */
    int json;                 /* JSON-like text payloads */
    int deflate;              /* offer permessage-deflate */
} opt = {1, 0, 1, 1, 32, 1, 2.0, 10.0, 10.0, 10.0, 2.0, 0, 0};

/* permessage-deflate, over the whole run: what was negotiated, and the bytes it saved. */
static struct {
    int decided;              /* the first upgrade response was read */
    int negotiated;           /* ... and it accepted the offer */
    int connections;          /* connections that negotiated it */
    char extensions[256];     /* that response's Sec-WebSocket-Extensions value */
    int client_no_context, server_no_context, client_bits, server_bits;
    uint64_t sent_plain, sent_wire;      /* message bytes before and after compression */
    uint64_t received_plain, received_wire;
    uint64_t compressed_echoes, plain_echoes; /* server messages with and without RSV1 */
} dfl;

/* ---- small utilities ------------------------------------------------------------------ */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t seconds_ns(double s) { return (uint64_t)(s * 1e9); }

static uint64_t rng_state;

static uint64_t rng(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "wsload: out of memory (%zu bytes)\n", n);
        fputs("{\"ok\":false,\"error\":\"wsload: out of memory\"}\n", stdout);
        exit(1);
    }
    return q;
}

/* JSON string body: quotes, backslashes, control and non-ASCII bytes escaped (as Latin-1). */
static void json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}

/* Printable excerpt of bytes received, for error messages. */
static void excerpt(char *out, size_t cap, const uint8_t *p, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') out[o++] = (char)p[i];
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
    }
    out[o < cap ? o : cap - 1] = 0;
}

/* ---- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept ---------------------------- */

static uint32_t rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol32(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20]) {
    const uint8_t *p = data;
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t full = len / 64, rest = len % 64;
    for (size_t i = 0; i < full; i++) sha1_block(h, p + 64 * i);
    uint8_t tail[128] = {0};
    memcpy(tail, p + 64 * full, rest);
    tail[rest] = 0x80;
    size_t tail_len = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < tail_len; off += 64) sha1_block(h, tail + off);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = T[v >> 18], out[o++] = T[v >> 12 & 63];
        out[o++] = T[v >> 6 & 63], out[o++] = T[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = T[v >> 18], out[o++] = T[v >> 12 & 63];
        out[o++] = i + 1 < n ? T[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
}

/* RFC 6455 §4.2.2: base64(SHA-1(key + GUID)); `accept` holds 29 bytes. */
static void accept_for(const char *key, char *accept) {
    char joined[128];
    size_t n = (size_t)snprintf(joined, sizeof joined, "%s%s", key, GUID);
    uint8_t digest[20];
    sha1(joined, n, digest);
    base64(digest, 20, accept);
}

/* ---- results and failure ------------------------------------------------------------- */

static uint64_t *latencies;            /* ns, one per op inside the window */
static size_t latency_count, latency_cap, latency_dropped;
static uint64_t ops;                   /* ops inside the window */
static uint64_t ops_total;             /* ops in the whole run, warm-up and drain included */
static int measuring, sending = 1;
static uint64_t window_start_ns, window_end_ns;

static void record_latency(uint64_t ns) {
    if (latency_count == latency_cap) {
        if (latency_cap >= LATENCY_CAP) {
            latency_dropped++;
            return;
        }
        latency_cap = latency_cap ? latency_cap * 2 : 65536;
        latencies = xrealloc(latencies, latency_cap * sizeof *latencies);
    }
    latencies[latency_count++] = ns;
}

static void fail(int wrong_echo, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

static void fail(int wrong_echo, const char *fmt, ...) {
    char message[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    fprintf(stderr, "wsload: %s\n", message);
    fputs("{\"ok\":false,\"error\":", stdout);
    json_string(stdout, message);
    printf(",\"wrong_echo\":%s,\"ops\":%llu}\n", wrong_echo ? "true" : "false",
           (unsigned long long)ops);
    fflush(stdout);
    exit(1);
}

static void marker(const char *event, uint64_t t) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("{\"event\":\"%s\",\"t\":%.9f,\"utime\":%.6f,\"stime\":%.6f}\n", event,
           (double)t / 1e9, (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6,
           (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6);
    fflush(stdout);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void finish(void) {
    qsort(latencies, latency_count, sizeof *latencies, cmp_u64);
    printf("{\"ok\":true,\"error\":null,\"wrong_echo\":false,\"mode\":\"%s\",\"ops\":%llu,",
           opt.stream ? "stream" : "handshakes", (unsigned long long)ops);
    printf("\"window_s\":%.6f,\"ops_total\":%llu,\"latency_samples\":%zu,"
           "\"latency_dropped\":%zu,\"latency_ms\":{",
           (double)(window_end_ns - window_start_ns) / 1e9, (unsigned long long)ops_total,
           latency_count, latency_dropped);
    static const char *names[] = {"p50", "p99", "p99.9"};
    static const double qs[] = {0.50, 0.99, 0.999};
    for (int i = 0; i < 3; i++) {
        printf("%s\"%s\":", i ? "," : "", names[i]);
        if (!latency_count) {
            printf("null");
            continue;
        }
        size_t at = (size_t)(qs[i] * (double)latency_count); /* as loadgen.percentiles_ms */
        if (at > latency_count - 1) at = latency_count - 1;
        printf("%.4f", (double)latencies[at] / 1e6);
    }
    printf("},\"payload\":\"%s\"", opt.json ? "json" : opt.text ? "text" : "binary");
    if (opt.deflate) {
        printf(",\"deflate\":{\"offered\":true,\"negotiated\":%s,\"connections\":%d,"
               "\"extensions\":",
               dfl.negotiated ? "true" : "false", dfl.connections);
        if (dfl.negotiated) json_string(stdout, dfl.extensions);
        else fputs("null", stdout);
        printf(",\"client_no_context_takeover\":%s,\"server_no_context_takeover\":%s,"
               "\"client_max_window_bits\":%d,\"server_max_window_bits\":%d,"
               "\"sent_plain_bytes\":%llu,\"sent_wire_bytes\":%llu,"
               "\"received_plain_bytes\":%llu,\"received_wire_bytes\":%llu,"
               "\"compressed_echoes\":%llu,\"plain_echoes\":%llu}",
               dfl.client_no_context ? "true" : "false", dfl.server_no_context ? "true" : "false",
               dfl.client_bits, dfl.server_bits, (unsigned long long)dfl.sent_plain,
               (unsigned long long)dfl.sent_wire, (unsigned long long)dfl.received_plain,
               (unsigned long long)dfl.received_wire, (unsigned long long)dfl.compressed_echoes,
               (unsigned long long)dfl.plain_echoes);
    }
    printf("}\n");
    fflush(stdout);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char out[] = "{\"ok\":false,\"error\":\"wsload: hard deadline passed\"}\n";
    static const char err[] = "wsload: hard deadline passed\n";
    ssize_t ignored = write(1, out, sizeof out - 1);
    ignored = write(2, err, sizeof err - 1);
    (void)ignored;
    _exit(3);
}

/* ---- payloads -------------------------------------------------------------------------- */

static uint8_t *pool;                  /* pool_n random bodies of opt.size bytes each */
static uint64_t pool_n;
static uint8_t *masked_pool;           /* size > PREMASK_MIN: each body masked with its key */
static uint8_t (*pool_keys)[4];

static size_t stamp_at;                /* where in a message its stamp is (--json: 8) */

static void mask_bytes(uint8_t *p, size_t n, const uint8_t key[4]);

/* --json: a fixed-seed generator, so that every run (and every server) gets the same text. */
static uint64_t json_state = JSON_SEED;

static uint64_t json_rng(void) {
    uint64_t saved = rng_state, r;
    rng_state = json_state;
    r = rng();
    json_state = rng_state;
    rng_state = saved;
    return r;
}

static const char *const WORDS[] = {
    "alpha", "river", "stone", "market", "signal", "window", "orange", "delta", "quiet",
    "rapid", "cloud", "ember", "forest", "harbor", "island", "jungle", "kettle", "lemon",
    "meadow", "north", "ocean", "pepper", "quartz", "rocket", "silver", "tunnel", "umber",
    "velvet", "winter", "yellow", "zephyr", "bridge", "candle", "dragon", "engine", "falcon",
    "garden", "hammer", "indigo", "jasper", "kernel", "ladder", "mirror", "nickel", "olive",
    "planet", "ribbon", "saddle", "timber", "update", "vector", "wagon", "anchor", "binary",
    "cobalt", "domain", "eagle", "fabric", "glacier", "hollow", "ivory", "jigsaw", "kiwi",
    "lantern",
};
#define WORD() (WORDS[json_rng() % (sizeof WORDS / sizeof *WORDS)])
static const char *const KINDS[] = {"message", "update", "presence", "typing", "ack", "edit"};

/* Append words (and single spaces) making exactly `k` characters. */
static size_t json_words(char *out, size_t k) {
    size_t n = 0;
    while (n < k) {
        const char *w = WORD();
        for (size_t i = 0; w[i] && n < k; i++) out[n++] = w[i];
        if (n < k) out[n++] = ' ';
    }
    return n;
}

/* One item of a large message, or one field set of a small one (no leading comma). */
static int json_item(char *out, size_t cap, uint64_t index, int braces) {
    uint64_t id = json_rng() % 1000000;
    unsigned long long ts = 1764720000000ULL + index * 1379 + json_rng() % 1000;
    char text[96];
    size_t t = json_words(text, 12 + (size_t)(json_rng() % 60));
    text[t] = 0;
    return snprintf(out, cap,
                    "%s\"id\":%llu,\"ts\":%llu,\"user\":\"%s_%llu\",\"kind\":\"%s\","
                    "\"text\":\"%s\",\"tags\":[\"%s\",\"%s\"],\"score\":%llu.%02llu,"
                    "\"read\":%s%s",
                    braces ? "{" : "", (unsigned long long)id, ts, WORD(),
                    (unsigned long long)(json_rng() % 1000),
                    KINDS[json_rng() % (sizeof KINDS / sizeof *KINDS)], text, WORD(), WORD(),
                    (unsigned long long)(json_rng() % 100), (unsigned long long)(json_rng() % 100),
                    json_rng() & 1 ? "true" : "false", braces ? "}" : "");
}

/* A JSON object of exactly opt.size bytes into `out`: {"seq":"<16 placeholder>", fields
   or "items":[...], then a filler field that makes the length exact. */
static void json_body(uint8_t *out, uint64_t index) {
    size_t size = opt.size, n = 0, cap = size + 1024;
    char *b = xrealloc(NULL, cap);
    n += (size_t)snprintf(b, cap, "{\"seq\":\"%016llu\"", 0ULL);
    int items = size >= JSON_ITEMS_MIN;
    if (items) n += (size_t)snprintf(b + n, cap - n, ",\"items\":[");
    for (int count = 0;; count++) {
        char item[512];
        int len = json_item(item, sizeof item, index, items);
        /* room left for "," item, then "]" and the shortest filler ("}" alone) */
        if (n + (size_t)len + 1 + (items ? 1 : 0) + 1 > size) break;
        if (count || !items) b[n++] = ',';
        memcpy(b + n, item, (size_t)len);
        n += (size_t)len;
    }
    if (items) b[n++] = ']';
    size_t r = size - n; /* what is left, the closing brace included */
    if (r >= 9) {        /* ,"note":"...."} */
        n += (size_t)snprintf(b + n, cap - n, ",\"n\":\"");
        n += json_words(b + n, r - 8);
        b[n++] = '"';
    } else if (r >= 7) { /* ,"n":123} */
        n += (size_t)snprintf(b + n, cap - n, ",\"n\":");
        for (size_t i = 0; i < r - 6; i++) b[n++] = (char)('1' + json_rng() % 9);
    } else {
        while (n < size - 1) b[n++] = ' ';
    }
    b[n++] = '}';
    if (n != size) {
        fprintf(stderr, "wsload: --json built %zu bytes for %zu\n", n, size);
        exit(2);
    }
    memcpy(out, b, size);
    free(b);
}

static void make_pool(void) {
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    pool_n = opt.size > PREMASK_MIN ? 4 : 256;
    pool = xrealloc(NULL, (size_t)pool_n * opt.size);
    if (opt.json) {
        stamp_at = STAMP_AT_JSON;
        for (uint64_t j = 0; j < pool_n; j++) json_body(pool + j * opt.size, j);
        return;
    }
    for (size_t i = 0; i < (size_t)pool_n * opt.size; i++) {
        uint64_t r = rng();
        pool[i] = opt.text ? (uint8_t)alphabet[r % (sizeof alphabet - 1)] : (uint8_t)r;
    }
    if (opt.size <= PREMASK_MIN) return;
    masked_pool = xrealloc(NULL, (size_t)pool_n * opt.size);
    pool_keys = xrealloc(NULL, (size_t)pool_n * sizeof *pool_keys);
    memcpy(masked_pool, pool, (size_t)pool_n * opt.size);
    for (uint64_t j = 0; j < pool_n; j++) {
        uint32_t r = (uint32_t)rng();
        memcpy(pool_keys[j], &r, 4);
        mask_bytes(masked_pool + j * opt.size, opt.size, pool_keys[j]);
    }
}

static uint64_t body_index(int id, uint64_t counter) {
    return (counter + (uint64_t)id * 7) % pool_n;
}

static const uint8_t *body_for(int id, uint64_t counter) {
    return pool + body_index(id, counter) * opt.size;
}

static void make_stamp(char stamp[STAMP], uint64_t counter, int id) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        stamp[i] = hex[(counter >> (28 - 4 * i)) & 15];
        stamp[8 + i] = hex[((uint32_t)id >> (28 - 4 * i)) & 15];
    }
}

/* ---- connections ---------------------------------------------------------------------- */

enum { ST_IDLE, ST_CONNECTING, ST_UPGRADING, ST_OPEN, ST_CLOSING, ST_WAIT_EOF };
static const char *const STATE_NAMES[] = {
    "idle", "connecting", "upgrading", "echo", "close handshake", "waiting for the server to end TCP",
};

typedef struct {
    uint64_t counter, sent_ns;
} Pending;

typedef struct {
    int fd, id, state;
    uint32_t gen, events;
    uint64_t began, deadline;
    char accept[32];
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t whead, wlen, wcap;
    const uint8_t *tail;               /* a pre-masked body to send after wbuf, uncopied */
    size_t tail_len;
    /* the frame being read */
    int in_frame, fin;
    uint8_t opcode;
    uint64_t left;
    uint8_t ctrl[125];
    size_t ctrl_len;
    /* the message being read */
    int in_message;
    uint64_t offset;
    char stamp[STAMP];
    const uint8_t *body;
    int close_seen;
    /* messages in flight, oldest first */
    Pending *fifo;
    int fifo_head, fifo_count;
    uint64_t next_counter;
    /* permessage-deflate, when this connection negotiated it */
    int deflate, compressed;           /* negotiated; the message being read has RSV1 */
    z_stream *zout, *zin;
} Conn;

static Conn *conns;
static int epfd;
static struct sockaddr_in server_addr;

/* Run state. */
enum { PH_CONNECT, PH_WARMUP, PH_WINDOW, PH_DRAIN, PH_CLOSE, PH_DONE };
static int phase;
static uint64_t phase_deadline;        /* when the phase ends (or fails) */
static int opened, upgraded, closed_count, active;
static int64_t outstanding;            /* stream: messages sent and not yet echoed */

static void set_events(Conn *c, uint32_t events) {
    if (c->events == events) return;
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)c->gen << 32 | (uint32_t)c->id};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) fail(0, "epoll_ctl: %s", strerror(errno));
    c->events = events;
}

static void conn_close(Conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = ST_IDLE;
}

static void flush(Conn *c) {
    while (c->whead < c->wlen || c->tail_len) {
        struct iovec iov[2];
        struct msghdr msg = {.msg_iov = iov};
        size_t buffered = c->wlen - c->whead, total = buffered + c->tail_len;
        if (buffered) iov[msg.msg_iovlen++] = (struct iovec){c->wbuf + c->whead, buffered};
        if (c->tail_len) iov[msg.msg_iovlen++] = (struct iovec){(void *)c->tail, c->tail_len};
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n > 0) {
            size_t from_buffer = (size_t)n < buffered ? (size_t)n : buffered;
            c->whead += from_buffer;
            c->tail += (size_t)n - from_buffer;
            c->tail_len -= (size_t)n - from_buffer;
            if ((size_t)n < total) break; /* the socket is full: wait for EPOLLOUT */
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (phase == PH_CLOSE) { /* the server may end TCP as soon as it has our Close */
            conn_close(c);
            closed_count++;
            return;
        }
        fail(0, "connection %d: send failed at step '%s': %s", c->id, STATE_NAMES[c->state],
             strerror(errno));
    }
    if (c->whead == c->wlen && !c->tail_len) {
        c->whead = c->wlen = 0;
        set_events(c, EPOLLIN);
    } else {
        set_events(c, EPOLLIN | EPOLLOUT);
    }
}

/* Room for `need` more bytes at the end of the output. A pending pre-masked body is copied
   into the buffer first, so that what is appended goes out after it. */
static uint8_t *reserve(Conn *c, size_t need) {
    if (c->tail_len) {
        const uint8_t *tail = c->tail;
        size_t tail_len = c->tail_len;
        c->tail_len = 0;
        memcpy(reserve(c, tail_len + need), tail, tail_len);
        c->wlen += tail_len;
    }
    if (c->whead == c->wlen) c->whead = c->wlen = 0;
    if (c->wlen + need > c->wcap && c->whead) {
        memmove(c->wbuf, c->wbuf + c->whead, c->wlen - c->whead);
        c->wlen -= c->whead;
        c->whead = 0;
    }
    if (c->wlen + need > c->wcap) {
        size_t cap = c->wcap ? c->wcap : 4096;
        while (cap < c->wlen + need) cap *= 2;
        c->wbuf = xrealloc(c->wbuf, cap);
        c->wcap = cap;
    }
    return c->wbuf + c->wlen;
}

static void mask_bytes(uint8_t *p, size_t n, const uint8_t key[4]) { /* from p's offset 0 */
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 << 32 | k32; /* the key twice, in memory order */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k64;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

/* Write a masked client frame's header (FIN set) with its masking key; return its end. */
static uint8_t *frame_header(uint8_t *p, int opcode, size_t len, const uint8_t key[4]) {
    *p++ = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        *p++ = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        *p++ = 0x80 | 126;
        *p++ = (uint8_t)(len >> 8), *p++ = (uint8_t)len;
    } else {
        *p++ = 0x80 | 127;
        for (int i = 7; i >= 0; i--) *p++ = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(p, key, 4);
    return p + 4;
}

/* Append one masked client frame (FIN set): `a` then `b` as its payload; then send it. */
static void send_frame(Conn *c, int opcode, const void *a, size_t a_len, const void *b,
                       size_t b_len) {
    size_t len = a_len + b_len;
    uint8_t *p = reserve(c, len + 14), *start = p;
    uint32_t r = (uint32_t)rng();
    uint8_t key[4];
    memcpy(key, &r, 4);
    p = frame_header(p, opcode, len, key);
    if (a_len) memcpy(p, a, a_len);
    if (b_len) memcpy(p + a_len, b, b_len);
    mask_bytes(p, len, key);
    c->wlen += (size_t)(p - start) + len;
    /* One send per frame, as picows's client does: no coalescing of replacement messages.
       Only when the socket is full does output queue up (and go out together later). */
    if (!(c->events & EPOLLOUT)) flush(c);
}

static uint8_t *plain_buf, *zbuf;      /* a message before and after compression */
static size_t zcap;

/* permessage-deflate (RFC 7692 §7.2.1): compress with a sync flush and strip its
   00 00 ff ff; a fresh context per message when client_no_context_takeover was agreed. */
static size_t compress_message(Conn *c, const uint8_t *in, size_t n) {
    z_stream *z = c->zout;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    size_t out = 0;
    for (;;) {
        if (zcap - out < 64) zcap = zcap * 2 + 64, zbuf = xrealloc(zbuf, zcap);
        z->next_out = zbuf + out;
        z->avail_out = (uInt)(zcap - out);
        int rc = deflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            fail(0, "connection %d: deflate failed (%d)", c->id, rc);
        out = zcap - z->avail_out;
        if (z->avail_out != 0) break;
    }
    if (out < 4 || memcmp(zbuf + out - 4, "\0\0\xff\xff", 4) != 0)
        fail(0, "connection %d: zlib's sync flush did not end in 00 00 ff ff", c->id);
    if (dfl.client_no_context && deflateReset(z) != Z_OK)
        fail(0, "connection %d: deflateReset failed", c->id);
    return out - 4;
}

static void send_message(Conn *c, uint64_t now) {
    Pending *slot = &c->fifo[(c->fifo_head + c->fifo_count) % opt.in_flight];
    c->fifo_count++;
    outstanding++;
    slot->counter = c->next_counter++;
    slot->sent_ns = now;
    char stamp[STAMP];
    make_stamp(stamp, slot->counter, c->id);
    size_t head = opt.size < STAMP ? opt.size : STAMP;
    int opcode = opt.text ? 1 : 2;
    if (opt.json || opt.deflate) { /* the whole message composed, then compressed or not */
        memcpy(plain_buf, body_for(c->id, slot->counter), opt.size);
        memcpy(plain_buf + stamp_at, stamp, head);
        if (!c->deflate) {
            send_frame(c, opcode, plain_buf, opt.size, NULL, 0);
            return;
        }
        size_t n = compress_message(c, plain_buf, opt.size);
        dfl.sent_plain += opt.size;
        dfl.sent_wire += n;
        send_frame(c, opcode | 0x40, zbuf, n, NULL, 0); /* RSV1: a compressed message */
        return;
    }
    if (!masked_pool) {
        send_frame(c, opcode, stamp, head, body_for(c->id, slot->counter) + head,
                   opt.size - head);
        return;
    }
    /* The stamp is masked here with the pooled body's key; the body goes out as it is. */
    uint64_t j = body_index(c->id, slot->counter);
    uint8_t *p = reserve(c, 14 + STAMP), *start = p;
    p = frame_header(p, opcode, opt.size, pool_keys[j]);
    memcpy(p, stamp, STAMP);
    mask_bytes(p, STAMP, pool_keys[j]);
    c->wlen += (size_t)(p + STAMP - start);
    c->tail = masked_pool + j * opt.size + STAMP;
    c->tail_len = opt.size - STAMP;
    if (!(c->events & EPOLLOUT)) flush(c);
}

static void send_close(Conn *c) {
    static const uint8_t code[2] = {1000 >> 8, 1000 & 255};
    c->state = ST_CLOSING;
    send_frame(c, 8, code, 2, NULL, 0);
}

static void conn_open(Conn *c, uint64_t now);

/* ---- the upgrade ----------------------------------------------------------------------- */

static void on_connected(Conn *c) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng();
        memcpy(raw + i, &r, 8);
    }
    char key[32];
    base64(raw, 16, key);
    accept_for(key, c->accept);
    char request[512];
    int n = snprintf(request, sizeof request,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     opt.port, key,
                     opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "client_max_window_bits\r\n"
                                 : "");
    c->state = ST_UPGRADING;
    memcpy(reserve(c, (size_t)n), request, (size_t)n);
    c->wlen += (size_t)n;
    flush(c);
}

static int token_in(const char *value, size_t len, const char *token) {
    size_t t = strlen(token);
    for (size_t i = 0; i + t <= len; i++)
        if (strncasecmp(value + i, token, t) == 0) return 1;
    return 0;
}

static void on_open(Conn *c, uint64_t now);

typedef struct {
    int client_no_context, server_no_context, client_bits, server_bits;
} Deflate;

/* A server's answer to the offer (RFC 7692 §7.1): permessage-deflate and its parameters,
   each at most once; client_max_window_bits only with a value, since it was offered bare. */
static void parse_extensions(Conn *c, const char *v, size_t len, Deflate *d) {
    char text[256];
    if (len >= sizeof text) fail(0, "connection %d: Sec-WebSocket-Extensions too long", c->id);
    memcpy(text, v, len);
    text[len] = 0;
    *d = (Deflate){0, 0, 15, 15};
    int seen[4] = {0}, part = 0;
    for (char *save, *tok = strtok_r(text, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        while (*tok == ' ' || *tok == '\t') tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
        if (part++ == 0) {
            if (strcasecmp(tok, "permessage-deflate") != 0)
                fail(0, "connection %d: the server chose an extension never offered: %.*s",
                     c->id, (int)(len < 64 ? len : 64), v);
            continue;
        }
        char *eq = strchr(tok, '='), *value = NULL;
        if (eq) {
            value = eq + 1;
            for (char *q = eq; q > tok && (q[-1] == ' ' || q[-1] == '\t');) *--q = 0;
            *eq = 0;
            while (*value == ' ' || *value == '\t') value++;
            size_t vl = strlen(value);
            if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') value[vl - 1] = 0, value++;
        }
        static const char *const NAMES[] = {"client_no_context_takeover",
                                            "server_no_context_takeover",
                                            "client_max_window_bits", "server_max_window_bits"};
        int which = -1;
        for (int i = 0; i < 4; i++)
            if (strcasecmp(tok, NAMES[i]) == 0) which = i;
        if (which < 0 || seen[which]++ || (which < 2) != (value == NULL))
            fail(0, "connection %d: bad permessage-deflate parameter in the response: %.*s",
                 c->id, (int)(len < 64 ? len : 64), v);
        if (which == 0) d->client_no_context = 1;
        else if (which == 1) d->server_no_context = 1;
        else {
            char *stop;
            long bits = strtol(value, &stop, 10);
            if (*stop || bits < 8 || bits > 15)
                fail(0, "connection %d: %s=%s is not 8 to 15", c->id, NAMES[which], value);
            /* zlib's raw deflate has no 256-byte window: its smallest is 2^9. */
            if (which == 2 && bits == 8)
                fail(0, "connection %d: the server asked for client_max_window_bits=8, "
                     "which zlib cannot compress with", c->id);
            if (which == 2) d->client_bits = (int)bits;
            else d->server_bits = (int)bits;
        }
    }
}

/* Record what this connection agreed; every connection of a run must agree the same. */
static void deflate_decided(Conn *c, int negotiated, const Deflate *d, const char *v, size_t len) {
    if (!dfl.decided) {
        dfl.decided = 1;
        dfl.negotiated = negotiated;
        if (negotiated) {
            size_t n = len < sizeof dfl.extensions - 1 ? len : sizeof dfl.extensions - 1;
            memcpy(dfl.extensions, v, n);
            dfl.extensions[n] = 0;
            dfl.client_no_context = d->client_no_context;
            dfl.server_no_context = d->server_no_context;
            dfl.client_bits = d->client_bits;
            dfl.server_bits = d->server_bits;
        }
    } else if (negotiated != dfl.negotiated ||
               (negotiated && (d->client_no_context != dfl.client_no_context ||
                               d->server_no_context != dfl.server_no_context ||
                               d->client_bits != dfl.client_bits ||
                               d->server_bits != dfl.server_bits))) {
        fail(0, "connection %d: the server answered the deflate offer differently from the "
             "first connection (%s, then %.*s)", c->id,
             dfl.negotiated ? dfl.extensions : "declined",
             negotiated ? (int)(len < 64 ? len : 64) : 8, negotiated ? v : "declined");
    }
    if (!negotiated) return;
    dfl.connections++;
    c->deflate = 1;
    if (!c->zout) {
        c->zout = xrealloc(NULL, sizeof *c->zout);
        c->zin = xrealloc(NULL, sizeof *c->zin);
        memset(c->zout, 0, sizeof *c->zout);
        memset(c->zin, 0, sizeof *c->zin);
        if (deflateInit2(c->zout, DEFLATE_LEVEL, Z_DEFLATED, -d->client_bits, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK ||
            inflateInit2(c->zin, -15) != Z_OK) /* a larger window inflates any smaller one */
            fail(0, "connection %d: zlib could not be initialised", c->id);
    }
}

/* Check the response head; return the bytes it took, 0 while it is incomplete. */
static size_t upgrade_response(Conn *c) {
    const uint8_t *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen >= HEAD_MAX) fail(0, "upgrade response head longer than %d bytes", HEAD_MAX);
        return 0;
    }
    size_t head = (size_t)(end - c->rbuf);
    char shown[256];
#define SHOWN (excerpt(shown, sizeof shown, c->rbuf, head < 120 ? head : 120), shown)
    if (head < 13 || memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0 ||
        (c->rbuf[12] != ' ' && c->rbuf[12] != '\r'))
        fail(0, "connection %d: upgrade refused: %s", c->id, SHOWN);
    int got_accept = 0, got_upgrade = 0, got_connection = 0, got_extensions = 0;
    Deflate agreed = {0, 0, 15, 15};
    const char *ext = "";
    size_t ext_len = 0;
    const char *p = memchr(c->rbuf, '\n', head);
    const char *stop = (const char *)c->rbuf + head;
    while (p && p + 1 < stop) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\r', (size_t)(stop - line));
        if (!eol) eol = stop;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon) {
            size_t name_len = (size_t)(colon - line);
            const char *v = colon + 1, *v_end = eol;
            while (v < v_end && (*v == ' ' || *v == '\t')) v++;
            while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
            size_t v_len = (size_t)(v_end - v);
#define NAME_IS(s) (name_len == sizeof(s) - 1 && strncasecmp(line, s, name_len) == 0)
            if (NAME_IS("sec-websocket-accept")) {
                if (v_len != 28 || memcmp(v, c->accept, 28) != 0)
                    fail(0, "connection %d: wrong Sec-WebSocket-Accept %.*s, expected %s",
                         c->id, (int)(v_len < 64 ? v_len : 64), v, c->accept);
                got_accept = 1;
            } else if (NAME_IS("upgrade")) {
                got_upgrade = v_len == 9 && strncasecmp(v, "websocket", 9) == 0;
            } else if (NAME_IS("connection")) {
                got_connection = token_in(v, v_len, "upgrade");
            } else if (NAME_IS("sec-websocket-extensions")) {
                if (!opt.deflate || got_extensions)
                    fail(0, "connection %d: the server chose extensions the client never "
                         "offered: %.*s", c->id, (int)(v_len < 64 ? v_len : 64), v);
                parse_extensions(c, v, v_len, &agreed);
                got_extensions = 1;
                ext = v, ext_len = v_len;
            }
#undef NAME_IS
        }
        p = memchr(line, '\n', (size_t)(stop - line));
    }
    if (!got_accept || !got_upgrade || !got_connection)
        fail(0, "connection %d: upgrade response lacks %s: %s", c->id,
             !got_accept ? "Sec-WebSocket-Accept" : !got_upgrade ? "Upgrade: websocket"
                                                                  : "Connection: Upgrade",
             SHOWN);
#undef SHOWN
    if (opt.deflate) deflate_decided(c, got_extensions, &agreed, ext, ext_len);
    c->state = ST_OPEN;
    on_open(c, now_ns());
    return head + 4;
}

/* ---- frames from the server ------------------------------------------------------------ */

static void on_echo(Conn *c, uint64_t sent, uint64_t now);

static void message_start(Conn *c, int opcode) {
    if (c->fifo_count == 0 || (!opt.stream && c->state != ST_OPEN))
        fail(1, "connection %d: a message arrived that echoes nothing sent", c->id);
    int expected = opt.text ? 1 : 2;
    if (opcode != expected)
        fail(1, "connection %d: echo came back as %s, sent %s", c->id,
             opcode == 1 ? "text" : "binary", expected == 1 ? "text" : "binary");
    Pending *head = &c->fifo[c->fifo_head];
    make_stamp(c->stamp, head->counter, c->id);
    c->body = body_for(c->id, head->counter);
    c->offset = 0;
    c->in_message = 1;
}

static void wrong_byte(Conn *c, uint64_t at, uint8_t got, uint8_t sent) {
    fail(1, "wrong echo on connection %d, message %llu: byte %llu of %zu is 0x%02x, sent 0x%02x",
         c->id, (unsigned long long)c->fifo[c->fifo_head].counter, (unsigned long long)at,
         opt.size, got, sent);
}

/* Compare a piece of an echo with what was sent, at the message's current offset: the
   stamp's bytes at [stamp_at, stamp_at + STAMP), the pooled body's everywhere else. */
static void check(Conn *c, const uint8_t *p, size_t n) {
    uint64_t off = c->offset;
    if (off + n > opt.size)
        fail(1, "wrong echo on connection %d: more than the %zu bytes sent", c->id, opt.size);
    uint64_t stamp_end = stamp_at + STAMP < opt.size ? stamp_at + STAMP : opt.size;
    size_t i = 0;
    while (i < n) {
        uint64_t at = off + i;
        if (at >= stamp_at && at < stamp_end) {
            if (p[i] != (uint8_t)c->stamp[at - stamp_at])
                wrong_byte(c, at, p[i], (uint8_t)c->stamp[at - stamp_at]);
            i++;
            continue;
        }
        uint64_t run_end = at < stamp_at ? stamp_at : opt.size;
        size_t len = (size_t)(run_end - at) < n - i ? (size_t)(run_end - at) : n - i;
        if (memcmp(p + i, c->body + at, len) != 0)
            for (size_t j = 0; j < len; j++)
                if (p[i + j] != c->body[at + j]) wrong_byte(c, at + j, p[i + j], c->body[at + j]);
        i += len;
    }
    c->offset = off + n;
}

/* A piece of a compressed message: inflated, and each inflated piece checked. */
static void inflate_piece(Conn *c, const uint8_t *p, size_t n) {
    static uint8_t out[INFLATE_CHUNK];
    z_stream *z = c->zin;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)n;
    for (;;) {
        z->next_out = out;
        z->avail_out = sizeof out;
        int rc = inflate(z, Z_SYNC_FLUSH);
        size_t got = sizeof out - z->avail_out;
        if (got) check(c, out, got);
        if (rc == Z_STREAM_END) { /* a final block: the next message starts afresh */
            inflateReset(z);
            if (!z->avail_in) break;
            continue;
        }
        if (rc == Z_BUF_ERROR) break; /* no progress possible: all input taken */
        if (rc != Z_OK)
            fail(1, "wrong echo on connection %d: the compressed message does not inflate "
                 "(%s)", c->id, z->msg ? z->msg : "zlib error");
        if (z->avail_in == 0 && z->avail_out != 0) break;
    }
}

/* Payload bytes of a data frame, as they arrive. */
static void data_piece(Conn *c, const uint8_t *p, size_t n) {
    if (!c->compressed) {
        check(c, p, n);
        return;
    }
    dfl.received_wire += n;
    inflate_piece(c, p, n);
}

static void message_end(Conn *c) {
    if (c->compressed) { /* RFC 7692 §7.2.2: the stripped tail back, then the end */
        inflate_piece(c, (const uint8_t *)"\0\0\xff\xff", 4);
        if (dfl.server_no_context && inflateReset(c->zin) != Z_OK)
            fail(0, "connection %d: inflateReset failed", c->id);
        dfl.compressed_echoes++;
        dfl.received_plain += c->offset;
    } else if (opt.deflate) {
        dfl.plain_echoes++;
    }
    if (c->offset != opt.size)
        fail(1, "wrong echo on connection %d: %llu bytes back, %zu sent", c->id,
             (unsigned long long)c->offset, opt.size);
    uint64_t sent = c->fifo[c->fifo_head].sent_ns;
    c->fifo_head = (c->fifo_head + 1) % opt.in_flight;
    c->fifo_count--;
    outstanding--;
    c->in_message = 0;
    on_echo(c, sent, now_ns());
}

static void on_control(Conn *c) {
    if (c->opcode == 9) { /* ping: pong with the same payload */
        send_frame(c, 10, c->ctrl, c->ctrl_len, NULL, 0);
        return;
    }
    if (c->opcode == 10) return; /* unsolicited pong */
    /* close */
    if (c->ctrl_len == 1) fail(0, "connection %d: close frame with a 1-byte payload", c->id);
    int code = c->ctrl_len >= 2 ? c->ctrl[0] << 8 | c->ctrl[1] : 1005;
    c->close_seen = 1;
    if (c->state == ST_CLOSING) {
        c->state = ST_WAIT_EOF;
        return;
    }
    fail(0, "connection %d: the server closed the connection (code %d) at step '%s'", c->id,
         code, STATE_NAMES[c->state]);
}

static void frame_start(Conn *c, uint8_t b0, uint64_t len) {
    int opcode = b0 & 15;
    /* RSV1 marks a compressed message, on its first frame only (RFC 7692 §6). */
    int rsv1 = c->deflate && (b0 & 0x70) == 0x40 && (opcode == 1 || opcode == 2);
    if ((b0 & 0x70) && !rsv1)
        fail(0, "connection %d: RSV bits set (0x%02x) %s", c->id, b0,
             c->deflate ? "where permessage-deflate allows none"
                        : "though no extension was negotiated");
    if (c->close_seen) fail(0, "connection %d: a frame after the server's close frame", c->id);
    if (opcode >= 8) {
        if (opcode > 10) fail(0, "connection %d: reserved opcode %d", c->id, opcode);
        if (!(b0 & 0x80) || len > 125)
            fail(0, "connection %d: control frame fragmented or over 125 bytes", c->id);
        c->ctrl_len = 0;
    } else if (opcode == 0) {
        if (!c->in_message) fail(0, "connection %d: continuation frame outside a message", c->id);
    } else if (opcode <= 2) {
        if (c->in_message) fail(1, "connection %d: a new message inside a fragmented one", c->id);
        message_start(c, opcode);
        c->compressed = rsv1;
    } else {
        fail(0, "connection %d: reserved opcode %d", c->id, opcode);
    }
    c->opcode = (uint8_t)opcode;
    c->fin = (b0 & 0x80) != 0;
    c->left = len;
    c->in_frame = 1;
}

static void frame_end(Conn *c) {
    c->in_frame = 0;
    if (c->opcode >= 8) on_control(c);
    else if (c->fin) message_end(c);
}

/* Parse what has been read; keep an incomplete frame header for the next read. */
static void consume(Conn *c) {
    size_t pos = 0;
    if (c->state == ST_UPGRADING && !(pos = upgrade_response(c))) return;
    while (pos < c->rlen && c->fd >= 0) {
        const uint8_t *p = c->rbuf + pos;
        size_t avail = c->rlen - pos;
        if (!c->in_frame) {
            if (avail < 2) break;
            if (p[1] & 0x80) fail(0, "connection %d: the server masked a frame", c->id);
            uint64_t len = p[1] & 0x7f;
            size_t header = len == 126 ? 4 : len == 127 ? 10 : 2;
            if (avail < header) break;
            if (len == 126) {
                len = (uint64_t)p[2] << 8 | p[3];
            } else if (len == 127) {
                len = 0;
                for (int i = 2; i < 10; i++) len = len << 8 | p[i];
                if (len >> 63) fail(0, "connection %d: frame length over 2^63", c->id);
            }
            pos += header;
            frame_start(c, p[0], len);
            if (c->left == 0) frame_end(c);
            continue;
        }
        size_t n = avail < c->left ? avail : (size_t)c->left;
        if (c->opcode >= 8) memcpy(c->ctrl + c->ctrl_len, p, n), c->ctrl_len += n;
        else data_piece(c, p, n);
        pos += n;
        c->left -= n;
        if (c->left == 0) frame_end(c);
    }
    if (c->fd < 0) return;
    if (pos < c->rlen) memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
}

/* ---- what each mode does at each step ------------------------------------------------- */

static void start_traffic(uint64_t now) {
    for (int i = 0; i < opt.connections; i++)
        for (int k = 0; k < opt.in_flight; k++) send_message(&conns[i], now);
    phase = PH_WARMUP;
    phase_deadline = now + seconds_ns(opt.warmup);
}

static void on_open(Conn *c, uint64_t now) {
    if (opt.stream) {
        upgraded++;
        if (opened < opt.connections) conn_open(&conns[opened++], now);
        if (upgraded == opt.connections) start_traffic(now);
    } else {
        send_message(c, now);
    }
}

static void on_echo(Conn *c, uint64_t sent, uint64_t now) {
    if (opt.stream) {
        ops_total++;
        if (measuring) {
            ops++;
            record_latency(now - sent);
        }
        if (sending) send_message(c, now);
    } else {
        send_close(c);
    }
}

/* The server ended TCP (EOF, or a reset when `err` is set). */
static void on_eof(Conn *c, int err) {
    uint64_t now = now_ns();
    if (opt.stream) {
        if (phase == PH_CLOSE) {
            conn_close(c);
            closed_count++;
            return;
        }
        fail(0, "connection %d: the server %s the connection at step '%s'%s", c->id,
             err ? "reset" : "closed", STATE_NAMES[c->state],
             c->state == ST_UPGRADING ? " (no upgrade response)" : "");
    }
    if (c->state != ST_WAIT_EOF)
        fail(0, "connection %d: the server %s the connection at step '%s'", c->id,
             err ? "reset" : "closed", STATE_NAMES[c->state]);
    conn_close(c);
    ops_total++;
    if (measuring) {
        ops++;
        record_latency(now - c->began);
    }
    if (sending) conn_open(c, now);
    else active--;
}

/* Reads until the socket is empty, or READS_MAX reads: epoll is level-triggered, so a busy
   connection is read again on the next round, after the others and the deadlines. */
static void on_readable(Conn *c) {
    for (int reads = 0; reads < READS_MAX; reads++) {
        if (c->rlen == c->rcap) fail(0, "connection %d: read buffer full", c->id);
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n > 0) {
            int full = c->rlen + (size_t)n == c->rcap;
            c->rlen += (size_t)n;
            uint32_t gen = c->gen;
            consume(c);
            if (!full || c->fd < 0 || c->gen != gen) return;
            continue; /* the buffer was filled: there may be more */
        }
        if (n == 0 || errno == ECONNRESET || errno == EPIPE) {
            on_eof(c, n != 0);
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        fail(0, "connection %d: recv failed: %s", c->id, strerror(errno));
    }
}

static void conn_open(Conn *c, uint64_t now) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(0, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->gen++;
    c->state = ST_CONNECTING;
    c->began = now;
    c->deadline = now + seconds_ns(opt.connect_timeout);
    c->rlen = c->whead = c->wlen = c->tail_len = 0;
    c->in_frame = c->in_message = c->close_seen = 0;
    c->fifo_head = c->fifo_count = 0;
    int done = connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) == 0;
    if (!done && errno != EINPROGRESS)
        fail(0, "connect to 127.0.0.1:%d failed: %s", opt.port, strerror(errno));
    c->events = done ? EPOLLIN : EPOLLOUT;
    struct epoll_event ev = {.events = c->events, .data.u64 = (uint64_t)c->gen << 32 | (uint32_t)c->id};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) fail(0, "epoll_ctl: %s", strerror(errno));
    if (done) on_connected(c);
}

static void on_event(Conn *c, uint32_t events) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) fail(0, "connect to 127.0.0.1:%d failed: %s", opt.port, strerror(err));
        if (events & (EPOLLOUT | EPOLLIN)) on_connected(c);
        return;
    }
    uint32_t gen = c->gen;
    if (events & EPOLLOUT) flush(c);
    if (c->fd >= 0 && c->gen == gen && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
}

/* ---- the run --------------------------------------------------------------------------- */

static void open_window(uint64_t now) {
    measuring = 1;
    window_start_ns = now;
    marker("start", now);
    phase = PH_WINDOW;
    phase_deadline = now + seconds_ns(opt.duration);
}

static void close_window(uint64_t now) {
    measuring = 0;
    sending = 0;
    window_end_ns = now;
    marker("end", now);
    phase = PH_DRAIN;
    phase_deadline = now + seconds_ns(opt.stream ? opt.drain_timeout
                                                 : opt.connect_timeout + opt.close_timeout);
}

static void start_closing(uint64_t now) {
    phase = PH_CLOSE;
    phase_deadline = now + seconds_ns(opt.close_timeout + opt.connections / 2000.0);
    for (int i = 0; i < opt.connections && phase == PH_CLOSE; i++)
        if (conns[i].fd >= 0) send_close(&conns[i]);
}

/* Per-connection deadlines: connects and upgrades, and each handshake loop. */
static void scan(uint64_t now) {
    for (int i = 0; i < opt.connections; i++) {
        Conn *c = &conns[i];
        if (c->fd < 0 || now < c->deadline) continue;
        if (opt.stream && c->state >= ST_OPEN) continue;
        if (opt.stream)
            fail(0, "connection %d: no upgrade within %.0f s (step '%s')", c->id,
                 opt.connect_timeout, STATE_NAMES[c->state]);
        fail(0, "connection %d: handshake loop not finished within %.0f s (step '%s')", c->id,
             opt.connect_timeout, STATE_NAMES[c->state]);
    }
}

/* Phase changes due at `now`. */
static void advance(uint64_t now) {
    switch (phase) {
    case PH_WARMUP:
        if (now >= phase_deadline) open_window(now);
        break;
    case PH_WINDOW:
        if (now >= phase_deadline) {
            close_window(now);
            if (opt.stream && outstanding == 0) start_closing(now);
            if (!opt.stream && active == 0) phase = PH_DONE;
        }
        break;
    case PH_DRAIN:
        if (opt.stream && outstanding == 0) {
            start_closing(now);
        } else if (!opt.stream && active == 0) {
            phase = PH_DONE;
        } else if (now >= phase_deadline) {
            int late = 0;
            for (int i = 0; i < opt.connections; i++)
                late += opt.stream ? conns[i].fifo_count > 0 : conns[i].fd >= 0;
            fail(0, "%d %s did not finish within %.0f s after the window", late,
                 opt.stream ? "connections' echoes" : "handshake loops",
                 (double)(phase_deadline - window_end_ns) / 1e9);
        }
        break;
    case PH_CLOSE:
        if (closed_count >= opt.connections || now >= phase_deadline) phase = PH_DONE;
        break;
    default:
        break;
    }
}

static double parse_number(const char *flag, const char *value, double lo, double hi) {
    char *end;
    double v = strtod(value, &end);
    if (!*value || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "wsload: %s takes a number from %g to %g, got '%s'\n", flag, lo, hi, value);
        exit(2);
    }
    return v;
}

static int self_test(void) {
    static const struct { const char *in; const char *hex; } sha[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"The quick brown fox jumps over the lazy dog",
         "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof sha / sizeof *sha; i++) {
        uint8_t d[20];
        char hex[41];
        sha1(sha[i].in, strlen(sha[i].in), d);
        for (int j = 0; j < 20; j++) snprintf(hex + 2 * j, 3, "%02x", d[j]);
        if (strcmp(hex, sha[i].hex)) bad++, fprintf(stderr, "sha1(%s) = %s\n", sha[i].in, hex);
    }
    char out[64];
    base64((const uint8_t *)"foobar", 6, out);
    if (strcmp(out, "Zm9vYmFy")) bad++, fprintf(stderr, "base64(foobar) = %s\n", out);
    base64((const uint8_t *)"fooba", 5, out);
    if (strcmp(out, "Zm9vYmE=")) bad++, fprintf(stderr, "base64(fooba) = %s\n", out);
    base64((const uint8_t *)"foob", 4, out);
    if (strcmp(out, "Zm9vYg==")) bad++, fprintf(stderr, "base64(foob) = %s\n", out);
    accept_for("dGhlIHNhbXBsZSBub25jZQ==", out); /* RFC 6455 §1.3 */
    if (strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) bad++, fprintf(stderr, "accept = %s\n", out);
    puts(bad ? "{\"ok\":false}" : "{\"ok\":true}");
    return bad ? 1 : 0;
}

static void usage(const char *why) {
    fprintf(stderr,
            "wsload: %s\nusage: wsload --mode stream|handshakes --port P [--connections N] "
            "[--in-flight K] [--size S] [--text|--binary] [--warmup S] [--duration S] "
            "[--connect-timeout S] [--drain-timeout S] [--close-timeout S] [--json] [--deflate]\n"
            "       wsload --print-json --size S\n       wsload --self-test\n",
            why);
    exit(2);
}

int main(int argc, char **argv) {
    int have_mode = 0, print_json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--self-test")) return self_test();
        if (!strcmp(a, "--text")) { opt.text = 1; continue; }
        if (!strcmp(a, "--binary")) { opt.text = 0; continue; }
        if (!strcmp(a, "--json")) { opt.json = 1; continue; }
        if (!strcmp(a, "--deflate")) { opt.deflate = 1; continue; }
        if (!strcmp(a, "--print-json")) { print_json = opt.json = opt.text = 1; continue; }
        if (i + 1 >= argc) usage("an option lacks its value");
        const char *v = argv[++i];
        if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "stream")) opt.stream = 1;
            else if (!strcmp(v, "handshakes")) opt.stream = 0;
            else usage("--mode is stream or handshakes");
            have_mode = 1;
        } else if (!strcmp(a, "--port")) opt.port = (int)parse_number(a, v, 1, 65535);
        else if (!strcmp(a, "--connections")) opt.connections = (int)parse_number(a, v, 1, MAX_CONNECTIONS);
        else if (!strcmp(a, "--in-flight")) opt.in_flight = (int)parse_number(a, v, 1, 4096);
        else if (!strcmp(a, "--size")) opt.size = (size_t)parse_number(a, v, 0, 64 << 20);
        else if (!strcmp(a, "--warmup")) opt.warmup = parse_number(a, v, 0, 86400);
        else if (!strcmp(a, "--duration")) opt.duration = parse_number(a, v, 0.001, 86400);
        else if (!strcmp(a, "--connect-timeout")) opt.connect_timeout = parse_number(a, v, 0.001, 3600);
        else if (!strcmp(a, "--drain-timeout")) opt.drain_timeout = parse_number(a, v, 0.001, 3600);
        else if (!strcmp(a, "--close-timeout")) opt.close_timeout = parse_number(a, v, 0.001, 3600);
        else usage("unknown option");
    }
    if (!print_json && (!have_mode || !opt.port)) usage("--mode and --port are required");
    if (!opt.stream) opt.in_flight = 1;
    if (opt.json && (!opt.text || opt.size < JSON_MIN || opt.size > PREMASK_MIN))
        usage("--json takes --text and a --size from 32 to 4096");
    if (opt.deflate && (!opt.stream || opt.size > PREMASK_MIN))
        usage("--deflate takes --mode stream and a --size up to 4096");

    /* Die with the parent; never outlive the hard deadline; no SIGPIPE. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    double bound = opt.connect_timeout + opt.connections / 200.0 + opt.warmup + opt.duration +
                   opt.drain_timeout + opt.connect_timeout + opt.close_timeout +
                   opt.connections / 2000.0 + 10;
    alarm((unsigned)bound + 1);

    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state)
        rng_state = now_ns() ^ ((uint64_t)getpid() << 32);

    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt.port);
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    make_pool();
    if (print_json) { /* the messages as sent, but with "seq" still its placeholder */
        for (uint64_t j = 0; j < pool_n; j++) {
            fwrite(pool + j * opt.size, 1, opt.size, stdout);
            putchar('\n');
        }
        return 0;
    }
    plain_buf = xrealloc(NULL, opt.size);
    zcap = deflateBound(NULL, (uLong)opt.size) + 64;
    zbuf = xrealloc(NULL, zcap);
    conns = xrealloc(NULL, (size_t)opt.connections * sizeof *conns);
    memset(conns, 0, (size_t)opt.connections * sizeof *conns);
    size_t rcap = opt.size > 4096 ? 256 * 1024 : 64 * 1024;
    for (int i = 0; i < opt.connections; i++) {
        conns[i].fd = -1;
        conns[i].id = i;
        conns[i].rcap = rcap;
        conns[i].rbuf = xrealloc(NULL, rcap);
        conns[i].fifo = xrealloc(NULL, (size_t)opt.in_flight * sizeof(Pending));
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) fail(0, "epoll_create1: %s", strerror(errno));

    uint64_t now = now_ns();
    if (opt.stream) {
        phase = PH_CONNECT;
        while (opened < opt.connections && opened < CONNECTING_MAX) conn_open(&conns[opened++], now);
    } else {
        phase = PH_WARMUP;
        phase_deadline = now + seconds_ns(opt.warmup);
        active = opt.connections;
        for (int i = 0; i < opt.connections; i++) conn_open(&conns[i], now);
    }

    struct epoll_event events[MAX_EVENTS];
    uint64_t next_scan = now + SCAN_NS;
    while (phase != PH_DONE) {
        now = now_ns();
        advance(now);
        if (phase == PH_DONE) break;
        if (now >= next_scan) {
            scan(now);
            next_scan = now + SCAN_NS;
        }
        uint64_t wake = next_scan;
        if (phase != PH_CONNECT && phase_deadline < wake) wake = phase_deadline;
        int timeout = wake > now ? (int)((wake - now + MS_NS - 1) / MS_NS) : 0;
        int n = epoll_wait(epfd, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail(0, "epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            Conn *c = &conns[(uint32_t)events[i].data.u64];
            /* An event for a socket closed earlier in this batch is stale. */
            if (c->fd < 0 || c->gen != (uint32_t)(events[i].data.u64 >> 32)) continue;
            on_event(c, events[i].events);
        }
    }
    for (int i = 0; i < opt.connections; i++) conn_close(&conns[i]);
    finish();
    return 0;
}
