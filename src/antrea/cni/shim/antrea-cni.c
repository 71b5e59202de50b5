/*
 * antrea-cni: the CNI executable a container runtime runs for every pod network operation.
 *
 * A static (musl) program that needs nothing on the host. It forwards the invocation -- every
 * CNI_* environment variable and stdin, unparsed -- to the antrea agent over its unix socket and
 * relays the answer (stdout and exit status). All CNI semantics (environment and config
 * validation, every spec error code, result versions) live in the agent
 * (antrea.agent.cniserver.shimproto). The shim answers by itself only what it must:
 *   - VERSION (no agent needed; the config's cniVersion is echoed when we support it);
 *   - code 11 "try again later" (50 for STATUS) when the agent cannot be reached or does not
 *     answer in time, and 201 when its answer is not the protocol.
 *
 * Wire format (docs/design/cni.md, "Shim protocol"):
 *   request:  "ANTREA-CNI/2 <env bytes> <stdin bytes> <flags>\n" <env> <stdin>
 *             env = "KEY=VALUE\0" for every CNI_* variable; flags bit 0 = stdin was larger
 *             than MAX_STDIN and is not sent.
 *   answer:   "<exit status> <stdout bytes>\n" <stdout>
 *   then the shim sends "A" (acknowledged) if it is still within its deadline, and only then
 *   prints the answer. The shim never half-closes: the agent treats end-of-file before the
 *   acknowledgement as "the runtime gave up" and rolls an ADD back.
 *
 * Which socket: the config's top-level "cniSocket" when it is a usable string, else the default
 * baked into this file at install time (antrea.agent.cniserver.install patches DEFAULT_SOCKET_SLOT).
 * Timeout: the config's "cniTimeoutSeconds" when it is a number in (0, 86400], else 60 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define MAX_STDIN (4u << 20)          /* the agent's limit on one network config */
#define MAX_ANSWER (16u << 20)        /* the agent's answer: a result is a few KiB */
#define MAX_ENV (1u << 20)
#define DEFAULT_TIMEOUT 60.0
#define MAX_TIMEOUT 86400.0
#define MAX_DEPTH 1000                /* nesting the shim's own JSON scan accepts */

#define SLOT_MARKER "@@ANTREA-CNI-DEFAULT-SOCKET@@"
/* Patched in place by the agent's install (marker, then a NUL-terminated path of at most 107 bytes). */
char DEFAULT_SOCKET_SLOT[sizeof(SLOT_MARKER) - 1 + 108] __attribute__((used)) =
    SLOT_MARKER "/var/run/antrea/cni.sock";

static const char *const SUPPORTED[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define NSUPPORTED (sizeof(SUPPORTED) / sizeof(SUPPORTED[0]))
#define LATEST "1.1.0"

enum { TRY_AGAIN_LATER = 11, PLUGIN_NOT_AVAILABLE = 50, UNKNOWN_RPC_ERROR = 201 };

/* ---- growable buffer ------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(struct buf *b, const void *data, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int buf_str(struct buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

/* ---- output --------------------------------------------------------------------------- */

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; /* stdout gone: nothing left to tell anyone */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Decode one UTF-8 sequence; returns its length, or 0 if invalid (then *cp is unset). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned char c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

/* A JSON string literal of arbitrary bytes, ASCII only (as Python's json.dumps writes). */
static void json_quote(struct buf *out, const char *s) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    buf_str(out, "\"");
    while (n > 0) {
        uint32_t cp;
        size_t len = utf8_decode(p, n, &cp);
        if (len == 0) { cp = 0xFFFD; len = 1; }
        p += len;
        n -= len;
        char esc[16];
        if (cp == '"') buf_str(out, "\\\"");
        else if (cp == '\\') buf_str(out, "\\\\");
        else if (cp == '\n') buf_str(out, "\\n");
        else if (cp == '\r') buf_str(out, "\\r");
        else if (cp == '\t') buf_str(out, "\\t");
        else if (cp == '\b') buf_str(out, "\\b");
        else if (cp == '\f') buf_str(out, "\\f");
        else if (cp >= 0x20 && cp < 0x7F) { char ch = (char)cp; buf_add(out, &ch, 1); }
        else {
            uint32_t units[2];
            int count = 1;
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                units[0] = 0xD800 | (v >> 10);
                units[1] = 0xDC00 | (v & 0x3FF);
                count = 2;
            } else {
                units[0] = cp;
            }
            for (int i = 0; i < count; i++) {
                uint32_t u = units[i];
                esc[0] = '\\'; esc[1] = 'u';
                esc[2] = hex[(u >> 12) & 15]; esc[3] = hex[(u >> 8) & 15];
                esc[4] = hex[(u >> 4) & 15]; esc[5] = hex[u & 15];
                buf_add(out, esc, 6);
            }
        }
    }
    buf_str(out, "\"");
}

/* ---- the config: a strict JSON scan that remembers three top-level members ------------- */

struct token {
    const char *p; /* the value's text (for a string: between the quotes) */
    size_t len;
    char kind;     /* 0 absent, 's' string, 'n' number, 'o' anything else */
};

struct config {
    int valid; /* stdin is one JSON object (as the agent's decoder would accept it) */
    struct token version, socket, timeout;
};

struct scan {
    const unsigned char *s;
    size_t n, i;
};

static void skip_ws(struct scan *sc) {
    while (sc->i < sc->n) {
        unsigned char c = sc->s[sc->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        sc->i++;
    }
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* At '"': advance past the closing quote; the content is [*start, *start + *len). */
static int scan_string(struct scan *sc, const char **start, size_t *len) {
    sc->i++;
    size_t begin = sc->i;
    while (sc->i < sc->n) {
        unsigned char c = sc->s[sc->i];
        if (c == '"') {
            *start = (const char *)sc->s + begin;
            *len = sc->i - begin;
            sc->i++;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (sc->i + 1 >= sc->n) return -1;
            unsigned char e = sc->s[sc->i + 1];
            if (e == 'u') {
                if (sc->i + 6 > sc->n) return -1;
                for (int k = 2; k < 6; k++)
                    if (hexval(sc->s[sc->i + k]) < 0) return -1;
                sc->i += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) return -1;
            sc->i += 2;
            continue;
        }
        sc->i++;
    }
    return -1;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int scan_number(struct scan *sc) {
    if (sc->i < sc->n && sc->s[sc->i] == '-') sc->i++;
    if (sc->i >= sc->n) return -1;
    if (sc->s[sc->i] == '0') sc->i++;
    else if (is_digit(sc->s[sc->i])) while (sc->i < sc->n && is_digit(sc->s[sc->i])) sc->i++;
    else return -1;
    if (sc->i < sc->n && sc->s[sc->i] == '.') {
        sc->i++;
        if (sc->i >= sc->n || !is_digit(sc->s[sc->i])) return -1;
        while (sc->i < sc->n && is_digit(sc->s[sc->i])) sc->i++;
    }
    if (sc->i < sc->n && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
        sc->i++;
        if (sc->i < sc->n && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-')) sc->i++;
        if (sc->i >= sc->n || !is_digit(sc->s[sc->i])) return -1;
        while (sc->i < sc->n && is_digit(sc->s[sc->i])) sc->i++;
    }
    return 0;
}

static int scan_literal(struct scan *sc) {
    static const char *const words[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(words[k]);
        if (sc->n - sc->i >= l && memcmp(sc->s + sc->i, words[k], l) == 0) {
            sc->i += l;
            return 0;
        }
    }
    return -1;
}

/*
 * Decode a JSON string's content into out (NUL-terminated UTF-8, at most cap-1 bytes).
 * Returns -1 when it does not fit, holds a NUL or a lone surrogate (no usable path or version).
 */
static int unescape(const char *p, size_t len, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        unsigned char c = (unsigned char)p[i];
        if (c != '\\') {
            cp = c;
            i++;
            if (cp == 0) return -1;
            if (o + 1 >= cap) return -1;
            out[o++] = (char)c;
            continue;
        }
        char e = p[i + 1];
        i += 2;
        switch (e) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            cp = 0;
            for (int k = 0; k < 4; k++) cp = cp << 4 | (uint32_t)hexval((unsigned char)p[i + k]);
            i += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 6 > len || p[i] != '\\' || p[i + 1] != 'u') return -1;
                uint32_t lo = 0;
                for (int k = 0; k < 4; k++) {
                    int h = hexval((unsigned char)p[i + 2 + k]);
                    if (h < 0) return -1;
                    lo = lo << 4 | (uint32_t)h;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            break;
        }
        default: cp = (uint32_t)(unsigned char)e; break; /* " \ / */
        }
        if (cp == 0) return -1;
        char enc[4];
        size_t l;
        if (cp < 0x80) { enc[0] = (char)cp; l = 1; }
        else if (cp < 0x800) { enc[0] = (char)(0xC0 | cp >> 6); enc[1] = (char)(0x80 | (cp & 0x3F)); l = 2; }
        else if (cp < 0x10000) {
            enc[0] = (char)(0xE0 | cp >> 12); enc[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            enc[2] = (char)(0x80 | (cp & 0x3F)); l = 3;
        } else {
            enc[0] = (char)(0xF0 | cp >> 18); enc[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            enc[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); enc[3] = (char)(0x80 | (cp & 0x3F)); l = 4;
        }
        if (o + l >= cap) return -1;
        memcpy(out + o, enc, l);
        o += l;
    }
    out[o] = 0;
    return 0;
}

static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp);
        if (l == 0) return 0;
        i += l;
    }
    return 1;
}

/* Scan stdin: is it one JSON object, and what are its top-level version/socket/timeout? */
static void scan_config(const char *data, size_t n, struct config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (!valid_utf8((const unsigned char *)data, n)) return;
    struct scan sc = {(const unsigned char *)data, n, 0};
    char stack[MAX_DEPTH];
    int depth = 0;
    struct token *member = NULL; /* the top-level member whose value comes next */
    skip_ws(&sc);
    if (sc.i >= sc.n || sc.s[sc.i] != '{') return;
    /* Iterative parse: at each step we expect a value (after '[' ',' ':' or at the start). */
    for (;;) {
        skip_ws(&sc);
        if (sc.i >= sc.n) return;
        unsigned char c = sc.s[sc.i];
        size_t vstart = sc.i;
        struct token *target = member;
        member = NULL;
        if (c == '{' || c == '[') {
            if (depth >= MAX_DEPTH) return;
            stack[depth++] = (char)c;
            sc.i++;
            skip_ws(&sc);
            if (sc.i < sc.n && sc.s[sc.i] == (c == '{' ? '}' : ']')) {
                sc.i++;
                depth--;
                if (target) target->kind = 'o';
            } else if (c == '{') {
                goto key;
            } else {
                if (target) target->kind = 'o';
                continue; /* first array element */
            }
        } else if (c == '"') {
            const char *p;
            size_t l;
            if (scan_string(&sc, &p, &l)) return;
            if (target) { target->p = p; target->len = l; target->kind = 's'; }
        } else if (c == '-' || is_digit(c)) {
            if (scan_number(&sc)) return;
            if (target) {
                target->p = (const char *)sc.s + vstart;
                target->len = sc.i - vstart;
                target->kind = 'n';
            }
        } else {
            if (scan_literal(&sc)) return;
            if (target) target->kind = 'o';
        }
        if (target && (c == '{' || c == '[')) target->kind = 'o';
        /* After a value: ',' or a closing bracket, possibly several. */
        for (;;) {
            skip_ws(&sc);
            if (depth == 0) {
                if (sc.i == sc.n) cfg->valid = 1;
                return;
            }
            if (sc.i >= sc.n) return;
            c = sc.s[sc.i];
            char open = stack[depth - 1];
            if (c == ',') {
                sc.i++;
                if (open == '{') goto key;
                break; /* next array element */
            }
            if ((open == '{' && c == '}') || (open == '[' && c == ']')) {
                sc.i++;
                depth--;
                continue;
            }
            return;
        }
        continue;
    key:
        skip_ws(&sc);
        if (sc.i >= sc.n || sc.s[sc.i] != '"') return;
        {
            const char *p;
            size_t l;
            if (scan_string(&sc, &p, &l)) return;
            if (depth == 1) {
                char name[32];
                if (l < sizeof name && unescape(p, l, name, sizeof name) == 0) {
                    if (!strcmp(name, "cniVersion")) member = &cfg->version;
                    else if (!strcmp(name, "cniSocket")) member = &cfg->socket;
                    else if (!strcmp(name, "cniTimeoutSeconds")) member = &cfg->timeout;
                }
            }
        }
        skip_ws(&sc);
        if (sc.i >= sc.n || sc.s[sc.i] != ':') return;
        sc.i++;
        if (member) member->kind = 'o'; /* until its value says otherwise (last one wins) */
    }
}

/* The version error output and VERSION speak: the config's if we support it, else ours. */
static const char *output_version(const struct config *cfg) {
    if (!cfg->valid || cfg->version.kind != 's') return LATEST;
    char v[16];
    if (cfg->version.len >= 64 || unescape(cfg->version.p, cfg->version.len, v, sizeof v))
        return LATEST;
    for (size_t k = 0; k < NSUPPORTED; k++)
        if (!strcmp(v, SUPPORTED[k])) return SUPPORTED[k];
    return LATEST;
}

/* ---- the shim's own answers ------------------------------------------------------------ */

static int print_error(const char *version, int code, const char *msg, const char *details) {
    struct buf out = {0};
    char num[32];
    buf_str(&out, "{\n    \"cniVersion\": \"");
    buf_str(&out, version);
    snprintf(num, sizeof num, "\",\n    \"code\": %d,\n    \"msg\": ", code);
    buf_str(&out, num);
    json_quote(&out, msg);
    if (details && *details) {
        buf_str(&out, ",\n    \"details\": ");
        json_quote(&out, details);
    }
    buf_str(&out, "\n}\n");
    if (out.p) write_all(1, out.p, out.len);
    return 1;
}

static int print_version(const char *version) {
    struct buf out = {0};
    buf_str(&out, "{\n    \"cniVersion\": \"");
    buf_str(&out, version);
    buf_str(&out, "\",\n    \"supportedVersions\": [\n");
    for (size_t k = 0; k < NSUPPORTED; k++) {
        buf_str(&out, "        \"");
        buf_str(&out, SUPPORTED[k]);
        buf_str(&out, k + 1 < NSUPPORTED ? "\",\n" : "\"\n");
    }
    buf_str(&out, "    ]\n}\n");
    if (out.p) write_all(1, out.p, out.len);
    return 0;
}

/* ---- stdin ---------------------------------------------------------------------------- */

/* Read stdin up to MAX_STDIN; *too_large when there was more (the rest is drained). */
static int read_stdin(struct buf *in, int *too_large) {
    *too_large = 0;
    if (isatty(0)) return 0; /* started by hand without a config: do not wait for one */
    char chunk[65536];
    for (;;) {
        ssize_t r = read(0, chunk, sizeof chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EBADF) return 0; /* no stdin at all: an empty config */
            return -1;
        }
        if (r == 0) return 0;
        if (*too_large) continue;
        if (in->len + (size_t)r > MAX_STDIN) {
            *too_large = 1;
            continue;
        }
        if (buf_add(in, chunk, (size_t)r)) return -1;
    }
}

/* ---- the socket ----------------------------------------------------------------------- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait for events on fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - now();
        if (left <= 0) return 0;
        int ms = left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, ms);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r > 0) return 1;
    }
}

struct failure {
    char msg[1024];
    char details[512];
};

static void fail(struct failure *f, const char *details, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct failure *f, const char *details, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    snprintf(f->details, sizeof f->details, "%s", details ? details : "");
}

/*
 * Send the request and read the whole answer. Returns 0 with the answer in *answer, or -1
 * with *f describing why there is none (the runtime should try again later).
 */
/* "<status> <length>\n": 0 when well formed. */
static int parse_answer_header(const char *p, size_t n, int *status, size_t *length) {
    size_t i = 0;
    int st = 0, digits = 0;
    while (i < n && is_digit((unsigned char)p[i]) && digits < 4) {
        st = st * 10 + (p[i++] - '0');
        digits++;
    }
    if (!digits || st > 255 || i >= n || p[i++] != ' ') return -1;
    size_t len = 0;
    digits = 0;
    while (i < n && is_digit((unsigned char)p[i]) && digits < 10) {
        len = len * 10 + (size_t)(p[i++] - '0');
        digits++;
    }
    if (!digits || i + 1 != n || p[i] != '\n') return -1;
    *status = st;
    *length = len;
    return 0;
}

static int call_agent(const char *path, double timeout, const struct buf *req, struct buf *answer,
                      int *status, size_t *body, struct failure *f) {
    double deadline = now() + timeout;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(f, NULL, "cannot create a socket to reach the antrea agent: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path)); /* length checked by the caller */
    /*
     * A unix connect waits (blocking, up to SO_SNDTIMEO) while the agent's listen backlog is
     * full; a non-blocking one would fail at once with EAGAIN.
     */
    for (;;) {
        double left = deadline - now();
        struct timeval tv = {0, 1000};
        if (left > 0) {
            tv.tv_sec = (time_t)left;
            tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
            if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) break;
        int err = errno;
        if (err == EINTR && now() < deadline) continue;
        if (err == EAGAIN || err == EINPROGRESS || err == EINTR)
            fail(f, NULL, "timed out connecting to the antrea agent on unix socket %s", path);
        else if (err == ENOENT)
            fail(f, "start antrea-agent (or check cniSocket in the CNI config) and retry",
                 "antrea agent is not running: unix socket %s does not exist", path);
        else if (err == ECONNREFUSED)
            fail(f, "the socket exists but nothing listens on it; is antrea-agent running?",
                 "antrea agent is not accepting connections on unix socket %s", path);
        else
            fail(f, NULL, "cannot connect to the antrea agent on unix socket %s: %s", path,
                 strerror(err));
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t sent = 0;
    while (sent < req->len) {
        ssize_t w = send(fd, req->p + sent, req->len - sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                int r = wait_fd(fd, POLLOUT, deadline);
                if (r == 1) continue;
                if (r == 0) goto timed_out;
            }
            fail(f, NULL, "lost the connection to the antrea agent on unix socket %s: %s", path,
                 strerror(errno));
            close(fd);
            return -1;
        }
        sent += (size_t)w;
    }
    /* The answer: "<status> <length>\n" then <length> bytes for stdout. */
    size_t header = 0, want = 0;
    for (;;) {
        if (header == 0) {
            char *nl = answer->len ? memchr(answer->p, '\n', answer->len) : NULL;
            if (nl) {
                header = (size_t)(nl - answer->p) + 1;
                if (parse_answer_header(answer->p, header, status, &want) || want > MAX_ANSWER) {
                    close(fd);
                    return 1; /* not the protocol */
                }
            } else if (answer->len > 64) {
                close(fd);
                return 1;
            }
        }
        if (header && answer->len >= header + want) break;
        if (buf_reserve(answer, 65536)) {
            fail(f, NULL, "out of memory reading the antrea agent's answer");
            close(fd);
            return -1;
        }
        ssize_t r = recv(fd, answer->p + answer->len, answer->cap - answer->len, 0);
        if (r > 0) {
            answer->len += (size_t)r;
            continue;
        }
        if (r == 0) {
            close(fd);
            if (answer->len == 0) {
                fail(f, NULL,
                     "the antrea agent on unix socket %s closed the connection without answering",
                     path);
                return -1;
            }
            fail(f, NULL, "the antrea agent on unix socket %s closed the connection mid-answer",
                 path);
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w == 1) continue;
            if (w == 0) goto timed_out;
        }
        fail(f, NULL, "lost the connection to the antrea agent on unix socket %s: %s", path,
             strerror(errno));
        close(fd);
        return -1;
    }
    /* Past our deadline the runtime has given up: do not acknowledge (the agent rolls back). */
    if (now() >= deadline) goto timed_out;
    /*
     * The agent keeps an ADD only once we acknowledge holding its answer. For anything else it
     * has closed already, so a failed send is expected; an ADD's agent waits for the ack longer
     * than our deadline (the request's timeout + 5 s), so it is still there to receive it.
     */
    (void)send(fd, "A", 1, MSG_NOSIGNAL);
    close(fd);
    *body = header;
    answer->len = header + want; /* exactly the announced bytes, nothing the agent sent after */
    return 0;
timed_out:
    fail(f, NULL, "timed out after %gs waiting for the antrea agent on unix socket %s", timeout,
         path);
    close(fd);
    return -1;
}

/* ---- main ----------------------------------------------------------------------------- */

extern char **environ;

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *command = getenv("CNI_COMMAND");
    struct buf in = {0};
    int too_large = 0;
    int read_error = read_stdin(&in, &too_large) != 0;
    struct config cfg;
    if (too_large || read_error) memset(&cfg, 0, sizeof cfg);
    else scan_config(in.p ? in.p : "", in.len, &cfg);
    const char *version = output_version(&cfg);

    if (command && !strcmp(command, "VERSION")) return print_version(version);

    int unavailable = command && !strcmp(command, "STATUS") ? PLUGIN_NOT_AVAILABLE
                                                            : TRY_AGAIN_LATER;
    /* Which agent: the config's cniSocket if usable, else the default baked in at install. */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *fallback = DEFAULT_SOCKET_SLOT + sizeof(SLOT_MARKER) - 1;
    if (!(cfg.valid && cfg.socket.kind == 's' && cfg.socket.len < 4 * sizeof path &&
          unescape(cfg.socket.p, cfg.socket.len, path, sizeof path) == 0 && path[0])) {
        size_t l = strnlen(fallback, sizeof path - 1);
        memcpy(path, fallback, l);
        path[l] = 0;
    }
    double timeout = DEFAULT_TIMEOUT;
    if (cfg.valid && cfg.timeout.kind == 'n' && cfg.timeout.len < 64) {
        char num[64];
        memcpy(num, cfg.timeout.p, cfg.timeout.len);
        num[cfg.timeout.len] = 0;
        double t = strtod(num, NULL);
        if (t > 0 && t <= MAX_TIMEOUT) timeout = t;
    }

    /* The request: header, CNI_* environment, stdin. */
    struct buf env = {0};
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "CNI_", 4) != 0) continue;
        size_t l = strlen(*e);
        if (env.len + l + 1 > MAX_ENV) break;
        buf_add(&env, *e, l + 1);
    }
    struct buf req = {0};
    char header[128];
    snprintf(header, sizeof header, "ANTREA-CNI/2 %zu %zu %d\n", env.len,
             too_large ? (size_t)0 : in.len, (too_large ? 1 : 0) | (read_error ? 2 : 0));
    if (buf_str(&req, header) || (env.len && buf_add(&req, env.p, env.len)) ||
        (!too_large && in.len && buf_add(&req, in.p, in.len)))
        return print_error(version, unavailable, "antrea-cni: out of memory", "");

    struct buf answer = {0};
    struct failure f = {{0}, {0}};
    int status = 0;
    size_t body = 0;
    int r = call_agent(path, timeout, &req, &answer, &status, &body, &f);
    if (r < 0) return print_error(version, unavailable, f.msg, f.details);
    if (r > 0)
        return print_error(version, UNKNOWN_RPC_ERROR, "malformed response from the antrea agent",
                           "the answer is not the antrea CNI shim protocol");
    write_all(1, answer.p + body, answer.len - body);
    return status;
}
