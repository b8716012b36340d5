/* interp/node.c: the JavaScript / TypeScript interpreter: a kn_interp that
 * drives a `node` child process running interp/js/runner.js.
 *
 * The child gets:
 *   fd 0/1/2  the kernel's own stdin and its capture pipes (interp/capture.c),
 *             so subprocesses of user code become stream messages;
 *   fd 3      requests, one JSON object a line (we write);
 *   fd 4      messages back: stream / pub / reply / ready / input (we read);
 *   fd 5      the runner's source (a memfd), read once by the -e bootstrap.
 * Each request is answered by exactly one {t:"reply"}; whatever comes before
 * it is published as it arrives (stream text goes through the capture so
 * its order with the fd output is kept). Between requests the messages of
 * timers and promises a cell left behind are published by background().
 *
 * input(): the runner sends {t:"input", id, prompt, password}; while a cell
 * is being handled we ask the frontend (host->input) and write back
 * {op:"input_reply", id, status, value}, which the runner handles at once
 * (not queued). An interrupt ends the wait; so does the runner's
 * {t:"input_cancel", id} (it got the SIGINT first). Outside a cell (between
 * cells, complete/inspect) the answer is status "no_cell".
 *
 * Interrupts: the kernel core sends SIGINT to this (main) thread; our handler
 * forwards it to the child, where vm's breakOnSigint stops synchronous code
 * and the runner rejects a pending top-level await. Code that does not stop
 * within IP_NODE_INTERRUPT_GRACE_S (a busy loop after an await) gets the
 * child killed; the reply says so and the next request starts a fresh node.
 * An interrupt that came while node started (the kernel core holds SIGINT
 * until start() returns) is for the first cell that was waiting
 * (kn_exec_req.interrupted): the runner ends it with the interrupt error
 * before running its code.
 *
 * Never runs for the Python kernel: only --language javascript|typescript
 * creates one. Nothing here is thread-safe beyond what kn_interp requires
 * (all hooks but kernel_info on the interp thread).
 */
#include "config.h"
#include "interp/interp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "interp/capture.h"

/* interp/noderunner.c, generated from interp/js/runner.js */
extern const char ip_node_runner[];
extern const size_t ip_node_runner_len;

#define IP_NODE_INTERRUPT_GRACE_S 3.0
#define IP_NODE_START_TIMEOUT_MS 30000
#define IP_NODE_TS_PATH "/usr/share/nodejs/typescript"

/* Runs the runner as a function body with `require` (Node 18+). */
static const char BOOT[] =
    "require('vm').compileFunction(require('fs').readFileSync(5,'utf8'),['require'],"
    "{filename:'cellbox-runner.js'})(require)";

typedef struct ip_node {
    kn_interp ops;
    ip_node_options opts;
    char *node_path;         /* owned */
    char *node_version;      /* owned, e.g. "20.11.1" */
    const kn_host *host;     /* borrowed, from start() */
    ip_capture *cap;
    pid_t pid;               /* 0: no child (not started, or gone) */
    int req_fd;              /* write end of the child's fd 3 */
    int msg_fd;              /* read end of the child's fd 4 */
    cb_buf in;               /* bytes read from msg_fd, not yet a whole line */
    bool killed_for_interrupt;
} ip_node;

/* The child the SIGINT handler forwards to (one interpreter per process). */
static volatile pid_t g_child;
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    int saved = errno;
    /* At most one SIGINT per 300 ms: a second one right after the first can
     * land while vm has SIGINT at its default (between breakOnSigint's
     * watchdog and the runner's listener) and would kill node. */
    static int64_t last_ns;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    pid_t p = g_child;
    if (p > 0 && (last_ns == 0 || now - last_ns > 300000000)) {
        kill(p, SIGINT);
        last_ns = now;
    }
    g_interrupted = 1;
    errno = saved;
}

int ip_lang_parse(const char *name, ip_lang *lang)
{
    if (strcmp(name, "javascript") == 0 || strcmp(name, "js") == 0 || strcmp(name, "node") == 0) {
        *lang = IP_LANG_JAVASCRIPT;
        return 0;
    }
    if (strcmp(name, "typescript") == 0 || strcmp(name, "ts") == 0) {
        *lang = IP_LANG_TYPESCRIPT;
        return 0;
    }
    return -1;
}

static const char *lang_name(const ip_node *n)
{
    return n->opts.lang == IP_LANG_TYPESCRIPT ? "typescript" : "javascript";
}

/* ------------------------------------------------------------------ finding node */

static char *find_in_path(const char *exe)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    cb_autofree char *copy = cb_strdup(path);
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *p = cb_printf_new("%s/%s", *d ? d : ".", exe);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

static char *find_node(void)
{
    const char *env = getenv("CELLBOX_NODE");
    if (env && *env)
        return access(env, X_OK) == 0 ? cb_strdup(env) : NULL;
    char *p = find_in_path("node");
    if (!p)
        p = find_in_path("nodejs");
    if (!p && access("/usr/bin/node", X_OK) == 0)
        p = cb_strdup("/usr/bin/node");
    return p;
}

/* Runs argv, returns its stdout (owned) and exit status; NULL if it could
 * not run. Only before the kernel's threads exist (ip_node_new). */
static char *run_output(char *const argv[], int *status)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]), close(p[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(p[1], 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    cb_buf b = CB_BUF_INIT;
    char chunk[4096];
    ssize_t r;
    while ((r = read(p[0], chunk, sizeof chunk)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0)
            cb_buf_append(&b, chunk, (size_t)r);
    close(p[0]);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    return cb_buf_steal(&b);
}

/* ------------------------------------------------------------------ the child */

static void child_exec(ip_node *n, int req_r, int msg_w, int src)
{
    /* async-signal-safe calls only: we are a fork of a threaded process */
    int fds[3] = {fcntl(req_r, F_DUPFD, 10), fcntl(msg_w, F_DUPFD, 10), fcntl(src, F_DUPFD, 10)};
    for (int i = 0; i < 3; i++)
        if (fds[i] < 0 || dup2(fds[i], 3 + i) < 0)
            _exit(126);
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 6u, ~0u, 0u) < 0)
#endif
        for (int fd = 6; fd < 4096; fd++)
            close(fd);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    /* Our own process group: a frontend interrupts the kernel's group
     * (jupyter_client's killpg); the kernel forwards exactly one SIGINT. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char *argv[] = {n->node_path, (char *)"--expose-internals", (char *)"-e", (char *)BOOT,
                    (char *)lang_name(n), NULL};
    execv(n->node_path, argv);
    _exit(127);
}

/* Reaps the child (if any) and closes its pipes. Returns its wait status
 * (-1: there was none or it could not be reaped). */
static int child_reap(ip_node *n, bool kill_it)
{
    int status = -1;
    if (n->req_fd >= 0)
        close(n->req_fd);
    if (n->msg_fd >= 0)
        close(n->msg_fd);
    n->req_fd = n->msg_fd = -1;
    cb_buf_reset(&n->in);
    pid_t pid = n->pid;
    g_child = 0;
    n->pid = 0;
    if (pid <= 0)
        return -1;
    if (kill_it)
        kill(pid, SIGKILL);
    /* closing fd 3 makes the runner exit; give it a moment */
    for (int i = 0; i < 100; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (i == 50)
            kill(pid, SIGKILL);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* One message from the child: 1 (owned *out), 0 timeout, -1 EOF/error. */
static int read_msg(ip_node *n, int timeout_ms, cJSON **out)
{
    *out = NULL;
    for (;;) {
        char *nl = n->in.len ? memchr(n->in.data, '\n', n->in.len) : NULL;
        if (nl) {
            size_t len = (size_t)(nl - n->in.data);
            *out = cb_json_parse(n->in.data, len);
            cb_buf_consume(&n->in, len + 1);
            if (*out)
                return 1;
            cb_warn("interp", "node: a message that is not JSON was dropped");
            continue;
        }
        if (n->msg_fd < 0)
            return -1;
        struct pollfd p = {.fd = n->msg_fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            return 0;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        char chunk[65536];
        ssize_t got = read(n->msg_fd, chunk, sizeof chunk);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return -1;
        cb_buf_append(&n->in, chunk, (size_t)got);
    }
}

/* Publishes a stream / pub message; returns true for anything else. */
static bool handle_output(ip_node *n, const cJSON *m)
{
    const char *t = cb_json_str(m, "t", "");
    if (strcmp(t, "stream") == 0) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(m, "text");
        if (cJSON_IsString(text) && n->cap)
            ip_capture_write(n->cap, strcmp(cb_json_str(m, "name", ""), "stderr") == 0 ? IP_STDERR : IP_STDOUT,
                             text->valuestring, strlen(text->valuestring));
        return false;
    }
    if (strcmp(t, "pub") == 0) {
        const cJSON *content = cb_json_obj(m, "content");
        const char *type = cb_json_str(m, "msg_type", NULL);
        if (!content || !type || !n->host)
            return false;
        if (n->cap)
            ip_capture_flush(n->cap);  /* text printed before it comes first */
        cb_autofree char *s = cb_json_print(content);
        n->host->publish(n->host->ctx, type, s, 0, NULL, 0);
        return false;
    }
    return true;
}

static char *exit_text(int status)
{
    if (status < 0)
        return cb_strdup("it is gone");
    if (WIFSIGNALED(status))
        return cb_printf_new("it was killed by signal %d", WTERMSIG(status));
    return cb_printf_new("it exited with status %d", WEXITSTATUS(status));
}

/* Starts the child and waits for its ready message. 0, or -1 + *err. */
static int child_start(ip_node *n, char **err)
{
    int req[2] = {-1, -1}, msg[2] = {-1, -1};
    int src = memfd_create("cellbox-runner", MFD_CLOEXEC);
    if (src < 0 || pipe2(req, O_CLOEXEC) < 0 || pipe2(msg, O_CLOEXEC) < 0 ||
        cb_write_all(src, ip_node_runner, ip_node_runner_len) < 0 || lseek(src, 0, SEEK_SET) < 0) {
        *err = cb_printf_new("cannot set up the pipes to node: %s", strerror(errno));
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        *err = cb_printf_new("cannot fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0)
        child_exec(n, req[0], msg[1], src);
    close(req[0]), close(msg[1]), close(src);
    n->pid = pid;
    g_child = pid;
    n->req_fd = req[1];
    n->msg_fd = msg[0];
    cb_buf_reset(&n->in);

    int64_t deadline = cb_mono_ns() + (int64_t)IP_NODE_START_TIMEOUT_MS * 1000000;
    for (;;) {
        cJSON *m;
        int r = read_msg(n, 200, &m);
        if (r < 0) {
            int st = child_reap(n, false);
            cb_autofree char *why = exit_text(st);
            *err = cb_printf_new("node (%s) did not start: %s", n->node_path, why);
            return -1;
        }
        if (r == 0) {
            if (cb_mono_ns() > deadline) {
                child_reap(n, true);
                *err = cb_printf_new("node (%s) did not start within %d s", n->node_path,
                                     IP_NODE_START_TIMEOUT_MS / 1000);
                return -1;
            }
            continue;
        }
        if (!handle_output(n, m)) {
            cJSON_Delete(m);
            continue;
        }
        bool ready = strcmp(cb_json_str(m, "t", ""), "ready") == 0;
        const char *e = cb_json_str(m, "error", NULL);
        if (ready && e) {
            *err = cb_printf_new("TypeScript cannot be loaded (%s): install Debian's node-typescript package", e);
            cJSON_Delete(m);
            child_reap(n, true);
            return -1;
        }
        cJSON_Delete(m);
        if (ready)
            return 0;
    }
fail:
    for (int i = 0; i < 2; i++) {
        if (req[i] >= 0)
            close(req[i]);
        if (msg[i] >= 0)
            close(msg[i]);
    }
    if (src >= 0)
        close(src);
    return -1;
}

/* ------------------------------------------------------------------ requests */

/* The one place where a failure of the node side becomes a reply (and, for
 * a cell, the error message frontends show). */
static cJSON *error_reply(ip_node *n, bool publish, const char *ename, const char *evalue)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "ename", ename);
    cJSON_AddStringToObject(c, "evalue", evalue);
    cJSON *tb = cJSON_AddArrayToObject(c, "traceback");
    cb_autofree char *line = cb_printf_new("%s: %s", ename, evalue);
    cJSON_AddItemToArray(tb, cJSON_CreateString(line));
    if (publish && n->host) {
        if (n->cap)
            ip_capture_flush(n->cap);
        cb_autofree char *s = cb_json_print(c);
        n->host->publish(n->host->ctx, "error", s, 0, NULL, 0);
    }
    cJSON_AddStringToObject(c, "status", "error");
    return c;
}

/* What the frontend is asked while an input() waits: interrupts, the child
 * going away, and the runner's input_cancel end the wait. */
typedef struct {
    ip_node *n;
    double id;
    bool scanned;  /* what n->in held at the start was looked at */
} input_wait;

/* Reads what the child sent meanwhile: output is published at once (a
 * timer printing while the prompt is up), a cancel of this input ends the
 * wait; anything else (a reply, another input) stays first in n->in, in
 * order, for the request loop. */
static bool input_poll(void *arg)
{
    input_wait *w = arg;
    ip_node *n = w->n;
    if (g_interrupted)
        return true;  /* the request loop takes it (grace time) */
    if (n->msg_fd < 0)
        return true;
    bool grew = false;
    for (;;) {
        struct pollfd p = {.fd = n->msg_fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0)
            break;
        char chunk[65536];
        ssize_t got = read(n->msg_fd, chunk, sizeof chunk);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return true;  /* node is gone: stop waiting, the request loop says so */
        cb_buf_append(&n->in, chunk, (size_t)got);
        grew = true;
    }
    if (!grew && w->scanned)
        return false;
    w->scanned = true;
    for (;;) {
        char *nl = n->in.len ? memchr(n->in.data, '\n', n->in.len) : NULL;
        if (!nl)
            return false;
        size_t len = (size_t)(nl - n->in.data);
        cJSON *m = cb_json_parse(n->in.data, len);
        if (!m) {
            cb_buf_consume(&n->in, len + 1);
            continue;
        }
        const char *t = cb_json_str(m, "t", "");
        bool out = strcmp(t, "stream") == 0 || strcmp(t, "pub") == 0;
        bool cancel = strcmp(t, "input_cancel") == 0 && cb_json_num(m, "id", -1) == w->id;
        if (out || cancel) {
            cb_buf_consume(&n->in, len + 1);
            if (out)
                handle_output(n, m);
        }
        cJSON_Delete(m);
        if (cancel)
            return true;
        if (!out)
            return false;
    }
}

/* Answers the runner's {t:"input"} m: asks the frontend when in_cell. */
static void answer_input(ip_node *n, const cJSON *m, bool in_cell)
{
    input_wait w = {.n = n, .id = cb_json_num(m, "id", -1)};
    const char *status = "no_cell";
    char *value = NULL;
    if (in_cell && n->host && n->host->input) {
        if (n->cap)
            ip_capture_flush(n->cap);  /* what was printed before the prompt comes first */
        int st = n->host->input(n->host->ctx, cb_json_str(m, "prompt", ""), cb_json_bool(m, "password", false),
                                &value, input_poll, &w);
        status = st == KN_INPUT_OK ? "ok"
                 : st == KN_INPUT_NOT_ALLOWED ? "not_allowed"
                 : st == KN_INPUT_INTERRUPTED ? "interrupted"
                 : "failed";
    }
    if (n->req_fd < 0) {
        free(value);
        return;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "op", "input_reply");
    cJSON_AddNumberToObject(r, "id", w.id);
    cJSON_AddStringToObject(r, "status", status);
    if (value)
        cJSON_AddStringToObject(r, "value", value);
    free(value);
    cb_autofree char *line = cb_json_print(r);
    cJSON_Delete(r);
    cb_buf out = CB_BUF_INIT;
    cb_buf_puts(&out, line);
    cb_buf_putc(&out, '\n');
    if (cb_write_all(n->req_fd, out.data, out.len) < 0)
        cb_debug("interp", "node: the answer to input() could not be written: %s", strerror(errno));
    cb_buf_clear(&out);
}

/* Sends req (borrowed; gets "op") and returns the reply's content (owned).
 * is_cell: an execute (published errors, interrupt grace). */
static cJSON *request(ip_node *n, const char *op, cJSON *req, bool is_cell, bool silent)
{
    if (n->pid <= 0) {
        cb_autofree char *err = NULL;
        if (child_start(n, &err) < 0) {
            cb_error("interp", "%s", err);
            return error_reply(n, is_cell && !silent, "NodeError", err);
        }
        cb_info("interp", "node restarted (pid %d)", (int)n->pid);
    }
    cb_json_set(req, "op", cJSON_CreateString(op));
    cb_autofree char *line = cb_json_print(req);
    cb_buf out = CB_BUF_INIT;
    cb_buf_puts(&out, line);
    cb_buf_putc(&out, '\n');
    int wrc = cb_write_all(n->req_fd, out.data, out.len);
    cb_buf_clear(&out);

    int64_t interrupted_at = 0;
    n->killed_for_interrupt = false;
    cJSON *reply = NULL;
    while (wrc == 0) {
        cJSON *m;
        int r = read_msg(n, 100, &m);
        if (g_interrupted) {
            g_interrupted = 0;
            if (!interrupted_at)
                interrupted_at = cb_mono_ns();
        }
        if (r < 0)
            break;
        if (r == 0) {
            if (is_cell && interrupted_at &&
                (double)(cb_mono_ns() - interrupted_at) / 1e9 > IP_NODE_INTERRUPT_GRACE_S && n->pid > 0 &&
                !n->killed_for_interrupt) {
                cb_info("interp", "node did not stop after SIGINT; killing it");
                kill(n->pid, SIGKILL);
                n->killed_for_interrupt = true;
            }
            continue;
        }
        if (handle_output(n, m)) {
            const char *t = cb_json_str(m, "t", "");
            if (strcmp(t, "reply") == 0) {
                reply = cJSON_DetachItemFromObjectCaseSensitive(m, "content");
                cJSON_Delete(m);
                break;
            }
            if (strcmp(t, "input") == 0)
                answer_input(n, m, is_cell);
        }
        cJSON_Delete(m);
    }
    if (n->cap)
        ip_capture_flush(n->cap);
    if (reply && cJSON_IsObject(reply))
        return reply;
    cJSON_Delete(reply);

    /* the child is gone (or wrote nonsense): reap it, say so; the next
     * request starts a fresh one */
    bool for_interrupt = n->killed_for_interrupt;
    int st = child_reap(n, true);
    cb_autofree char *why = exit_text(st);
    cb_autofree char *msg =
        for_interrupt
            ? cb_printf_new("the code did not stop within %.0f s of the interrupt, so node was killed; "
                            "the next cell starts a new one (earlier variables are gone)",
                            IP_NODE_INTERRUPT_GRACE_S)
            : cb_printf_new("the node process ended (%s); the next cell starts a new one "
                            "(earlier variables are gone)", why);
    cb_warn("interp", "%s", msg);
    return error_reply(n, is_cell && !silent, for_interrupt ? "Interrupted" : "NodeExited", msg);
}

/* ------------------------------------------------------------------ kn_interp hooks */

static cJSON *node_kernel_info(void *self)
{
    ip_node *n = self;
    bool ts = n->opts.lang == IP_LANG_TYPESCRIPT;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "implementation", "cellbox");
    cJSON_AddStringToObject(c, "implementation_version", PACKAGE_VERSION);
    cJSON *li = cJSON_AddObjectToObject(c, "language_info");
    cJSON_AddStringToObject(li, "name", ts ? "typescript" : "javascript");
    cJSON_AddStringToObject(li, "version", n->node_version);
    cJSON_AddStringToObject(li, "mimetype", ts ? "text/typescript" : "application/javascript");
    cJSON_AddStringToObject(li, "file_extension", ts ? ".ts" : ".js");
    cJSON_AddStringToObject(li, "pygments_lexer", ts ? "typescript" : "javascript");
    if (ts) {
        cJSON *cm = cJSON_AddObjectToObject(li, "codemirror_mode");
        cJSON_AddStringToObject(cm, "name", "javascript");
        cJSON_AddBoolToObject(cm, "typescript", true);
    } else {
        cJSON_AddStringToObject(li, "codemirror_mode", "javascript");
    }
    cJSON_AddStringToObject(li, "nbconvert_exporter", "script");
    cb_autofree char *banner = cb_printf_new(
        "%s on Node.js %s (cellbox %s)\n"
        "display.html(), display.markdown(), display.png(), display.svg(), display.json() show rich output.\n",
        ts ? "TypeScript (transpile-only)" : "JavaScript", n->node_version, PACKAGE_VERSION);
    cJSON_AddStringToObject(c, "banner", banner);
    cJSON_AddBoolToObject(c, "debugger", false);
    cJSON *links = cJSON_AddArrayToObject(c, "help_links");
    static const char *const hl[][2] = {
        {"Node.js API", "https://nodejs.org/docs/latest/api/"},
        {"MDN JavaScript Reference", "https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference"},
        {"TypeScript Handbook", "https://www.typescriptlang.org/docs/handbook/intro.html"},
    };
    for (size_t i = 0; i < (ts ? 3 : 2); i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "text", hl[i][0]);
        cJSON_AddStringToObject(l, "url", hl[i][1]);
        cJSON_AddItemToArray(links, l);
    }
    return c;
}

static int node_start(void *self, const kn_host *host)
{
    ip_node *n = self;
    n->host = host;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    n->cap = ip_capture_start(host, n->opts.capture_fds);
    cb_autofree char *err = NULL;
    if (child_start(n, &err) < 0) {
        cb_error("interp", "%s", err);
        return -1;
    }
    return 0;
}

static cJSON *node_execute(void *self, const kn_exec_req *req)
{
    ip_node *n = self;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "code", req->code);
    cJSON_AddNumberToObject(r, "execution_count", req->execution_count);
    cJSON_AddBoolToObject(r, "silent", req->silent);
    cJSON_AddBoolToObject(r, "store_history", req->store_history);
    /* an interrupt came while node started: the cell ends with the interrupt
     * error before its code runs (the Python kernel's KeyboardInterrupt) */
    if (req->interrupted)
        cJSON_AddBoolToObject(r, "interrupted", true);
    if (req->user_expressions)
        cJSON_AddItemToObject(r, "user_expressions", cJSON_Duplicate(req->user_expressions, 1));
    cJSON *reply = request(n, "execute", r, true, req->silent);
    cJSON_Delete(r);
    return reply;
}

static cJSON *forward(ip_node *n, const char *op, const cJSON *content)
{
    cJSON *r = content ? cJSON_Duplicate(content, 1) : cJSON_CreateObject();
    cJSON *reply = request(n, op, r, false, true);
    cJSON_Delete(r);
    return reply;
}

static cJSON *node_complete(void *self, const cJSON *c)
{
    return forward(self, "complete", c);
}

static cJSON *node_inspect(void *self, const cJSON *c)
{
    return forward(self, "inspect", c);
}

static cJSON *node_is_complete(void *self, const cJSON *c)
{
    return forward(self, "is_complete", c);
}

static cJSON *node_comm_info(void *self, const cJSON *c)
{
    (void)self, (void)c;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "status", "ok");
    cJSON_AddObjectToObject(r, "comms");
    return r;
}

static void node_comm(void *self, const char *msg_type, const kn_msg *m)
{
    (void)self, (void)m;
    cb_debug("interp", "node: %s ignored (no comms in the JavaScript kernel)", msg_type);
}

static bool node_clear_interrupt(void *self)
{
    (void)self;
    bool had = g_interrupted != 0;
    g_interrupted = 0;  /* one that arrived while idle went to an idle runner */
    return had;
}

/* What timers and promises print between cells. */
static int node_background(void *self, bool run, int *fd)
{
    ip_node *n = self;
    if (run && n->msg_fd >= 0) {
        cJSON *m;
        int r;
        while ((r = read_msg(n, 0, &m)) > 0) {
            if (handle_output(n, m)) {
                const char *t = cb_json_str(m, "t", "?");
                if (strcmp(t, "input") == 0)
                    answer_input(n, m, false);  /* no cell to ask for: it is rejected */
                else if (strcmp(t, "input_cancel") != 0)
                    cb_warn("interp", "node: unexpected '%s' message between requests", t);
            }
            cJSON_Delete(m);
        }
        if (r < 0) {
            int st = child_reap(n, false);
            cb_autofree char *why = exit_text(st);
            cb_warn("interp", "node ended between cells (%s); the next request starts a new one", why);
        }
        if (n->cap)
            ip_capture_flush(n->cap);
    }
    *fd = n->msg_fd;
    return -1;
}

static void node_stop(void *self, bool restart)
{
    (void)restart;
    ip_node *n = self;
    node_background(self, true, &(int){0});
    child_reap(n, false);
    if (n->cap)
        ip_capture_flush(n->cap);
}

kn_interp *ip_node_new(const ip_node_options *opts, char **err)
{
    *err = NULL;
    cb_autofree char *node = find_node();
    if (!node) {
        *err = cb_strdup("node (Node.js) was not found: install Debian's nodejs package "
                         "(apt-get install nodejs), or set CELLBOX_NODE to its path");
        return NULL;
    }
    bool ts = opts->lang == IP_LANG_TYPESCRIPT;
    /* the version for kernel_info (asked before start()), and whether
     * TypeScript resolves, without loading it */
    static const char probe[] =
        "let t='-';if(process.argv[1]==='typescript'){for(const p of ['" IP_NODE_TS_PATH "','typescript'])"
        "{try{require.resolve(p);t='ok';break}catch(e){}}}process.stdout.write(process.versions.node+' '+t)";
    char *argv[] = {node, (char *)"-e", (char *)probe, (char *)(ts ? "typescript" : "javascript"), NULL};
    int status = 0;
    cb_autofree char *out = run_output(argv, &status);
    if (!out || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strchr(out, ' ')) {
        *err = cb_printf_new("%s does not run as Node.js: install Debian's nodejs package (apt-get install nodejs)",
                             node);
        return NULL;
    }
    char *sp = strchr(out, ' ');
    *sp = '\0';
    if (ts && strcmp(sp + 1, "ok") != 0) {
        *err = cb_strdup("TypeScript was not found for node (" IP_NODE_TS_PATH
                         "): install Debian's node-typescript package (apt-get install node-typescript)");
        return NULL;
    }
    ip_node *n = cb_calloc(1, sizeof *n);
    n->opts = *opts;
    n->node_path = cb_steal_ptr(&node);
    n->node_version = cb_strdup(out);
    n->req_fd = n->msg_fd = -1;
    cb_buf_init(&n->in);
    n->ops = (kn_interp){
        .self = n,
        .kernel_info = node_kernel_info,
        .start = node_start,
        .execute = node_execute,
        .complete = node_complete,
        .inspect = node_inspect,
        .is_complete = node_is_complete,
        .comm_info = node_comm_info,
        .comm = node_comm,
        .stop = node_stop,
        .background = node_background,
        .clear_interrupt = node_clear_interrupt,
    };
    return &n->ops;
}

void ip_node_free(kn_interp *interp)
{
    if (!interp)
        return;
    ip_node *n = interp->self;
    child_reap(n, true);
    ip_capture_stop(n->cap);
    cb_buf_clear(&n->in);
    free(n->node_path);
    free(n->node_version);
    free(n);
}
