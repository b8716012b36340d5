/* sandbox/sb_api.c: route table and handlers for sandboxes, exec, sessions
 * and processes. Files are in sb_files.c.
 *
 * Handler shape: a route on one sandbox has a box handler, which on_box()
 * calls with the sandbox (it replies SANDBOX_NOT_FOUND when there is none
 * and drops the reference after). The handler validates the body, does the
 * work through sb_box / sb_proc and replies once, or returns -1 with a typed
 * error that on_box() sends as sb_reply_error(r, &err). Exec talks to the
 * agent over an operation channel (sb_proto.h) and either collects the
 * output (JSON reply) or relays it as server-sent events; both end only with
 * a real exit or a real error.
 */
#include "config.h"
#include "sandbox/sb_api.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_backup.h"
#include "sandbox/sb_mount.h"
#include "sandbox/sb_ctx.h"
#include "sandbox/sb_git.h"
#include "sandbox/sb_port.h"
#include "sandbox/sb_proc.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_pty.h"
#include "sandbox/sb_util.h"
#include "sandbox/sb_watch.h"

#define EXEC_OUTPUT_CAP (16u << 20)   /* per stream, for JSON replies */
#define EXEC_MESSAGE_CAP 400          /* bytes of stderr in sb_exec_message */
sb_box *sb_api_box(sb_req *r)
{
    sb_box *b = r->nparams > 0 ? sb_box_get(r->params[0]) : NULL;
    if (!b)
        sb_reply_err(r, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found",
                     r->nparams > 0 ? r->params[0] : "");
    return b;
}

/* A route's box handler: replies and returns 0, or returns -1 with *err. A
 * handler that keeps the sandbox past its return (a stream) takes its own
 * reference (sb_box_ref). */
typedef struct box_handler {
    int (*fn)(sb_req *r, sb_box *b, sb_error *err);
} box_handler;
#define BOX(fn) &(const box_handler){fn}   /* for the route table */

/* The route handler of every box handler: the one place that finds the
 * sandbox, turns a returned error into the reply and drops the reference. */
static int on_box(sb_req *r)
{
    const box_handler *h = r->route->arg;
    sb_box *b = sb_api_box(r);
    if (!b)
        return 0;
    sb_error err = {0};
    int rc = h->fn(r, b, &err);
    sb_box_unref(b);
    return rc < 0 ? sb_reply_error(r, &err) : 0;
}

static cJSON *body_or_empty(sb_req *r)
{
    if (!r->json)
        r->json = cJSON_CreateObject();
    return r->json;
}

/* {"<key>": [...]} with 200. */
static int reply_list(sb_req *r, const char *key, cJSON *arr)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, key, arr);
    return sb_reply_json(r, 200, j);
}

/* ---- health and sandboxes -------------------------------------------------- */

static int h_health(sb_req *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "status", "ok");
    cJSON_AddStringToObject(j, "version", PACKAGE_VERSION);
    cJSON_AddNumberToObject(j, "sandboxes", sb_boxes_count());
    return sb_reply_json(r, 200, j);
}

static int h_box_put(sb_req *r)
{
    sb_error err = {0};
    bool created;
    sb_box *b = sb_box_create(r->params[0], r->json, &created, &err);
    if (!b)
        return sb_reply_error(r, &err);
    /* Start it now, so a create answers only once the sandbox works. */
    if (sb_box_start_now(b, &err) < 0) {
        sb_box_unref(b);
        return sb_reply_error(r, &err);
    }
    cJSON *j = sb_box_json(b);
    cJSON_AddBoolToObject(j, "created", created);
    sb_box_unref(b);
    return sb_reply_json(r, created ? 201 : 200, j);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One form-encoded piece ("a+b%3D" -> "a b="), in place. */
static void form_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        int hi, lo;
        if (*s == '+') {
            *o++ = ' ';
        } else if (*s == '%' && (hi = hexval(s[1])) >= 0 && (lo = hexval(s[2])) >= 0) {
            *o++ = (char)(hi << 4 | lo);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* The list's filters (E2B's): ?metadata=<k=v&k2=v2, URL-encoded> keeps
 * sandboxes whose metadata has every pair; ?state=running,paused,stopped
 * keeps those in one of the states. An owned object {metadata: {..},
 * states: [..]}, or NULL + err. */
static cJSON *list_filter(sb_req *r, sb_error *err)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(f, "metadata");
    const char *q = sb_req_query(r, "metadata");
    if (q) {
        cb_autofree char *copy = cb_strdup(q);
        char *save = NULL;
        for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq) {
                cJSON_Delete(f);
                return sb_fail(err, SB_E_VALIDATION_FAILED, "metadata filter: '%s' is not key=value "
                               "(the filter is an URL-encoded query string such as userId%%3D123)", kv), NULL;
            }
            *eq = '\0';
            form_decode(kv);
            form_decode(eq + 1);
            cJSON_DeleteItemFromObjectCaseSensitive(md, kv);
            cJSON_AddStringToObject(md, kv, eq + 1);
        }
    }
    const char *st = sb_req_query(r, "state");
    if (st) {
        cJSON *states = cJSON_AddArrayToObject(f, "states");
        cb_autofree char *copy = cb_strdup(st);
        char *save = NULL;
        for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            if (strcmp(s, "running") != 0 && strcmp(s, "paused") != 0 && strcmp(s, "stopped") != 0) {
                cJSON_Delete(f);
                return sb_fail(err, SB_E_VALIDATION_FAILED, "state filter: '%s' is not running, paused or "
                               "stopped", s), NULL;
            }
            cJSON_AddItemToArray(states, cJSON_CreateString(s));
        }
    }
    return f;
}

static bool list_match(const cJSON *box, const cJSON *f)
{
    const cJSON *states = cJSON_GetObjectItemCaseSensitive(f, "states"), *kv;
    if (states) {
        bool any = false;
        cJSON_ArrayForEach(kv, states)
            any = any || strcmp(kv->valuestring, cb_json_str(box, "status", "")) == 0;
        if (!any)
            return false;
    }
    const cJSON *md = cb_json_obj(cb_json_obj(box, "options"), "metadata");
    cJSON_ArrayForEach(kv, cJSON_GetObjectItemCaseSensitive(f, "metadata")) {
        const char *have = cb_json_str(md, kv->string, NULL);
        if (!have || strcmp(have, kv->valuestring) != 0)
            return false;
    }
    return true;
}

static int h_box_list(sb_req *r)
{
    sb_error err = {0};
    cJSON *f = list_filter(r, &err);
    if (!f)
        return sb_reply_error(r, &err);
    cJSON *all = sb_boxes_list_json(), *keep = cJSON_CreateArray();
    while (cJSON_GetArraySize(all) > 0) {
        cJSON *box = cJSON_DetachItemFromArray(all, 0);
        if (list_match(box, f))
            cJSON_AddItemToArray(keep, box);
        else
            cJSON_Delete(box);
    }
    cJSON_Delete(all);
    cJSON_Delete(f);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "sandboxes", keep);
    return sb_reply_json(r, 200, j);
}

static int h_box_get(sb_req *r, sb_box *b, sb_error *err)
{
    return sb_reply_json(r, 200, sb_box_json(b));
}

static int h_box_metrics(sb_req *r, sb_box *b, sb_error *err)
{
    (void)err;
    return sb_reply_json(r, 200, sb_box_metrics(b));
}

static int h_box_patch(sb_req *r, sb_box *b, sb_error *err)
{
    if (sb_box_update(b, body_or_empty(r), err) < 0)
        return -1;
    return sb_reply_json(r, 200, sb_box_json(b));
}

static int h_box_delete(sb_req *r, sb_box *b, sb_error *err)
{
    if (sb_box_delete(b, err) < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "id", r->params[0]);
    sb_json_add_now(j, "timestamp");
    return sb_reply_json(r, 200, j);
}

/* Pause and resume (E2B's): the record as the call left it (a resume that
 * waited behind a pause may already have thawed it again). */
static int h_box_pause(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *rec;
    return sb_box_pause(b, &rec, err) < 0 ? -1 : sb_reply_json(r, 200, rec);
}

static int h_box_resume(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *rec;
    return sb_box_resume(b, &rec, err) < 0 ? -1 : sb_reply_json(r, 200, rec);
}

/* ---- exec ---------------------------------------------------------------- */

typedef struct exec_ctx {
    sb_box *b;              /* referenced and acquired */
    int fd;                 /* operation channel */
    sb_req *r;              /* for JSON mode only (not valid in streams) */
    int client_fd;
    char *session;
    char *command;
    int pid;
    cb_buf out, err;
    bool out_trunc, err_trunc;
    cb_buf carry[2];        /* incomplete UTF-8 tails, SSE mode */
    int64_t t0_ns;
    long long oom0;         /* the sandbox's OOM kill count as the command started */
    bool sent_start;
} exec_ctx;

static void exec_free(void *p)
{
    exec_ctx *x = p;
    if (x->fd >= 0)
        close(x->fd);  /* the shim sees EOF and kills an unfinished command */
    sb_box_release(x->b);
    sb_box_unref(x->b);
    free(x->session);
    free(x->command);
    cb_buf_clear(&x->out);
    cb_buf_clear(&x->err);
    cb_buf_clear(&x->carry[0]);
    cb_buf_clear(&x->carry[1]);
    free(x);
}

/* Wait for the next frame on channel fd, watching client_fd (-1: none).
 * 1 = frame, 0 = timeout, -1 = client gone, -2 = channel closed or broken. */
static int exec_next(int fd, int client_fd, int timeout_ms, char *type, cb_buf *payload)
{
    struct pollfd p[2] = {{fd, POLLIN, 0}, {client_fd, POLLRDHUP, 0}};
    int n = client_fd >= 0 ? 2 : 1;
    for (;;) {
        int rc = poll(p, (nfds_t)n, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            return 0;
        if (n == 2 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
            return -1;
        if (p[0].revents)
            return sb_frame_read(fd, type, payload) == 0 ? 1 : -2;
        return 0;
    }
}

/* Build the agent request from the API body. */
int sb_exec_prepare(sb_box *b, const cJSON *body, bool detach, cJSON **req_out, char **session_out,
                        char **stdin_out, size_t *stdin_len, sb_error *err)
{
    const char *command = cb_json_str(body, "command", NULL);
    if (!command || !*command)
        return sb_fail(err, SB_E_INVALID_COMMAND, "command must be a non-empty string"), -1;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "timeoutMs");
    if (!t || cJSON_IsNull(t))
        t = cJSON_GetObjectItemCaseSensitive(body, "timeout");
    if (cJSON_IsNull(t))
        t = NULL;
    /* bounded: the agent turns it into a deadline in nanoseconds, and a
     * value near the int64 range wrapped around into the past (a command
     * given timeoutMs 1e300 was killed at once as "timedOut") */
    if (t && (!cJSON_IsNumber(t) || !(t->valuedouble >= 0 && t->valuedouble <= SB_TIMEOUT_MAX_MS)))
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "timeoutMs must be a number of milliseconds, 0..%lld (a year)",
                       (long long)SB_TIMEOUT_MAX_MS), -1;
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(body, "env");
    if (cJSON_IsNull(env))
        env = NULL;
    if (env && sb_env_check(env, err) < 0)
        return -1;
    const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(body, "cwd");
    if (cJSON_IsNull(cwd))
        cwd = NULL;
    if (cwd && !cJSON_IsString(cwd))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "cwd must be a string"), -1;
    const char *sid = cb_json_str(body, "sessionId", "default");
    char *state = sb_session_state(b, sid);
    if (!state)
        return sb_fail(err, SB_E_SESSION_NOT_FOUND, "session '%s' not found", sid), -1;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(body, "stdin");
    if (cJSON_IsNull(in))
        in = NULL;
    if (in && !cJSON_IsString(in)) {
        free(state);
        return sb_fail(err, SB_E_VALIDATION_FAILED, "stdin must be a string"), -1;
    }
    if (in) {
        const char *enc = cb_json_str(body, "stdinEncoding", "utf-8");
        if (strcmp(enc, "base64") == 0) {
            *stdin_out = sb_b64_decode(in->valuestring, stdin_len);
            if (!*stdin_out) {
                free(state);
                return sb_fail(err, SB_E_VALIDATION_FAILED, "stdin is not valid base64"), -1;
            }
        } else if (strcmp(enc, "utf-8") == 0 || strcmp(enc, "utf8") == 0) {
            *stdin_out = cb_strdup(in->valuestring);
            *stdin_len = strlen(in->valuestring);
        } else {
            free(state);
            return sb_fail(err, SB_E_VALIDATION_FAILED, "stdinEncoding must be utf-8 or base64"), -1;
        }
    }
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "exec");
    cJSON_AddStringToObject(req, "command", command);
    if (cwd)
        cJSON_AddStringToObject(req, "cwd", cwd->valuestring);
    if (env)
        cJSON_AddItemToObject(req, "env", cJSON_Duplicate(env, 1));
    if (t)
        cJSON_AddNumberToObject(req, "timeoutMs", t->valuedouble);
    cJSON_AddStringToObject(req, "state", state);
    cJSON_AddBoolToObject(req, "saveState", !detach);
    cJSON_AddBoolToObject(req, "stdin", in != NULL || detach);
    cJSON_AddBoolToObject(req, "detach", detach);
    free(state);
    *req_out = req;
    *session_out = cb_strdup(sid);
    return 0;
}

/* The agent's "error" event as *err; what names the command when the
 * event has no message ("git" -> "git could not start"). */
static void error_from_event(const cJSON *ev, const char *what, sb_error *err)
{
    sb_err code = sb_err_from_name(cb_json_str(ev, "code", "INTERNAL_ERROR"));
    const char *msg = cb_json_str(ev, "message", NULL);
    if (msg)
        sb_fail(err, code, "%s", msg);
    else
        sb_fail(err, code, "%s could not start", what);
}

typedef struct stdin_job {
    int fd;
    char *data;
    size_t len;
    bool close_stdin;
} stdin_job;

/* stdin is written by a thread of its own: the command's output must be read
 * at the same time, or a command that echoes its input would deadlock. */
static void *stdin_writer(void *arg)
{
    stdin_job *j = arg;
    bool ok = true;
    for (size_t off = 0; ok && off < j->len; off += SB_CHUNK) {
        size_t n = j->len - off < SB_CHUNK ? j->len - off : SB_CHUNK;
        ok = sb_frame_write(j->fd, SB_FRAME_STDIN, j->data + off, n) == 0;
    }
    if (ok && j->close_stdin)
        sb_frame_write(j->fd, SB_FRAME_STDIN_CLOSE, NULL, 0);
    close(j->fd);
    free(j->data);
    free(j);
    return NULL;
}

static void send_stdin(int fd, const char *in, size_t in_len, bool close_stdin)
{
    if (in && in_len <= SB_CHUNK) {
        /* small: fits in the socket buffer, no thread needed */
        if (in_len)
            sb_frame_write(fd, SB_FRAME_STDIN, in, in_len);
        if (close_stdin)
            sb_frame_write(fd, SB_FRAME_STDIN_CLOSE, NULL, 0);
    } else if (in) {
        stdin_job *j = cb_malloc(sizeof *j);
        j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        j->data = cb_malloc(in_len);
        memcpy(j->data, in, in_len);
        j->len = in_len;
        j->close_stdin = close_stdin;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (j->fd < 0 || pthread_create(&t, &attr, stdin_writer, j) != 0) {
            if (j->fd >= 0)
                close(j->fd);
            free(j->data);
            free(j);
        }
        pthread_attr_destroy(&attr);
    } else if (close_stdin) {
        sb_frame_write(fd, SB_FRAME_STDIN_CLOSE, NULL, 0);
    }
}

/* Send the request on a new channel and wait for the command to start.
 * If the agent turns out to be dead (it was killed a moment ago: the
 * channel closes without a word), the sandbox is restarted and the request
 * sent once more. Then stdin follows. Returns the channel (owned). */
int sb_exec_start(sb_box *b, cJSON *req, const char *in, size_t in_len, bool close_stdin,
                  int *pid, sb_error *err)
{
    cb_autofree char *text = cb_json_print(req);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = sb_box_open_channel(b, err);
        if (fd >= 0 && sb_frame_write(fd, SB_FRAME_JSON, text, strlen(text)) < 0) {
            close(fd);
            fd = -1;
        }
        if (fd >= 0) {
            cb_buf payload = CB_BUF_INIT;
            char type;
            int rc = sb_frame_read(fd, &type, &payload);
            if (rc == 0 && type == SB_FRAME_JSON) {
                cJSON *ev = cb_json_parse(payload.data, payload.len);
                bool started = strcmp(cb_json_str(ev, "ev", ""), "start") == 0;
                if (started)
                    *pid = (int)cb_json_int(ev, "pid", 0);
                else
                    error_from_event(ev, "the command", err);
                cJSON_Delete(ev);
                cb_buf_clear(&payload);
                if (!started) {
                    close(fd);
                    return -1;
                }
                send_stdin(fd, in, in_len, close_stdin);
                return fd;
            }
            cb_buf_clear(&payload);
            close(fd);
        }
        if (attempt == 0 && sb_box_recover(b, err) < 0)
            return -1;
    }
    return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "the sandbox's agent does not answer"), -1;
}

int sb_exec_run(sb_box *b, const sb_exec_run_opts *o, sb_exec_result *res, sb_error *err)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "command", o->command);
    cJSON_AddStringToObject(body, "sessionId", o->session);
    cJSON_AddNumberToObject(body, "timeoutMs", (double)o->timeout_ms);
    cJSON *req = NULL;
    char *session = NULL, *in = NULL;
    size_t in_len = 0;
    int rc = sb_exec_prepare(b, body, false, &req, &session, &in, &in_len, err);
    cJSON_Delete(body);
    free(session);
    free(in);
    if (rc < 0)
        return -1;
    /* not a step of the session: its state is read, never written back */
    cJSON_ReplaceItemInObjectCaseSensitive(req, "saveState", cJSON_CreateFalse());
    cJSON_ReplaceItemInObjectCaseSensitive(req, "stdin", cJSON_CreateBool(o->open_stdin));
    if (sb_box_acquire(b, err) < 0) {
        cJSON_Delete(req);
        return -1;
    }
    int pid = 0;
    int fd = sb_exec_start(b, req, NULL, 0, false, &pid, err);
    cJSON_Delete(req);
    if (fd < 0) {
        sb_box_release(b);
        return -1;
    }
    int client = o->r ? sb_req_client_fd(o->r) : -1;
    /* the agent enforces timeout_ms; this is only a backstop */
    int64_t deadline = sb_now_ms() + o->timeout_ms + 30000;
    cb_buf payload = CB_BUF_INIT;
    int ret = -1;
    for (;;) {
        if (o->feed && o->feed(o->ctx, fd, err) < 0)
            break;
        int64_t left = deadline - sb_now_ms();
        if (left <= 0) {
            sb_fail(err, SB_E_TIMEOUT, "%s did not finish in time", o->what);
            break;
        }
        char type;
        int n = exec_next(fd, client, left > 1000 ? 1000 : (int)left, &type, &payload);
        if (n == 0)
            continue;
        if (n == -1) {
            sb_fail(err, SB_E_VALIDATION_FAILED, "client went away");
            res->cancelled = true;
            break;
        }
        if (n == -2) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "the sandbox stopped while %s ran", o->what);
            break;
        }
        if (type == SB_FRAME_STDOUT || type == SB_FRAME_STDERR) {
            if (o->output && o->output(o->ctx, type, payload.data, payload.len, err) < 0)
                break;
        } else if (type == SB_FRAME_JSON) {
            cJSON *ev = cb_json_parse(payload.data, payload.len);
            const char *name = cb_json_str(ev, "ev", "");
            bool done = true;
            if (strcmp(name, "exit") == 0) {
                res->exit_code = (int)cb_json_int(ev, "exitCode", -1);
                res->timed_out = cb_json_bool(ev, "timedOut", false);
                ret = 0;
            } else if (strcmp(name, "error") == 0) {
                error_from_event(ev, o->what, err);
            } else {
                done = false;
            }
            cJSON_Delete(ev);
            if (done)
                break;
        }
    }
    cb_buf_clear(&payload);
    close(fd);  /* kills the command if it still runs */
    sb_box_release(b);
    return ret;
}

char *sb_exec_message(const cb_buf *stderr_text)
{
    cb_buf t = CB_BUF_INIT;
    const char *s = stderr_text->data ? stderr_text->data : "";
    size_t len = stderr_text->len;
    while (len && (s[len - 1] == '\n' || s[len - 1] == ' ' || s[len - 1] == '\r'))
        len--;
    size_t start = len > EXEC_MESSAGE_CAP ? len - EXEC_MESSAGE_CAP : 0;
    sb_utf8_append(&t, s + start, len - start, true);
    for (size_t i = 0; i < t.len; i++)
        if (t.data[i] == '\n')
            t.data[i] = ' ';
    return cb_buf_steal(&t);
}

static void append_capped(cb_buf *b, bool *trunc, const char *data, size_t len)
{
    if (b->len >= EXEC_OUTPUT_CAP) {
        *trunc = true;
        return;
    }
    size_t room = EXEC_OUTPUT_CAP - b->len;
    if (len > room) {
        len = room;
        *trunc = true;
    }
    cb_buf_append(b, data, len);
}


static cJSON *exit_result(exec_ctx *x, const cJSON *ev)
{
    cJSON *j = cJSON_CreateObject();
    int code = (int)cb_json_int(ev, "exitCode", -1);
    cJSON_AddBoolToObject(j, "success", code == 0 && !cb_json_bool(ev, "timedOut", false));
    cJSON_AddNumberToObject(j, "exitCode", code);
    if (cb_json_str(ev, "signal", NULL))
        cJSON_AddStringToObject(j, "signal", cb_json_str(ev, "signal", ""));
    if (sb_oom_killed(x->b, false, x->oom0, code, cb_json_str(ev, "signal", NULL)))
        cJSON_AddBoolToObject(j, "oomKilled", true);
    cJSON_AddBoolToObject(j, "timedOut", cb_json_bool(ev, "timedOut", false));
    cJSON_AddNumberToObject(j, "durationMs", cb_json_num(ev, "durationMs", 0));
    cJSON_AddNumberToObject(j, "pid", x->pid);
    cJSON_AddStringToObject(j, "command", x->command);
    cJSON_AddStringToObject(j, "sessionId", x->session);
    sb_json_add_now(j, "timestamp");
    const char *state = cb_json_str(ev, "state", NULL);
    if (state)
        sb_session_save_state(x->b, x->session, state);
    return j;
}

static int exec_json(sb_req *r, exec_ctx *x)
{
    cb_buf payload = CB_BUF_INIT;
    sb_error err = {0};
    cJSON *result = NULL;
    for (;;) {
        char type;
        int rc = exec_next(x->fd, x->client_fd, -1, &type, &payload);
        if (rc == -1) {
            sb_fail(&err, SB_E_VALIDATION_FAILED, "client went away");
            break;
        }
        if (rc == -2) {
            sb_fail(&err, SB_E_CONTAINER_UNAVAILABLE,
                    "the sandbox stopped while the command ran");
            break;
        }
        if (rc == 0)
            continue;
        if (type == SB_FRAME_STDOUT)
            append_capped(&x->out, &x->out_trunc, payload.data, payload.len);
        else if (type == SB_FRAME_STDERR)
            append_capped(&x->err, &x->err_trunc, payload.data, payload.len);
        else if (type == SB_FRAME_JSON) {
            cJSON *ev = cb_json_parse(payload.data, payload.len);
            const char *name = cb_json_str(ev, "ev", "");
            if (strcmp(name, "error") == 0)
                error_from_event(ev, "the command", &err);
            else if (strcmp(name, "exit") == 0)
                result = exit_result(x, ev);
            cJSON_Delete(ev);
            if (result || err.code)
                break;
        }
    }
    cb_buf_clear(&payload);
    if (!result) {
        sb_reply_error(r, &err);
        exec_free(x);
        return 0;
    }
    cb_buf o = CB_BUF_INIT, e = CB_BUF_INIT;
    sb_utf8_append(&o, x->out.data ? x->out.data : "", x->out.len, true);
    sb_utf8_append(&e, x->err.data ? x->err.data : "", x->err.len, true);
    cJSON_AddStringToObject(result, "stdout", o.data ? o.data : "");
    cJSON_AddStringToObject(result, "stderr", e.data ? e.data : "");
    cJSON_AddBoolToObject(result, "stdoutTruncated", x->out_trunc);
    cJSON_AddBoolToObject(result, "stderrTruncated", x->err_trunc);
    cb_buf_clear(&o);
    cb_buf_clear(&e);
    exec_free(x);
    return sb_reply_json(r, 200, result);
}

/* SSE producer: one call, one or more events. */
static int exec_produce(void *ctx, cb_buf *out)
{
    exec_ctx *x = ctx;
    cb_buf payload = CB_BUF_INIT;
    int ret = 0;
    if (!x->sent_start) {
        /* the start frame was consumed by sb_exec_start */
        x->sent_start = true;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "pid", x->pid);
        cJSON_AddStringToObject(e, "command", x->command);
        cJSON_AddStringToObject(e, "sessionId", x->session);
        sb_json_add_now(e, "timestamp");
        sb_sse_event(out, "start", e);
        return 0;
    }
    for (;;) {
        char type;
        int rc = exec_next(x->fd, x->client_fd, sb_sse_keepalive_ms(), &type, &payload);
        if (rc == 0) {
            sb_sse_comment(out, "keepalive");
            break;
        }
        if (rc == -1) {
            ret = -1;  /* client gone: closing the channel kills the command */
            break;
        }
        if (rc == -2) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "code", "CONTAINER_UNAVAILABLE");
            cJSON_AddStringToObject(e, "error", "the sandbox stopped while the command ran");
            sb_sse_event(out, "error", e);
            ret = 1;
            break;
        }
        if (type == SB_FRAME_STDOUT || type == SB_FRAME_STDERR) {
            int s = type == SB_FRAME_STDOUT ? 0 : 1;
            cb_buf text = CB_BUF_INIT, in = CB_BUF_INIT;
            cb_buf_append(&in, x->carry[s].data ? x->carry[s].data : "", x->carry[s].len);
            cb_buf_append(&in, payload.data, payload.len);
            size_t keep = sb_utf8_append(&text, in.data, in.len, false);
            cb_buf_reset(&x->carry[s]);
            cb_buf_append(&x->carry[s], in.data + in.len - keep, keep);
            if (text.len) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "data", text.data);
                sb_sse_event(out, s == 0 ? "stdout" : "stderr", e);
            }
            cb_buf_clear(&text);
            cb_buf_clear(&in);
            break;
        }
        if (type != SB_FRAME_JSON)
            continue;
        cJSON *ev = cb_json_parse(payload.data, payload.len);
        const char *name = cb_json_str(ev, "ev", "");
        /* ("start" was consumed by sb_exec_start) */
        if (strcmp(name, "error") == 0) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "code", cb_json_str(ev, "code", "INTERNAL_ERROR"));
            cJSON_AddStringToObject(e, "error", cb_json_str(ev, "message", ""));
            sb_sse_event(out, "error", e);
            ret = 1;
        } else if (strcmp(name, "exit") == 0) {
            for (int s = 0; s < 2; s++)
                if (x->carry[s].len) {
                    cb_buf text = CB_BUF_INIT;
                    sb_utf8_append(&text, x->carry[s].data, x->carry[s].len, true);
                    cJSON *e = cJSON_CreateObject();
                    cJSON_AddStringToObject(e, "data", text.data);
                    sb_sse_event(out, s == 0 ? "stdout" : "stderr", e);
                    cb_buf_clear(&text);
                }
            sb_sse_event(out, "complete", exit_result(x, ev));
            ret = 1;
        }
        cJSON_Delete(ev);
        break;
    }
    cb_buf_clear(&payload);
    return ret;
}

static int h_exec(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *req = NULL;
    char *session = NULL, *in = NULL;
    size_t in_len = 0;
    cJSON *body = body_or_empty(r);
    if (sb_exec_prepare(b, body, false, &req, &session, &in, &in_len, err) < 0)
        return -1;
    if (sb_box_acquire(b, err) < 0) {
        cJSON_Delete(req);
        free(session);
        free(in);
        return -1;
    }
    int pid = 0;
    int64_t t_acq = cb_mono_ns();
    long long oom0 = sb_box_oom_kills(b);  /* before it starts: it may be killed at once */
    int fd = sb_exec_start(b, req, in, in_len, in != NULL, &pid, err);
    if (cb_log_enabled(CB_LOG_DEBUG))
        cb_debug("exec", "prepare+acquire %.2f ms, start %.2f ms", (double)(t_acq - r->t0_ns) / 1e6,
                 (double)(cb_mono_ns() - t_acq) / 1e6);
    cJSON_Delete(req);
    free(in);
    exec_ctx *x = cb_calloc(1, sizeof *x);
    x->b = sb_box_ref(b);
    x->fd = fd;
    x->pid = pid;
    x->session = session;
    x->command = cb_strdup(cb_json_str(body, "command", ""));
    x->client_fd = sb_req_client_fd(r);
    x->t0_ns = cb_mono_ns();
    x->oom0 = oom0;
    if (fd < 0) {
        exec_free(x);
        return -1;
    }
    if (sb_req_wants_sse(r))
        return sb_reply_stream(r, 200, "text/event-stream", exec_produce, x, exec_free);
    return exec_json(r, x);
}

/* ---- sessions -------------------------------------------------------------- */

static int h_session_create(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *out = NULL;
    if (sb_session_create(b, body_or_empty(r), &out, err) < 0)
        return -1;
    return sb_reply_json(r, 201, out);
}

static int h_session_list(sb_req *r, sb_box *b, sb_error *err)
{
    return reply_list(r, "sessions", sb_sessions_list_json(b));
}

static int h_session_get(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *s = sb_session_json(b, r->params[1]);
    if (!s)
        return sb_reply_err(r, SB_E_SESSION_NOT_FOUND, "session '%s' not found", r->params[1]);
    return sb_reply_json(r, 200, s);
}

static int h_session_delete(sb_req *r, sb_box *b, sb_error *err)
{
    if (sb_session_delete(b, r->params[1], err) < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "sessionId", r->params[1]);
    sb_json_add_now(j, "timestamp");
    return sb_reply_json(r, 200, j);
}

static int h_session_env(sb_req *r, sb_box *b, sb_error *err)
{
    if (sb_session_set_env(b, r->params[1], cb_json_obj(body_or_empty(r), "env"), err) < 0)
        return -1;
    return sb_reply_json(r, 200, sb_session_json(b, r->params[1]));
}

/* ---- processes ------------------------------------------------------------- */

static int h_proc_start(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *out = NULL;
    if (sb_proc_start(b, body_or_empty(r), &out, err) < 0)
        return -1;
    return sb_reply_json(r, 201, out);
}

static int h_proc_list(sb_req *r, sb_box *b, sb_error *err)
{
    return reply_list(r, "processes", sb_procs_list_json(b));
}

static int h_proc_get(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *j = sb_proc_json(b, r->params[1]);
    if (!j)
        return sb_reply_err(r, SB_E_PROCESS_NOT_FOUND, "process '%s' not found", r->params[1]);
    return sb_reply_json(r, 200, j);
}

static int parse_signal(const char *s)
{
    static const struct { const char *name; int sig; } sigs[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
        {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP},
        {"CONT", SIGCONT},
    };
    if (!s)
        return SIGTERM;
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < CB_ARRAY_LEN(sigs); i++)
        if (strcmp(s, sigs[i].name) == 0)
            return sigs[i].sig;
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v > 0 && v < 65 ? (int)v : -1;
}

/* The two kill handlers are plain route handlers: they check the signal
 * before they look the sandbox up. */
static int kill_params(sb_req *r, int *sig, int *grace)
{
    const char *s = sb_req_query(r, "signal");
    if (!s && r->json)
        s = cb_json_str(r->json, "signal", NULL);
    *sig = parse_signal(s);
    *grace = 5000;
    const char *g = sb_req_query(r, "graceMs");
    if (g) {
        /* digits only: atoi made "abc" a grace of 0 (KILL at once) */
        char *end;
        long v = strtol(g, &end, 10);
        *grace = *g >= '0' && *g <= '9' && !*end && v <= 600000 ? (int)v : -1;
    }
    else if (r->json && cb_json_has(r->json, "graceMs"))
        *grace = (int)cb_json_int(r->json, "graceMs", 5000);
    if (*sig < 0)
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "unknown signal '%s'", s), -1;
    if (*grace < 0 || *grace > 600000)
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "graceMs must be 0..600000"), -1;
    return 0;
}

static int h_proc_kill(sb_req *r)
{
    int sig, grace;
    if (kill_params(r, &sig, &grace) < 0)
        return 0;
    sb_box *b = sb_api_box(r);
    if (!b)
        return 0;
    sb_error err = {0};
    int rc = sb_proc_kill(b, r->params[1], sig, grace, &err);
    cJSON *j = rc == 0 ? sb_proc_json(b, r->params[1]) : NULL;
    sb_box_unref(b);
    if (rc < 0)
        return sb_reply_error(r, &err);
    return sb_reply_json(r, 200, j);
}

static int h_proc_kill_all(sb_req *r)
{
    int sig, grace;
    if (kill_params(r, &sig, &grace) < 0)
        return 0;
    sb_box *b = sb_api_box(r);
    if (!b)
        return 0;
    int n = sb_procs_kill_all(b, sig, grace);
    sb_box_unref(b);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddNumberToObject(j, "killed", n);
    sb_json_add_now(j, "timestamp");
    return sb_reply_json(r, 200, j);
}

static int h_proc_logs(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *j = NULL;
    if (sb_proc_logs(b, r->params[1], &j, err) < 0)
        return -1;
    return sb_reply_json(r, 200, j);
}

typedef struct follow_ctx {
    sb_box *b;
    sb_proc *p;      /* stays valid: records are freed only with the box */
    char id[72];     /* p->id as it was: a newer process of that id hides p (id "") */
    sb_log_reader rd;
    cb_buf carry[2];
    int client_fd;
    bool sent_exit;
} follow_ctx;

static void follow_free(void *ctx)
{
    follow_ctx *f = ctx;
    sb_log_reader_clear(&f->rd);
    cb_buf_clear(&f->carry[0]);
    cb_buf_clear(&f->carry[1]);
    sb_box_unref(f->b);
    free(f);
}

static int follow_produce(void *ctx, cb_buf *out)
{
    follow_ctx *f = ctx;
    int64_t waited = 0;
    for (;;) {
        bool finished;
        pthread_mutex_lock(&f->b->mu);
        finished = strcmp(f->p->status, "running") != 0 && f->p->fd < 0;
        pthread_mutex_unlock(&f->b->mu);
        bool any = false;
        for (int s = 0; s < 2; s++) {
            cb_buf raw = CB_BUF_INIT, text = CB_BUF_INIT;
            cb_buf_append(&raw, f->carry[s].data ? f->carry[s].data : "", f->carry[s].len);
            cb_buf_reset(&f->carry[s]);
            size_t n = sb_log_reader_read(f->b, f->p, &f->rd, s, &raw);
            if (raw.len) {
                size_t keep = sb_utf8_append(&text, raw.data, raw.len, finished && n == 0);
                cb_buf_append(&f->carry[s], raw.data + raw.len - keep, keep);
            }
            if (text.len) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "data", text.data);
                sb_sse_event(out, s == 0 ? "stdout" : "stderr", e);
                any = true;
            }
            cb_buf_clear(&raw);
            cb_buf_clear(&text);
        }
        if (any)
            return 0;
        if (finished) {
            /* p's own record, not a lookup by id: a process started since
             * with the same id would answer for it */
            cJSON *e = sb_proc_record_json(f->b, f->p);
            cb_json_set(e, "id", cJSON_CreateString(f->id));
            sb_sse_event(out, "exit", e);
            return 1;
        }
        if (f->client_fd >= 0) {
            struct pollfd p = {f->client_fd, POLLRDHUP, 0};
            if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
                return -1;
        }
        if (waited >= sb_sse_keepalive_ms()) {
            sb_sse_comment(out, "keepalive");
            return 0;
        }
        /* wait for the watcher to append or finish */
        pthread_mutex_lock(&f->b->mu);
        sb_cond_wait_ms(&f->b->cv, &f->b->mu, 200);
        pthread_mutex_unlock(&f->b->mu);
        waited += 200;
    }
}

static int h_proc_follow(sb_req *r, sb_box *b, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    sb_proc *p = sb_proc_find(b, r->params[1]);
    pthread_mutex_unlock(&b->mu);
    if (!p)
        return sb_reply_err(r, SB_E_PROCESS_NOT_FOUND, "process '%s' not found", r->params[1]);
    follow_ctx *f = cb_calloc(1, sizeof *f);
    snprintf(f->id, sizeof f->id, "%s", r->params[1]);
    f->b = sb_box_ref(b);
    f->p = p;
    f->client_fd = sb_req_client_fd(r);
    sb_log_reader_init(&f->rd);
    return sb_reply_stream(r, 200, "text/event-stream", follow_produce, f, follow_free);
}

static int h_proc_stdin(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *body = body_or_empty(r);
    const char *data = cb_json_str(body, "data", "");
    const char *enc = cb_json_str(body, "encoding", "utf-8");
    cb_autofree char *bytes = NULL;
    size_t len = strlen(data);
    if (strcmp(enc, "base64") == 0) {
        bytes = sb_b64_decode(data, &len);
        if (!bytes)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "data is not valid base64"), -1;
    } else {
        bytes = cb_strdup(data);
    }
    /* it uses the sandbox's processes: a paused one is resumed first (a
     * frozen agent would never read it) */
    if (sb_box_acquire(b, err) < 0)
        return -1;
    int rc = sb_proc_stdin(b, r->params[1], bytes, len, cb_json_bool(body, "eof", false), err);
    sb_box_release(b);
    if (rc < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddNumberToObject(j, "bytes", (double)len);
    return sb_reply_json(r, 200, j);
}

static bool client_gone(void *r)
{
    return sb_req_client_gone(r);
}

static int h_proc_wait(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *out = NULL;
    if (sb_proc_wait(b, r->params[1], body_or_empty(r), client_gone, r, &out, err) < 0)
        return -1;
    return sb_reply_json(r, 200, out);
}

/* ---- the table ---------------------------------------------------------------- */

#define SBX "/v1/sandboxes/:id"
/* ---- code contexts (sb_ctx.c) ---------------------------------------------------- */

static int h_ctx_create(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *out = NULL;
    if (sb_ctx_create(b, body_or_empty(r), &out, err) < 0)
        return -1;
    return sb_reply_json(r, 201, out);
}

static int h_ctx_list(sb_req *r, sb_box *b, sb_error *err)
{
    (void)err;
    return reply_list(r, "contexts", sb_ctxs_list_json(b));
}

static int h_ctx_get(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *j = sb_ctx_json(b, r->params[1]);
    if (!j)
        return sb_fail(err, SB_E_CONTEXT_NOT_FOUND, "context '%s' not found", r->params[1]), -1;
    return sb_reply_json(r, 200, j);
}

static int h_ctx_delete(sb_req *r, sb_box *b, sb_error *err)
{
    if (sb_ctx_delete(b, r->params[1], err) < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "id", r->params[1]);
    return sb_reply_json(r, 200, j);
}

static int h_ctx_input(sb_req *r, sb_box *b, sb_error *err)
{
    if (sb_ctx_input(b, r->params[1], body_or_empty(r), err) < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    return sb_reply_json(r, 200, j);
}

static int h_ctx_restart(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *j = NULL;
    if (sb_ctx_restart(b, r->params[1], &j, err) < 0)
        return -1;
    return sb_reply_json(r, 200, j);
}

static int h_ctx_interrupt(sb_req *r, sb_box *b, sb_error *err)
{
    bool interrupted = false;
    if (sb_ctx_interrupt(b, r->params[1], &interrupted, err) < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "id", r->params[1]);
    cJSON_AddBoolToObject(j, "interrupted", interrupted);
    return sb_reply_json(r, 200, j);
}

static int h_code(sb_req *r, sb_box *b, sb_error *err)
{
    return sb_ctx_run(r, b, body_or_empty(r), err);
}

/* ---- exposed ports (sb_port.c) ---------------------------------------------------- */

static int h_port_expose(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *out = NULL;
    if (sb_port_expose(b, body_or_empty(r), &out, err) < 0)
        return -1;
    return sb_reply_json(r, 201, out);
}

static int h_port_list(sb_req *r, sb_box *b, sb_error *err)
{
    (void)err;
    return reply_list(r, "ports", sb_ports_list_json(b));
}

static int port_param(sb_req *r, sb_error *err)
{
    const char *s = r->params[1];
    if (strspn(s, "0123456789") != strlen(s) || strlen(s) > 5)
        return sb_fail(err, SB_E_INVALID_PORT_NUMBER, "'%s' is not a port number", s), -1;
    return atoi(s);
}

static int h_port_get(sb_req *r, sb_box *b, sb_error *err)
{
    int port = port_param(r, err);
    if (port < 0)
        return -1;
    cJSON *j = sb_port_json(b, port);
    if (!j)
        return sb_fail(err, SB_E_PORT_NOT_EXPOSED, "port %d of sandbox '%s' is not exposed", port, b->id), -1;
    return sb_reply_json(r, 200, j);
}

static int h_port_unexpose(sb_req *r, sb_box *b, sb_error *err)
{
    int port = port_param(r, err);
    if (port < 0 || sb_port_unexpose(b, port, err) < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddNumberToObject(j, "port", port);
    return sb_reply_json(r, 200, j);
}

/* ---- body field types ------------------------------------------------------ */

enum { T_STR = 1, T_NUM = 2, T_BOOL = 4 };

/* Fields with one type wherever they appear in a request body. Fields that
 * take several forms (signal, sleepAfter, stdin, context, env, allowOut...)
 * are checked by their handlers. */
static const struct { const char *name; int types; } body_fields[] = {
    {"command", T_STR},       {"sessionId", T_STR},     {"processId", T_STR},
    {"stdinEncoding", T_STR}, {"encoding", T_STR},      {"content", T_STR},
    {"mode", T_STR},          {"cwd", T_STR},           {"instanceType", T_STR},
    {"network", T_STR},       {"language", T_STR},      {"code", T_STR},
    {"regex", T_STR},         {"log", T_STR},           {"data", T_STR},
    {"id", T_STR},            {"name", T_STR},          {"value", T_STR},
    {"contextId", T_STR},     {"repoUrl", T_STR},       {"branch", T_STR},
    {"token", T_STR},         {"sandboxId", T_STR},
    {"timeoutMs", T_NUM},     {"timeout", T_NUM},       {"graceMs", T_NUM},
    {"statusMin", T_NUM},     {"statusMax", T_NUM},
    {"memoryMB", T_NUM},      {"cpus", T_NUM},          {"pids", T_NUM},
    {"tmpMB", T_NUM},         {"diskMB", T_NUM},        {"depth", T_NUM},
    {"keepAlive", T_BOOL},    {"recursive", T_BOOL},    {"includeHidden", T_BOOL},
    {"eof", T_BOOL},          {"exit", T_BOOL},
};

static const char *json_kind(const cJSON *v)
{
    return cJSON_IsString(v) ? "a string" : cJSON_IsNumber(v) ? "a number"
         : cJSON_IsBool(v) ? "true/false" : cJSON_IsArray(v) ? "an array"
         : cJSON_IsObject(v) ? "an object" : "something else";
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sb_api_check_body(const cJSON *body, sb_error *err)
{
    size_t n = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, body)
        n++;
    const char **names = cb_malloc((n ? n : 1) * sizeof *names);
    size_t k = 0;
    int rc = 0;
    cJSON_ArrayForEach(v, body) {
        names[k++] = v->string;
        if (cJSON_IsNull(v))
            continue;
        for (size_t i = 0; i < CB_ARRAY_LEN(body_fields); i++) {
            if (strcmp(v->string, body_fields[i].name) != 0)
                continue;
            int t = body_fields[i].types;
            bool ok = ((t & T_STR) && cJSON_IsString(v)) || ((t & T_BOOL) && cJSON_IsBool(v)) ||
                      ((t & T_NUM) && cJSON_IsNumber(v) && isfinite(v->valuedouble));
            if (!ok) {
                cb_autofree char *name = sb_utf8_lossy(v->string, NULL);
                sb_fail(err, SB_E_VALIDATION_FAILED, "%s must be %s, not %s", name,
                        t == T_STR ? "a string" : t == T_NUM ? "a number" : "true or false",
                        json_kind(v));
                rc = -1;
            }
            break;
        }
        if (rc < 0)
            break;
    }
    /* {"command": "ls", "command": "rm -rf ~"}: which one counts would
     * depend on the parser; proxies and audit logs may read the other */
    if (rc == 0 && n > 1) {
        qsort(names, n, sizeof *names, cmp_names);
        for (size_t i = 1; i < n && rc == 0; i++)
            if (strcmp(names[i - 1], names[i]) == 0) {
                cb_autofree char *name = sb_utf8_lossy(names[i], NULL);
                sb_fail(err, SB_E_VALIDATION_FAILED, "the body holds the field '%s' twice", name);
                rc = -1;
            }
    }
    free(names);
    return rc;
}

const sb_route sb_api_routes[] = {
    {"GET", "/v1/health", h_health, SB_ROUTE_NOAUTH, NULL},
    {"GET", "/v1/sandboxes", h_box_list, 0, NULL},
    {"PUT", SBX, h_box_put, 0, NULL},
    {"GET", SBX, on_box, 0, NULL, BOX(h_box_get)},
    {"DELETE", SBX, on_box, 0, NULL, BOX(h_box_delete)},
    {"PATCH", SBX, on_box, 0, NULL, BOX(h_box_patch)},
    {"GET", SBX "/metrics", on_box, 0, NULL, BOX(h_box_metrics)},
    {"POST", SBX "/pause", on_box, 0, NULL, BOX(h_box_pause)},
    {"POST", SBX "/resume", on_box, 0, NULL, BOX(h_box_resume)},
    {"POST", SBX "/exec", on_box, 0, NULL, BOX(h_exec)},
    {"POST", SBX "/files/read", sb_files_read, 0, NULL},
    {"POST", SBX "/files/write", sb_files_write, 0, NULL},
    {"POST", SBX "/files/list", sb_files_list, 0, NULL},
    {"POST", SBX "/files/stat", sb_files_stat, 0, NULL},
    {"POST", SBX "/files/exists", sb_files_exists, 0, NULL},
    {"POST", SBX "/files/mkdir", sb_files_mkdir, 0, NULL},
    {"POST", SBX "/files/delete", sb_files_delete, 0, NULL},
    {"POST", SBX "/files/rename", sb_files_rename, 0, NULL},
    {"POST", SBX "/files/move", sb_files_rename, 0, NULL},
    {"POST", SBX "/files/watch", on_box, 0, NULL, BOX(sb_watch_files)},
    {"GET", SBX "/files/content", sb_files_read_raw, 0, NULL},
    {"PUT", SBX "/files/content", sb_files_write_raw, SB_ROUTE_RAW, &sb_files_upload_ops},
    {"POST", SBX "/processes", on_box, 0, NULL, BOX(h_proc_start)},
    {"GET", SBX "/processes", on_box, 0, NULL, BOX(h_proc_list)},
    {"DELETE", SBX "/processes", h_proc_kill_all, 0, NULL},
    {"GET", SBX "/processes/:pid", on_box, 0, NULL, BOX(h_proc_get)},
    {"DELETE", SBX "/processes/:pid", h_proc_kill, 0, NULL},
    {"GET", SBX "/processes/:pid/logs", on_box, 0, NULL, BOX(h_proc_logs)},
    {"GET", SBX "/processes/:pid/logs/stream", on_box, 0, NULL, BOX(h_proc_follow)},
    {"POST", SBX "/processes/:pid/stdin", on_box, 0, NULL, BOX(h_proc_stdin)},
    {"POST", SBX "/processes/:pid/wait", on_box, 0, NULL, BOX(h_proc_wait)},
    {"POST", SBX "/sessions", on_box, 0, NULL, BOX(h_session_create)},
    {"GET", SBX "/sessions", on_box, 0, NULL, BOX(h_session_list)},
    {"GET", SBX "/sessions/:sid", on_box, 0, NULL, BOX(h_session_get)},
    {"DELETE", SBX "/sessions/:sid", on_box, 0, NULL, BOX(h_session_delete)},
    {"POST", SBX "/sessions/:sid/env", on_box, 0, NULL, BOX(h_session_env)},
    {"POST", SBX "/contexts", on_box, 0, NULL, BOX(h_ctx_create)},
    {"GET", SBX "/contexts", on_box, 0, NULL, BOX(h_ctx_list)},
    {"GET", SBX "/contexts/:ctx", on_box, 0, NULL, BOX(h_ctx_get)},
    {"DELETE", SBX "/contexts/:ctx", on_box, 0, NULL, BOX(h_ctx_delete)},
    {"POST", SBX "/contexts/:ctx/input", on_box, 0, NULL, BOX(h_ctx_input)},
    {"POST", SBX "/contexts/:ctx/restart", on_box, 0, NULL, BOX(h_ctx_restart)},
    {"POST", SBX "/contexts/:ctx/interrupt", on_box, 0, NULL, BOX(h_ctx_interrupt)},
    {"POST", SBX "/code", on_box, 0, NULL, BOX(h_code)},
    {"POST", SBX "/ports", on_box, 0, NULL, BOX(h_port_expose)},
    {"GET", SBX "/ports", on_box, 0, NULL, BOX(h_port_list)},
    {"GET", SBX "/ports/:port", on_box, 0, NULL, BOX(h_port_get)},
    {"DELETE", SBX "/ports/:port", on_box, 0, NULL, BOX(h_port_unexpose)},
    {"GET", SBX "/pty", sb_pty_handler, SB_ROUTE_NOAUTH, NULL},  /* own auth: header or subprotocol */
    {"POST", SBX "/git/checkout", on_box, 0, NULL, BOX(sb_git_checkout)},
    {"POST", SBX "/backups", on_box, 0, NULL, BOX(sb_backup_create)},
    {"GET", SBX "/backups", on_box, 0, NULL, BOX(sb_backup_list)},
    {"GET", SBX "/backups/:bid", on_box, 0, NULL, BOX(sb_backup_get)},
    {"DELETE", SBX "/backups/:bid", on_box, 0, NULL, BOX(sb_backup_delete)},
    {"POST", SBX "/backups/:bid/restore", on_box, 0, NULL, BOX(sb_backup_restore)},
    {"POST", SBX "/fork", on_box, 0, NULL, BOX(sb_backup_fork)},
    {"POST", SBX "/mounts", on_box, 0, NULL, BOX(sb_mount_create)},
    {"GET", SBX "/mounts", on_box, 0, NULL, BOX(sb_mount_list)},
    {"DELETE", SBX "/mounts", on_box, 0, NULL, BOX(sb_mount_delete)},
};
const size_t sb_api_nroutes = CB_ARRAY_LEN(sb_api_routes);
