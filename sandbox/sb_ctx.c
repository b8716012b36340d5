/* sandbox/sb_ctx.c: code contexts; see sb_ctx.h. */
#include "config.h"
#include "sandbox/sb_ctx.h"
#include "sandbox/sb_pin.h"

#include <errno.h>
#include <sodium.h>
#include <fcntl.h>
#include <poll.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "kernel/client.h"
#include "sandbox/sb_plan.h"
#include "sandbox/sb_proc.h"
#include "sandbox/sb_util.h"

#define CTX_START_TIMEOUT_S 60.0
#define CTX_INTERRUPT_GRACE_S 5.0
#define CTX_MAX 64                      /* per sandbox: each costs the server three threads (four while
                                         * a streamed run goes on, run_drive) */
/* What a JSON reply keeps (a streamed run keeps none of it: it sends it,
 * see CTX_STREAM_QUEUE): logs per stream, and results in all. Past that
 * the run goes on, the reply says logsTruncated / resultsTruncated. */
#define CTX_LOG_CAP (16u << 20)
#define CTX_RESULTS_CAP (64u << 20)
/* What a streamed run holds for a client that does not read (a stalled
 * agent, a paused process, a full TCP window): the run's own thread keeps
 * reading the kernel (run_drive) and its events wait in a queue for the
 * stream (run_produce). Once the queue holds this many bytes, output
 * events (stdout, stderr, result, clear, error) are dropped and counted;
 * the next event queued is preceded by one stderr notice saying how many
 * went, and execution_complete says eventsDropped. Never dropped: the
 * input_request, the run's ending errors and execution_complete, and the
 * last dropped main result and error, sent again after the notice at the
 * end (one of each: the run keeps them anyway). So a client that stops
 * reading loses only the middle of a flood, never the end, and a streamed
 * run makes the server hold at most this plus one event (one message).
 * 32 MiB: twice what a JSON reply keeps of a log (CTX_LOG_CAP), far more
 * than a client that reads at all falls behind (the 20 MB flood of the
 * tests passes whole), and small beside what a context may make the server
 * hold anyway (353 MiB, below). */
#define CTX_STREAM_QUEUE (32u << 20)
/* What code in a context can make the server hold. That code owns the
 * kernel's process, hence its connections to the server, so what comes on
 * them is bounded: a message (all its parts) of at most CTX_MAX_MSG bytes
 * on IOPub, CTX_MAX_REPLY on shell, stdin and control, 64 KiB on the
 * heartbeat, and at most CTX_MAX_PARTS parts (see the guard below), with
 * at most KN_CLIENT_BOUNDED_HWM messages waiting per channel (IOPub:
 * KN_CLIENT_BOUNDED_HWM_IOPUB, 3, so that 20,000 display() calls take
 * ~0.65 s, not ~1.1 s with 1: the kernel no longer waits for us message by
 * message; hence 64 MiB on IOPub, not 128, for the same total). The kernel
 * cuts its stream output in parts of IP_STREAM_CHUNK (8 MiB), well below;
 * one result must fit (a result larger than CTX_RESULTS_CAP is not kept in
 * a reply anyway). Past a bound the connection is cut: the run ends with
 * 502 SERVICE_NOT_RESPONDING and the context is restarted. So what a
 * context makes the server hold is at most about 4 x 64 MiB (IOPub: three
 * queued messages, one being read) + 3 x 2 x 16 MiB + 640 KiB (the guard's
 * buffers) = 353 MiB, plus the run's copies of the one message it handles
 * and what a reply keeps (CTX_LOG_CAP, CTX_RESULTS_CAP) or a stream's
 * queue (CTX_STREAM_QUEUE). */
#define CTX_MAX_MSG (64u << 20)
#define CTX_MAX_REPLY (16u << 20)
#define CTX_MAX_PARTS 4096
#define CTX_MAX_FRAME CTX_MAX_MSG
#define CTX_LOST_GRACE_S 2.0            /* a kernel that exited: its end is reported within this */

typedef enum { CTX_STARTING, CTX_READY, CTX_FAILED, CTX_DEAD } ctx_state;

struct sb_ctx {
    struct sb_ctx *next;
    char id[64];
    char proc_id[80];
    char *cwd;
    cJSON *env;              /* the variables it was created with (owned), for a restart */
    char language[16];       /* python, javascript or typescript (the kernel's --language) */
    int64_t created_us;
    /* below: under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    ctx_state state;
    bool busy;               /* a run has the client */
    int exec_count;
    sb_error start_err;      /* CTX_FAILED: why */
    bool interrupt_asked;    /* POST .../interrupt: the running code gets a KeyboardInterrupt */
    bool input_waiting;      /* a run's code waits in input() (streamed runs) */
    char *input_value;       /* given by POST .../input, taken by the run */
    bool renewing;           /* ctx_renew: a new kernel starts in place of the old one */
    /* POST .../restart calls so far, and how many of them a new kernel has
     * answered: while some wait, runs wait too (the restart takes the run
     * slot next) and a run in progress ends (run_step) */
    unsigned restarts_asked, restarts_done;
    int restarts;            /* kernels ctx_renew gave it (after a cut, or asked) */
    int64_t restarted_us;    /* the last one's time, and why */
    char restart_reason[200];
    bool restart_untold;     /* no run has told of the last renewal yet */
    bool renewed_idle;       /* renewed between runs, no run since: the next cut waits for a run
                              * (a kernel cut as it starts cannot make a loop of restarts) */
    /* the run slot's holder (busy) owns these two */
    kn_client *client;
    struct ctx_guard *guard;
};
typedef struct sb_ctx sb_ctx;

static void guard_stop(struct ctx_guard *g);
static void ctx_renew_later(const char *box_id, const char *ctx_id);

static sb_ctx *ctx_ref(sb_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
    return c;
}

static void ctx_unref(sb_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (!last)
        return;
    kn_client_free(c->client);
    guard_stop(c->guard);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->input_value);
    free(c->cwd);
    cJSON_Delete(c->env);
    free(c);
}

/* Marks a context ended (wakes its waiters). */
static void ctx_end(sb_ctx *c, ctx_state st)
{
    pthread_mutex_lock(&c->mu);
    if (c->state != CTX_DEAD && c->state != CTX_FAILED)
        c->state = st;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* box->mu held. */
static sb_ctx *find_locked(sb_box *b, const char *id)
{
    for (sb_ctx *c = b->contexts; c; c = c->next)
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

static bool unlink_locked(sb_box *b, sb_ctx *c)
{
    for (sb_ctx **pp = &b->contexts; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            c->next = NULL;
            return true;
        }
    return false;
}

/* A context that can no longer run: out of the list, its waiters woken. */
static void drop_ctx(sb_box *b, sb_ctx *c)
{
    ctx_end(c, CTX_DEAD);
    pthread_mutex_lock(&b->mu);
    bool listed = unlink_locked(b, c);
    pthread_mutex_unlock(&b->mu);
    if (listed)
        ctx_unref(c);
}

/* Waits until the context's process is gone (its id can be used again),
 * at most ms. */
static void proc_wait_gone(sb_box *b, const char *proc_id, int64_t ms)
{
    int64_t until = sb_now_ms() + ms;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        sb_proc *p = sb_proc_find(b, proc_id);
        if (!p || (strcmp(p->status, "running") != 0 && p->fd < 0) || sb_now_ms() >= until)
            break;
        sb_cond_wait_ms(&b->cv, &b->mu, 50);
    }
    pthread_mutex_unlock(&b->mu);
}

static const char *state_name(ctx_state s)
{
    static const char *names[] = {"starting", "ready", "failed", "ended"};
    return names[s];
}

static cJSON *ctx_to_json(sb_ctx *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", c->id);
    cJSON_AddStringToObject(j, "language", c->language);
    cJSON_AddStringToObject(j, "cwd", c->cwd);
    char date[CB_ISO_DATE_LEN];
    cb_iso_date(date, c->created_us);
    cJSON_AddStringToObject(j, "createdAt", date);
    pthread_mutex_lock(&c->mu);
    cJSON_AddNumberToObject(j, "executionCount", c->exec_count);
    bool restarting = c->renewing || c->restarts_asked != c->restarts_done;
    cJSON_AddStringToObject(j, "status", restarting ? "restarting" : c->busy ? "busy" : state_name(c->state));
    /* when and why it got a new kernel (its kernel's connection was cut, or
     * POST .../restart) */
    cJSON_AddNumberToObject(j, "restarts", c->restarts);
    if (c->restarts) {
        cb_iso_date(date, c->restarted_us);
        cJSON_AddStringToObject(j, "restartedAt", date);
        cJSON_AddStringToObject(j, "restartReason", c->restart_reason);
    }
    pthread_mutex_unlock(&c->mu);
    cJSON_AddStringToObject(j, "processId", c->proc_id);
    return j;
}


/* ---- the guard between the server's sockets and the kernel ------------------
 *
 * libzmq hands a message to its reader only once all its parts arrived, and
 * counts its queue in whole messages: ZMQ_MAXMSGSIZE bounds one part, but
 * nothing bounds how many parts one message has, so a kernel sending one
 * message of endless parts would make libzmq buffer all of them. So the
 * client's sockets do not connect to the kernel: each connects to a unix
 * socket of this guard (a private folder), and the guard's thread relays
 * the bytes to and from the kernel's unix socket in the sandbox (found
 * through its root), reading the ZMTP 3 framing of what the kernel sends.
 * (Unix sockets at both ends, the thread outside the sandbox's network
 * namespace: the guard's cost on a `1+1` run went from ~0.08 to ~0.045 ms,
 * median of paired runs with bench/sandbox/code_bench.py --ab.) A message with
 * more than CTX_MAX_PARTS parts or more bytes than its channel's bound, a
 * command over 64 KiB or a peer that does not speak ZMTP 3 cuts that
 * connection for good (the client sees it dropped: KN_POLL_LOST) and the
 * reason is kept for the run's error. The guard holds GUARD_BUF bytes per
 * direction and channel; a connection to the kernel that is refused (it
 * has not bound yet) is retried every 10 ms while the client's connection
 * waits. */
#define GUARD_BUF (64 * 1024)
#define GUARD_MAX_COMMAND (64 * 1024)

typedef struct guard_chan {
    int lfd, zfd, kfd;        /* listening, the client's, to the kernel; -1 = none */
    char path[108];           /* the kernel's socket, as the sandbox sees it */
    uint64_t max_msg;
    bool kernel_closed;       /* flush what is left to the client, then close it */
    unsigned char down[GUARD_BUF], up[GUARD_BUF];   /* kernel -> client, client -> kernel */
    size_t down_len, down_off, up_len, up_off;
    /* reading the kernel's side */
    size_t greeting;          /* bytes of its 64-byte greeting seen */
    unsigned char hdr[9];     /* the frame header being read */
    size_t hdr_len;
    uint64_t body_left, msg_bytes;
    unsigned msg_parts;
} guard_chan;

typedef struct ctx_guard {
    guard_chan ch[5];         /* shell, iopub, stdin, control, heartbeat */
    char dir[96];
    int wake[2];
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    char why[200];            /* under mu: the bound a connection was cut for ("" = none) */
    char box_id[64], ctx_id[64];   /* whose kernel: a cut gets it renewed (ctx_renew_later) */
    int root;                 /* the sandbox's root (-1: --isolation none) */
} ctx_guard;

static const char *const guard_chan_names[] = {"shell", "iopub", "stdin", "control", "heartbeat"};

/* Reads the kernel's bytes p[0..n) on channel i. false + why: past a bound. */
static bool guard_scan(guard_chan *g, int i, const unsigned char *p, size_t n, char *why, size_t whylen)
{
    size_t at = 0;
    while (at < n) {
        if (g->greeting < 64) {
            unsigned char c = p[at++];
            size_t k = g->greeting++;
            if ((k == 0 && c != 0xff) || (k == 9 && c != 0x7f) || (k == 10 && c < 3)) {
                snprintf(why, whylen, "the kernel's %s connection does not speak ZMTP 3", guard_chan_names[i]);
                return false;
            }
            continue;
        }
        if (g->body_left) {
            uint64_t k = n - at < g->body_left ? n - at : g->body_left;
            at += k;
            g->body_left -= k;
            continue;
        }
        /* a frame header: flags (1 more, 2 long, 4 command), a size of 1 or 8 bytes */
        g->hdr[g->hdr_len++] = p[at++];
        unsigned flags = g->hdr[0];
        if (flags & ~7u) {
            snprintf(why, whylen, "the kernel sent a malformed frame on %s", guard_chan_names[i]);
            return false;
        }
        size_t need = flags & 2 ? 9 : 2;
        if (g->hdr_len < need)
            continue;
        uint64_t size = 0;
        for (size_t k = 1; k < need; k++)
            size = size << 8 | g->hdr[k];
        g->hdr_len = 0;
        g->body_left = size;
        if (flags & 4) {  /* a command (READY, PING...): small, never part of a message */
            if ((flags & 1) || size > GUARD_MAX_COMMAND) {
                snprintf(why, whylen, "the kernel sent a ZMTP command of %llu bytes on %s",
                         (unsigned long long)size, guard_chan_names[i]);
                return false;
            }
            continue;
        }
        if (++g->msg_parts > CTX_MAX_PARTS) {
            snprintf(why, whylen, "the interpreter sent a message of more than %d parts on %s", CTX_MAX_PARTS,
                     guard_chan_names[i]);
            return false;
        }
        if (size > g->max_msg - g->msg_bytes) {
            snprintf(why, whylen, "the interpreter sent a message over %llu MiB on %s (the most the server takes)",
                     (unsigned long long)(g->max_msg >> 20), guard_chan_names[i]);
            return false;
        }
        g->msg_bytes += size;
        if (!(flags & 1))
            g->msg_parts = 0, g->msg_bytes = 0;
    }
    return true;
}

static void guard_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The client's connection ends (and the kernel's with it). */
static void guard_reset(guard_chan *g)
{
    guard_close(&g->zfd);
    guard_close(&g->kfd);
    g->kernel_closed = false;
    g->down_len = g->down_off = g->up_len = g->up_off = 0;
    g->greeting = g->hdr_len = 0;
    g->body_left = g->msg_bytes = 0;
    g->msg_parts = 0;
}

/* The kernel's socket is found inside the sandbox's root (openat2: its
 * links cannot lead out of it) and connected to through that inode, so
 * code in the sandbox cannot point the server at a socket of the host. */
static void guard_connect_kernel(ctx_guard *G, guard_chan *g)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int at = -1;
    if (G->root >= 0) {
        if ((at = sb_open_in_root(G->root, g->path, O_PATH, 0)) < 0)
            return;  /* not bound yet: again in 10 ms */
        snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d", at);
    } else {
        snprintf(a.sun_path, sizeof a.sun_path, "%s", g->path);  /* --isolation none: a host path */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        fcntl(fd, F_SETFL, O_NONBLOCK);
        g->kfd = fd;
    } else if (fd >= 0) {
        close(fd);  /* not listening yet: again in 10 ms */
    }
    if (at >= 0)
        close(at);
}

/* Moves bytes between the client and the kernel on one channel, as poll said. */
static void guard_pump(ctx_guard *G, int i, short zrev, short krev)
{
    guard_chan *g = &G->ch[i];
    if (g->zfd >= 0 && (zrev & (POLLIN | POLLHUP | POLLERR)) && g->up_len == 0) {
        ssize_t n = read(g->zfd, g->up, sizeof g->up);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            guard_reset(g);  /* the client closed its socket */
            return;
        }
        if (n > 0)
            g->up_len = (size_t)n, g->up_off = 0;
    }
    if (g->kfd >= 0 && g->up_off < g->up_len) {
        ssize_t n = write(g->kfd, g->up + g->up_off, g->up_len - g->up_off);
        if (n > 0 && (g->up_off += (size_t)n) == g->up_len)
            g->up_len = g->up_off = 0;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            g->kernel_closed = true;
    }
    if (g->kfd >= 0 && !g->kernel_closed && (krev & (POLLIN | POLLHUP | POLLERR)) && g->down_len == 0) {
        ssize_t n = read(g->kfd, g->down, sizeof g->down);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            g->kernel_closed = true;
        } else if (n > 0) {
            char why[200];
            if (!guard_scan(g, i, g->down, (size_t)n, why, sizeof why)) {
                pthread_mutex_lock(&G->mu);
                if (!G->why[0])
                    snprintf(G->why, sizeof G->why, "%s", why);
                pthread_mutex_unlock(&G->mu);
                cb_warn("context", "sandbox %s: context %s: %s: its connection was cut", G->box_id, G->ctx_id, why);
                guard_reset(g);
                guard_close(&g->lfd);  /* past a bound: no more connections */
                /* a run in progress sees the cut and renews the context
                 * itself; between runs no one would until the next one */
                ctx_renew_later(G->box_id, G->ctx_id);
                return;
            }
            g->down_len = (size_t)n, g->down_off = 0;
        }
    }
    if (g->zfd >= 0 && g->down_off < g->down_len) {
        ssize_t n = write(g->zfd, g->down + g->down_off, g->down_len - g->down_off);
        if (n > 0 && (g->down_off += (size_t)n) == g->down_len)
            g->down_len = g->down_off = 0;
        else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            guard_reset(g);
            return;
        }
    }
    if (g->kernel_closed && g->down_len == 0)
        guard_reset(g);  /* the client sees the kernel's end, and connects again */
}

static void *guard_main(void *arg)
{
    ctx_guard *G = arg;
    for (;;) {
        struct pollfd p[16];
        int idx[5][3];  /* where each channel's lfd, zfd, kfd are in p (-1: not polled) */
        int n = 0, timeout = -1;
        p[n++] = (struct pollfd){G->wake[0], POLLIN, 0};
        for (int i = 0; i < 5; i++) {
            guard_chan *g = &G->ch[i];
            if (g->zfd >= 0 && g->kfd < 0 && !g->kernel_closed) {
                guard_connect_kernel(G, g);
                if (g->kfd < 0)
                    timeout = 10;
            }
            idx[i][0] = idx[i][1] = idx[i][2] = -1;
            if (g->lfd >= 0 && g->zfd < 0) {
                idx[i][0] = n;
                p[n++] = (struct pollfd){g->lfd, POLLIN, 0};
            }
            if (g->zfd >= 0) {
                short ev = (g->up_len == 0 ? POLLIN : 0) | (g->down_off < g->down_len ? POLLOUT : 0);
                idx[i][1] = n;
                p[n++] = (struct pollfd){g->zfd, ev, 0};
            }
            if (g->kfd >= 0 && !g->kernel_closed) {
                short ev = (g->down_len == 0 ? POLLIN : 0) | (g->up_off < g->up_len ? POLLOUT : 0);
                idx[i][2] = n;
                p[n++] = (struct pollfd){g->kfd, ev, 0};
            }
        }
        if (poll(p, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;  /* guard_stop */
        for (int i = 0; i < 5; i++) {
            guard_chan *g = &G->ch[i];
            if (idx[i][0] >= 0 && p[idx[i][0]].revents) {
                int fd = accept4(g->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0)
                    g->zfd = fd;
                continue;
            }
            short zrev = idx[i][1] >= 0 ? p[idx[i][1]].revents : 0;
            short krev = idx[i][2] >= 0 ? p[idx[i][2]].revents : 0;
            if (zrev || krev || g->kernel_closed)
                guard_pump(G, i, zrev, krev);
        }
    }
    return NULL;
}

static void guard_stop(ctx_guard *G)
{
    if (!G)
        return;
    if (G->running) {
        ssize_t CB_UNUSED w = write(G->wake[1], "x", 1);
        pthread_join(G->thread, NULL);
    }
    for (int i = 0; i < 5; i++) {
        guard_reset(&G->ch[i]);
        guard_close(&G->ch[i].lfd);
        cb_autofree char *path = cb_printf_new("%s/k-%d", G->dir, i + 1);
        if (G->dir[0])
            unlink(path);
    }
    if (G->dir[0])
        rmdir(G->dir);
    guard_close(&G->wake[0]);
    guard_close(&G->wake[1]);
    guard_close(&G->root);
    pthread_mutex_destroy(&G->mu);
    free(G);
}

/* The guards' sockets live in one folder per server, /tmp/cellbox-ctx-XXXXXX
 * (short: a unix socket's path has 108 bytes), one folder per context in
 * it. The server holds an exclusive lock on its folder's "lock" file for
 * its life, so the first guard of a server removes the folders of servers
 * that are gone (a SIGKILLed one leaves its folder): whoever can take a
 * folder's lock owns it no more. The lock works across pid namespaces,
 * where a pid in the name would not. */
static char guard_root[64];
static int guard_root_lock = -1;

static void guard_sweep(void)
{
    DIR *d = opendir("/tmp");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, "cellbox-ctx-", 12) != 0)
            continue;
        cb_autofree char *dir = cb_printf_new("/tmp/%s", e->d_name);
        cb_autofree char *lock = cb_printf_new("%s/lock", dir);
        struct stat st;
        int fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        bool gone = fd >= 0 ? flock(fd, LOCK_EX | LOCK_NB) == 0
                            /* no lock file: a server died before making it */
                            : lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
                                  time(NULL) - st.st_mtime > 60;
        if (fd >= 0)
            close(fd);
        if (gone && sb_rm_rf(dir) == 0)
            cb_info("context", "removed %s, left by a server that is gone", dir);
    }
    if (d)
        closedir(d);
}

static void guard_root_remove(void)
{
    sb_rm_rf(guard_root);  /* at the server's exit: its contexts are gone */
}

static void guard_root_make(void)
{
    guard_sweep();
    snprintf(guard_root, sizeof guard_root, "/tmp/cellbox-ctx-XXXXXX");
    cb_autofree char *lock = NULL;
    if (!mkdtemp(guard_root) || !(lock = cb_printf_new("%s/lock", guard_root)) ||
        (guard_root_lock = open(lock, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
        flock(guard_root_lock, LOCK_EX | LOCK_NB) < 0) {
        cb_warn("context", "cannot make the folder of the contexts' sockets: %s", strerror(errno));
        guard_root[0] = '\0';
        return;
    }
    atexit(guard_root_remove);
}

/* Starts the guard for the kernel's sockets (conn: ipc, the sandbox's
 * paths of shell, iopub, stdin, control, hb) and rewrites conn to the
 * guard's endpoints. b acquired. */
static ctx_guard *guard_start(sb_box *b, const char *ctx_id, kn_conn *conn, sb_error *err)
{
    ctx_guard *G = cb_calloc(1, sizeof *G);
    pthread_mutex_init(&G->mu, NULL);
    snprintf(G->box_id, sizeof G->box_id, "%s", b->id);
    snprintf(G->ctx_id, sizeof G->ctx_id, "%s", ctx_id);
    G->wake[0] = G->wake[1] = -1;
    G->root = -1;
    int ports[5] = {conn->shell_port, conn->iopub_port, conn->stdin_port, conn->control_port, conn->hb_port};
    for (int i = 0; i < 5; i++) {
        G->ch[i].lfd = G->ch[i].zfd = G->ch[i].kfd = -1;
        snprintf(G->ch[i].path, sizeof G->ch[i].path, "%s-%d", conn->ip, ports[i]);
        G->ch[i].max_msg = i == KN_CH_IOPUB ? CTX_MAX_MSG : i == 4 ? GUARD_MAX_COMMAND : CTX_MAX_REPLY;
    }
    static pthread_once_t root_once = PTHREAD_ONCE_INIT;
    pthread_once(&root_once, guard_root_make);
    snprintf(G->dir, sizeof G->dir, "%s/c-XXXXXX", guard_root);
    if (!guard_root[0] || !mkdtemp(G->dir)) {
        G->dir[0] = '\0';
        goto fail;
    }
    if (pipe2(G->wake, O_CLOEXEC) < 0 || (sb_boxes_isolated() && (G->root = sb_box_root(b, err)) < 0))
        goto fail;
    for (int i = 0; i < 5; i++) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s/k-%d", G->dir, i + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            goto fail;
        G->ch[i].lfd = fd;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4) < 0)
            goto fail;
    }
    /* in the server's network namespace: its unix connections (and the
     * kernel's accepted ends) belong to it; relaying from inside the
     * sandbox's cost a `1+1` run ~0.035 ms more (code_bench --ab) */
    if (!(G->running = pthread_create(&G->thread, NULL, guard_main, G) == 0))
        goto fail;
    free(conn->transport);
    free(conn->ip);
    conn->transport = cb_strdup("ipc");
    conn->ip = cb_printf_new("%s/k", G->dir);
    conn->shell_port = 1, conn->iopub_port = 2, conn->stdin_port = 3, conn->control_port = 4, conn->hb_port = 5;
    return G;
fail:
    if (!err->code)
        sb_fail(err, SB_E_INTERNAL_ERROR, "cannot set up the context's connection guard: %s", strerror(errno));
    guard_stop(G);
    return NULL;
}

/* Why the guard cut a connection ("" = it did not). */
static void guard_why(ctx_guard *G, char *out, size_t len)
{
    if (!G) {
        snprintf(out, len, "%s", "");
        return;
    }
    pthread_mutex_lock(&G->mu);
    snprintf(out, len, "%s", G->why);
    pthread_mutex_unlock(&G->mu);
}

/* ---- starting the kernel ---------------------------------------------------- */

/* Is the context's process still running? */
static bool proc_running(sb_box *b, const char *proc_id)
{
    pthread_mutex_lock(&b->mu);
    sb_proc *p = sb_proc_find(b, proc_id);
    bool running = p && strcmp(p->status, "running") == 0;
    pthread_mutex_unlock(&b->mu);
    return running;
}

/* Does the context's process end within `seconds`? */
static bool proc_ends_within(sb_box *b, const char *proc_id, double seconds)
{
    double until = cb_mono_s() + seconds;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        sb_proc *p = sb_proc_find(b, proc_id);
        if (!p || strcmp(p->status, "running") != 0 || cb_mono_s() >= until)
            break;
        sb_cond_wait_ms(&b->cv, &b->mu, 50);
    }
    sb_proc *p = sb_proc_find(b, proc_id);
    bool ended = !p || strcmp(p->status, "running") != 0;
    pthread_mutex_unlock(&b->mu);
    return ended;
}

/* Startup watcher: makes `fd` readable when the kernel's process ends
 * before the client is ready (so the wait does not last until the timeout). */
typedef struct start_watch {
    sb_box *b;
    const char *proc_id;
    int wfd;
    bool done;            /* under b->mu */
} start_watch;

static void *watch_start(void *arg)
{
    start_watch *w = arg;
    pthread_mutex_lock(&w->b->mu);
    for (;;) {
        sb_proc *p = sb_proc_find(w->b, w->proc_id);
        if (w->done)
            break;
        if (!p || strcmp(p->status, "running") != 0) {
            ssize_t n = write(w->wfd, "x", 1);
            (void)n;
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&w->b->cv, &w->b->mu, &until);
    }
    pthread_mutex_unlock(&w->b->mu);
    return NULL;
}

/* stat() a path of the sandbox, resolved inside its root. -1 + errno. */
static int stat_in_box(sb_box *b, const char *path, struct stat *st)
{
    sb_error e = {0};
    int root = sb_box_root(b, &e);
    if (root < 0)
        return -1;
    int fd = sb_open_in_root(root, path, O_PATH, 0);
    int saved = errno;
    close(root);
    if (fd < 0) {
        errno = saved;
        return -1;
    }
    int rc = fstat(fd, st);
    close(fd);
    return rc;
}

static int await_interpreter(kn_client *kc, double timeout, char **why)
{
    char id[KN_MSG_ID_LEN];
    if (kn_client_send(kc, KN_CH_SHELL, "execute_request",
                       "{\"code\":\"\",\"silent\":true,\"store_history\":false,\"user_expressions\":{},"
                       "\"allow_stdin\":false,\"stop_on_error\":false}", id) < 0) {
        *why = cb_strdup("cannot send to the kernel");
        return -1;
    }
    double deadline = cb_mono_s() + timeout;
    for (;;) {
        double left = deadline - cb_mono_s();
        if (left <= 0) {
            *why = cb_printf_new("the interpreter did not answer within %g s", timeout);
            return -1;
        }
        kn_client_msg *m = NULL;
        kn_poll_status st = kn_client_poll(kc, left, &m);
        if (st == KN_POLL_MSG) {
            bool done = m->channel == KN_CH_SHELL && strcmp(m->msg_type, "execute_reply") == 0 &&
                        strcmp(m->parent_id, id) == 0;
            kn_client_msg_free(m);
            if (done)
                return 0;
        } else if (st != KN_POLL_TIMEOUT) {
            *why = cb_strdup(st == KN_POLL_CANCELLED ? "the kernel exited while its interpreter started"
                                                     : "the kernel stopped answering");
            return -1;
        }
    }
}

/* Starts the kernel process and connects to it. The context is not in use
 * by anyone else yet (state STARTING). */
static int ctx_start(sb_box *b, sb_ctx *c, const cJSON *env, sb_error *err)
{
    if (sb_box_acquire(b, err) < 0)
        return -1;
    int rc = -1;
    int pfd[2] = {-1, -1};
    bool proc_started = false;
    cJSON *body = NULL;
    kn_conn conn = {0};
    bool isolated = sb_boxes_isolated();
    /* isolation none: the server's copy of itself (sb_pin.h) */
    const char *self = sb_pin_path(SB_PIN_SELF);
    cb_autofree char *bin = isolated ? cb_strdup(SB_SELF_IN_SANDBOX) : self ? cb_strdup(self) : NULL;
    cb_autofree char *key = NULL, *conn_json = NULL, *dir = NULL, *command = NULL;
    if (!bin) {
        sb_fail(err, SB_E_INTERNAL_ERROR, "cannot find the cellbox binary");
        goto out;
    }
    key = cb_random_hex(16);
    if (isolated) {
        dir = cb_strdup("/tmp/.cellbox");
    } else {
        /* --isolation none: the host's /tmp, shared by every sandbox (of
         * every such server): a folder of this sandbox's context, named by
         * a hash (a socket path holds at most 107 bytes) */
        unsigned char h[8];
        cb_autofree char *who = cb_printf_new("%s\n%s", b->dir, c->id);
        crypto_generichash(h, sizeof h, (const unsigned char *)who, strlen(who), NULL, 0);
        char hex[2 * sizeof h + 1];
        sodium_bin2hex(hex, sizeof hex, h, sizeof h);
        dir = cb_printf_new("/tmp/.cellbox-%s", hex);
    }
    /* the kernel listens on unix sockets <dir>/<id>-1..5 of the sandbox
     * (the guard reaches them through its root: no port, no TCP) */
    conn = (kn_conn){
        .transport = cb_strdup("ipc"), .ip = cb_printf_new("%s/%s", dir, c->id), .key = cb_strdup(key),
        .signature_scheme = cb_strdup("hmac-sha256"), .kernel_name = cb_strdup("cellbox"),
        .shell_port = 1, .iopub_port = 2, .stdin_port = 3, .control_port = 4, .hb_port = 5,
    };
    conn_json = kn_conn_to_json(&conn);
    /* the connection file is written by the command itself, inside the
     * sandbox (the JSON holds no single quote: hex key, numbers, the
     * sockets' path prefix) */
    /* javascript / typescript: the kernel runs the sandbox's node (the root
     * binds the host's /usr read-only: /usr/bin/node, /usr/share/nodejs);
     * without it the kernel exits with a line naming the package, which the
     * start error below quotes from its stderr */
    bool python = strcmp(c->language, "python") == 0;
    command = cb_printf_new(
        "mkdir -p %s && umask 077 && printf '%%s' '%s' > %s/%s.json && "
        "XDG_DATA_HOME=%s MPLCONFIGDIR=%s/mpl-%s exec %s kernel -f %s/%s.json%s%s",
        dir, conn_json, dir, c->id, dir, dir, c->id, bin, dir, c->id, python ? "" : " --language ",
        python ? "" : c->language);
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "command", command);
    cJSON_AddStringToObject(body, "processId", c->proc_id);
    if (!isolated && strcmp(c->cwd, "/workspace") == 0) {
        /* --isolation none: the workspace is a host folder */
        free(c->cwd);
        c->cwd = cb_printf_new("%s/workspace", b->dir);
    }
    cJSON_AddStringToObject(body, "cwd", c->cwd);
    if (env)
        cJSON_AddItemToObject(body, "env", cJSON_Duplicate(env, true));
    struct stat st;
    if (isolated && stat_in_box(b, SB_SELF_IN_SANDBOX, &st) < 0) {
        sb_fail(err, SB_E_INTERPRETER_NOT_READY,
                "the cellbox binary is not available inside the sandbox (%s at "
                SB_SELF_IN_SANDBOX ")",
                strerror(errno));
        goto out;
    }
    if (isolated && (stat_in_box(b, c->cwd, &st) < 0 || !S_ISDIR(st.st_mode))) {
        sb_fail(err, SB_E_VALIDATION_FAILED, "cwd '%s' is not a folder in the sandbox", c->cwd);
        goto out;
    }
    int64_t t0 = cb_mono_ns();
    cJSON *started = NULL;
    if (sb_proc_start(b, body, &started, err) < 0)
        goto out;
    cJSON_Delete(started);
    proc_started = true;
    int64_t t_proc = cb_mono_ns();

    /* from here on conn is the guard's side (the kernel was given its own) */
    if (!(c->guard = guard_start(b, c->id, &conn, err)))
        goto out;
    if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
        sb_fail(err, SB_E_INTERNAL_ERROR, "pipe: %s", strerror(errno));
        goto out;
    }
    start_watch w = {b, c->proc_id, pfd[1], false};
    pthread_t t;
    bool watching = pthread_create(&t, NULL, watch_start, &w) == 0;
    kn_client_opts o = KN_CLIENT_OPTS_INIT;
    o.startup_timeout = CTX_START_TIMEOUT_S;
    o.hb_interval = 2;
    o.hb_timeout = 60;
    o.cancel_fd = pfd[0];
    o.max_frame = CTX_MAX_FRAME;
    char *why = NULL;
    kn_client *kc = kn_client_attach(&conn, NULL, &o, NULL, &why);
    /* kernel_info is answered while the interpreter still starts: it is
     * ready when an (empty, silent) execute comes back */
    if (kc && await_interpreter(kc, CTX_START_TIMEOUT_S, &why) < 0) {
        kn_client_free(kc);
        kc = NULL;
    }
    if (watching) {
        pthread_mutex_lock(&b->mu);
        w.done = true;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(t, NULL);
    }
    if (!kc) {
        cb_autofree char *logs = NULL;
        cJSON *lj = NULL;
        sb_error lerr = {0};
        if (sb_proc_logs(b, c->proc_id, &lj, &lerr) == 0)
            logs = cb_strdup(cb_json_str(lj, "stderr", ""));
        cJSON_Delete(lj);
        size_t n = logs ? strlen(logs) : 0;
        sb_fail(err, SB_E_INTERPRETER_NOT_READY, "the interpreter did not start: %s%s%.300s", why ? why : "?",
                n ? "; its stderr: " : "", n > 300 ? logs + n - 300 : logs ? logs : "");
        free(why);
        goto out;
    }
    kn_client_set_cancel_fd(kc, -1);
    c->client = kc;
    cb_debug("context", "sandbox %s: context %s: process started in %.1f ms, kernel ready after %.1f ms",
             b->id, c->id, (double)(t_proc - t0) / 1e6, (double)(cb_mono_ns() - t0) / 1e6);
    rc = 0;
out:
    if (rc < 0 && proc_started) {
        sb_error kerr = {0};
        sb_proc_kill(b, c->proc_id, SIGKILL, 0, &kerr);
    }
    if (pfd[0] >= 0)
        close(pfd[0]), close(pfd[1]);
    cJSON_Delete(body);
    kn_conn_clear(&conn);
    sb_box_release(b);
    return rc;
}

static int sb_ctx_create_id(sb_box *b, const char *id, const cJSON *body, sb_ctx **out, sb_error *err)
{
    const cJSON *lj = cJSON_GetObjectItemCaseSensitive(body, "language");
    if (lj && !cJSON_IsString(lj) && !cJSON_IsNull(lj))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "language must be a string"), -1;
    const char *lang = cJSON_IsString(lj) ? lj->valuestring : "python";
    /* the names a client may send -> the kernel's --language */
    static const char *const langs[][2] = {
        {"python", "python"},         {"python3", "python"}, {"javascript", "javascript"},
        {"js", "javascript"},         {"typescript", "typescript"}, {"ts", "typescript"},
    };
    const char *language = NULL;
    for (size_t i = 0; i < CB_ARRAY_LEN(langs) && !language; i++)
        if (strcmp(lang, langs[i][0]) == 0)
            language = langs[i][1];
    if (!language)
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "language '%s' is not supported: contexts run python, javascript or typescript", lang), -1;
    const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(body, "cwd");
    if (cwd && (!cJSON_IsString(cwd) || cwd->valuestring[0] != '/'))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "cwd must be an absolute path"), -1;
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(body, "env");
    if (!env)
        env = cJSON_GetObjectItemCaseSensitive(body, "envVars");
    if (env && sb_env_check(env, err) < 0)
        return -1;

    sb_ctx *c = cb_calloc(1, sizeof *c);
    if (id) {
        snprintf(c->id, sizeof c->id, "%s", id);
    } else {
        cb_autofree char *hex = cb_random_hex(6);
        snprintf(c->id, sizeof c->id, "ctx-%s", hex);
    }
    snprintf(c->proc_id, sizeof c->proc_id, "context-%s", c->id);
    c->cwd = cb_strdup(cwd ? cwd->valuestring : "/workspace");
    c->env = env ? cJSON_Duplicate(env, true) : NULL;
    snprintf(c->language, sizeof c->language, "%s", language);
    c->created_us = cb_real_us();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->refs = 2;  /* the list's and ours */
    c->state = CTX_STARTING;
    pthread_mutex_lock(&b->mu);
    sb_ctx *old = find_locked(b, c->id);
    if (old) {
        ctx_ref(old);
        pthread_mutex_unlock(&b->mu);
        ctx_unref(c), ctx_unref(c);
        *out = old;
        return 0;  /* someone else made it (the default context) */
    }
    int n = 0;
    for (sb_ctx *o = b->contexts; o; o = o->next)
        n++;
    if (n >= CTX_MAX) {
        pthread_mutex_unlock(&b->mu);
        ctx_unref(c), ctx_unref(c);
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "sandbox '%s' has %d contexts, the most it may have; delete one first", b->id, n), -1;
    }
    c->next = b->contexts;
    b->contexts = c;
    pthread_mutex_unlock(&b->mu);

    sb_error e = {0};
    if (ctx_start(b, c, env, &e) < 0) {
        pthread_mutex_lock(&c->mu);
        c->start_err = e;
        pthread_mutex_unlock(&c->mu);
        ctx_end(c, CTX_FAILED);
        pthread_mutex_lock(&b->mu);
        bool listed = unlink_locked(b, c);
        pthread_mutex_unlock(&b->mu);
        if (listed)
            ctx_unref(c);
        ctx_unref(c);
        *err = e;
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    if (c->state == CTX_STARTING)
        c->state = CTX_READY;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    cb_info("context", "sandbox %s: context %s started", b->id, c->id);
    *out = c;
    return 0;
}

int sb_ctx_create(sb_box *b, const cJSON *body, cJSON **out, sb_error *err)
{
    sb_ctx *c;
    if (sb_ctx_create_id(b, NULL, body, &c, err) < 0)
        return -1;
    *out = ctx_to_json(c);
    ctx_unref(c);
    return 0;
}

/* A reference to a listed context, as it is (starting or not); NULL + err. */
static sb_ctx *ctx_find(sb_box *b, const char *id, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    sb_ctx *c = find_locked(b, id);
    if (c)
        ctx_ref(c);
    pthread_mutex_unlock(&b->mu);
    if (!c)
        sb_fail(err, SB_E_CONTEXT_NOT_FOUND, "context '%s' not found", id);
    return c;
}

/* A reference to a listed context, waiting while it starts; NULL + err. */
static sb_ctx *ctx_get(sb_box *b, const char *id, sb_error *err)
{
    sb_ctx *c = ctx_find(b, id, err);
    if (!c)
        return NULL;
    pthread_mutex_lock(&c->mu);
    while (c->state == CTX_STARTING)
        pthread_cond_wait(&c->cv, &c->mu);
    ctx_state st = c->state;
    sb_error e = c->start_err;
    pthread_mutex_unlock(&c->mu);
    if (st == CTX_READY)
        return c;
    ctx_unref(c);
    if (st == CTX_FAILED)
        *err = e;
    else
        sb_fail(err, SB_E_CONTEXT_NOT_FOUND, "context '%s' has ended", id);
    return NULL;
}

cJSON *sb_ctxs_list_json(sb_box *b)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&b->mu);
    for (sb_ctx *c = b->contexts; c; c = c->next)
        cJSON_AddItemToArray(arr, ctx_to_json(c));
    pthread_mutex_unlock(&b->mu);
    return arr;
}

cJSON *sb_ctx_json(sb_box *b, const char *id)
{
    pthread_mutex_lock(&b->mu);
    sb_ctx *c = find_locked(b, id);
    cJSON *j = c ? ctx_to_json(c) : NULL;
    pthread_mutex_unlock(&b->mu);
    return j;
}

int sb_ctx_delete(sb_box *b, const char *id, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    sb_ctx *c = find_locked(b, id);
    if (c)
        unlink_locked(b, c);
    pthread_mutex_unlock(&b->mu);
    if (!c)
        return sb_fail(err, SB_E_CONTEXT_NOT_FOUND, "context '%s' not found", id), -1;
    ctx_end(c, CTX_DEAD);
    /* ask the kernel to leave, then make sure of it */
    pthread_mutex_lock(&c->mu);
    bool idle = !c->busy && c->client;
    if (idle)
        kn_client_shutdown(c->client, 0);
    pthread_mutex_unlock(&c->mu);
    sb_error e = {0};
    sb_proc_kill(b, c->proc_id, SIGTERM, 1000, &e);
    /* answer once it is gone, so the id (e.g. "default") can start again */
    proc_wait_gone(b, c->proc_id, 5000);
    cb_info("context", "sandbox %s: context %s deleted", b->id, c->id);
    ctx_unref(c);
    return 0;
}

int sb_ctx_input(sb_box *b, const char *id, const cJSON *body, sb_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "value");
    if (!cJSON_IsString(v))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "value must be a string"), -1;
    sb_ctx *c = ctx_find(b, id, err);
    if (!c)
        return -1;
    pthread_mutex_lock(&c->mu);
    bool waiting = c->input_waiting && !c->input_value;
    if (waiting)
        c->input_value = cb_strdup(v->valuestring);
    pthread_mutex_unlock(&c->mu);
    ctx_unref(c);
    if (!waiting)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "context '%s' is not waiting for input", id), -1;
    return 0;
}

/* ---- giving a context a new kernel --------------------------------------------
 *
 * Two things give a context a new kernel in place of its own (ctx_renew):
 * a cut and POST .../restart. The context keeps its struct (id, language,
 * cwd, env, its place in the list), so runs waiting for it go on with the
 * new kernel; the record counts each new kernel and says when and why
 * (restarts, restartedAt, restartReason), and a run that was sent for the
 * old kernel's state is told (run_check_renewed).
 *
 * A cut: when the guard cuts a connection, messages may have been lost, so
 * the kernel can no longer be trusted to be in step with the server. A run
 * in progress sees the cut (its run ends with 502) and renews the context;
 * between runs the guard's thread starts a thread of its own that does (it
 * waits for the run slot, so a run sent meanwhile runs on the new kernel),
 * and a run that finds a cut no one handled yet renews before it starts.
 *
 * A restart asked through the API (ctx_restart): it takes the run slot
 * before any run waiting for it, and a run in progress ends at once with
 * the error ContextRestarted (run_step) to give it up. Restarts asked
 * while one waits or renews share its new kernel: no code ran on it before
 * they are answered. Its caller is not told of it by its next run. */

/* Is a restart asked through the API waiting for its new kernel? c->mu held. */
static bool restart_pending_locked(const sb_ctx *c)
{
    return c->restarts_asked != c->restarts_done;
}

/* Takes the context's run slot (one run, or renewal, at a time), waiting
 * for it, and for the restarts asked before (they go first). false: the
 * context ended meanwhile. */
static bool ctx_slot_take(sb_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    while ((c->busy || restart_pending_locked(c)) && c->state == CTX_READY)
        pthread_cond_wait(&c->cv, &c->mu);
    bool ok = c->state == CTX_READY;
    if (ok)
        c->busy = true;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void ctx_slot_give(sb_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    c->busy = false;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

#define CTX_ASKED_REASON "restarted by the API (POST .../restart)"

/* A new kernel in place of c's: same id, language, cwd and env, none of the
 * old state; the record counts it and says why. asked: POST .../restart
 * (it answers every restart asked so far, and its caller is not told by
 * the next run); else the kernel's connection was cut (why). The caller
 * holds the run slot. 0, or -1 + err: the context was deleted or its
 * sandbox stopped meanwhile (CONTEXT_NOT_FOUND), or no kernel could start
 * and the context has ended. */
static int ctx_renew(sb_box *b, sb_ctx *c, const char *why, bool asked, sb_error *err)
{
    pthread_mutex_lock(&c->mu);
    c->renewing = true;
    kn_client *old = cb_steal(&c->client);
    struct ctx_guard *old_guard = cb_steal(&c->guard);
    pthread_mutex_unlock(&c->mu);
    sb_error e = {0};
    sb_proc_kill(b, c->proc_id, SIGTERM, 1000, &e);
    proc_wait_gone(b, c->proc_id, 5000);  /* its process id is the new one's */
    kn_client_free(old);
    guard_stop(old_guard);
    pthread_mutex_lock(&c->mu);
    bool ended = c->state != CTX_READY;   /* deleted, or its sandbox stopped, meanwhile */
    pthread_mutex_unlock(&c->mu);
    int rc = ended ? 0 : ctx_start(b, c, c->env, err);
    pthread_mutex_lock(&c->mu);
    c->renewing = false;
    c->interrupt_asked = false;  /* for the code of the kernel that is gone */
    ended = c->state != CTX_READY;
    if (rc == 0 && !ended) {
        c->exec_count = 0;
        c->restarts++;
        c->restarted_us = cb_real_us();
        snprintf(c->restart_reason, sizeof c->restart_reason, "%s", why);
        /* a run sent after the restart's reply was sent for this kernel */
        c->restart_untold = !asked;
        if (asked) {
            c->renewed_idle = false;
            c->restarts_done = c->restarts_asked;
        }
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (ended) {
        if (rc == 0)
            sb_proc_kill(b, c->proc_id, SIGKILL, 0, &e);
        sb_fail(err, SB_E_CONTEXT_NOT_FOUND, "context '%s' ended while its kernel restarted", c->id);
        return -1;
    }
    if (rc < 0) {
        cb_warn("context", "sandbox %s: context %s: no new kernel (%s): %s", b->id, c->id, why, err->msg);
        drop_ctx(b, c);
        return -1;
    }
    cb_info("context", "sandbox %s: context %s restarted: %s", b->id, c->id, why);
    return 0;
}

typedef struct renew_job {
    char box_id[64], ctx_id[64];
} renew_job;

static void *renew_main(void *arg)
{
    renew_job *j = arg;
    sb_box *b = sb_box_get(j->box_id);
    sb_error e = {0};
    sb_ctx *c = b ? ctx_find(b, j->ctx_id, &e) : NULL;
    if (c && ctx_slot_take(c)) {
        /* the slot's holder owns c->guard; a run that saw the cut has
         * renewed the context already (then the new guard cut nothing) */
        char why[200];
        guard_why(c->guard, why, sizeof why);
        pthread_mutex_lock(&c->mu);
        bool again = c->renewed_idle;
        if (why[0])
            c->renewed_idle = true;
        pthread_mutex_unlock(&c->mu);
        if (why[0] && !again)
            ctx_renew(b, c, why, false, &e);
        else if (why[0])
            cb_warn("context", "sandbox %s: context %s: cut again before any run (%s): the next run restarts it",
                    b->id, c->id, why);
        ctx_slot_give(c);
    }
    if (c)
        ctx_unref(c);
    sb_box_unref(b);
    free(j);
    return NULL;
}

/* From the guard's thread, which cannot renew (that stops its guard): a
 * detached thread does, found again by ids (it holds no reference here). */
static void ctx_renew_later(const char *box_id, const char *ctx_id)
{
    renew_job *j = cb_calloc(1, sizeof *j);
    snprintf(j->box_id, sizeof j->box_id, "%s", box_id);
    snprintf(j->ctx_id, sizeof j->ctx_id, "%s", ctx_id);
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, renew_main, j) != 0)
        free(j);  /* the next run renews it */
    pthread_attr_destroy(&a);
}

/* POST .../restart: waits for the run slot before any run waiting for it
 * (a run in progress gives it up at once, run_step) and renews the
 * context; or, when a restart asked before this one renews it, answers
 * with that one's kernel. 0, or -1 + err: the context ended meanwhile
 * (CONTEXT_NOT_FOUND), or no kernel could start and it has ended. */
static int ctx_restart(sb_box *b, sb_ctx *c, cJSON **out, sb_error *err)
{
    pthread_mutex_lock(&c->mu);
    unsigned ticket = ++c->restarts_asked;
    while (c->busy && c->state == CTX_READY && (int)(c->restarts_done - ticket) < 0)
        pthread_cond_wait(&c->cv, &c->mu);
    bool ended = c->state != CTX_READY;
    bool answered = (int)(c->restarts_done - ticket) >= 0;  /* by a restart asked before */
    if (!ended && !answered)
        c->busy = true;
    pthread_mutex_unlock(&c->mu);
    if (ended && !answered)
        return sb_fail(err, SB_E_CONTEXT_NOT_FOUND, "context '%s' ended before its restart", c->id), -1;
    if (answered) {
        *out = ctx_to_json(c);
        return 0;
    }
    if (ctx_renew(b, c, CTX_ASKED_REASON, true, err) < 0) {
        ctx_slot_give(c);
        return -1;
    }
    /* the record as the restart leaves it: no run has had the new kernel
     * yet (the slot is still ours, which would read "busy") */
    *out = ctx_to_json(c);
    cJSON_ReplaceItemInObjectCaseSensitive(*out, "status", cJSON_CreateString(state_name(CTX_READY)));
    ctx_slot_give(c);
    return 0;
}

int sb_ctx_restart(sb_box *b, const char *id, cJSON **out, sb_error *err)
{
    sb_ctx *c = ctx_get(b, id, err);
    if (!c)
        return -1;
    int rc = ctx_restart(b, c, out, err);
    ctx_unref(c);
    return rc;
}

int sb_ctx_interrupt(sb_box *b, const char *id, bool *interrupted, sb_error *err)
{
    sb_ctx *c = ctx_find(b, id, err);
    if (!c)
        return -1;
    pthread_mutex_lock(&c->mu);
    /* the run's thread owns the client: it sends the interrupt (run_step);
     * a context whose kernel is being renewed runs nothing, and a run
     * that a restart ends gets no KeyboardInterrupt */
    *interrupted = c->busy && !c->renewing && !restart_pending_locked(c) && c->state == CTX_READY;
    if (*interrupted)
        c->interrupt_asked = true;
    pthread_mutex_unlock(&c->mu);
    ctx_unref(c);
    return 0;
}

void sb_ctxs_on_stop(sb_box *b)
{
    while (b->contexts) {
        sb_ctx *c = b->contexts;
        b->contexts = c->next;
        c->next = NULL;
        ctx_end(c, CTX_DEAD);
        ctx_unref(c);
    }
}

void sb_ctxs_free(sb_box *b)
{
    sb_ctxs_on_stop(b);
}

/* ---- running code ------------------------------------------------------------ */

static const struct {
    const char *mime, *key;
} mime_keys[] = {
    {"text/plain", "text"},      {"text/html", "html"},          {"text/markdown", "markdown"},
    {"image/svg+xml", "svg"},    {"image/png", "png"},           {"image/jpeg", "jpeg"},
    {"application/pdf", "pdf"},  {"text/latex", "latex"},        {"application/json", "json"},
    {"application/javascript", "javascript"},
};

/* A result object from a display_data / execute_result content. */
static cJSON *result_from(const cJSON *content, bool main_result)
{
    cJSON *r = cJSON_CreateObject();
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(content, "data");
    cJSON *extra = NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, data) {
        const char *key = NULL;
        for (size_t i = 0; i < CB_ARRAY_LEN(mime_keys); i++)
            if (strcmp(item->string, mime_keys[i].mime) == 0)
                key = mime_keys[i].key;
        cJSON *v = cJSON_Duplicate(item, true);
        /* text values may come as lists of lines */
        if (cJSON_IsArray(v) && key && strcmp(key, "json") != 0) {
            cb_buf s = CB_BUF_INIT;
            const cJSON *line;
            cJSON_ArrayForEach(line, v)
                if (cJSON_IsString(line))
                    cb_buf_puts(&s, line->valuestring);
            cJSON_Delete(v);
            v = cJSON_CreateString(s.data ? s.data : "");
            cb_buf_clear(&s);
        }
        if (key) {
            cJSON_AddItemToObject(r, key, v);
        } else {
            if (!extra)
                extra = cJSON_CreateObject();
            cJSON_AddItemToObject(extra, item->string, v);
        }
    }
    if (extra)
        cJSON_AddItemToObject(r, "extra", extra);
    cJSON_AddBoolToObject(r, "isMainResult", main_result);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(content, "metadata");
    if (cJSON_IsObject(md) && md->child)
        cJSON_AddItemToObject(r, "metadata", cJSON_Duplicate(md, true));
    const char *did = cb_json_str(cJSON_GetObjectItemCaseSensitive(content, "transient"), "display_id", NULL);
    if (did)
        cJSON_AddStringToObject(r, "displayId", did);
    return r;
}

typedef struct run {
    sb_box *b;
    sb_ctx *c;
    char msg_id[KN_MSG_ID_LEN];
    bool sse;
    int client_fd;
    int64_t t0_ns;
    double deadline;          /* 0 = none */
    double grace_until;       /* after an interrupt */
    bool timed_out, client_gone, got_idle, got_reply, finished;
    bool lost;                /* the kernel's connection was cut: restart the context */
    bool renewed;             /* it was: the kernel's count is no longer the context's */
    bool restart_cut;         /* POST .../restart came while it ran: it ended (ContextRestarted) */
    bool started;             /* the kernel took the request (busy or execute_input for it) */
    bool interrupt_held;      /* asked before that: sent once it has (kernel_interrupt_now) */
    cJSON *restarted;         /* {"at", "reason"}: the context was restarted before this run */
    int gen;                  /* c->restarts when the run came: a restart while it waited is told */
    bool clear_pending;
    int exec_count;
    cJSON *results;           /* array */
    cJSON *out, *errs;        /* arrays of chunks */
    cJSON *error;             /* object or NULL */
    cJSON *reply_error;       /* a failed execute_reply's: the error if IOPub tells none by idle */
    sb_error fail;            /* the run could not complete */
    cJSON *answers;           /* the request's "stdin": lines for input(), in order */
    int next_answer;
    bool stdin_ran_out;       /* input() asked for more than "stdin" gave */
    kn_client_msg *input_req; /* the input_request waiting for POST .../input */
    size_t kept[3];           /* bytes kept: stdout, stderr, results */
    bool logs_truncated, results_truncated;
    /* A streamed run is driven by a thread of its own (run_drive), so that
     * it goes on (interrupts, restarts, its timeout, input, the kernel's
     * death, the runs behind it) whether or not its client reads; the
     * events wait in a queue that the HTTP stream drains (run_produce).
     * mu guards what follows and is taken last: nothing is locked under it. */
    pthread_mutex_t mu;
    int refs;                 /* the driving thread and the HTTP stream */
    struct run_ev *head, *tail;
    size_t queued;            /* bytes in the queue, at most about CTX_STREAM_QUEUE */
    unsigned dropped;         /* events dropped since the last queued one */
    size_t dropped_bytes;
    unsigned dropped_total;
    bool error_dropped;       /* the last error event was dropped: the end tells it again */
    cJSON *main_dropped;      /* so was the last main result: this one, told at the end */
    bool drive_done;          /* execution_complete is queued */
    bool hung_up;             /* the stream ended (its client is gone): queue nothing */
    int wake_fd;              /* eventfd: something was queued (run_produce waits for it) */
    int gone_fd;              /* eventfd: the stream ended (the kernel client's cancel fd) */
} run;

/* One or more SSE events, as sent. */
typedef struct run_ev {
    struct run_ev *next;
    size_t len;
    char data[];
} run_ev;

/* The run gives up its context (the slot, for the runs waiting) and its
 * sandbox. Its events may still wait for their client. */
static void run_release(run *x)
{
    if (x->c) {
        if (x->c->client)
            kn_client_set_cancel_fd(x->c->client, -1);
        pthread_mutex_lock(&x->c->mu);
        if (x->exec_count > x->c->exec_count && !x->renewed)
            x->c->exec_count = x->exec_count;
        x->c->busy = false;
        x->c->input_waiting = false;
        free(x->c->input_value);
        x->c->input_value = NULL;
        pthread_cond_broadcast(&x->c->cv);
        pthread_mutex_unlock(&x->c->mu);
        ctx_unref(cb_steal(&x->c));
    }
    if (x->b) {
        sb_box_release(x->b);
        sb_box_unref(cb_steal(&x->b));
    }
}

static void queue_clear_locked(run *x)
{
    while (x->head) {
        run_ev *e = x->head;
        x->head = e->next;
        free(e);
    }
    x->tail = NULL;
    x->queued = 0;
}

static void run_free(void *p)
{
    run *x = p;
    if (!x)
        return;
    run_release(x);
    queue_clear_locked(x);
    if (x->wake_fd >= 0)
        close(x->wake_fd);
    if (x->gone_fd >= 0)
        close(x->gone_fd);
    pthread_mutex_destroy(&x->mu);
    cJSON_Delete(x->main_dropped);
    cJSON_Delete(x->results);
    cJSON_Delete(x->out);
    cJSON_Delete(x->errs);
    cJSON_Delete(x->error);
    cJSON_Delete(x->reply_error);
    cJSON_Delete(x->restarted);
    cJSON_Delete(x->answers);
    kn_client_msg_free(x->input_req);
    free(x);
}

static double run_duration_ms(const run *x)
{
    return (double)(cb_mono_ns() - x->t0_ns) / 1e6;
}

/* A streamed run's thread and its stream each hold the run. */
static void run_put(run *x)
{
    pthread_mutex_lock(&x->mu);
    bool last = --x->refs == 0;
    pthread_mutex_unlock(&x->mu);
    if (last)
        run_free(x);
}

static void queue_locked(run *x, const char *data, size_t len)
{
    run_ev *e = cb_malloc(sizeof *e + len);
    e->next = NULL;
    e->len = len;
    memcpy(e->data, data, len);
    if (x->tail)
        x->tail->next = e;
    else
        x->head = e;
    x->tail = e;
    x->queued += len;
}

/* Queues an event for the stream (takes data). A droppable one (output)
 * is dropped when the queue holds CTX_STREAM_QUEUE bytes already: the
 * next event queued is preceded by one stderr notice saying how much went. */
static bool run_push(run *x, const char *event, cJSON *data, bool droppable)
{
    bool dropped = false;
    cb_buf text;
    cb_buf_init(&text);
    sb_sse_event(&text, event, data);
    bool error = strcmp(event, "error") == 0;
    pthread_mutex_lock(&x->mu);
    if (x->hung_up) {
        /* no one to send it to */
    } else if (droppable && x->queued >= CTX_STREAM_QUEUE) {
        x->dropped++;
        x->dropped_total++;
        x->dropped_bytes += text.len;
        if (error)
            x->error_dropped = true;
        dropped = true;
    } else {
        if (x->dropped) {
            cJSON *n = cJSON_CreateObject();
            cb_autofree char *line = cb_printf_new(
                "[cellbox] %u events (%zu bytes) of this run were dropped here: its client did not read them "
                "and the server holds at most %u MiB of a streamed run's events\n",
                x->dropped, x->dropped_bytes, CTX_STREAM_QUEUE >> 20);
            cJSON_AddStringToObject(n, "text", line);
            cb_buf note;
            cb_buf_init(&note);
            sb_sse_event(&note, "stderr", n);
            queue_locked(x, note.data, note.len);
            cb_buf_clear(&note);
            x->dropped = 0;
            x->dropped_bytes = 0;
        }
        if (error && droppable)
            x->error_dropped = false;
        queue_locked(x, text.data, text.len);
    }
    pthread_mutex_unlock(&x->mu);
    cb_buf_clear(&text);
    eventfd_write(x->wake_fd, 1);
    return !dropped;
}

/* An output event of a streamed run (takes data). */
static void emit(run *x, const char *event, cJSON *data)
{
    if (x->sse)
        run_push(x, event, data, true);
    else
        cJSON_Delete(data);
}

static cJSON *error_from(const cJSON *content)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", cb_json_str(content, "ename", "Error"));
    cJSON_AddStringToObject(e, "value", cb_json_str(content, "evalue", ""));
    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(content, "traceback");
    cJSON_AddItemToObject(e, "traceback", cJSON_IsArray(tb) ? cJSON_Duplicate(tb, true) : cJSON_CreateArray());
    return e;
}

static void apply_clear(run *x)
{
    cJSON_Delete(x->results);
    x->results = cJSON_CreateArray();
    x->kept[2] = 0;
    x->clear_pending = false;
}

/* One message of ours: fold it into the run and the event stream. */
/* Keeps item in arr (0 stdout, 1 stderr, 2 results) unless the run streams
 * or the reply would grow past its cap. Takes item. */
static void keep(run *x, int which, cJSON *arr, cJSON *item, size_t size)
{
    size_t cap = which == 2 ? CTX_RESULTS_CAP : CTX_LOG_CAP;
    if (x->sse || x->kept[which] + size > cap) {
        if (!x->sse)
            *(which == 2 ? &x->results_truncated : &x->logs_truncated) = true;
        cJSON_Delete(item);
        return;
    }
    x->kept[which] += size;
    cJSON_AddItemToArray(arr, item);
}

static size_t result_size(const cJSON *r)
{
    size_t n = 0;
    for (const cJSON *k = r->child; k; k = k->next)
        n += cJSON_IsString(k) ? strlen(k->valuestring) : 64;
    return n;
}

static void echo_input(run *x, const char *prompt, const char *value, bool password)
{
    /* what a terminal shows: the prompt and the answer (hidden for passwords) */
    cb_autofree char *line = cb_printf_new("%s%s\n", prompt, password ? "" : value);
    keep(x, 0, x->out, cJSON_CreateString(line), strlen(line));
}

/* Takes ownership of m when it keeps it (x->input_req); returns true then. */
static bool on_input_request(run *x, kn_client_msg *m)
{
    const char *prompt = cb_json_str(m->content, "prompt", "");
    bool password = cb_json_bool(m->content, "password", false);
    int n = cJSON_GetArraySize(x->answers);
    if (x->next_answer < n) {
        cJSON *a = cJSON_GetArrayItem(x->answers, x->next_answer++);
        const char *v = cJSON_IsString(a) ? a->valuestring : "";
        echo_input(x, prompt, v, password);
        kn_client_input_reply(x->c->client, m, v);
        return false;
    }
    if (x->sse) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "prompt", prompt);
        cJSON_AddBoolToObject(e, "password", password);
        run_push(x, "input_request", e, false);
        pthread_mutex_lock(&x->c->mu);
        x->c->input_waiting = true;
        pthread_mutex_unlock(&x->c->mu);
        x->input_req = m;
        return true;
    }
    /* no more lines: input() gets an EOFError, as when stdin is at its end */
    x->stdin_ran_out = true;
    kn_client_interrupt(x->c->client);
    return false;
}

static void on_message(run *x, kn_client_msg *m)
{
    const char *t = m->msg_type;
    if (m->channel == KN_CH_SHELL) {
        if (strcmp(t, "execute_reply") == 0) {
            x->got_reply = true;
            x->exec_count = (int)cb_json_int(m->content, "execution_count", x->exec_count);
            /* channels are not ordered between them: IOPub's error message
             * may still come (and is the one to tell) */
            if (strcmp(cb_json_str(m->content, "status", ""), "ok") != 0 && !x->reply_error)
                x->reply_error = error_from(m->content);
        }
        return;
    }
    if (m->channel != KN_CH_IOPUB)
        return;
    if (strcmp(t, "status") == 0) {
        const char *state = cb_json_str(m->content, "execution_state", "");
        if (strcmp(state, "idle") == 0)
            x->got_idle = true;
        else if (strcmp(state, "busy") == 0)
            x->started = true;
    } else if (strcmp(t, "execute_input") == 0) {
        x->started = true;
        x->exec_count = (int)cb_json_int(m->content, "execution_count", x->exec_count);
    } else if (strcmp(t, "stream") == 0) {
        const char *name = cb_json_str(m->content, "name", "stdout");
        const char *text = cb_json_str(m->content, "text", "");
        bool err = strcmp(name, "stderr") == 0;
        keep(x, err ? 1 : 0, err ? x->errs : x->out, cJSON_CreateString(text), strlen(text));
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "text", text);
        emit(x, err ? "stderr" : "stdout", e);
    } else if (strcmp(t, "execute_result") == 0 || strcmp(t, "display_data") == 0) {
        if (x->clear_pending)
            apply_clear(x);
        bool main_result = strcmp(t, "execute_result") == 0;
        cJSON *r = result_from(m->content, main_result);
        keep(x, 2, x->results, cJSON_Duplicate(r, true), result_size(r));
        if (x->sse && main_result) {
            /* the value of the code: told at the end if it is dropped */
            cJSON *copy = cJSON_Duplicate(r, true);
            cJSON_Delete(x->main_dropped);
            x->main_dropped = run_push(x, "result", r, true) ? (cJSON_Delete(copy), NULL) : copy;
        } else {
            emit(x, "result", r);
        }
    } else if (strcmp(t, "update_display_data") == 0) {
        cJSON *r = result_from(m->content, false);
        const char *did = cb_json_str(r, "displayId", NULL);
        int n = cJSON_GetArraySize(x->results);
        for (int i = 0; did && i < n; i++)
            if (strcmp(cb_json_str(cJSON_GetArrayItem(x->results, i), "displayId", ""), did) == 0)
                cJSON_ReplaceItemInArray(x->results, i, cJSON_Duplicate(r, true));
        cJSON_AddBoolToObject(r, "update", true);
        emit(x, "result", r);
    } else if (strcmp(t, "clear_output") == 0) {
        bool wait = cb_json_bool(m->content, "wait", false);
        if (wait)
            x->clear_pending = true;
        else
            apply_clear(x);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddBoolToObject(e, "wait", wait);
        emit(x, "clear", e);
    } else if (strcmp(t, "error") == 0) {
        cJSON_Delete(x->error);
        x->error = error_from(m->content);
        emit(x, "error", cJSON_Duplicate(x->error, true));
    }
}

/* The run ends: a failed execute_reply's error is the run's when IOPub
 * told none. */
static void adopt_reply_error(run *x)
{
    if (!x->error && x->reply_error) {
        x->error = cb_steal(&x->reply_error);
        if (x->sse)
            run_push(x, "error", cJSON_Duplicate(x->error, true), false);
    }
}

/* Interrupts the run's code. Before the kernel has taken the request (no
 * busy for it yet), an interrupt would find the kernel idle, which drops
 * it as a Jupyter kernel does, and the code would then run on: it is held
 * until the kernel says busy (run_step). */
static void run_interrupt(run *x)
{
    kn_client_msg_free(x->input_req);
    x->input_req = NULL;
    if (x->started)
        kn_client_interrupt(x->c->client);
    else
        x->interrupt_held = true;
}

/* Drives the run until it finishes or `wait_s` passes. Returns 1 finished,
 * 0 not yet. */
static int run_step(run *x, double wait_s)
{
    double until = cb_mono_s() + wait_s;
    while (!x->finished) {
        double now = cb_mono_s();
        pthread_mutex_lock(&x->c->mu);
        bool dead = x->c->state != CTX_READY;
        bool restart = restart_pending_locked(x->c);
        bool interrupt = x->c->interrupt_asked;
        x->c->interrupt_asked = false;
        pthread_mutex_unlock(&x->c->mu);
        if (restart && !dead) {
            /* POST .../restart waits for the run slot: end now (the code
             * runs on until its kernel is replaced; a kernel that died is
             * replaced too) */
            x->restart_cut = true;
            x->finished = true;
            break;
        }
        if (interrupt && !dead) {
            /* POST .../interrupt: as a frontend's interrupt (the run ends
             * with the KeyboardInterrupt error; the context stays) */
            run_interrupt(x);
        }
        if (x->interrupt_held && x->started && !dead) {
            x->interrupt_held = false;
            kn_client_interrupt(x->c->client);
        }
        if (dead || !proc_running(x->b, x->c->proc_id)) {
            sb_fail(&x->fail, SB_E_INTERPRETER_NOT_READY,
                    dead ? "the context ended while the code ran (sandbox stopped or context deleted)"
                         : "the interpreter exited while the code ran; the context is gone");
            drop_ctx(x->b, x->c);
            x->finished = true;
            break;
        }
        if (x->deadline > 0 && now >= x->deadline && !x->timed_out) {
            x->timed_out = true;
            x->grace_until = now + CTX_INTERRUPT_GRACE_S;
            run_interrupt(x);
        }
        if (x->grace_until > 0 && now >= x->grace_until && !x->finished) {
            /* the interrupt did not bring it back: end this context */
            sb_fail(&x->fail, SB_E_TIMEOUT,
                    "the code did not stop %g s after an interrupt; the context was ended",
                    CTX_INTERRUPT_GRACE_S);
            drop_ctx(x->b, x->c);
            sb_error e = {0};
            sb_proc_kill(x->b, x->c->proc_id, SIGKILL, 0, &e);
            x->finished = true;
            break;
        }
        if (now >= until)
            return 0;
        double step = until - now;
        if (step > 0.1)
            step = 0.1;  /* look at the process, the clock and interrupts now and then */
        if (x->deadline > 0 && !x->timed_out && x->deadline - now < step)
            step = x->deadline - now;
        if (x->input_req) {
            /* waiting for POST .../input: look for the answer often */
            char *v = NULL;
            pthread_mutex_lock(&x->c->mu);
            if (x->c->input_value) {
                v = x->c->input_value;
                x->c->input_value = NULL;
                x->c->input_waiting = false;
            }
            pthread_mutex_unlock(&x->c->mu);
            if (v) {
                kn_client_input_reply(x->c->client, x->input_req, v);
                free(v);
                kn_client_msg_free(x->input_req);
                x->input_req = NULL;
            } else if (step > 0.02) {
                step = 0.02;
            }
        }
        kn_client_msg *m = NULL;
        kn_poll_status st = kn_client_poll(x->c->client, step, &m);
        if (st == KN_POLL_MSG && m->channel == KN_CH_STDIN) {
            bool kept = strcmp(m->msg_type, "input_request") == 0 && strcmp(m->parent_id, x->msg_id) == 0 &&
                        on_input_request(x, m);
            if (!kept)
                kn_client_msg_free(m);
        } else if (st == KN_POLL_MSG) {
            if (strcmp(m->parent_id, x->msg_id) == 0)
                on_message(x, m);
            kn_client_msg_free(m);
            if (x->got_idle && x->got_reply) {
                adopt_reply_error(x);
                x->finished = true;
            }
        } else if (st == KN_POLL_CANCELLED) {
            /* the client hung up: stop the code, drain until idle, reply to no one */
            kn_client_set_cancel_fd(x->c->client, -1);
            x->client_gone = true;
            if (x->grace_until == 0) {
                x->grace_until = cb_mono_s() + CTX_INTERRUPT_GRACE_S;
                run_interrupt(x);
            }
            until = x->grace_until + 0.01;
        } else if (st == KN_POLL_LOST) {
            /* a connection was cut: by the guard (it says why), or the
             * kernel exited (then the check above reports it), or it
             * closed one itself */
            char why[200];
            guard_why(x->c->guard, why, sizeof why);
            if (!why[0] && proc_ends_within(x->b, x->c->proc_id, CTX_LOST_GRACE_S))
                continue;
            x->lost = true;
            sb_fail(&x->fail, SB_E_SERVICE_NOT_RESPONDING, "%s",
                    why[0] ? why : "the interpreter cut its connection to the server");
            x->finished = true;
        } else if (st == KN_POLL_HB_LOST) {
            sb_fail(&x->fail, SB_E_INTERPRETER_NOT_READY, "the interpreter stopped answering its heartbeat");
            drop_ctx(x->b, x->c);
            sb_error e = {0};
            sb_proc_kill(x->b, x->c->proc_id, SIGKILL, 0, &e);
            x->finished = true;
        }
    }
    return 1;
}

static cJSON *run_summary(run *x)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "executionCount", x->exec_count);
    cJSON_AddNumberToObject(j, "durationMs", run_duration_ms(x));
    cJSON_AddBoolToObject(j, "timedOut", x->timed_out);
    return j;
}

static cJSON *run_result(run *x)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "context", x->c->id);
    cJSON_AddItemToObject(j, "results", x->results);
    x->results = NULL;
    cJSON *logs = cJSON_AddObjectToObject(j, "logs");
    cJSON_AddItemToObject(logs, "stdout", x->out);
    cJSON_AddItemToObject(logs, "stderr", x->errs);
    x->out = x->errs = NULL;
    if (x->error)
        cJSON_AddItemToObject(j, "error", x->error);
    else
        cJSON_AddNullToObject(j, "error");
    x->error = NULL;
    cJSON_AddNumberToObject(j, "executionCount", x->exec_count);
    cJSON_AddBoolToObject(j, "timedOut", x->timed_out);
    cJSON_AddNumberToObject(j, "durationMs", run_duration_ms(x));
    if (x->logs_truncated)
        cJSON_AddBoolToObject(j, "logsTruncated", true);
    if (x->results_truncated)
        cJSON_AddBoolToObject(j, "resultsTruncated", true);
    if (x->restarted)
        cJSON_AddItemToObject(j, "restarted", cb_steal(&x->restarted));
    return j;
}

/* The run's connection to the kernel was cut (x->lost): messages may be
 * lost, so the kernel cannot be trusted to be in step; a new one takes the
 * context's id. x->fail's message says which happened. */
static void restart_lost(run *x)
{
    if (!x->lost)
        return;
    x->lost = false;
    sb_error e = {0};
    cb_autofree char *msg = cb_strdup(x->fail.msg);
    x->renewed = true;
    if (ctx_renew(x->b, x->c, msg, false, &e) == 0) {
        snprintf(x->fail.msg, sizeof x->fail.msg, "%.400s: the context was restarted (its state is lost)", msg);
        pthread_mutex_lock(&x->c->mu);
        x->c->restart_untold = false;  /* this run's error tells */
        pthread_mutex_unlock(&x->c->mu);
    } else {
        snprintf(x->fail.msg, sizeof x->fail.msg, "%.300s; the context could not be restarted: %.150s", msg, e.msg);
    }
}

/* The error of a run that a restart asked through the API ended. */
static cJSON *restart_error(void)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", "ContextRestarted");
    cJSON_AddStringToObject(e, "value", "the context was restarted (POST .../restart) while the code ran: "
                                        "its kernel and its state are gone");
    cJSON_AddItemToObject(e, "traceback", cJSON_CreateArray());
    return e;
}

/* The first stderr line of a run after a renewal no run told of. */
static char *restart_notice(const cJSON *restarted)
{
    return cb_printf_new("[cellbox] this context was restarted at %s, so its variables and imports are gone: %s\n",
                         cb_json_str(restarted, "at", ""), cb_json_str(restarted, "reason", ""));
}

/* The run has the slot: a cut no one renewed the context for yet (the
 * guard's thread was slower) is handled now, and a renewal no run told of,
 * or one that came while this run waited (the run before it was cut: that
 * run's error told its own caller, not this one's), is told by this one
 * (x->restarted, and a first stderr line). -1 + err: the context could not
 * be renewed. */
static int run_check_renewed(run *x, sb_error *err)
{
    char why[200];
    guard_why(x->c->guard, why, sizeof why);
    if (why[0] && ctx_renew(x->b, x->c, why, false, err) < 0)
        return -1;
    pthread_mutex_lock(&x->c->mu);
    x->c->renewed_idle = false;
    if (x->c->restart_untold || x->c->restarts != x->gen) {
        x->c->restart_untold = false;
        char date[CB_ISO_DATE_LEN];
        cb_iso_date(date, x->c->restarted_us);
        x->restarted = cJSON_CreateObject();
        cJSON_AddStringToObject(x->restarted, "at", date);
        cJSON_AddStringToObject(x->restarted, "reason", x->c->restart_reason);
    }
    pthread_mutex_unlock(&x->c->mu);
    if (x->restarted && !x->sse) {
        cb_autofree char *line = restart_notice(x->restarted);
        keep(x, 1, x->errs, cJSON_CreateString(line), strlen(line));
    }
    return 0;
}

/* A streamed run's thread: drives the run to its end, whether or not its
 * client reads (run_produce sends what it queues), then gives up the
 * context, so that interrupts, restarts, the run's timeout and the runs
 * waiting behind it never wait for the client. Holds a reference. */
static void *run_drive(void *arg)
{
    run *x = arg;
    if (x->restarted) {
        /* the notice of run_check_renewed, as the first event */
        cJSON *e = cJSON_CreateObject();
        cb_autofree char *line = restart_notice(x->restarted);
        cJSON_AddStringToObject(e, "text", line);
        run_push(x, "stderr", e, false);
        cJSON_Delete(cb_steal(&x->restarted));
    }
    run_step(x, 1e9);
    restart_lost(x);
    adopt_reply_error(x);
    pthread_mutex_lock(&x->mu);
    bool error_dropped = x->error_dropped;
    pthread_mutex_unlock(&x->mu);
    /* what matters of the output dropped, after the notice */
    if (x->main_dropped)
        run_push(x, "result", cb_steal(&x->main_dropped), false);
    if (error_dropped && x->error)
        run_push(x, "error", cJSON_Duplicate(x->error, true), false);
    if (x->fail.code) {
        cJSON *err = cJSON_CreateObject();
        cJSON_AddStringToObject(err, "code", sb_err_name(x->fail.code));
        cJSON_AddStringToObject(err, "error", x->fail.msg);
        run_push(x, "error", err, false);
    }
    if (x->restart_cut) {
        run_push(x, "error", restart_error(), false);
    } else if (x->timed_out && !x->error) {
        cJSON *te = cJSON_CreateObject();
        cJSON_AddStringToObject(te, "name", "TimeoutError");
        cJSON_AddStringToObject(te, "value", "the run exceeded timeoutMs and was interrupted");
        cJSON_AddItemToObject(te, "traceback", cJSON_CreateArray());
        run_push(x, "error", te, false);
    }
    /* the context is free before its client can see the end */
    run_release(x);
    cJSON *done = run_summary(x);
    pthread_mutex_lock(&x->mu);
    unsigned dropped = x->dropped_total;
    pthread_mutex_unlock(&x->mu);
    if (dropped)
        cJSON_AddNumberToObject(done, "eventsDropped", dropped);
    run_push(x, "execution_complete", done, false);
    pthread_mutex_lock(&x->mu);
    x->drive_done = true;
    pthread_mutex_unlock(&x->mu);
    eventfd_write(x->wake_fd, 1);
    run_put(x);
    return NULL;
}

/* The stream's producer: sends what run_drive queued, waiting for it (a
 * keepalive comment after a silence); -1 when the client hangs up. */
static int run_produce(void *ctx, cb_buf *out)
{
    run *x = ctx;
    int64_t until = sb_now_ms() + sb_sse_keepalive_ms();
    for (;;) {
        pthread_mutex_lock(&x->mu);
        while (x->head && out->len < (256u << 10)) {
            run_ev *e = x->head;
            x->head = e->next;
            if (!x->head)
                x->tail = NULL;
            x->queued -= e->len;
            cb_buf_append(out, e->data, e->len);
            free(e);
        }
        bool done = x->drive_done && !x->head;
        pthread_mutex_unlock(&x->mu);
        if (out->len > 0 || done)
            return done ? 1 : 0;
        int64_t left = until - sb_now_ms();
        if (left <= 0) {
            sb_sse_comment(out, "keepalive");
            return 0;
        }
        struct pollfd pf[2] = {{.fd = x->wake_fd, .events = POLLIN}, {.fd = x->client_fd, .events = POLLIN}};
        int n = poll(pf, x->client_fd >= 0 ? 2 : 1, (int)left);
        if (n > 0 && x->client_fd >= 0 && pf[1].revents)
            return -1;  /* the client hung up: run_stream_end stops the run */
        eventfd_t v;
        if (n > 0 && (pf[0].revents & POLLIN))
            eventfd_read(x->wake_fd, &v);
    }
}

/* The stream ended (sent all, or its client is gone): a run still going
 * is interrupted (its kernel client's cancel fd fires), as when a JSON
 * run's client hangs up. */
static void run_stream_end(void *p)
{
    run *x = p;
    pthread_mutex_lock(&x->mu);
    x->hung_up = true;
    queue_clear_locked(x);
    pthread_mutex_unlock(&x->mu);
    eventfd_write(x->gone_fd, 1);
    run_put(x);
}

int sb_ctx_run(sb_req *r, sb_box *b, const cJSON *body, sb_error *err)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(body, "code");
    if (!cJSON_IsString(code))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "code must be a string"), -1;
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(body, "context");
    if (!cid)
        cid = cJSON_GetObjectItemCaseSensitive(body, "contextId");
    if (cJSON_IsObject(cid))  /* a context object as the SDKs pass it */
        cid = cJSON_GetObjectItemCaseSensitive(cid, "id");
    if (cid && !cJSON_IsString(cid))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "context must be a context id"), -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "timeoutMs");
    if (!t)
        t = cJSON_GetObjectItemCaseSensitive(body, "timeout");
    if (t && (!cJSON_IsNumber(t) || t->valuedouble < 0))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "timeoutMs must be a number >= 0"), -1;

    const cJSON *in = cJSON_GetObjectItemCaseSensitive(body, "stdin");
    cJSON *answers = NULL;
    if (cJSON_IsString(in)) {
        /* a text: one line per input() */
        answers = cJSON_CreateArray();
        const char *p = in->valuestring;
        while (*p) {
            size_t n = strcspn(p, "\n");
            cb_autofree char *line = cb_strndup(p, n);
            cJSON_AddItemToArray(answers, cJSON_CreateString(line));
            p += n + (p[n] == '\n');
        }
    } else if (cJSON_IsArray(in)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, in)
            if (!cJSON_IsString(it))
                return sb_fail(err, SB_E_VALIDATION_FAILED, "stdin must be a string or an array of strings"), -1;
        answers = cJSON_Duplicate(in, true);
    } else if (in && !cJSON_IsNull(in)) {
        return sb_fail(err, SB_E_VALIDATION_FAILED, "stdin must be a string or an array of strings"), -1;
    }
    sb_ctx *c = NULL;
    if (cid) {
        c = ctx_get(b, cid->valuestring, err);
        if (!c) {
            cJSON_Delete(answers);
            return -1;
        }
    } else {
        /* no context: the default one of the run's language ("default" for
         * python, "default-javascript", "default-typescript") */
        cJSON *dflt = cJSON_CreateObject();
        const cJSON *lang = cJSON_GetObjectItemCaseSensitive(body, "language");
        if (lang)
            cJSON_AddItemToObject(dflt, "language", cJSON_Duplicate(lang, true));
        char did[64] = "default";
        if (cJSON_IsString(lang)) {
            const char *l = lang->valuestring;
            if (strcmp(l, "javascript") == 0 || strcmp(l, "js") == 0)
                snprintf(did, sizeof did, "default-javascript");
            else if (strcmp(l, "typescript") == 0 || strcmp(l, "ts") == 0)
                snprintf(did, sizeof did, "default-typescript");
        }
        int rc = sb_ctx_create_id(b, did, dflt, &c, err);
        cJSON_Delete(dflt);
        if (rc < 0) {
            cJSON_Delete(answers);
            return -1;
        }
        ctx_unref(c);
        if (!(c = ctx_get(b, did, err))) {
            cJSON_Delete(answers);
            return -1;
        }
    }
    if (sb_box_acquire(b, err) < 0) {
        ctx_unref(c);
        cJSON_Delete(answers);
        return -1;
    }
    run *x = cb_calloc(1, sizeof *x);
    pthread_mutex_init(&x->mu, NULL);
    x->wake_fd = x->gone_fd = -1;
    x->b = sb_box_ref(b);
    x->c = c;
    x->sse = sb_req_wants_sse(r);
    x->results = cJSON_CreateArray();
    x->out = cJSON_CreateArray();
    x->errs = cJSON_CreateArray();
    x->answers = answers ? answers : cJSON_CreateArray();
    bool allow_stdin = answers != NULL || x->sse;
    /* one run at a time: wait for the context */
    pthread_mutex_lock(&c->mu);
    x->gen = c->restarts;
    pthread_mutex_unlock(&c->mu);
    if (!ctx_slot_take(c)) {
        x->c = NULL;
        ctx_unref(c);
        run_free(x);
        return sb_fail(err, SB_E_CONTEXT_NOT_FOUND, "the context has ended"), -1;
    }
    if (run_check_renewed(x, err) < 0) {
        run_free(x);
        return -1;
    }
    if (x->sse) {
        x->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        x->gone_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (x->wake_fd < 0 || x->gone_fd < 0) {
            sb_fail(err, SB_E_INTERNAL_ERROR, "cannot stream the run: %s", strerror(errno));
            run_free(x);
            return -1;
        }
        x->client_fd = sb_req_client_fd(r);
    }
    x->t0_ns = cb_mono_ns();
    if (t && t->valuedouble > 0)
        x->deadline = cb_mono_s() + t->valuedouble / 1000.0;
    /* a client that hangs up interrupts the run: seen on its socket by a
     * JSON run, by the stream (run_stream_end) for a streamed one */
    kn_client_set_cancel_fd(c->client, x->sse ? x->gone_fd : sb_req_client_fd(r));
    if (kn_client_execute(c->client, code->valuestring, true, allow_stdin, false, x->msg_id) < 0) {
        kn_client_set_cancel_fd(c->client, -1);
        run_free(x);
        return sb_fail(err, SB_E_INTERPRETER_NOT_READY, "cannot send the code to the interpreter"), -1;
    }
    if (x->sse) {
        /* its thread and the stream each hold it */
        x->refs = 2;
        pthread_attr_t a;
        pthread_t th;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &a, run_drive, x) != 0)
            run_drive(x);  /* no thread: run it here; the stream sends it afterwards */
        pthread_attr_destroy(&a);
        return sb_reply_stream(r, 200, "text/event-stream", run_produce, x, run_stream_end);
    }
    run_step(x, 1e9);
    restart_lost(x);
    adopt_reply_error(x);
    if (x->fail.code && !x->timed_out) {
        *err = x->fail;
        run_free(x);
        return -1;
    }
    if (x->restart_cut) {
        cJSON_Delete(x->error);
        x->error = restart_error();
    } else if (x->stdin_ran_out) {
        cJSON_Delete(x->error);
        x->error = cJSON_CreateObject();
        cJSON_AddStringToObject(x->error, "name", "EOFError");
        cJSON_AddStringToObject(x->error, "value", "input() asked for more lines than the request's stdin held; "
                                                   "the run was interrupted");
        cJSON_AddItemToObject(x->error, "traceback", cJSON_CreateArray());
    } else if (x->timed_out && !x->error) {
        x->error = cJSON_CreateObject();
        cJSON_AddStringToObject(x->error, "name", "TimeoutError");
        cJSON_AddStringToObject(x->error, "value", x->fail.code ? x->fail.msg
                                                                : "the run exceeded timeoutMs and was interrupted");
        cJSON_AddItemToObject(x->error, "traceback", cJSON_CreateArray());
    }
    cJSON *j = run_result(x);
    run_free(x);
    return sb_reply_json(r, 200, j);
}
