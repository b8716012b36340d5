/* sandbox/sb_agent.c: `cellbox agent`, pid 1 of every sandbox.
 *
 * The server clones a child into new namespaces and execs this binary as
 * `cellbox agent` with two fds: 3 = control socket, 4 = setup JSON (read to
 * EOF). The agent:
 *   1. becomes root of its user namespace and runs the generic plan
 *      (sb_plan_run: mounts, pivot_root, loopback), enters a new cgroup
 *      namespace, makes itself non-dumpable and says "warm". Pooled agents
 *      wait here, ahead of any request;
 *   2. receives the specialising record (environment, plan, and the
 *      workspace as a detached mount), runs it (attach /workspace, hostname,
 *      read-only root) and says "ready" (or the failing step);
 *   3. loops: each control record carries a fresh operation socket; the agent
 *      forks a shim for it and goes back to waiting. It reaps every child
 *      (it is pid 1, orphans come to it). EOF on the control socket means
 *      the server is gone: the agent exits and the kernel kills the sandbox.
 *
 * A shim serves one operation (sb_proto.h). It marks itself child subreaper,
 * so every process the command starts, even a daemon that double-forks,
 * stays below it; ending the command's "tree" means killing every
 * descendant of the shim (kill_tree). The command itself runs in bash,
 * after setsid, rlimits, privilege drop, no_new_privs and seccomp
 * (sb_secure.h), with session state restored before and saved after (see
 * WRAPPER below).
 *
 * The agent never trusts the sandbox: it holds no secrets, reads nothing the
 * sandbox can write except through its own pipes, and the sandbox's user
 * cannot signal or trace it (different uid, not dumpable, seccomp).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "main.h"
#include "sandbox/sb_plan.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_pty.h"
#include "sandbox/sb_secure.h"
#include "sandbox/sb_util.h"

#define CTL_FD 3
#define SETUP_FD 4
#define WORKSPACE_FD 5
#define STATE_FD 9              /* where the wrapper writes the session state */
#define STATE_MAX (1u << 20)

/* The shell around every command. A bash is started ahead of time (a
 * "spare") and waits in `. /dev/fd/7`; the shim then writes the request as
 * quoted assignments (__cb_cmd, __cb_state, ...) followed by this wrapper,
 * all inside one { } group so bash parses it whole before running it.
 * Session state (variables, functions, aliases, cwd: what a persistent
 * shell keeps) is evaluated first,
 * the per-command env next, then the command itself, with eval, in this
 * same shell so that `cd` and `export` take effect. On exit the state is
 * written to fd 9, without the per-command variables, for the server. */
static const char WRAPPER[] =
    "builtin printf . >&9\n"  /* "started": read by shell_started() */
    "command exec 7<&-\n"  /* `builtin exec` would not keep the close */
    "builtin shopt -s expand_aliases\n"
    "builtin eval -- \"$__cb_state\"\n"
    "builtin eval -- \"$__cb_env\"\n"
    "builtin unset __cb_state __cb_env\n"
    "__cb_pwd0=$PWD\n"
    "if [ -n \"$__cb_cwd\" ]; then builtin cd -- \"$__cb_cwd\" || builtin exit 1; __cb_cwd=$PWD; fi\n"
    "if [ \"$__cb_save\" = 1 ]; then\n"
    "  __cb_dump() {\n"
    "    __cb_rc=$?\n"
    "    if [ -n \"$__cb_cwd\" ] && [ \"$PWD\" = \"$__cb_cwd\" ]; then __cb_pwd=$__cb_pwd0; else __cb_pwd=$PWD; fi\n"
    "    for __cb_v in $__cb_skip; do builtin unset -v \"$__cb_v\"; done\n"
    "    builtin unset -f __cb_dump\n"
    "    { builtin declare -f\n"
    /* every variable a persistent shell would keep (exported or not, arrays
     * too), without bash's own and read-only ones; no subshell: the names
     * come from ${!X*} and the attributes from ${!name@a} */
    "      for __cb_n in ${!A*} ${!B*} ${!C*} ${!D*} ${!E*} ${!F*} ${!G*} ${!H*} ${!I*} ${!J*} ${!K*} ${!L*} ${!M*} ${!N*} ${!O*} ${!P*} ${!Q*} ${!R*} ${!S*} ${!T*} ${!U*} ${!V*} ${!W*} ${!X*} ${!Y*} ${!Z*} ${!a*} ${!b*} ${!c*} ${!d*} ${!e*} ${!f*} ${!g*} ${!h*} ${!i*} ${!j*} ${!k*} ${!l*} ${!m*} ${!n*} ${!o*} ${!p*} ${!q*} ${!r*} ${!s*} ${!t*} ${!u*} ${!v*} ${!w*} ${!x*} ${!y*} ${!z*} ${!_*}; do\n"
    "        case $__cb_n in __cb_*|_|BASH*|PWD|OLDPWD|SHLVL|RANDOM|SRANDOM|SECONDS|LINENO|FUNCNAME|"
    "PIPESTATUS|HISTCMD|EPOCHSECONDS|EPOCHREALTIME|GROUPS|DIRSTACK|COMP_*|PPID|UID|EUID|SHELLOPTS|"
    "OPTIND|OPTARG|OPTERR|HOSTNAME|HOSTTYPE|MACHTYPE|OSTYPE|IFS) continue;; esac\n"
    "        case ${!__cb_n@a} in *r*) continue;; esac\n"
    "        builtin declare -p \"$__cb_n\"\n"
    "      done\n"
    "      builtin alias -p\n"
    "      builtin printf 'builtin cd -- %q 2>/dev/null\\n' \"$__cb_pwd\"; } >&9 2>/dev/null\n"
    "    builtin exit $__cb_rc\n"
    "  }\n"
    "  builtin trap __cb_dump EXIT\n"
    "else command exec 9>&-; fi\n"
    "builtin unset __cb_save\n"
    "builtin eval -- \"$__cb_cmd\"\n";

typedef struct agent_conf {
    bool isolated;        /* false with --isolation none (development only) */
    char **env;           /* base environment of commands, NULL-terminated */
    char *default_cwd;
} agent_conf;

static agent_conf conf;

/* ---- process trees --------------------------------------------------------- */


/* A shim's own command: reap_all() may collect it while it kills the
 * tree (a command that dies at once), so its status is kept here for the
 * shim instead of being thrown away (which left the shim waiting forever). */
static pid_t keep_pid = -1;
static bool keep_reaped;
static int keep_status;

static void reap_all(void)
{
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        if (p == keep_pid) {
            keep_reaped = true;
            keep_status = st;
        }
}

/* Has the command `pid` ended? (its wait status in *status) */
static bool command_ended(pid_t pid, int *status)
{
    if (waitpid(pid, status, WNOHANG) == pid)
        return true;
    if (keep_reaped && pid == keep_pid) {
        *status = keep_status;
        return true;
    }
    return false;
}

/* Kill the whole tree (but not `keep`, which the caller reaps itself). */
/* Any descendant left? As a child subreaper we adopt every orphan below
 * us, so no children at all means no descendants at all. */
static bool has_children(void)
{
    reap_all();
    return !(waitid(P_ALL, 0, NULL, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD);
}

static void kill_tree(pid_t pgid, int sig, bool until_gone)
{
    if (pgid > 0)
        kill(-pgid, sig);
    if (!has_children())
        return;
    sb_signal_descendants(getpid(), sig);
    if (!until_gone)
        return;
    for (int round = 0; round < 2000; round++) {
        if (!has_children() || sb_signal_descendants(getpid(), SIGKILL) == 0)
            break;
        usleep(round < 10 ? 200 : 2000);
    }
    reap_all();
}

/* ---- one command ------------------------------------------------------------ */

typedef struct shim {
    int sock;
    bool sock_open;      /* still reading from the server */
    bool sock_dead;      /* writes fail: stop sending */
    bool detach;
    pid_t child;
    int pidfd;
    int out, err, st;    /* pipes from the command */
    int script;          /* pipe to the waiting bash's fd 7 */
    char prep_err[256];  /* why the spare bash could not start */
    int in;              /* pipe to the command's stdin, -1 when closed */
    cb_buf in_pending;
    bool in_close_after;
    cb_buf state;
    int64_t deadline_ns, kill_deadline_ns;
    bool timed_out;
} shim;

static void shim_send(shim *s, char type, const void *data, size_t len)
{
    if (s->sock_dead)
        return;
    if (sb_frame_write(s->sock, type, data, len) < 0)
        s->sock_dead = true;
}

static void shim_event(shim *s, cJSON *ev)
{
    cb_autofree char *text = cb_json_print(ev);
    shim_send(s, SB_FRAME_JSON, text, strlen(text));
    cJSON_Delete(ev);
}

static void shim_error(int sock, const char *code, const char *fmt, ...) CB_PRINTF(3, 4);
static void shim_error(int sock, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "ev", "error");
    cJSON_AddStringToObject(ev, "code", code);
    cJSON_AddStringToObject(ev, "message", msg);
    cb_autofree char *text = cb_json_print(ev);
    sb_frame_write(sock, SB_FRAME_JSON, text, strlen(text));
    cJSON_Delete(ev);
}

static bool env_name_ok(const char *k)
{
    if (!*k || (*k >= '0' && *k <= '9'))
        return false;
    for (const char *p = k; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

static bool env_name_ok_n(const char *k, size_t n)
{
    char name[256];
    if (n == 0 || n >= sizeof name)
        return false;
    memcpy(name, k, n);
    name[n] = '\0';
    return env_name_ok(name);
}

/* Read what a pipe has now; returns false on EOF/error. */
static bool pump(shim *s, int fd, char type)
{
    char buf[SB_CHUNK];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) {
        if (type == 'S') {
            if (s->state.len + (size_t)r <= STATE_MAX)
                cb_buf_append(&s->state, buf, (size_t)r);
        } else {
            shim_send(s, type, buf, (size_t)r);
        }
        return true;
    }
    return r < 0 && (errno == EINTR || errno == EAGAIN);
}

static void drain(shim *s, int *fd, char type)
{
    if (*fd < 0)
        return;
    fcntl(*fd, F_SETFL, O_NONBLOCK);
    char buf[SB_CHUNK];
    for (size_t total = 0; total < (64u << 20);) {
        ssize_t r = read(*fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        total += (size_t)r;
        if (type == 'S') {
            if (s->state.len + (size_t)r <= STATE_MAX)
                cb_buf_append(&s->state, buf, (size_t)r);
        } else {
            shim_send(s, type, buf, (size_t)r);
        }
    }
    close(*fd);
    *fd = -1;
}

/* A background process's stdin bytes that left the shim's queue (into the
 * pipe, or dropped once the command closed its stdin): the server counts
 * what it sent minus these to bound what waits here (SB_PROC_STDIN_MAX). */
static void stdin_done(shim *s, size_t n)
{
    if (!s->detach || n == 0)
        return;
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "ev", "stdin");
    cJSON_AddNumberToObject(ev, "bytes", (double)n);
    shim_event(s, ev);
}

static void handle_frame(shim *s)
{
    char type;
    cb_buf payload = CB_BUF_INIT;
    int r = sb_frame_read(s->sock, &type, &payload);
    if (r != 0) {
        s->sock_open = false;
        if (!s->detach) {
            /* the client went away: the command goes too */
            kill_tree(s->child, SIGKILL, false);
            s->sock_dead = true;
        }
        cb_buf_clear(&payload);
        return;
    }
    if (type == SB_FRAME_STDIN && s->in >= 0) {
        cb_buf_append(&s->in_pending, payload.data, payload.len);
    } else if (type == SB_FRAME_STDIN) {
        stdin_done(s, payload.len);  /* stdin is closed: dropped */
    } else if (type == SB_FRAME_STDIN_CLOSE) {
        s->in_close_after = true;
    } else if (type == SB_FRAME_KILL) {
        int sig = SIGTERM, grace = 0;
        sscanf(payload.data ? payload.data : "", "%d %d", &sig, &grace);
        if (sig <= 0 || sig >= 65)
            sig = SIGTERM;
        kill_tree(s->child, sig, false);
        if (grace > 0 && sig != SIGKILL)
            s->kill_deadline_ns = cb_mono_ns() + (int64_t)grace * 1000000;
    }
    cb_buf_clear(&payload);
}

static void flush_stdin(shim *s)
{
    while (s->in >= 0 && s->in_pending.len > 0) {
        ssize_t w = write(s->in, s->in_pending.data, s->in_pending.len);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            close(s->in);  /* EPIPE: the command stopped reading */
            s->in = -1;
            stdin_done(s, s->in_pending.len);
            cb_buf_reset(&s->in_pending);
            return;
        }
        cb_buf_consume(&s->in_pending, (size_t)w);
        stdin_done(s, (size_t)w);
    }
    if (s->in >= 0 && s->in_close_after && s->in_pending.len == 0) {
        close(s->in);
        s->in = -1;
    }
}

/* The steps every process started for a client goes through once its fds
 * are in place (a command's bash, a terminal's shell), in this order:
 * default signals, an OOM score that makes it die before the agent, rlimits,
 * the sandbox user, its folder (or "/" when cwd_fallback and the folder is
 * gone), the seccomp filter. -1 with errno and *stage naming the step. */
static int confine_child(const char *cwd, bool cwd_fallback, const char **stage)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < 32; sig++)
        signal(sig, SIG_DFL);
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        ssize_t CB_UNUSED w = write(oom, "500", 3);
        close(oom);
    }
    *stage = "rlimits";
    if (sb_secure_rlimits() < 0)
        return -1;
    if (conf.isolated) {
        *stage = "drop privileges";
        if (sb_secure_drop_privs(SB_USER_UID, SB_USER_GID) < 0)
            return -1;
    }
    *stage = "cwd";
    if (chdir(cwd) < 0 && (!cwd_fallback || chdir("/") < 0))
        return -1;
    if (conf.isolated) {
        *stage = "seccomp";
        if (sb_secure_seccomp() < 0)
            return -1;
    }
    return 0;
}

/* A forked child could not become its program: "<errno> <stage>" on errfd
 * (close-on-exec, so silence there means exec worked), then exit 127. */
CB_NORETURN static void child_fail(int errfd, const char *stage)
{
    int e = errno;
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%d %s", e, stage);
    ssize_t CB_UNUSED w = write(errfd, msg, (size_t)n);
    _exit(127);
}

/* The forked command: set up fds, identity and filter, exec bash. Reports a
 * failure as an errno on errfd (close-on-exec: silence means exec worked). */
CB_NORETURN static void child_exec(int in, int out, int err, int st, int script, int errfd,
                                   const char *cwd, char **envp)
{
    const char *stage = "setsid";
    if (setsid() < 0)
        goto fail;
    stage = "fds";
    /* lift every fd above the targets first, so no dup2 clobbers another */
    in = fcntl(in, F_DUPFD_CLOEXEC, 20);
    out = fcntl(out, F_DUPFD_CLOEXEC, 20);
    err = fcntl(err, F_DUPFD_CLOEXEC, 20);
    if (st >= 0)
        st = fcntl(st, F_DUPFD_CLOEXEC, 20);
    script = fcntl(script, F_DUPFD_CLOEXEC, 20);
    errfd = fcntl(errfd, F_DUPFD_CLOEXEC, 20);
    if (in < 0 || out < 0 || err < 0 || errfd < 0 || script < 0 || dup2(in, 0) < 0 ||
        dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(script, 7) < 0)
        goto fail;
    if (st >= 0 && dup2(st, STATE_FD) < 0)
        goto fail;
    if (dup2(errfd, 8) < 0)
        goto fail;
    fcntl(8, F_SETFD, FD_CLOEXEC);
    errfd = 8;
    syscall(SYS_close_range, 3, 6, 0);
    syscall(SYS_close_range, STATE_FD + 1, ~0U, 0);
    if (st < 0)
        close(STATE_FD);
    if (confine_child(cwd, false, &stage) < 0)
        goto fail;
    stage = "exec /bin/bash";
    char *argv[] = {"bash", "--noprofile", "--norc", "-c", "builtin . /dev/fd/7", NULL};
    execve("/bin/bash", argv, envp);
fail:
    child_fail(errfd, stage);
}

static char *minimal_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", NULL};

/* Start the command's bash ahead of the request: pipes, fork, identity,
 * filter, exec; it then waits for its script on fd 7. */
static void shim_prepare(shim *s)
{
    memset(s, 0, sizeof *s);
    s->sock = s->child = s->pidfd = s->out = s->err = s->st = s->in = s->script = -1;
    cb_buf_init(&s->in_pending);
    cb_buf_init(&s->state);
    int pin[2], pout[2], perr[2], pst[2], pscript[2], perrfd[2];
    if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
        pipe2(pst, O_CLOEXEC) < 0 || pipe2(pscript, O_CLOEXEC) < 0 || pipe2(perrfd, O_CLOEXEC) < 0) {
        snprintf(s->prep_err, sizeof s->prep_err, "pipe: %s", strerror(errno));
        return;
    }
    /* bash opens the script pipe again through /dev/fd/7, as the
     * sandbox's user: the pipe must be theirs */
    if (conf.isolated)
        fchown(pscript[0], SB_USER_UID, SB_USER_GID);
    /* vfork: no page tables to copy; we wait until the child has exec'd
     * (or failed, which it reports on perrfd). child_exec only makes
     * syscalls on its own stack. */
    const char *cwd = conf.default_cwd ? conf.default_cwd : "/";
    pid_t pid = vfork();
    if (pid < 0) {
        snprintf(s->prep_err, sizeof s->prep_err, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0)
        child_exec(pin[0], pout[1], perr[1], pst[1], pscript[0], perrfd[1], cwd, minimal_env);
    close(pin[0]), close(pout[1]), close(perr[1]), close(pst[1]), close(pscript[0]);
    close(perrfd[1]);
    s->child = pid;
    keep_pid = pid;
    keep_reaped = false;
    s->in = pin[1];
    s->out = pout[0];
    s->err = perr[0];
    s->st = pst[0];
    s->script = pscript[1];
    char emsg[256];
    ssize_t en = read(perrfd[0], emsg, sizeof emsg - 1);
    close(perrfd[0]);
    if (en > 0) {
        emsg[en] = '\0';
        int e = atoi(emsg);
        const char *stage = strchr(emsg, ' ') ? strchr(emsg, ' ') + 1 : "start";
        waitpid(pid, NULL, 0);
        s->child = -1;
        snprintf(s->prep_err, sizeof s->prep_err, "%s: %s", stage, strerror(e));
        return;
    }
    s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    fcntl(s->in, F_SETFL, O_NONBLOCK);
}

static void assign(cb_buf *b, const char *name, const char *value)
{
    cb_buf_printf(b, "%s=", name);
    sb_sh_quote(b, value);
    cb_buf_putc(b, '\n');
}

/* End the prepared shell (killed if it still runs) and free what it held:
 * a terminal has no use for it, a dead one is replaced (shim_restart). */
static void shim_discard(shim *s)
{
    int st;
    if (s->child > 0 && !command_ended(s->child, &st))
        kill(s->child, SIGKILL), waitpid(s->child, NULL, 0);
    for (int *fd = (int[]){s->in, s->out, s->err, s->st, s->script, s->pidfd, -2}; *fd != -2; fd++)
        if (*fd >= 0)
            close(*fd);
    s->in = s->out = s->err = s->st = s->script = s->pidfd = -1;
    s->child = -1;
    keep_pid = -1;
    cb_buf_clear(&s->in_pending);
    cb_buf_clear(&s->state);
}

/* Replace a dead waiting shell with a fresh one. */
static void shim_restart(shim *s)
{
    shim_discard(s);
    shim_prepare(s);
}

/* Has the shell begun the wrapper? Its first act is to write one byte on
 * the state pipe. False when it died before (read EOF or its pidfd). */
static bool shell_started(shim *s)
{
    for (;;) {
        struct pollfd p[2] = {{s->st, POLLIN, 0}, {s->pidfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (p[0].revents) {
            char c;
            ssize_t n = read(s->st, &c, 1);
            if (n == 1)
                return true;
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            return false;
        }
        int st;
        if (p[1].revents && command_ended(s->child, &st))
            return false;
    }
}

/* Serve one request with a prepared shim. */
static int shim_serve(shim *s, int sock, cJSON *req)
{
    /* The waiting shell runs as the sandbox's user, who may have killed it
     * (kill -9 -1): then start a fresh one. */
    int dead_status;
    if (s->child > 0 && command_ended(s->child, &dead_status))
        shim_restart(s);
    s->sock = sock;
    s->sock_open = true;
    if (s->child < 0) {
        shim_error(sock, "INTERNAL_ERROR", "%s", s->prep_err[0] ? s->prep_err : "no shell");
        return 1;
    }
    const char *command = cb_json_str(req, "command", NULL);
    if (!command) {
        shim_error(sock, "INVALID_COMMAND", "command is required");
        return 1;
    }
    s->detach = cb_json_bool(req, "detach", false);
    bool save = cb_json_bool(req, "saveState", false);
    bool want_stdin = cb_json_bool(req, "stdin", false);
    long long timeout_ms = cb_json_int(req, "timeoutMs", 0);
    const char *cwd = cb_json_str(req, "cwd", "");

    /* the script: the request as quoted assignments, then the wrapper */
    cb_buf envs = CB_BUF_INIT, skip = CB_BUF_INIT, script = CB_BUF_INIT;
    cJSON *env = cb_json_obj(req, "env");
    cJSON *kv;
    cJSON_ArrayForEach(kv, env) {
        if (!cJSON_IsString(kv) || !env_name_ok(kv->string)) {
            shim_error(sock, "VALIDATION_FAILED", "env: '%s' is not a valid variable", kv->string);
            return 1;
        }
        cb_buf_printf(&envs, "builtin export %s=", kv->string);
        sb_sh_quote(&envs, kv->valuestring);
        cb_buf_putc(&envs, '\n');
        cb_buf_printf(&skip, "%s ", kv->string);
    }
    cb_buf_puts(&script, "{\n");
    /* the sandbox's base environment (the shell started before it was known) */
    for (char **ep = conf.env; ep && *ep; ep++) {
        const char *eq = strchr(*ep, '=');
        if (!eq || !env_name_ok_n(*ep, (size_t)(eq - *ep)))
            continue;
        cb_buf_printf(&script, "builtin export %.*s=", (int)(eq - *ep), *ep);
        sb_sh_quote(&script, eq + 1);
        cb_buf_putc(&script, '\n');
    }
    assign(&script, "__cb_cmd", command);
    assign(&script, "__cb_state", cb_json_str(req, "state", ""));
    assign(&script, "__cb_env", envs.data ? envs.data : "");
    assign(&script, "__cb_skip", skip.data ? skip.data : "");
    assign(&script, "__cb_cwd", cwd);
    cb_buf_printf(&script, "__cb_save=%d\n", save ? 1 : 0);
    cb_buf_puts(&script, WRAPPER);
    cb_buf_puts(&script, "}\n");
    cb_buf_clear(&envs);
    cb_buf_clear(&skip);

    int64_t t0 = cb_mono_ns();
    /* A `kill -9 -1` in the sandbox's previous command may have reached this
     * waiting shell without having ended it yet: when the shell dies before
     * it begins the wrapper, the command never ran, so run it in a fresh one. */
    for (int attempt = 0;; attempt++) {
        bool ok = cb_write_all(s->script, script.data, script.len) == 0;
        close(s->script);
        s->script = -1;
        (void)ok;  /* a shell that died early shows up below, with its stderr */
        if (shell_started(s) || attempt == 2)
            break;
        shim_restart(s);
        if (s->child < 0) {
            cb_buf_clear(&script);
            shim_error(sock, "INTERNAL_ERROR", "%s", s->prep_err[0] ? s->prep_err : "no shell");
            return 1;
        }
    }
    cb_buf_clear(&script);
    if (!want_stdin && !s->detach) {
        close(s->in);
        s->in = -1;
    }
    pid_t pid = s->child;
    cJSON *start = cJSON_CreateObject();
    cJSON_AddStringToObject(start, "ev", "start");
    cJSON_AddNumberToObject(start, "pid", pid);
    shim_event(s, start);
    if (timeout_ms > 0)
        s->deadline_ns = t0 + timeout_ms * 1000000;

    int status = 0;
    bool exited = false;
    while (!exited) {
        struct pollfd p[6];
        int np = 0, i_out = -1, i_err = -1, i_st = -1, i_sock = -1, i_in = -1, i_pid = -1;
        if (s->out >= 0)
            i_out = np, p[np++] = (struct pollfd){s->out, POLLIN, 0};
        if (s->err >= 0)
            i_err = np, p[np++] = (struct pollfd){s->err, POLLIN, 0};
        if (s->st >= 0)
            i_st = np, p[np++] = (struct pollfd){s->st, POLLIN, 0};
        if (s->sock_open)
            i_sock = np, p[np++] = (struct pollfd){s->sock, POLLIN, 0};
        if (s->in >= 0 && s->in_pending.len)
            i_in = np, p[np++] = (struct pollfd){s->in, POLLOUT, 0};
        i_pid = np, p[np++] = (struct pollfd){s->pidfd, POLLIN, 0};
        int timeout = -1;
        int64_t now = cb_mono_ns();
        int64_t next = 0;
        if (s->deadline_ns && !s->timed_out)
            next = s->deadline_ns;
        if (s->kill_deadline_ns && (!next || s->kill_deadline_ns < next))
            next = s->kill_deadline_ns;
        if (next)
            timeout = next <= now ? 0 : (int)((next - now) / 1000000 + 1);
        int r = poll(p, (nfds_t)np, timeout);
        if (r < 0 && errno != EINTR)
            break;
        now = cb_mono_ns();
        if (s->deadline_ns && !s->timed_out && now >= s->deadline_ns) {
            s->timed_out = true;
            kill_tree(pid, SIGKILL, false);
        }
        if (s->kill_deadline_ns && now >= s->kill_deadline_ns) {
            s->kill_deadline_ns = 0;
            kill_tree(pid, SIGKILL, false);
        }
        if (r <= 0)
            continue;
        if (i_out >= 0 && p[i_out].revents && !pump(s, s->out, SB_FRAME_STDOUT))
            close(s->out), s->out = -1;
        if (i_err >= 0 && p[i_err].revents && !pump(s, s->err, SB_FRAME_STDERR))
            close(s->err), s->err = -1;
        if (i_st >= 0 && p[i_st].revents && !pump(s, s->st, 'S'))
            close(s->st), s->st = -1;
        if (i_sock >= 0 && p[i_sock].revents)
            handle_frame(s);
        if (i_in >= 0 && p[i_in].revents)
            flush_stdin(s);
        else if (s->in >= 0)
            flush_stdin(s);
        if (p[i_pid].revents) {
            if (command_ended(pid, &status))
                exited = true;
        }
    }
    int64_t t1 = cb_mono_ns();
    /* End whatever the command left running first (a fork bomb would
     * otherwise keep the pipes full forever), then take what was written:
     * it stays in the pipes after its writers are gone. */
    kill_tree(0, SIGKILL, true);
    drain(s, &s->out, SB_FRAME_STDOUT);
    drain(s, &s->err, SB_FRAME_STDERR);
    drain(s, &s->st, 'S');
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "ev", "exit");
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    cJSON_AddNumberToObject(ev, "exitCode", code);
    if (WIFSIGNALED(status))
        cJSON_AddStringToObject(ev, "signal", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    cJSON_AddBoolToObject(ev, "timedOut", s->timed_out);
    cJSON_AddNumberToObject(ev, "durationMs", (double)(t1 - t0) / 1e6);
    if (save && s->state.len > 0 && !s->timed_out)
        cJSON_AddStringToObject(ev, "state", s->state.data);
    shim_event(s, ev);
    return 0;
}

/* ---- terminals (op "pty", see sb_pty.h) -------------------------------------- */

/* The terminal's shell: a new session on the pty, which becomes its
 * controlling terminal, then the same identity and filter as a command.
 * bash reads its startup script from fd 7 (a memfd). Reports a failure as
 * "errno stage" on errfd, like child_exec. */
CB_NORETURN static void pty_child_exec(int slave, int rc, int errfd, const char *cwd, char **argv,
                                       char **envp)
{
    const char *stage = "setsid";
    if (setsid() < 0)
        goto fail;
    stage = "controlling terminal";
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        goto fail;
    stage = "fds";
    slave = fcntl(slave, F_DUPFD_CLOEXEC, 20);
    rc = fcntl(rc, F_DUPFD_CLOEXEC, 20);
    errfd = fcntl(errfd, F_DUPFD_CLOEXEC, 20);
    if (slave < 0 || rc < 0 || errfd < 0 || dup2(slave, 0) < 0 || dup2(slave, 1) < 0 ||
        dup2(slave, 2) < 0 || dup2(rc, 7) < 0 || dup2(errfd, 8) < 0)
        goto fail;
    fcntl(8, F_SETFD, FD_CLOEXEC);
    errfd = 8;
    syscall(SYS_close_range, 3, 6, 0);
    syscall(SYS_close_range, 9, ~0U, 0);
    if (confine_child(cwd, true, &stage) < 0)
        goto fail;
    stage = "exec /bin/bash";
    execve("/bin/bash", argv, envp);
fail:
    child_fail(errfd, stage);
}

/* The startup script of a terminal's bash (fd 7): the usual bashrc for an
 * interactive shell, then the session's state (its folder and variables,
 * as for a command), TERM, and the command itself when there is one. */
static char *pty_script(const cJSON *req, bool interactive)
{
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, "{\ncommand exec 7<&-\n");
    if (interactive)
        cb_buf_puts(&b, "[ -r /etc/bash.bashrc ] && builtin . /etc/bash.bashrc\n"
                        "[ -r ~/.bashrc ] && builtin . ~/.bashrc\n");
    assign(&b, "__cb_state", cb_json_str(req, "state", ""));
    cb_buf_puts(&b, "builtin eval -- \"$__cb_state\"\nbuiltin unset __cb_state\n"
                    "builtin export TERM=xterm-256color\n");
    const char *command = cb_json_str(req, "command", NULL);
    if (!interactive) {
        assign(&b, "__cb_cmd", command);
        cb_buf_puts(&b, "builtin eval -- \"$__cb_cmd\"\n");
    }
    cb_buf_puts(&b, "}\n");
    return cb_buf_steal(&b);
}

/* HOME of the sandbox's environment: where a terminal starts when the
 * agent did not know the default folder yet (the shim forked before). */
static const char *env_home(void)
{
    for (char **ep = conf.env; ep && *ep; ep++)
        if (strncmp(*ep, "HOME=", 5) == 0)
            return *ep + 5;
    return "/";
}

static int dim(const cJSON *req, const char *name, int def)
{
    long long v = cb_json_int(req, name, def);
    return v >= 1 && v <= SB_PTY_DIM_MAX ? (int)v : def;
}

/* Serve a terminal: pty, shell, then bytes both ways until the shell ends
 * (exit event) or the server hangs up (SIGHUP to the shell's tree, SIGKILL
 * after a grace). Buffers are bounded: the pty is not read while the output
 * towards the server is full, the channel not while the input is. */
static int pty_serve(shim *s, int sock, cJSON *req)
{
    shim_discard(s);
    const char *command = cb_json_str(req, "command", NULL);
    bool interactive = !command || !*command;
    struct winsize wsz = {(unsigned short)dim(req, "rows", 24), (unsigned short)dim(req, "cols", 80), 0, 0};
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
        shim_error(sock, "INTERNAL_ERROR", "no pseudo-terminal: %s", strerror(errno));
        return 1;
    }
    char name[128];
    int slave = -1;
    if (ptsname_r(master, name, sizeof name) != 0 ||
        (slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
        shim_error(sock, "INTERNAL_ERROR", "pseudo-terminal: %s", strerror(errno));
        return 1;
    }
    if (conf.isolated && fchown(slave, SB_USER_UID, SB_USER_GID) < 0)
        cb_warn("agent", "chown %s: %s", name, strerror(errno));
    ioctl(master, TIOCSWINSZ, &wsz);

    cb_autofree char *script = pty_script(req, interactive);
    int rc = memfd_create("cellbox-pty-rc", MFD_CLOEXEC);
    if (rc < 0 || cb_write_all(rc, script, strlen(script)) < 0) {
        shim_error(sock, "INTERNAL_ERROR", "startup script: %s", strerror(errno));
        return 1;
    }
    if (conf.isolated)
        fchown(rc, SB_USER_UID, SB_USER_GID);
    /* the environment: the sandbox's, with TERM */
    size_t n = 0;
    for (char **ep = conf.env; ep && *ep; ep++)
        n++;
    char **envp = cb_calloc(n + 3, sizeof *envp);
    size_t k = 0;
    for (char **ep = conf.env; ep && *ep; ep++)
        if (strncmp(*ep, "TERM=", 5) != 0)
            envp[k++] = *ep;
    envp[k++] = "TERM=xterm-256color";
    if (!conf.env)
        envp[k++] = minimal_env[0];
    const char *cwd = conf.default_cwd ? conf.default_cwd : env_home();
    char *iargv[] = {"bash", "--rcfile", "/dev/fd/7", "-i", NULL};
    char *cargv[] = {"bash", "-l", "-c", "builtin . /dev/fd/7", NULL};
    int perr[2];
    if (pipe2(perr, O_CLOEXEC) < 0) {
        shim_error(sock, "INTERNAL_ERROR", "pipe: %s", strerror(errno));
        return 1;
    }
    pid_t pid = vfork();
    if (pid == 0)
        pty_child_exec(slave, rc, perr[1], cwd, interactive ? iargv : cargv, envp);
    close(perr[1]);
    close(slave);
    close(rc);
    free(envp);
    char emsg[256];
    ssize_t en = pid < 0 ? 0 : read(perr[0], emsg, sizeof emsg - 1);
    close(perr[0]);
    if (pid < 0 || en > 0) {
        emsg[en > 0 ? en : 0] = '\0';
        if (pid > 0)
            waitpid(pid, NULL, 0);
        const char *stage = strchr(emsg, ' ') ? strchr(emsg, ' ') + 1 : "fork";
        shim_error(sock, "INTERNAL_ERROR", "terminal: %s: %s", stage,
                   strerror(pid < 0 ? errno : atoi(emsg)));
        return 1;
    }
    keep_pid = pid;
    keep_reaped = false;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    s->sock = sock;
    cJSON *start = cJSON_CreateObject();
    cJSON_AddStringToObject(start, "ev", "start");
    cJSON_AddNumberToObject(start, "pid", pid);
    shim_event(s, start);

    fcntl(master, F_SETFL, O_NONBLOCK);
    fcntl(sock, F_SETFL, O_NONBLOCK);
    cb_buf out = CB_BUF_INIT, in = CB_BUF_INIT, rbuf = CB_BUF_INIT;
    bool sock_open = true, master_eof = false, exited = false;
    int64_t hup_deadline = 0;
    int status = 0;
    char buf[SB_CHUNK];
    while (!exited) {
        struct pollfd p[4];
        int np = 0, im = -1, is = -1;
        short mev = 0, sev = 0;
        if (!master_eof && out.len < SB_PTY_BUF_MAX)
            mev |= POLLIN;
        if (!master_eof && in.len)
            mev |= POLLOUT;
        if (mev)
            im = np, p[np++] = (struct pollfd){master, mev, 0};
        if (sock_open && in.len < SB_PTY_BUF_MAX)
            sev |= POLLIN;
        if (!s->sock_dead && out.len)
            sev |= POLLOUT;
        if (sev)
            is = np, p[np++] = (struct pollfd){sock, sev, 0};
        int ip = np;
        p[np++] = (struct pollfd){pidfd, POLLIN, 0};
        int timeout = -1;
        if (hup_deadline) {
            int64_t left = hup_deadline - cb_mono_ns();
            timeout = left <= 0 ? 0 : (int)(left / 1000000) + 1;
        }
        int r = poll(p, (nfds_t)np, timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (hup_deadline && cb_mono_ns() >= hup_deadline)
            break;  /* hung up and still running: killed below */
        if (r <= 0)
            continue;
        if (im >= 0 && (p[im].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t got = read(master, buf, sizeof buf);
            if (got > 0)
                sb_frame_put(&out, SB_FRAME_STDOUT, buf, (size_t)got);
            else if (got == 0 || (errno != EAGAIN && errno != EINTR))
                master_eof = true;  /* EIO: no slave fd left open */
        }
        if (im >= 0 && (p[im].revents & POLLOUT) && in.len) {
            ssize_t w = write(master, in.data, in.len);
            if (w > 0)
                cb_buf_consume(&in, (size_t)w);
        }
        if (is >= 0 && (p[is].revents & POLLOUT)) {
            ssize_t w = write(sock, out.data, out.len);
            if (w > 0)
                cb_buf_consume(&out, (size_t)w);
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                s->sock_dead = true, cb_buf_reset(&out);
        }
        if (is >= 0 && (p[is].revents & (POLLIN | POLLHUP | POLLERR)) && (sev & POLLIN)) {
            ssize_t got = read(sock, buf, sizeof buf);
            if (got > 0) {
                cb_buf_append(&rbuf, buf, (size_t)got);
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                /* the client is gone: hang up the shell's whole tree */
                sock_open = false;
                s->sock_dead = true;
                cb_buf_reset(&out);
                kill_tree(pid, SIGHUP, false);
                hup_deadline = cb_mono_ns() + 1000 * 1000000LL;
            }
        }
        /* frames from the server, as long as the input has room: the rest
         * waits in rbuf (never dropped), and the socket is not read */
        char type;
        const char *data;
        size_t len;
        long fl;
        while (in.len < SB_PTY_BUF_MAX && (fl = sb_frame_next(&rbuf, &type, &data, &len)) > 0) {
            if (type == SB_FRAME_STDIN) {
                cb_buf_append(&in, data, len);
            } else if (type == SB_FRAME_RESIZE) {
                int c = 0, rw = 0;
                char dims[32];
                snprintf(dims, sizeof dims, "%.*s", (int)(len < 31 ? len : 31), data);
                if (sscanf(dims, "%d %d", &c, &rw) == 2 && c >= 1 && rw >= 1 &&
                    c <= SB_PTY_DIM_MAX && rw <= SB_PTY_DIM_MAX) {
                    wsz.ws_col = (unsigned short)c, wsz.ws_row = (unsigned short)rw;
                    ioctl(master, TIOCSWINSZ, &wsz);  /* the foreground job gets SIGWINCH */
                }
            } else if (type == SB_FRAME_KILL) {
                char num[16];
                snprintf(num, sizeof num, "%.*s", (int)(len < 15 ? len : 15), data);
                int sig = atoi(num);
                kill_tree(pid, sig > 0 && sig < 65 ? sig : SIGTERM, false);
            }
            cb_buf_consume(&rbuf, (size_t)fl);
        }
        if (in.len < SB_PTY_BUF_MAX && sb_frame_next(&rbuf, &type, &data, &len) < 0)
            cb_buf_reset(&rbuf);  /* garbage: the server never sends it */
        if (p[ip].revents && command_ended(pid, &status))
            exited = true;
    }
    /* The shell is gone (or hung up): what it printed last is still in the
     * pty; whatever it left running goes now (its session ends with it). */
    while (!master_eof && out.len < SB_PTY_BUF_MAX) {
        ssize_t got = read(master, buf, sizeof buf);
        if (got <= 0)
            break;
        sb_frame_put(&out, SB_FRAME_STDOUT, buf, (size_t)got);
    }
    kill_tree(0, SIGKILL, true);
    if (!exited)
        command_ended(pid, &status);
    close(master);
    close(pidfd);
    if (!s->sock_dead) {
        fcntl(sock, F_SETFL, 0);
        if (cb_write_all(sock, out.data, out.len) < 0)
            s->sock_dead = true;
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "ev", "exit");
        cJSON_AddNumberToObject(ev, "exitCode", WIFEXITED(status) ? WEXITSTATUS(status)
                                                                   : 128 + WTERMSIG(status));
        if (WIFSIGNALED(status))
            cJSON_AddStringToObject(ev, "signal", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
        shim_event(s, ev);
    }
    cb_buf_clear(&out), cb_buf_clear(&in), cb_buf_clear(&rbuf);
    return 0;
}

/* conf.env from a JSON array of "NAME=value" strings (owned, NULL-terminated;
 * other items are skipped). */
static char **env_from_json(const cJSON *arr)
{
    char **env = cb_calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(char *));
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
        if (cJSON_IsString(e))
            env[n++] = cb_strdup(e->valuestring);
    return env;
}

/* A shim process: prepare a shell, wait for the agent to hand over an
 * operation socket (on `handoff`), serve it, exit. */
CB_NORETURN static void shim_main(int handoff)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    shim s;
    shim_prepare(&s);
    static char buf[256 * 1024];
    int sock = -1;
    ssize_t n = sb_ctl_recv(handoff, buf, sizeof buf - 1, &sock);
    close(handoff);
    if (n <= 0 || sock < 0) {
        kill_tree(0, SIGKILL, true);
        _exit(0);
    }
    buf[n] = '\0';
    cJSON *ho = cb_json_parse(buf, (size_t)n);
    conf.env = env_from_json(cb_json_arr(ho, "env"));
    cJSON_Delete(ho);
    char type;
    cb_buf req = CB_BUF_INIT;
    int rc = 1;
    if (sb_frame_read(sock, &type, &req) == 0 && type == SB_FRAME_JSON) {
        cJSON *j = cb_json_parse(req.data, req.len);
        const char *op = cb_json_str(j, "op", "");
        if (strcmp(op, "exec") == 0)
            rc = shim_serve(&s, sock, j);
        else if (strcmp(op, "pty") == 0)
            rc = pty_serve(&s, sock, j);
        else
            shim_error(sock, "VALIDATION_FAILED", "unknown operation '%s'", op);
        cJSON_Delete(j);
    }
    kill_tree(0, SIGKILL, true);
    _exit(rc);
}

/* ---- setup and main loop ------------------------------------------------- */

static void report(const char *msg)
{
    sb_ctl_send(CTL_FD, msg, strlen(msg), -1);
}

CB_NORETURN static void setup_fail(const char *fmt, ...) CB_PRINTF(1, 2);
static void setup_fail(const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(msg, sizeof msg, "error ");
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    report(msg);
    _exit(1);
}

/* Fork a shim that prepares a shell and waits for work; returns the
 * agent's end of its hand-over socket, or -1. */
static int spawn_spare(int sfd, const sigset_t *mask)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(CTL_FD);
        close(sfd);
        close(sv[0]);
        sigprocmask(SIG_UNBLOCK, mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        shim_main(sv[1]);
    }
    close(sv[1]);
    /* keep low fd numbers free: the workspace mount arrives as fd 5 */
    int high = fcntl(sv[0], F_DUPFD_CLOEXEC, 64);
    close(sv[0]);
    return high;
}

static void run_plan(const cJSON *steps)
{
    sb_plan plan;
    sb_plan_init(&plan);
    if (sb_plan_from_json(&plan, steps) < 0)
        setup_fail("setup: malformed plan");
    sb_error err = {0};
    if (sb_plan_run(&plan, false, &err) < 0)
        setup_fail("%s", err.msg);
    sb_plan_clear(&plan);
}

/* After pivot_root, let go of everything that still comes from the host's
 * file systems: stdin and stdout (the host's /dev/null) are reopened from
 * the new root, and the agent starts itself again from the binary bound at
 * /run/cellbox (sb_plan.h), so that its program and libraries are mapped from
 * the sandbox's own mounts (stderr is the server's log pipe). Any host file
 * held open or mapped would keep this namespace's copy of the host's mount
 * tree alive, and with it every host mount of the moment: an unmounted
 * disk could not be released while sandboxes run. */
static void drop_host_tree(void)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0)
        setup_fail("reopen stdio in the sandbox: %s", strerror(errno));
    close(null);
    char *envp[] = {NULL};
    if (access(SB_AGENT_IN_SANDBOX, X_OK) == 0) {
        execve(SB_AGENT_IN_SANDBOX, (char *[]){"cellbox-agent", "--rooted", NULL}, envp);
        setup_fail("start the agent again from %s: %s", SB_AGENT_IN_SANDBOX, strerror(errno));
    }
    if (access(SB_SELF_IN_SANDBOX, X_OK) == 0) {
        execve(SB_SELF_IN_SANDBOX, (char *[]){"cellbox", "agent", "--rooted", NULL}, envp);
        setup_fail("start the agent again from %s: %s", SB_SELF_IN_SANDBOX, strerror(errno));
    }
    cb_warn("agent", "neither %s nor %s in the sandbox: the agent keeps the host's binary mapped",
            SB_AGENT_IN_SANDBOX, SB_SELF_IN_SANDBOX);
}

static int agent_run(void);

int sb_cmd_agent(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        printf("usage: cellbox agent   (internal: pid 1 of a sandbox, started by cellbox serve)\n");
        return 0;
    }
    struct stat st;
    if (fstat(CTL_FD, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "cellbox agent: internal command, started by 'cellbox serve'\n");
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "--rooted") == 0) {
        /* started again by ourselves, from inside the new root (see below) */
        conf.isolated = true;
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        return agent_run();
    }
    /* Phase 1, generic: the setup JSON on fd 4 holds the generic plan. */
    cb_buf in = CB_BUF_INIT;
    char chunk[65536];
    for (;;) {
        ssize_t r = read(SETUP_FD, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        cb_buf_append(&in, chunk, (size_t)r);
    }
    close(SETUP_FD);
    cJSON *setup = cb_json_parse(in.data ? in.data : "", in.len);
    cb_buf_clear(&in);
    if (!setup)
        setup_fail("setup: malformed JSON");
    conf.isolated = strcmp(cb_json_str(setup, "isolation", "full"), "none") != 0;
    if (conf.isolated) {
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
            setup_fail("become root of the user namespace: %s", strerror(errno));
        run_plan(cb_json_arr(setup, "plan"));
        /* the server's programs were attached by the plan (which closed
         * their fds); none may go on into the sandbox */
        close(SB_SELF_FD), close(SB_AGENT_FD);
        if (unshare(CLONE_NEWCGROUP) < 0)
            setup_fail("cgroup namespace: %s", strerror(errno));
        cJSON_Delete(setup);
        drop_host_tree();
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    } else {
        cJSON_Delete(setup);
    }
    return agent_run();
}

/* The rest of the agent's life: pooled, then this sandbox's pid 1. */
static int agent_run(void)
{
    /* the server started us at idle priority for the heavy part */
    sched_setscheduler(0, SCHED_OTHER, &(struct sched_param){0});
    /* The first spare shell starts now, while the agent waits in the pool:
     * its environment comes with each hand-over, and its wrapper cds into
     * the session's folder, so it does not matter that this sandbox's
     * /workspace and identity arrive later. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd >= 0 && sfd < 64) {
        int high = fcntl(sfd, F_DUPFD_CLOEXEC, 64);
        close(sfd);
        sfd = high;
    }
    signal(SIGPIPE, SIG_IGN);
    int spare = spawn_spare(sfd, &mask);
    report("warm");

    /* Phase 2, this sandbox: one control record with the specialising plan,
     * the environment and (as SCM_RIGHTS) the detached workspace mount. */
    static char spec_buf[256 * 1024];
    int ws = -1;
    ssize_t n = sb_ctl_recv(CTL_FD, spec_buf, sizeof spec_buf - 1, &ws);
    if (n <= 0)
        return 0;  /* the server went away while we were pooled */
    spec_buf[n] = '\0';
    if (ws >= 0 && ws != WORKSPACE_FD) {
        dup2(ws, WORKSPACE_FD);
        close(ws);
    }
    cJSON *spec = cb_json_parse(spec_buf, (size_t)n);
    if (!spec)
        setup_fail("specialise: malformed JSON");
    conf.default_cwd = cb_strdup(cb_json_str(spec, "cwd", "/workspace"));
    conf.env = env_from_json(cb_json_arr(spec, "env"));
    if (conf.isolated)
        run_plan(cb_json_arr(spec, "plan"));
    cJSON_Delete(spec);

    /* what every hand-over tells the shim: the sandbox's environment */
    cJSON *ho = cJSON_CreateObject();
    cJSON *hoenv = cJSON_AddArrayToObject(ho, "env");
    for (char **ep = conf.env; ep && *ep; ep++)
        cJSON_AddItemToArray(hoenv, cJSON_CreateString(*ep));
    char *handoff = cb_json_print(ho);
    cJSON_Delete(ho);
    size_t handoff_len = strlen(handoff);
    report("ready");

    /* One spare shim is always prepared (its bash already waiting), so a
     * request only pays for the hand-over; the next spare is forked right
     * after, while the request runs. */
    for (;;) {
        struct pollfd p[2] = {{CTL_FD, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            reap_all();
        }
        if (!p[0].revents)
            continue;
        char buf[64];
        int fd = -1;
        ssize_t r = sb_ctl_recv(CTL_FD, buf, sizeof buf, &fd);
        if (r <= 0)
            break;  /* the server is gone */
        if (fd < 0)
            continue;
        if (spare < 0 || sb_ctl_send(spare, handoff, handoff_len, fd) < 0) {
            /* the spare died (or none could be made): one more try */
            if (spare >= 0)
                close(spare);
            spare = spawn_spare(sfd, &mask);
            if (spare >= 0)
                sb_ctl_send(spare, handoff, handoff_len, fd);
        }
        if (spare >= 0)
            close(spare);
        close(fd);
        spare = spawn_spare(sfd, &mask);
    }
    /* pid 1 leaving ends every process of the sandbox; without namespaces
     * (--isolation none) the agent ends them itself: every process a
     * command starts stays below its shim, below us */
    if (!conf.isolated)
        sb_signal_descendants(getpid(), SIGKILL);
    return 0;
}
