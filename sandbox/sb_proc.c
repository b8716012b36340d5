/* sandbox/sb_proc.c: background processes; see sb_proc.h.
 *
 * Start: the request goes to the agent like an exec with "detach": true (the
 * shim keeps the command running when the channel closes, and keeps stdin
 * open for later writes). The reply waits only for the "start" event. A
 * watcher thread then owns the channel's read side: it appends output to
 * the log files and records the exit. Writes to the channel (stdin, kill)
 * are made under box->mu so frames never interleave.
 */
#include "config.h"
#include "sandbox/sb_proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_api.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_util.h"

static const char *stream_names[2] = {"stdout", "stderr"};

sb_proc *sb_proc_find(sb_box *b, const char *id)
{
    for (sb_proc *p = b->procs; p; p = p->next)
        if (strcmp(p->id, id) == 0)
            return p;
    return NULL;
}

static cJSON *proc_json_locked(sb_proc *p)
{
    cJSON *j = cJSON_CreateObject();
    char date[CB_ISO_DATE_LEN];
    cJSON_AddStringToObject(j, "id", p->id);
    cJSON_AddNumberToObject(j, "pid", p->pid);
    cJSON_AddStringToObject(j, "command", p->command ? p->command : "");
    cJSON_AddStringToObject(j, "sessionId", p->session ? p->session : "default");
    cJSON_AddStringToObject(j, "status", p->status);
    cb_iso_date(date, p->start_us);
    cJSON_AddStringToObject(j, "startTime", date);
    if (p->end_us) {
        cb_iso_date(date, p->end_us);
        cJSON_AddStringToObject(j, "endTime", date);
    } else {
        cJSON_AddNullToObject(j, "endTime");
    }
    if (p->has_exit)
        cJSON_AddNumberToObject(j, "exitCode", p->exit_code);
    else
        cJSON_AddNullToObject(j, "exitCode");
    if (p->oom_killed)
        cJSON_AddBoolToObject(j, "oomKilled", true);
    return j;
}

static void save_meta_locked(sb_box *b, sb_proc *p)
{
    if (b->deleted)
        return;  /* its folder is being removed */
    cJSON *j = proc_json_locked(p);
    cJSON_AddNumberToObject(j, "startUs", (double)p->start_us);
    cJSON_AddNumberToObject(j, "endUs", (double)p->end_us);
    cb_autofree char *text = cb_json_print(j);
    cJSON_Delete(j);
    cb_autofree char *path = cb_printf_new("%s/meta.json", p->dir);
    if (sb_write_file_quick(path, text, strlen(text), 0600) < 0)
        cb_warn("process", "cannot save %s: %s", path, strerror(errno));
}

static sb_proc *proc_new(void)
{
    sb_proc *p = cb_calloc(1, sizeof *p);
    pthread_mutex_init(&p->out_mu, NULL);
    p->fd = -1;
    p->log_fd[0] = p->log_fd[1] = -1;
    return p;
}

static void proc_free(sb_proc *p)
{
    pthread_mutex_destroy(&p->out_mu);
    for (int s = 0; s < 2; s++)
        if (p->log_fd[s] >= 0)
            close(p->log_fd[s]);
    if (p->fd >= 0)
        close(p->fd);
    free(p->command);
    free(p->session);
    free(p->dir);
    free(p);
}

void sb_procs_free(sb_box *b)
{
    cJSON_Delete(b->proc_starting);
    b->proc_starting = NULL;
    while (b->procs) {
        sb_proc *p = b->procs;
        b->procs = p->next;
        proc_free(p);
    }
}

void sb_procs_load(sb_box *b)
{
    cb_autofree char *root = cb_printf_new("%s/processes", b->dir);
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!sb_name_valid(e->d_name))
            continue;
        cb_autofree char *dir = cb_printf_new("%s/%s", root, e->d_name);
        cb_autofree char *mpath = cb_printf_new("%s/meta.json", dir);
        cb_autofree char *text = cb_read_file(mpath, NULL);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (!j)
            continue;
        sb_proc *p = proc_new();
        snprintf(p->id, sizeof p->id, "%.64s", e->d_name);
        p->command = cb_strdup(cb_json_str(j, "command", ""));
        p->session = cb_strdup(cb_json_str(j, "sessionId", "default"));
        p->dir = cb_steal(&dir);
        p->pid = (int)cb_json_int(j, "pid", 0);
        snprintf(p->status, sizeof p->status, "%s", cb_json_str(j, "status", "killed"));
        p->has_exit = cJSON_IsNumber(cJSON_GetObjectItem(j, "exitCode"));
        p->exit_code = (int)cb_json_int(j, "exitCode", 0);
        p->oom_killed = cb_json_bool(j, "oomKilled", false);
        p->start_us = (int64_t)cb_json_num(j, "startUs", 0);
        p->end_us = (int64_t)cb_json_num(j, "endUs", 0);
        p->fd = -1;
        p->log_fd[0] = p->log_fd[1] = -1;
        if (strcmp(p->status, "running") == 0) {
            /* the server stopped while it ran: its sandbox went with it */
            snprintf(p->status, sizeof p->status, "killed");
            p->end_us = p->end_us ? p->end_us : cb_real_us();
            save_meta_locked(b, p);
        }
        cJSON_Delete(j);
        p->next = b->procs;
        b->procs = p;
    }
    closedir(d);
}

void sb_procs_on_stop(sb_box *b)
{
    for (sb_proc *p = b->procs; p; p = p->next)
        if (strcmp(p->status, "running") == 0) {
            snprintf(p->status, sizeof p->status, "killed");
            p->end_us = cb_real_us();
            save_meta_locked(b, p);
        }
}

/* ---- the watcher ----------------------------------------------------------- */

typedef struct watch_arg {
    sb_box *b;
    sb_proc *p;
} watch_arg;

static void log_append_locked(sb_proc *p, int s, const char *data, size_t len)
{
    if (p->log_fd[s] < 0)
        return;
    if (p->log_size[s] + len > SB_LOG_CAP) {
        cb_autofree char *cur = cb_printf_new("%s/%s.log", p->dir, stream_names[s]);
        cb_autofree char *old = cb_printf_new("%s/%s.log.1", p->dir, stream_names[s]);
        close(p->log_fd[s]);
        rename(cur, old);
        p->log_fd[s] = open(cur, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
        p->log_size[s] = 0;
        p->log_gen[s]++;
        if (p->log_fd[s] < 0)
            return;
    }
    if (cb_write_all(p->log_fd[s], data, len) == 0) {
        p->log_size[s] += len;
        p->written[s] += len;
    }
}

static void *watcher(void *arg)
{
    watch_arg *w = arg;
    sb_box *b = w->b;
    sb_proc *p = w->p;
    free(w);
    pthread_mutex_lock(&b->mu);
    int fd = p->fd;
    pthread_mutex_unlock(&b->mu);
    cb_buf payload = CB_BUF_INIT;
    bool exited = false;
    for (;;) {
        char type;
        if (sb_frame_read(fd, &type, &payload) != 0)
            break;
        pthread_mutex_lock(&b->mu);
        if (type == SB_FRAME_STDOUT || type == SB_FRAME_STDERR) {
            log_append_locked(p, type == SB_FRAME_STDOUT ? 0 : 1, payload.data, payload.len);
        } else if (type == SB_FRAME_JSON) {
            cJSON *ev = cb_json_parse(payload.data, payload.len);
            if (strcmp(cb_json_str(ev, "ev", ""), "stdin") == 0) {
                uint64_t n = (uint64_t)cb_json_int(ev, "bytes", 0);
                p->stdin_queued -= n < p->stdin_queued ? n : p->stdin_queued;
            } else if (strcmp(cb_json_str(ev, "ev", ""), "exit") == 0) {
                p->has_exit = true;
                p->exit_code = (int)cb_json_int(ev, "exitCode", -1);
                p->oom_killed = !p->kill_requested &&
                                sb_oom_killed(b, true, p->oom0, p->exit_code, cb_json_str(ev, "signal", NULL));
                const char *st = p->kill_requested || cb_json_str(ev, "signal", NULL) ||
                                         cb_json_bool(ev, "timedOut", false)
                                     ? "killed"
                                 : p->exit_code == 0 ? "completed"
                                                     : "failed";
                snprintf(p->status, sizeof p->status, "%s", st);
                p->end_us = cb_real_us();
                exited = true;
            }
            cJSON_Delete(ev);
        }
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        if (exited)
            break;
    }
    cb_buf_clear(&payload);
    pthread_mutex_lock(&b->mu);
    if (!exited && strcmp(p->status, "running") == 0) {
        snprintf(p->status, sizeof p->status, "killed");
        p->end_us = cb_real_us();
    }
    close(p->fd);
    p->fd = -1;
    for (int s = 0; s < 2; s++)
        if (p->log_fd[s] >= 0) {
            close(p->log_fd[s]);
            p->log_fd[s] = -1;
        }
    save_meta_locked(b, p);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    sb_box_unref(b);
    return NULL;
}

/* ---- API ------------------------------------------------------------------- */

/* The reservation of a process id that did not start (sb_proc_start). */
static void unreserve(sb_box *b, const char *id)
{
    pthread_mutex_lock(&b->mu);
    cJSON_DeleteItemFromObjectCaseSensitive(b->proc_starting, id);
    pthread_mutex_unlock(&b->mu);
}

int sb_proc_start(sb_box *b, const cJSON *body, cJSON **out, sb_error *err)
{
    const char *id = cb_json_str(body, "processId", NULL);
    char gen[32];
    if (!id) {
        cb_autofree char *hex = cb_random_hex(6);
        snprintf(gen, sizeof gen, "proc-%s", hex);
        id = gen;
    }
    if (!sb_name_valid(id))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "processId must match [A-Za-z0-9._-]{1,64}"), -1;
    /* the id is reserved while the process starts: two starts of one id at
     * once would both run, and one record would hide the other's process */
    pthread_mutex_lock(&b->mu);
    sb_proc *old = sb_proc_find(b, id);
    bool busy = (old && (strcmp(old->status, "running") == 0 || old->fd >= 0)) ||
                cJSON_GetObjectItemCaseSensitive(b->proc_starting, id);
    if (!busy) {
        if (!b->proc_starting)
            b->proc_starting = cJSON_CreateObject();
        cJSON_AddTrueToObject(b->proc_starting, id);
    }
    pthread_mutex_unlock(&b->mu);
    if (busy)
        return sb_fail(err, SB_E_PROCESS_ALREADY_EXISTS, "process '%s' is still running", id), -1;

    cJSON *req = NULL;
    char *session = NULL, *in = NULL;
    size_t in_len = 0;
    if (sb_exec_prepare(b, body, true, &req, &session, &in, &in_len, err) < 0) {
        unreserve(b, id);
        return -1;
    }
    if (sb_box_acquire(b, err) < 0) {
        cJSON_Delete(req);
        free(session);
        free(in);
        unreserve(b, id);
        return -1;
    }
    int pid = -1;
    long long oom0 = sb_box_oom_kills(b);  /* before it starts: it may be killed at once */
    int fd = sb_exec_start(b, req, in, in_len, false, &pid, err);
    cJSON_Delete(req);
    free(in);
    if (fd < 0)
        pid = -1;
    sb_box_release(b);
    if (pid < 0) {
        if (fd >= 0)
            close(fd);
        free(session);
        unreserve(b, id);
        return -1;
    }
    sb_proc *p = proc_new();
    snprintf(p->id, sizeof p->id, "%s", id);
    p->command = cb_strdup(cb_json_str(body, "command", ""));
    p->session = session;
    p->dir = cb_printf_new("%s/processes/%s", b->dir, id);
    p->pid = pid;
    p->fd = fd;
    p->start_us = cb_real_us();
    p->oom0 = oom0;
    p->stdin_queued = in_len;  /* the start's own stdin, acknowledged like any */
    snprintf(p->status, sizeof p->status, "running");
    sb_rm_rf(p->dir);
    cb_mkdir_p(p->dir, 0700);
    for (int s = 0; s < 2; s++) {
        cb_autofree char *path = cb_printf_new("%s/%s.log", p->dir, stream_names[s]);
        p->log_fd[s] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    }
    pthread_mutex_lock(&b->mu);
    /* unlink a finished record with the same id */
    for (sb_proc **pp = &b->procs; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->id, id) == 0) {
            /* followers may still point at it: hide it, free it with the box */
            (*pp)->id[0] = '\0';
            break;
        }
    p->next = b->procs;
    b->procs = p;
    cJSON_DeleteItemFromObjectCaseSensitive(b->proc_starting, id);
    save_meta_locked(b, p);
    sb_box_ref(b);  /* the watcher's */
    *out = proc_json_locked(p);
    pthread_mutex_unlock(&b->mu);
    watch_arg *w = cb_malloc(sizeof *w);
    w->b = b;
    w->p = p;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    if (pthread_create(&t, &attr, watcher, w) != 0) {
        free(w);
        sb_box_unref(b);
    }
    pthread_attr_destroy(&attr);
    return 0;
}

cJSON *sb_procs_list_json(sb_box *b)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&b->mu);
    for (sb_proc *p = b->procs; p; p = p->next)
        if (p->id[0])
            cJSON_AddItemToArray(arr, proc_json_locked(p));
    pthread_mutex_unlock(&b->mu);
    return arr;
}

cJSON *sb_proc_record_json(sb_box *b, sb_proc *p)
{
    pthread_mutex_lock(&b->mu);
    cJSON *j = proc_json_locked(p);
    pthread_mutex_unlock(&b->mu);
    return j;
}

cJSON *sb_proc_json(sb_box *b, const char *id)
{
    pthread_mutex_lock(&b->mu);
    sb_proc *p = sb_proc_find(b, id);
    cJSON *j = p ? proc_json_locked(p) : NULL;
    pthread_mutex_unlock(&b->mu);
    return j;
}

/* Frames to a process's channel (stdin, signals) are written without
 * b->mu: the agent may be frozen (pause), a full socket then blocks the
 * writer until the sandbox is resumed, and a resume needs b->mu. Under
 * b->mu the caller takes a copy of the channel (proc_channel_locked); the
 * frames go out holding p->out_mu only, so writers never interleave, and
 * the watcher may close p->fd meanwhile (the copy then fails with EPIPE).
 * p itself lives as long as its sandbox. */
static int proc_channel_locked(sb_proc *p)
{
    return p->fd >= 0 && strcmp(p->status, "running") == 0 ? fcntl(p->fd, F_DUPFD_CLOEXEC, 3) : -1;
}

/* The kill frame on a copy of the channel (consumed). */
static void send_kill(sb_proc *p, int fd, int sig, int grace_ms)
{
    char msg[32];
    snprintf(msg, sizeof msg, "%d %d", sig, sig == SIGTERM || sig == SIGINT || sig == SIGHUP ? grace_ms : 0);
    pthread_mutex_lock(&p->out_mu);
    sb_frame_write_str(fd, SB_FRAME_KILL, msg);
    pthread_mutex_unlock(&p->out_mu);
    close(fd);
}

/* b->mu held: the channel copy to send p's kill on, or -1 (not running). */
static int kill_begin_locked(sb_proc *p, int sig)
{
    int fd = proc_channel_locked(p);
    if (fd >= 0 && (sig == SIGTERM || sig == SIGKILL || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT))
        p->kill_requested = true;
    return fd;
}

int sb_proc_kill(sb_box *b, const char *id, int sig, int grace_ms, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    sb_proc *p = sb_proc_find(b, id);
    int fd = p ? kill_begin_locked(p, sig) : -1;
    pthread_mutex_unlock(&b->mu);
    if (!p)
        return sb_fail(err, SB_E_PROCESS_NOT_FOUND, "process '%s' not found", id), -1;
    if (fd >= 0)
        send_kill(p, fd, sig, grace_ms);
    return 0;
}

int sb_procs_kill_all(sb_box *b, int sig, int grace_ms)
{
    int n = 0, cap = 0;
    struct { sb_proc *p; int fd; } *to = NULL;
    pthread_mutex_lock(&b->mu);
    for (sb_proc *p = b->procs; p; p = p->next) {
        int fd = kill_begin_locked(p, sig);
        if (fd < 0)
            continue;
        if (n == cap)
            to = cb_realloc(to, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *to);
        to[n].p = p;
        to[n++].fd = fd;
    }
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < n; i++)
        send_kill(to[i].p, to[i].fd, sig, grace_ms);
    free(to);
    return n;
}

void sb_log_reader_init(sb_log_reader *r)
{
    memset(r, 0, sizeof *r);
    r->fd[0] = r->fd[1] = -1;
}

void sb_log_reader_clear(sb_log_reader *r)
{
    for (int s = 0; s < 2; s++)
        if (r->fd[s] >= 0)
            close(r->fd[s]);
    sb_log_reader_init(r);
}

static size_t read_rest(int fd, cb_buf *out, size_t max)
{
    size_t got = 0;
    char buf[65536];
    while (got < max) {
        ssize_t n = read(fd, buf, sizeof buf < max - got ? sizeof buf : max - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        cb_buf_append(out, buf, (size_t)n);
        got += (size_t)n;
    }
    return got;
}

size_t sb_log_reader_read(sb_box *b, sb_proc *p, sb_log_reader *r, int s, cb_buf *out)
{
    /* The files are opened under b->mu, as the writer rotates them
     * (log_append_locked): an open between its rename and its new file
     * found no file, and the reader, left without one, never read again (a
     * log wait missed its line for good). Reading needs no lock. */
    int fd1 = -1;
    pthread_mutex_lock(&b->mu);
    unsigned gen = p->log_gen[s];
    cb_autofree char *cur = cb_printf_new("%s/%s.log", p->dir, stream_names[s]);
    cb_autofree char *old = cb_printf_new("%s/%s.log.1", p->dir, stream_names[s]);
    if (!r->started[s]) {
        r->started[s] = true;
        if (gen > 0)
            fd1 = open(old, O_RDONLY | O_CLOEXEC);
        r->fd[s] = open(cur, O_RDONLY | O_CLOEXEC);
        r->gen[s] = gen;
    } else if (r->fd[s] < 0) {
        r->fd[s] = open(cur, O_RDONLY | O_CLOEXEC);
        r->gen[s] = gen;
    }
    pthread_mutex_unlock(&b->mu);
    size_t got = 0;
    if (fd1 >= 0) {
        got += read_rest(fd1, out, 2 * SB_LOG_CAP);
        close(fd1);
    }
    if (r->fd[s] < 0)
        return got;
    size_t n = read_rest(r->fd[s], out, 4u << 20);
    got += n;
    if (n == 0 && r->gen[s] != gen) {
        /* the file it read was rotated away and is read to its end: the
         * current one (what came between two rotations is skipped) */
        close(r->fd[s]);
        pthread_mutex_lock(&b->mu);
        r->fd[s] = open(cur, O_RDONLY | O_CLOEXEC);
        r->gen[s] = p->log_gen[s];
        pthread_mutex_unlock(&b->mu);
        if (r->fd[s] >= 0)
            got += read_rest(r->fd[s], out, 4u << 20);
    }
    return got;
}

int sb_proc_logs(sb_box *b, const char *id, cJSON **out, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    sb_proc *p = sb_proc_find(b, id);
    bool trunc[2] = {false, false};
    if (p)
        for (int s = 0; s < 2; s++)
            trunc[s] = p->log_gen[s] > 1;
    pthread_mutex_unlock(&b->mu);
    if (!p)
        return sb_fail(err, SB_E_PROCESS_NOT_FOUND, "process '%s' not found", id), -1;
    sb_log_reader rd;
    sb_log_reader_init(&rd);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", id);
    for (int s = 0; s < 2; s++) {
        cb_buf raw = CB_BUF_INIT, text = CB_BUF_INIT;
        sb_log_reader_read(b, p, &rd, s, &raw);
        sb_utf8_append(&text, raw.data ? raw.data : "", raw.len, true);
        cJSON_AddStringToObject(j, stream_names[s], text.data ? text.data : "");
        cb_buf_clear(&raw);
        cb_buf_clear(&text);
    }
    cJSON_AddBoolToObject(j, "stdoutTruncated", trunc[0]);
    cJSON_AddBoolToObject(j, "stderrTruncated", trunc[1]);
    sb_log_reader_clear(&rd);
    *out = j;
    return 0;
}

int sb_proc_stdin(sb_box *b, const char *id, const void *data, size_t len, bool eof, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    sb_proc *p = sb_proc_find(b, id);
    int rc = 0;
    if (!p)
        rc = sb_fail(err, SB_E_PROCESS_NOT_FOUND, "process '%s' not found", id);
    else if (p->fd < 0 || strcmp(p->status, "running") != 0)
        rc = sb_fail(err, SB_E_VALIDATION_FAILED, "process '%s' is not running", id);
    else if (len > SB_PROC_STDIN_MAX - (p->stdin_queued < SB_PROC_STDIN_MAX ? p->stdin_queued
                                                                              : SB_PROC_STDIN_MAX))
        /* nothing of it is sent: a client can retry the same write later */
        rc = sb_fail(err, SB_E_STDIN_FULL,
                     "process '%s' has not read %llu bytes of its stdin yet; %zu more would pass "
                     "the %u bytes kept for it: nothing was written, retry once it reads", id,
                     (unsigned long long)p->stdin_queued, len, SB_PROC_STDIN_MAX);
    int fd = -1;
    if (rc == 0 && (fd = proc_channel_locked(p)) < 0)
        rc = sb_fail(err, SB_E_VALIDATION_FAILED, "process '%s' is not running", id);
    if (rc == 0)
        p->stdin_queued += len;
    pthread_mutex_unlock(&b->mu);
    if (rc)
        return -1;
    /* without b->mu: see proc_channel_locked */
    const char *d = data;
    pthread_mutex_lock(&p->out_mu);
    for (size_t off = 0; off < len && rc == 0; off += SB_CHUNK) {
        size_t n = len - off < SB_CHUNK ? len - off : SB_CHUNK;
        if (sb_frame_write(fd, SB_FRAME_STDIN, d + off, n) < 0)
            rc = sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "process channel closed");
    }
    if (rc == 0 && eof && sb_frame_write(fd, SB_FRAME_STDIN_CLOSE, NULL, 0) < 0)
        rc = sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "process channel closed");
    pthread_mutex_unlock(&p->out_mu);
    close(fd);
    return rc ? -1 : 0;
}

/* ---- waiting ------------------------------------------------------------------ */

/* Try once to reach a port in the sandbox: 1 ready, 0 not yet. */
#define WAIT_PATH_MAX 2048          /* bytes of an HTTP wait's path */

static int probe_port(sb_box *b, int port, bool http, const char *path, int lo, int hi)
{
    sb_error err;
    int fd = sb_box_socket_in_netns(b, AF_INET, SOCK_STREAM, &err);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (ok && http) {
        /* built to its full length: a fixed buffer with snprintf's return
         * value as the length sent the server's stack after a long path */
        char resp[64];
        cb_autofree char *req = cb_printf_new("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
        ok = 0;
        if (cb_write_all(fd, req, strlen(req)) == 0) {
            ssize_t got = recv(fd, resp, sizeof resp - 1, MSG_WAITALL);
            if (got >= 12) {
                resp[got] = '\0';
                int status = atoi(resp + 9);
                ok = strncmp(resp, "HTTP/", 5) == 0 && status >= lo && status <= hi;
            }
        }
    }
    close(fd);
    return ok;
}

#define WAIT_LINE_MAX (1u << 20)   /* bytes of one unfinished line a log wait holds */
#define WAIT_LINE_KEEP 4096         /* of which this much is kept when it is cut */

static bool line_matches(const char *line, const char *substr, regex_t *re)
{
    if (re)
        return regexec(re, line, 0, NULL, 0) == 0;
    return strstr(line, substr) != NULL;
}

int sb_proc_wait(sb_box *b, const char *id, const cJSON *body, bool (*gone)(void *), void *gone_ctx,
                 cJSON **out, sb_error *err)
{
    const char *substr = cb_json_str(body, "log", NULL);
    const char *pattern = cb_json_str(body, "regex", NULL);
    int port = (int)cb_json_int(body, "port", 0);
    bool want_exit = cb_json_bool(body, "exit", false);
    long long timeout_ms = cb_json_int(body, "timeoutMs", 30000);
    const char *mode = cb_json_str(body, "mode", "tcp");
    const char *path = cb_json_str(body, "path", "/");
    int lo = (int)cb_json_int(body, "statusMin", 200), hi = (int)cb_json_int(body, "statusMax", 399);
    if (!substr && !pattern && !port && !want_exit)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "give one of log, regex, port or exit"), -1;
    if (port && (port < 1 || port > 65535))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "port must be 1..65535"), -1;
    if (strcmp(mode, "tcp") != 0 && strcmp(mode, "http") != 0)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "mode must be tcp or http"), -1;
    if (timeout_ms < 0 || timeout_ms > 3600000)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "timeoutMs must be 0..3600000"), -1;
    /* it becomes the probe's request line: one token, as a URL path */
    if (path[0] != '/' || strlen(path) > WAIT_PATH_MAX || strpbrk(path, " \t") || sb_has_ctl(path))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "path must start with '/' and hold at most %d "
                       "bytes, no spaces or control characters", WAIT_PATH_MAX), -1;
    regex_t re;
    bool have_re = false;
    if (pattern) {
        if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "regex does not compile"), -1;
        have_re = true;
    }
    pthread_mutex_lock(&b->mu);
    sb_proc *p = sb_proc_find(b, id);
    pthread_mutex_unlock(&b->mu);
    if (!p) {
        if (have_re)
            regfree(&re);
        return sb_fail(err, SB_E_PROCESS_NOT_FOUND, "process '%s' not found", id), -1;
    }
    if (port && sb_box_acquire(b, err) < 0) {
        if (have_re)
            regfree(&re);
        return -1;
    }
    int64_t deadline = sb_now_ms() + timeout_ms;
    sb_log_reader rd;
    sb_log_reader_init(&rd);
    cb_buf line[2] = {CB_BUF_INIT, CB_BUF_INIT};
    int rc = -1;
    char *matched = NULL;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        bool finished = strcmp(p->status, "running") != 0;
        pthread_mutex_unlock(&b->mu);
        if (substr || pattern) {
            for (int s = 0; s < 2 && !matched; s++) {
                sb_log_reader_read(b, p, &rd, s, &line[s]);
                /* check complete lines; keep the partial last one */
                char *start = line[s].data;
                char *nl;
                while (start && (nl = memchr(start, '\n', line[s].len - (size_t)(start - line[s].data)))) {
                    *nl = '\0';
                    if (line_matches(start, substr, have_re ? &re : NULL)) {
                        matched = cb_strdup(start);
                        break;
                    }
                    start = nl + 1;
                }
                if (!matched && start) {
                    size_t used = (size_t)(start - line[s].data);
                    cb_buf_consume(&line[s], used);
                    if (finished && line[s].len && line_matches(line[s].data, substr, have_re ? &re : NULL))
                        matched = cb_strdup(line[s].data);
                }
                /* A line that never ends (a process printing without a
                 * newline) must not grow the server's memory with it: past
                 * WAIT_LINE_MAX its head is matched as it is, then only its
                 * last bytes are kept, for a text that straddles the cut. */
                if (!matched && line[s].len > WAIT_LINE_MAX) {
                    if (line_matches(line[s].data, substr, have_re ? &re : NULL))
                        matched = cb_strdup(line[s].data);
                    else
                        cb_buf_consume(&line[s], line[s].len - WAIT_LINE_KEEP);
                }
            }
            if (matched) {
                rc = 0;
                break;
            }
        } else if (port) {
            if (probe_port(b, port, strcmp(mode, "http") == 0, path, lo, hi)) {
                rc = 0;
                break;
            }
        } else if (want_exit && finished) {
            rc = 0;
            break;
        }
        if (finished && !want_exit) {
            sb_fail(err, SB_E_PROCESS_EXITED_BEFORE_READY, "process '%s' ended (%s) before it was ready",
                    id, p->status);
            break;
        }
        if (sb_now_ms() >= deadline) {
            sb_fail(err, SB_E_PROCESS_READY_TIMEOUT, "process '%s' was not ready within %lld ms", id,
                    timeout_ms);
            break;
        }
        if (gone && gone(gone_ctx)) {
            /* nobody reads the answer: the thread, its fds and the hold on
             * the sandbox (a port wait keeps it awake) go now */
            sb_fail(err, SB_E_PROCESS_READY_TIMEOUT, "the client left before process '%s' was ready", id);
            break;
        }
        pthread_mutex_lock(&b->mu);
        sb_cond_wait_ms(&b->cv, &b->mu, 100);
        pthread_mutex_unlock(&b->mu);
    }
    if (port)
        sb_box_release(b);
    sb_log_reader_clear(&rd);
    cb_buf_clear(&line[0]);
    cb_buf_clear(&line[1]);
    if (have_re)
        regfree(&re);
    if (rc == 0) {
        cJSON *j = sb_proc_json(b, id);
        if (!j)
            j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ready", true);
        if (matched)
            cJSON_AddStringToObject(j, "line", matched);
        *out = j;
    }
    free(matched);
    return rc;
}
