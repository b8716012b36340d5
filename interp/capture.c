/* interp/capture.c: see capture.h.
 *
 * Locks: buf_lock guards the pending bytes (taken briefly by writers and by
 * the pipe reader); pub_lock serialises publications, so batches leave in the
 * order they were cut even when the pump thread and the interp thread both
 * flush. Writers never wait for a publication unless they are far ahead of
 * it (back-pressure at BACKLOG bytes), so printing and publishing overlap on
 * two cores. A big write (IP_CAPTURE_BIG) skips the buffer: its writer holds
 * pub_lock while its bytes are escaped into messages, so what other threads
 * write meanwhile waits in the buffer and comes after it. Memory: the
 * pending batch (at most about BACKLOG) plus one message being escaped.
 *
 * IOPub flow control (kernel/kernel.h): when the frontend reads slowly,
 * publishing may wait. The pump never waits (host->output_may_wait):
 * while the host has no room (host->output_room) it leaves the batch
 * pending and the fd pipes unread (a subprocess writing to them then
 * blocks), so the wait falls on the writers once they reach BACKLOG, on
 * their own thread: on the interp thread a print waits where an interrupt
 * can end it, not behind a pump holding pub_lock. */
#include "config.h"
#include "interp/capture.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"

#define BATCH (128 * 1024)       /* wake the pump at this size */
#define BACKLOG (4 * 1024 * 1024) /* writers publish themselves beyond this */
#define URGENT_MS 2               /* delay of a publication asked for by flush() */
#define FLUSH_SYNC_GAP_NS 10000000 /* flush() publishes at once when nothing left for this long */
#define SLICE (256 * 1024)        /* bytes escaped at a time when cutting messages */
#define FD_CHECK_NS 100000       /* writes closer than this skip the look at the fd pipes */
#define ROOM_RETRY_MS 5           /* the pump's look at the host's room while it has none */

struct ip_capture {
    const kn_host *host;
    pthread_mutex_t buf_lock, pub_lock;
    pthread_mutex_t pipe_lock;   /* read + append of pipe data is one step */
    cb_buf pending;
    int pending_stream;
    int64_t pending_since;   /* ns, when pending became non-empty */
    bool kicked;             /* the pump has been woken for the current batch */
    bool urgent;             /* flush() was called: publish within URGENT_MS */
    _Atomic int64_t last_pub_ns; /* when the last stream message left */
    int interval_ms;

    bool fds;
    _Atomic int64_t last_write_ns; /* the last ip_capture_write's (take_fd_output) */
    int pipe_rd[3];          /* [1], [2]: read ends of the fd pipes */
    int saved_fd[3];         /* original fds 1 and 2 */
    int wake;                /* eventfd for the pump */
    /* forked children count their writes to fds 1/2 here (a MAP_SHARED
     * page, NULL without fds); child_seen: the count when the kernel last
     * read the pipes */
    _Atomic unsigned long *child_writes;
    _Atomic unsigned long child_seen;
    bool stop;
    pthread_t pump;
    /* under pub_lock: the open message (enc_head: the length of its
     * header; its text is what follows) and a carried character */
    cb_buf enc;
    size_t enc_head;
    int enc_stream;
    char carry[8];
    size_t carry_len;
    int carry_stream;
    int big_stream;          /* between ip_capture_write_begin() and _end() */
};

/* ------------------------------------------------------------------ UTF-8 / JSON */

static size_t utf8_seq_len(const unsigned char *p, size_t avail, bool *valid)
{
    unsigned char c = p[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c < 0x80) {
        *valid = true;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        *valid = false;
        return 1;
    }
    if (avail < n) {
        /* maybe truncated: valid so far? */
        for (size_t i = 1; i < avail; i++)
            if ((p[i] & 0xc0) != 0x80) {
                *valid = false;
                return 1;
            }
        *valid = true;
        return 0;  /* incomplete */
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            *valid = false;
            return 1;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    *valid = cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    return *valid ? n : 1;
}

size_t ip_json_escape_utf8(cb_buf *out, const char *data, size_t len, bool final)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)data, *end = p + len;
    cb_buf_reserve(out, len + len / 8 + 16);
    while (p < end) {
        /* fast path: a run of plain ASCII that needs no escaping */
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            cb_buf_append(out, run, (size_t)(p - run));
        if (p >= end)
            break;
        unsigned char c = *p;
        if (c < 0x80) {
            char esc[7];
            switch (c) {
            case '"': cb_buf_append(out, "\\\"", 2); break;
            case '\\': cb_buf_append(out, "\\\\", 2); break;
            case '\n': cb_buf_append(out, "\\n", 2); break;
            case '\r': cb_buf_append(out, "\\r", 2); break;
            case '\t': cb_buf_append(out, "\\t", 2); break;
            case '\b': cb_buf_append(out, "\\b", 2); break;
            case '\f': cb_buf_append(out, "\\f", 2); break;
            default:
                esc[0] = '\\', esc[1] = 'u', esc[2] = '0', esc[3] = '0';
                esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
                cb_buf_append(out, esc, 6);
            }
            p++;
            continue;
        }
        bool valid;
        size_t n = utf8_seq_len(p, (size_t)(end - p), &valid);
        if (n == 0) {  /* truncated sequence at the end */
            if (!final)
                break;
            cb_buf_append(out, "\xef\xbf\xbd", 3);
            p = end;
            break;
        }
        if (valid)
            cb_buf_append(out, p, n);
        else
            cb_buf_append(out, "\xef\xbf\xbd", 3);
        p += n;
    }
    return (size_t)(p - (const unsigned char *)data);
}

/* ------------------------------------------------------------------ publishing
 *
 * All text leaves through emit() (under pub_lock), which escapes bytes into
 * the open message (c->enc) straight from the buffer it is given and sends a
 * message whenever the next bytes might not fit in IP_STREAM_CHUNK. A UTF-8
 * character cut by the end of what emit() was given waits in c->carry for
 * the next bytes of its stream; msg_send() ends the open message. */

static const char *stream_name(int s)
{
    return s == IP_STDERR ? "stderr" : "stdout";
}

/* Ends the open message: publishes it if it holds text. Under pub_lock. */
static void msg_send(ip_capture *c)
{
    if (c->enc.len > c->enc_head) {
        cb_buf_append(&c->enc, "\"}", 2);
        c->host->publish(c->host->ctx, "stream", c->enc.data, c->enc.len, NULL, 0);
        atomic_store_explicit(&c->last_pub_ns, cb_mono_ns(), memory_order_relaxed);
    }
    cb_buf_reset(&c->enc);
    c->enc_head = 0;
}

/* Escapes data into messages of stream. final: also emit an incomplete
 * UTF-8 sequence at the end (as U+FFFD) instead of carrying it. Under
 * pub_lock. */
static void emit(ip_capture *c, int stream, const char *data, size_t len, bool final)
{
    if (c->carry_len && c->carry_stream != stream)
        emit(c, c->carry_stream, "", 0, true);  /* the rest of that character will not come */
    if (c->enc.len && c->enc_stream != stream)
        msg_send(c);
    size_t used = 0;
    for (;;) {
        if (!c->enc.len) {
            cb_buf_printf(&c->enc, "{\"name\":\"%s\",\"text\":\"", stream_name(stream));
            c->enc_head = c->enc.len;
            c->enc_stream = stream;
        }
        /* input bytes that fit even all escaped (\u00XX: 6 bytes each), "} kept */
        size_t room = (IP_STREAM_CHUNK - 2 - c->enc.len) / 6;
        if (room < 8) {
            msg_send(c);
            continue;
        }
        if (c->carry_len) {
            /* complete the carried character with the first bytes of data */
            char tmp[sizeof c->carry + 4];
            size_t cl = c->carry_len, m = len - used < 4 ? len - used : 4;
            memcpy(tmp, c->carry, cl);
            memcpy(tmp + cl, data + used, m);
            size_t k = ip_json_escape_utf8(&c->enc, tmp, cl + m, final && used + m == len);
            if (k < cl) {  /* still incomplete: it took all of data */
                c->carry_len = cl + m - k;
                memmove(c->carry, tmp + k, c->carry_len);
                used += m;
                break;
            }
            c->carry_len = 0;
            used += k - cl;
            continue;
        }
        if (used == len)
            break;
        size_t n = len - used;
        if (n > SLICE)
            n = SLICE;
        if (n > room)
            n = room;
        size_t k = ip_json_escape_utf8(&c->enc, data + used, n, final && used + n == len);
        used += k;
        if (k == 0)
            break;  /* an incomplete character ends data (fewer than 4 bytes) */
    }
    if (used < len) {
        c->carry_len = len - used;
        memcpy(c->carry, data + used, c->carry_len);
        c->carry_stream = stream;
    }
}

/* Takes the pending batch (under buf_lock). Under pub_lock. */
static cb_buf take_pending(ip_capture *c, int *stream)
{
    pthread_mutex_lock(&c->buf_lock);
    cb_buf batch = c->pending;
    *stream = c->pending_stream;
    cb_buf_init(&c->pending);
    c->kicked = false;
    c->urgent = false;
    pthread_mutex_unlock(&c->buf_lock);
    return batch;
}

/* Publishes the pending batch. final: also what the carry holds. */
static void publish_pending(ip_capture *c, bool final)
{
    pthread_mutex_lock(&c->pub_lock);
    int stream;
    cb_buf batch = take_pending(c, &stream);
    if (batch.len)
        emit(c, stream, batch.data, batch.len, final);
    else if (final && c->carry_len)
        emit(c, c->carry_stream, "", 0, true);
    msg_send(c);
    cb_buf_clear(&batch);
    pthread_mutex_unlock(&c->pub_lock);
}

static void wake_pump(ip_capture *c)
{
    uint64_t one = 1;
    ssize_t CB_UNUSED w = write(c->wake, &one, sizeof one);
}

static void append(ip_capture *c, int stream, const char *data, size_t len)
{
    bool wake = false, self_publish = false;
    for (;;) {
        pthread_mutex_lock(&c->buf_lock);
        if (c->pending.len > 0 && c->pending_stream != stream) {
            /* the other stream: end the batch first, to keep the order */
            pthread_mutex_unlock(&c->buf_lock);
            publish_pending(c, true);
            continue;
        }
        break;
    }
    if (c->pending.len == 0) {
        c->pending_stream = stream;
        c->pending_since = cb_mono_ns();
        if (!c->kicked) {
            c->kicked = true;  /* arm the pump's timer */
            wake = true;
        }
    }
    cb_buf_append(&c->pending, data, len);
    if (c->pending.len >= BACKLOG)
        self_publish = true;
    else if (c->pending.len >= BATCH)
        wake = true;
    pthread_mutex_unlock(&c->buf_lock);
    if (self_publish)
        publish_pending(c, false);
    else if (wake)
        wake_pump(c);
}

static bool drain_pipe(ip_capture *c, int stream);

void ip_capture_child_wrote(ip_capture *c)
{
    if (c->child_writes)
        atomic_fetch_add(c->child_writes, 1);
}

/* What went to fds 1 and 2 before this write comes before it: the pump
 * may not have read it yet.
 * - A forked child (multiprocessing) counts its writes in shared memory:
 *   when the count moved, the pipes are read in now (a load when not).
 * - Anything else (os.write, a subprocess that has ended, a C library): a
 *   pipe that holds something is read in now; one that looks empty may
 *   have been read by the pump, whose append is not done until it gives
 *   pipe_lock back, so that is waited for. That costs a poll(2), which
 *   would make a tight print loop 3 times slower, so a write within
 *   FD_CHECK_NS of the one before skips it: a loop's writes do, a print
 *   after a subprocess or an os.write between ordinary code does not. */
static void take_fd_output(ip_capture *c)
{
    if (!c->fds)
        return;
    unsigned long n = c->child_writes ? atomic_load(c->child_writes) : 0;
    int64_t now = cb_mono_ns(), before = atomic_exchange(&c->last_write_ns, now);
    if (n != atomic_load(&c->child_seen)) {
        atomic_store(&c->child_seen, n);
    } else if (now - before < FD_CHECK_NS) {
        return;
    } else {
        struct pollfd p[2] = {{c->pipe_rd[IP_STDOUT], POLLIN, 0}, {c->pipe_rd[IP_STDERR], POLLIN, 0}};
        if (poll(p, 2, 0) <= 0 || !(p[0].revents | p[1].revents)) {
            pthread_mutex_lock(&c->pipe_lock);
            pthread_mutex_unlock(&c->pipe_lock);
            return;
        }
    }
    drain_pipe(c, IP_STDOUT);
    drain_pipe(c, IP_STDERR);
}

void ip_capture_write(ip_capture *c, int stream, const char *data, size_t len)
{
    if (!len)
        return;
    if (len >= IP_CAPTURE_BIG) {
        ip_capture_write_begin(c, stream);
        ip_capture_write_part(c, data, len);
        ip_capture_write_end(c);
        return;
    }
    take_fd_output(c);
    append(c, stream, data, len);
}

void ip_capture_write_begin(ip_capture *c, int stream)
{
    take_fd_output(c);
    pthread_mutex_lock(&c->pub_lock);
    int pstream;
    cb_buf batch = take_pending(c, &pstream);
    if (batch.len)
        emit(c, pstream, batch.data, batch.len, false);  /* same stream: the message stays open */
    cb_buf_clear(&batch);
    c->big_stream = stream;
}

void ip_capture_write_part(ip_capture *c, const char *data, size_t len)
{
    emit(c, c->big_stream, data, len, false);
}

void ip_capture_write_end(ip_capture *c)
{
    msg_send(c);
    pthread_mutex_unlock(&c->pub_lock);
}

void ip_capture_kick(ip_capture *c)
{
    /* Rate-limited: many flush() calls in a row still make few messages. */
    pthread_mutex_lock(&c->buf_lock);
    bool wake = c->pending.len > 0 && !c->urgent;
    if (wake)
        c->urgent = true;
    pthread_mutex_unlock(&c->buf_lock);
    if (wake)
        wake_pump(c);
}

void ip_capture_set_interval(ip_capture *c, int ms)
{
    c->interval_ms = ms > 0 ? ms : 1;
}

/* Reads what a pipe holds right now into the buffer. Returns false at EOF. */
static bool drain_pipe(ip_capture *c, int stream)
{
    /* The lock makes "read, then append" atomic: when ip_capture_flush()
     * finds the pipe empty, nothing read by the pump is still in flight. */
    static __thread char buf[65536];
    bool open = true;
    pthread_mutex_lock(&c->pipe_lock);
    if (c->pipe_rd[stream] < 0) {
        pthread_mutex_unlock(&c->pipe_lock);
        return false;
    }
    for (;;) {
        ssize_t n = read(c->pipe_rd[stream], buf, sizeof buf);
        if (n > 0) {
            append(c, stream, buf, (size_t)n);
            if ((size_t)n < sizeof buf)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        open = n != 0;  /* EAGAIN: empty for now */
        break;
    }
    pthread_mutex_unlock(&c->pipe_lock);
    return open;
}

/* Output published now would not wait for the frontend. */
static bool host_room(ip_capture *c)
{
    return !c->host->output_room || c->host->output_room(c->host->ctx);
}

bool ip_capture_may_wait(ip_capture *c, size_t len)
{
    return len >= IP_CAPTURE_BIG || !host_room(c);
}

/* The calling thread's publications stop waiting for a slow frontend until
 * held_end; returns what held_end restores. */
static bool held_begin(ip_capture *c)
{
    return c->host->output_may_wait ? c->host->output_may_wait(c->host->ctx, false) : true;
}

static void held_end(ip_capture *c, bool had)
{
    if (c->host->output_may_wait)
        c->host->output_may_wait(c->host->ctx, had);
}

void ip_capture_write_held(ip_capture *c, int stream, const char *data, size_t len)
{
    bool had = held_begin(c);
    ip_capture_write(c, stream, data, len);
    held_end(c, had);
}

void ip_capture_crash_kick(ip_capture *c)
{
    c->urgent = true;  /* unlocked: the process is dying, the pump reads it soon */
    wake_pump(c);
}

bool ip_capture_flush_now_due(ip_capture *c)
{
    return cb_mono_ns() - atomic_load_explicit(&c->last_pub_ns, memory_order_relaxed) >= FLUSH_SYNC_GAP_NS;
}

/* What C's stdio, the fd pipes and the buffer hold, published. final: an
 * incomplete UTF-8 sequence at the end goes out too (as U+FFFD). */
static void flush_all(ip_capture *c, bool final)
{
    if (c->fds) {
        fflush(stdout);
        fflush(stderr);
        drain_pipe(c, IP_STDOUT);
        drain_pipe(c, IP_STDERR);
    }
    publish_pending(c, final);
}

void ip_capture_flush_now(ip_capture *c)
{
    flush_all(c, false);
}

void ip_capture_flush_held(ip_capture *c)
{
    bool had = held_begin(c);
    ip_capture_flush(c);
    held_end(c, had);
}

void ip_capture_flush_now_held(ip_capture *c)
{
    bool had = held_begin(c);
    ip_capture_flush_now(c);
    held_end(c, had);
}

static void *pump_thread(void *arg)
{
    ip_capture *c = arg;
    if (c->host->output_may_wait)
        c->host->output_may_wait(c->host->ctx, false);
    for (;;) {
        int timeout = -1;
        pthread_mutex_lock(&c->buf_lock);
        bool stop = c->stop;
        size_t pending = c->pending.len;
        int64_t since = c->pending_since;
        int delay_ms = c->urgent ? URGENT_MS : c->interval_ms;
        pthread_mutex_unlock(&c->buf_lock);
        if (stop)
            break;
        bool room = host_room(c);
        if (!room) {
            timeout = ROOM_RETRY_MS;  /* nothing published or read until there is room */
        } else if (pending >= BATCH) {
            publish_pending(c, false);
            continue;
        } else if (pending > 0) {
            int64_t due = since + (int64_t)delay_ms * 1000000;
            int64_t left = due - cb_mono_ns();
            if (left <= 0) {
                publish_pending(c, false);
                continue;
            }
            timeout = (int)(left / 1000000) + 1;
        }
        bool pipes = c->fds && room;
        struct pollfd p[3] = {{c->wake, POLLIN, 0}, {pipes ? c->pipe_rd[1] : -1, POLLIN, 0},
                              {pipes ? c->pipe_rd[2] : -1, POLLIN, 0}};  /* -1: ignored */
        int n = poll(p, 3, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        if (p[0].revents) {  /* woken: the loop recomputes what is due */
            uint64_t v;
            ssize_t CB_UNUSED r = read(c->wake, &v, sizeof v);
        }
        for (int s = 1; s <= 2; s++) {
            if (!(p[s].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (!drain_pipe(c, s)) {
                /* every writer closed it (user code closed fd 1/2): stop
                 * watching, or poll would report the hang-up forever */
                pthread_mutex_lock(&c->pipe_lock);
                close(c->pipe_rd[s]);
                c->pipe_rd[s] = -1;
                pthread_mutex_unlock(&c->pipe_lock);
            }
        }
    }
    return NULL;
}

void ip_capture_flush(ip_capture *c)
{
    flush_all(c, true);
}

static int redirect_fd(ip_capture *c, int fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    c->saved_fd[fd] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup2(p[1], fd) < 0)  /* dup2 clears CLOEXEC: children inherit fd 1/2 */
        return -1;
    close(p[1]);
    c->pipe_rd[fd] = p[0];
    return 0;
}

ip_capture *ip_capture_start(const kn_host *host, bool capture_fds)
{
    ip_capture *c = cb_calloc(1, sizeof *c);
    c->host = host;
    c->interval_ms = 50;
    pthread_mutex_init(&c->buf_lock, NULL);
    pthread_mutex_init(&c->pub_lock, NULL);
    pthread_mutex_init(&c->pipe_lock, NULL);
    c->pipe_rd[1] = c->pipe_rd[2] = c->saved_fd[1] = c->saved_fd[2] = -1;
    c->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (capture_fds) {
        fflush(stdout);
        fflush(stderr);
        if (redirect_fd(c, 1) < 0 || redirect_fd(c, 2) < 0)
            cb_warn("capture", "cannot capture fds 1 and 2: %s", strerror(errno));
        else
            c->fds = true;
        void *page = c->fds ? mmap(NULL, sizeof *c->child_writes, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
        if (page != MAP_FAILED)
            c->child_writes = page;
        if (c->saved_fd[2] >= 0)
            cb_log_set_fd(c->saved_fd[2]);  /* the kernel's own log keeps the real stderr */
    }
    pthread_create(&c->pump, NULL, pump_thread, c);
    return c;
}

void ip_capture_stop(ip_capture *c)
{
    if (!c)
        return;
    ip_capture_flush(c);
    pthread_mutex_lock(&c->buf_lock);
    c->stop = true;
    pthread_mutex_unlock(&c->buf_lock);
    wake_pump(c);
    pthread_join(c->pump, NULL);
    for (int fd = 1; fd <= 2; fd++) {
        if (c->saved_fd[fd] >= 0) {
            dup2(c->saved_fd[fd], fd);
            if (fd == 2)
                cb_log_set_fd(2);
            close(c->saved_fd[fd]);
        }
        if (c->pipe_rd[fd] >= 0)
            close(c->pipe_rd[fd]);
    }
    close(c->wake);
    if (c->child_writes)
        munmap((void *)c->child_writes, sizeof *c->child_writes);
    cb_buf_clear(&c->pending);
    cb_buf_clear(&c->enc);
    pthread_mutex_destroy(&c->buf_lock);
    pthread_mutex_destroy(&c->pub_lock);
    pthread_mutex_destroy(&c->pipe_lock);
    free(c);
}
