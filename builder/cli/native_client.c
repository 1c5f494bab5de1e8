/* The server path of the thin client (builder/cli/client.py), compiled: a call through a
 * warm `builder server` starts no Python (issue 9: the interpreter's start alone is ~20 ms
 * of a ~80 ms `run --rm`; this takes ~1 ms).
 *
 * bin/builder execs it as `native_client PYTHON SCRIPT ARGS...` when the wheel carries it.
 * It takes the call to the server only when the Python client would, with the same request;
 * in every other case, before anything is sent, it execs `PYTHON -S SCRIPT ARGS...`, which
 * is what bin/builder would have run: no server dir or alias, connect refused, another
 * user's socket, a one-shot verb, a PYTHON* variable but PYTHONUNBUFFERED (it changes the
 * interpreter's flags, path or code), $BUILDER_SERVER unset (the config file may name a server: Python reads
 * it), a closed std fd, an argv or path that is not UTF-8, a locale whose codeset is not
 * UTF-8, or a refusal from the server (stale code...).
 *
 * The server it reaches: builder/cli/server.py links `<fnv(native key)>.sock` to its own
 * socket when its key is the one the Python client this falls back to would compute (the
 * interpreter and package beside this file, default flags, UTF-8): the native key names
 * this binary (its real path) and the interpreter's UTF-8 mode, and the server checks both
 * the key and the peer's /proc/PID/exe. The request is the Python client's marshal tuple,
 * written by hand with the stream states CPython 3.11 would set (pylifecycle.c
 * create_stdio, preconfig.c: UTF-8 mode and C locale coercion). Replies are read by a
 * marshal reader of the few types they hold. Once the server says "started", this is the
 * Python client: signals forwarded through the pidfd, exit as the child, 125 when the
 * server goes away. No dependency but libc. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define PROTOCOL 1
#define MAX_MESSAGE (1 << 20)
#define REQUEST_FDS 4

extern char **environ;

static char **fallback_argv;

/* What bin/builder would have run: the Python client, which decides everything itself. */
static void __attribute__((noreturn)) fallback(void) {
    execv(fallback_argv[0], fallback_argv);
    fprintf(stderr, "error: %s: %s\n", fallback_argv[0], strerror(errno));
    _exit(127); /* as a shell's "command not found" */
}

/* ---- a marshal writer: the subset of marshal.dumps a request needs ---- */
struct buf {
    char *data;
    size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL) fallback();
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void put_byte(struct buf *b, char c) { put(b, &c, 1); }

static void put_i32(struct buf *b, uint32_t v) { /* marshal's ints are little-endian */
    unsigned char raw[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
    put(b, raw, 4);
}

static void put_str(struct buf *b, const char *s, size_t n) { /* UTF-8, checked before */
    put_byte(b, 'u');
    put_i32(b, (uint32_t)n);
    put(b, s, n);
}

static void put_bytes(struct buf *b, const char *s, size_t n) {
    put_byte(b, 's');
    put_i32(b, (uint32_t)n);
    put(b, s, n);
}

static void put_container(struct buf *b, char kind, size_t n) {
    put_byte(b, kind);
    put_i32(b, (uint32_t)n);
}

/* Strict UTF-8 (Python's decoder: no overlongs, no surrogates, <= U+10FFFF). Anything else
 * Python would decode with surrogateescape into a str this writer does not make. */
static int is_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t more;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (i + more >= n) return 0; /* cut short */
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= more; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) return 0;
        i += more + 1;
    }
    return 1;
}

static void put_text(struct buf *b, const char *s) {
    size_t n = strlen(s);
    if (!is_utf8((const unsigned char *)s, n)) fallback();
    put_str(b, s, n);
}

/* ---- a marshal reader: the replies' types (tuples, lists, ints, strings, refs) ---- */
struct value {
    char type; /* 'i', 's' (a str), 'l' (a list or tuple), 'N' */
    int32_t i;
    const char *s;
    uint32_t n; /* a str's length, or a list's item count */
    struct value *items;
};

#define POOL 512 /* values: a list of n takes up to 2n + 1 */

struct reader {
    const unsigned char *p, *end;
    struct value pool[POOL];
    int used;
    struct value *refs[128];
    int nrefs;
};

static struct value *new_value(struct reader *r) {
    return r->used < POOL ? &r->pool[r->used++] : NULL;
}

static int get_i32(struct reader *r, uint32_t *out) {
    if (r->end - r->p < 4) return -1;
    *out = r->p[0] | r->p[1] << 8 | r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

static struct value *read_value(struct reader *r) {
    if (r->p >= r->end) return NULL;
    unsigned code = *r->p++;
    int flagged = code & 0x80; /* FLAG_REF: a later 'r' may name this object */
    code &= 0x7f;
    uint32_t n;
    int slot = -1;
    if (flagged) {
        if (r->nrefs >= 128) return NULL;
        slot = r->nrefs++;
        r->refs[slot] = NULL;
    }
    struct value *v = NULL;
    switch (code) {
    case 'r':
        if (get_i32(r, &n) || n >= (uint32_t)r->nrefs) return NULL;
        return r->refs[n];
    case 'i':
        if ((v = new_value(r)) == NULL || get_i32(r, &n)) return NULL;
        v->type = 'i';
        v->i = (int32_t)n;
        break;
    case 'N': case 'T': case 'F':
        if ((v = new_value(r)) == NULL) return NULL;
        v->type = 'N';
        break;
    case 'z': case 'Z': case 'a': case 'A': case 'u': case 't':
        if (code == 'z' || code == 'Z') {
            if (r->p >= r->end) return NULL;
            n = *r->p++;
        } else if (get_i32(r, &n)) {
            return NULL;
        }
        if ((uint32_t)(r->end - r->p) < n || (v = new_value(r)) == NULL) return NULL;
        v->type = 's';
        v->s = (const char *)r->p;
        v->n = n;
        r->p += n;
        break;
    case '(': case ')': case '[':
        if (code == ')') {
            if (r->p >= r->end) return NULL;
            n = *r->p++;
        } else if (get_i32(r, &n)) {
            return NULL;
        }
        if (n > 64 || (v = new_value(r)) == NULL) return NULL;
        v->type = 'l';
        v->n = n;
        if (slot >= 0) r->refs[slot] = v;
        if (n == 0) break;
        if (r->used + (int)n > POOL) return NULL;
        v->items = &r->pool[r->used];
        r->used += n;
        for (uint32_t k = 0; k < n; k++) {
            struct value *item = read_value(r);
            if (item == NULL) return NULL;
            v->items[k] = *item;
        }
        break;
    default:
        return NULL;
    }
    if (slot >= 0) r->refs[slot] = v;
    return v;
}

static int is(const struct value *v, const char *s) {
    return v->type == 's' && v->n == strlen(s) && memcmp(v->s, s, v->n) == 0;
}

/* ---- the call ---- */
static volatile sig_atomic_t pidfd = -1;
static volatile sig_atomic_t pending_int;

/* docker's sig-proxy: what we get, the child gets (the server names the signals). */
static void forward(int sig) {
    int saved = errno;
    if (pidfd >= 0)
        syscall(SYS_pidfd_send_signal, (int)pidfd, sig, NULL, 0); /* gone: its status comes */
    else
        pending_int = 1; /* SIGINT before "started": forwarded once the child is known */
    errno = saved;
}

static void __attribute__((noreturn)) exit_as(const struct value *kind, int32_t value) {
    if (is(kind, "signal")) { /* die alike, so our parent sees the same wait status */
        sigset_t set;
        signal(value, SIG_DFL);
        sigemptyset(&set);
        sigaddset(&set, value);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        kill(getpid(), value);
        _exit(128 + value);
    }
    _exit(value);
}

/* A reply ("exit", kind, value) ends us; anything else returns. */
static void exit_if_done(const struct value *reply) {
    if (reply != NULL && reply->type == 'l' && reply->n == 3 && is(&reply->items[0], "exit") &&
        reply->items[2].type == 'i')
        exit_as(&reply->items[1], reply->items[2].i);
}

static const char *getenv_set(const char *name) {
    const char *v = getenv(name);
    return v != NULL && *v ? v : NULL;
}

/* The verb of a command line: the first word that is not a global option (--root takes one). */
static const char *verb(char **args) {
    for (; *args; args++) {
        if (strcmp(*args, "--root") == 0) {
            if (!*++args) return "";
        } else if ((*args)[0] != '-') {
            return *args;
        }
    }
    return "";
}

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

/* One std stream as CPython 3.11 makes it (create_stdio): ("utf-8", errors, line
 * buffering, write through); line buffering on a tty, and always on stderr. */
static void put_stream(struct buf *b, int fd, const char *errors, int unbuffered) {
    put_container(b, '(', 4);
    put_text(b, "utf-8");
    put_text(b, fd == 2 ? "backslashreplace" : errors);
    put_byte(b, !unbuffered && (fd == 2 || isatty(fd)) ? 'T' : 'F');
    put_byte(b, unbuffered ? 'T' : 'F');
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "error: usage: %s PYTHON SCRIPT [ARGS...] (bin/builder runs it)\n",
                argv[0]);
        return 2;
    }
    /* PYTHON -S SCRIPT ARGS...: argv[0] becomes the interpreter, argv[1] "-S". */
    argv[0] = argv[1];
    argv[1] = "-S";
    fallback_argv = argv;
    char *script = argv[2];
    char **args = argv + 3;

    /* PYTHON* variables change the interpreter's flags, path, encodings or hooks: all but
     * PYTHONUNBUFFERED (-u), which only changes the std streams, sent with the request. */
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "PYTHON", 6) == 0 && strncmp(*e, "PYTHONUNBUFFERED=", 17) != 0)
            fallback();
    const char *unbuffered = getenv("PYTHONUNBUFFERED");
    const char *mode = getenv("BUILDER_SERVER");
    if (mode == NULL || (strcmp(mode, "auto") != 0 && strcmp(mode, "on") != 0)) fallback();
    const char *v = verb(args);
    if (strcmp(v, "server") == 0 || strcmp(v, "login") == 0) fallback();
    struct stat st;
    for (int fd = 0; fd < 3; fd++)
        if (fstat(fd, &st) != 0) fallback(); /* the cwd would take its number */

    /* The locale, as Python's preconfig reads it: the C or POSIX locale means UTF-8 mode
     * (and, without LC_ALL, LC_CTYPE coerced to C.UTF-8 in the environment); another locale
     * must have the UTF-8 codeset (else Python's encodings are not ours). */
    setlocale(LC_CTYPE, "");
    const char *ctype = setlocale(LC_CTYPE, NULL);
    int legacy = ctype == NULL || strcmp(ctype, "C") == 0 || strcmp(ctype, "POSIX") == 0;
    const char *coerced = NULL, *errors = "strict";
    if (legacy) {
        errors = "surrogateescape";
        if (getenv_set("LC_ALL") == NULL) {
            static const char *const targets[] = {"C.UTF-8", "C.utf8", "UTF-8"};
            for (int k = 0; k < 3 && coerced == NULL; k++)
                if (setlocale(LC_CTYPE, targets[k]) != NULL) coerced = targets[k];
        }
    } else {
        if (strcmp(nl_langinfo(CODESET), "UTF-8") != 0) fallback();
        if (strcmp(ctype, "C.UTF-8") == 0 || strcmp(ctype, "C.utf8") == 0 ||
            strcmp(ctype, "UTF-8") == 0)
            errors = "surrogateescape"; /* a coercion target: Python's default there */
    }

    const char *dir = getenv_set("BUILDER_SERVER_DIR");
    char dirbuf[4096];
    if (dir == NULL) {
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        if (geteuid() == 0)
            dir = "/run/builder/server";
        else if (runtime != NULL && runtime[0] == '/' &&
                 snprintf(dirbuf, sizeof dirbuf, "%s/builder/server", runtime) <
                     (int)sizeof dirbuf)
            dir = dirbuf;
        else
            fallback();
    }

    /* The native key: this binary (the package beside it) and the interpreter's UTF-8 mode. */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) fallback();
    exe[n] = '\0';
    char key[4200];
    int keylen = snprintf(key, sizeof key, "native%c%s%cutf8_mode=%d", 0, exe, 0, legacy);
    if (keylen <= 0 || keylen >= (int)sizeof key) fallback();
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%016llx.sock", dir,
                 (unsigned long long)fnv1a(key, (size_t)keylen)) >= (int)sizeof addr.sun_path)
        fallback();

    /* The request, before anything is sent: ("run", PROTOCOL, key, argv, env, streams). */
    struct buf b = {0};
    put_container(&b, '(', 6);
    put_text(&b, "run");
    put_byte(&b, 'i');
    put_i32(&b, PROTOCOL);
    if (!is_utf8((const unsigned char *)key, (size_t)keylen)) fallback();
    put_str(&b, key, (size_t)keylen);
    put_container(&b, '[', (size_t)(argc - 2));
    put_text(&b, script);
    for (char **a = args; *a; a++) put_text(&b, *a);
    /* posix.environ: NAME=VALUE entries, the first of a name wins; with the coercion, LC_CTYPE
     * in its place or last (setenv). */
    size_t count = 0;
    int lc_ctype_seen = 0;
    for (char **e = environ; *e; e++) count++;
    char **kept = calloc(count + 1, sizeof *kept);
    if (kept == NULL) fallback();
    size_t nkept = 0;
    for (char **e = environ; *e; e++) {
        char *eq = strchr(*e, '=');
        if (eq == NULL || eq == *e) continue;
        size_t name = (size_t)(eq - *e);
        int dup = 0;
        for (size_t k = 0; k < nkept && !dup; k++)
            dup = strncmp(kept[k], *e, name + 1) == 0;
        if (!dup) kept[nkept++] = *e;
    }
    put_byte(&b, '{');
    for (size_t k = 0; k < nkept; k++) {
        char *eq = strchr(kept[k], '=');
        size_t name = (size_t)(eq - kept[k]);
        put_bytes(&b, kept[k], name);
        if (coerced != NULL && name == 8 && memcmp(kept[k], "LC_CTYPE", 8) == 0) {
            lc_ctype_seen = 1;
            put_bytes(&b, coerced, strlen(coerced));
        } else {
            put_bytes(&b, eq + 1, strlen(eq + 1));
        }
    }
    if (coerced != NULL && !lc_ctype_seen) {
        put_bytes(&b, "LC_CTYPE", 8);
        put_bytes(&b, coerced, strlen(coerced));
    }
    put_byte(&b, '0');
    put_container(&b, '(', 3);
    for (int fd = 0; fd < 3; fd++) put_stream(&b, fd, errors, unbuffered && *unbuffered);
    if (b.len > MAX_MESSAGE) fallback();

    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) fallback();
    struct ucred cred;
    socklen_t credlen = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) != 0 ||
        cred.uid != geteuid())
        fallback(); /* another user's socket */
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) fallback();

    /* Python ignores SIGPIPE and SIGXFSZ and catches SIGINT (unless it started ignored): the
     * server reads our dispositions from /proc and gives the child the same. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    struct sigaction act = {.sa_handler = forward, .sa_flags = SA_RESTART};
    struct sigaction old;
    sigemptyset(&act.sa_mask);
    sigaction(SIGINT, NULL, &old);
    int int_ignored = old.sa_handler == SIG_IGN;
    if (!int_ignored) sigaction(SIGINT, &act, NULL);

    int fds[REQUEST_FDS] = {0, 1, 2, cwd};
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = b.data, .iov_len = b.len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ssize_t sent;
    do sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) fallback();
    close(cwd);

    static char reply[MAX_MESSAGE];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } rcontrol;
    struct iovec riov = {.iov_base = reply, .iov_len = sizeof reply};
    struct msghdr rmsg = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rcontrol.buf,
                          .msg_controllen = sizeof rcontrol.buf};
    ssize_t got;
    do got = recvmsg(sock, &rmsg, MSG_CMSG_CLOEXEC);
    while (got < 0 && errno == EINTR);
    if (got <= 0) fallback(); /* nothing ran: the Python client runs it one-shot */
    static struct reader r;
    r.p = (const unsigned char *)reply;
    r.end = r.p + got;
    const struct value *answer = read_value(&r);
    exit_if_done(answer); /* the child reports its own exit: it can come before "started" */
    int received = -1;
    for (cm = CMSG_FIRSTHDR(&rmsg); cm != NULL; cm = CMSG_NXTHDR(&rmsg, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
            memcpy(&received, CMSG_DATA(cm), sizeof received);
    if (answer == NULL || answer->type != 'l' || answer->n < 1) {
        /* Not a reply we can read: the call may have started, so it must not run twice. */
        fputs("error: the builder server sent an unknown reply\n", stderr);
        _exit(125);
    }
    if (!is(&answer->items[0], "started")) {
        if (received >= 0) close(received);
        if (!int_ignored) signal(SIGINT, SIG_DFL);
        fallback(); /* refused before anything ran (stale code...): one-shot */
    }
    if (answer->n != 3 || answer->items[1].type != 'l' || received < 0) {
        fputs("error: the builder server sent an unknown reply\n", stderr);
        _exit(125);
    }
    pidfd = received;
    const struct value *signals = &answer->items[1];
    for (uint32_t k = 0; k < signals->n; k++) {
        int sig = signals->items[k].i;
        if (signals->items[k].type == 'i')
            sigaction(sig, &act, NULL); /* also one we were started with ignored, as Python */
    }
    if (pending_int) forward(SIGINT);

    for (;;) {
        do got = recv(sock, reply, sizeof reply, 0);
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            /* The server is gone (killed: its children die with it, PR_SET_PDEATHSIG). */
            fputs("error: the builder server went away\n", stderr);
            _exit(125);
        }
        r.p = (const unsigned char *)reply;
        r.end = r.p + got;
        r.used = r.nrefs = 0;
        exit_if_done(read_value(&r));
        fputs("error: the builder server sent an unknown reply\n", stderr);
        _exit(125);
    }
}
