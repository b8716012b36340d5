/* kernel/client.c: launching and talking to a Jupyter kernel (see client.h).
 *
 * The steps of kn_client_start(), in order:
 *   1. a private folder holds the connection file (mode 0600, fresh key);
 *      tcp ports are free loopback ports outside the ephemeral range (see
 *      pick_ports)
 *   2. argv from the kernelspec ({connection_file}, {resource_dir},
 *      {prefix}, ~), env = ours + the spec's env ($VAR substituted) +
 *      JPY_PARENT_PID; posix_spawn in a new session, stdin from /dev/null
 *   3. DEALER sockets for shell/control/stdin (one identity, as
 *      jupyter_client), SUB for IOPub, DEALER for the heartbeat (an
 *      explicit empty delimiter makes it talk to REP and ROUTER echoes
 *      alike, without REQ's lock-step state)
 *   4. ready = a kernel_info_reply AND at least one IOPub message; the
 *      request is repeated until both arrived, because IOPub (PUB/SUB)
 *      drops whatever was published before the subscription landed
 *
 * A kernel must not outlive this process, even one that does not watch
 * its parent and this process killed with SIGKILL (no code of ours runs
 * then). Each kernel has a guard: a /bin/sh in its own process group that
 * waits for the end of a pipe whose only write end this process holds
 * (close-on-exec, never closed) and then SIGKILLs the kernel's process
 * group. Its end is the end of this process, whatever thread started the
 * kernel (prctl's PDEATHSIG would fire when that thread exits, and would
 * reach the kernel's own children no better). The guard is stopped and
 * reaped before the kernel is reaped, so it never signals a reused pid.
 *
 * The process is watched through a pidfd in the same zmq_poll() as the
 * sockets; its exit is noticed at once and reported after the messages it
 * sent before dying have been drained. It is reaped only in
 * kn_client_shutdown(), after its process group has been cleaned up, so its
 * pid (= the group id) cannot be reused meanwhile. */
#include "config.h"
#include "kernel/client.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <sodium.h>
#include <zmq.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "kernel/conn.h"
#include "kernel/session.h"

#if HAVE_SYS_PIDFD_H
#include <sys/pidfd.h>
#endif

extern char **environ;

#define MAX_MSG_BYTES ((size_t)1 << 30)
#define EXIT_DRAIN_S 0.05  /* after the process exit, messages still in flight */

struct kn_client {
    char *name;
    bool interrupt_by_message;
    pid_t pid;
    int pidfd;
    pid_t guard_pid;     /* see the top of the file; 0 = none */
    bool exited;         /* the process has exited (maybe not reaped yet) */
    bool reaped;
    double exit_seen_at; /* when the exit was first noticed */
    char exit_text[96];
    char *dir;           /* private folder with the connection file */
    char *conn_path;
    kn_conn conn;
    kn_session session;
    void *ctx;
    bool ctx_borrowed;   /* attached: the caller's context */
    bool attached;       /* no process of ours (kn_client_attach) */
    void *sock[4];       /* indexed by kn_channel */
    void *hb;
    bool ready;
    double hb_interval, hb_timeout, next_ping, ping_outstanding_since;
    cJSON *(*parse)(const char *data, size_t len);
    int cancel_fd;
    bool shut_down;
    size_t max_frame;    /* opts.max_frame */
    void *mon[5];        /* max_frame: disconnect events of sock[0..3] and hb */
    bool lost;           /* max_frame: a connection was dropped */
};

static const char *const channel_names[] = {"shell", "iopub", "stdin", "control"};

/* ------------------------------------------------------------- process side */

static void note_exit(kn_client *c, const siginfo_t *si)
{
    c->exited = true;
    c->exit_seen_at = cb_mono_s();
    if (si->si_code == CLD_EXITED)
        snprintf(c->exit_text, sizeof c->exit_text, "exited with status %d", si->si_status);
    else
        snprintf(c->exit_text, sizeof c->exit_text, "was killed by signal %d (%s)", si->si_status,
                 strsignal(si->si_status));
}

/* Checks (without reaping) whether the kernel has exited. */
static bool check_exit(kn_client *c)
{
    if (c->exited || c->pid <= 0)
        return c->exited;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == c->pid)
        note_exit(c, &si);
    return c->exited;
}

static void reap(kn_client *c)
{
    if (c->pid <= 0 || c->reaped)
        return;
    int st;
    while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
        ;
    c->reaped = true;
    if (!c->exited) {
        siginfo_t si = {.si_code = WIFEXITED(st) ? CLD_EXITED : CLD_KILLED,
                        .si_status = WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st)};
        note_exit(c, &si);
    }
}

/* Waits up to seconds for the process to exit. */
static bool wait_exit(kn_client *c, double seconds)
{
    double deadline = cb_mono_s() + seconds;
    while (!check_exit(c)) {
        double left = deadline - cb_mono_s();
        if (left <= 0)
            return false;
        if (c->pidfd >= 0) {
            zmq_pollitem_t it = {NULL, c->pidfd, ZMQ_POLLIN, 0};
            zmq_poll(&it, 1, (long)(left * 1000) + 1);
        } else {
            usleep(left > 0.01 ? 10000 : (useconds_t)(left * 1e6));
        }
    }
    return true;
}

/* string.Template(v).safe_substitute(environ): $$, $NAME, ${NAME}. */
static char *env_substitute(const char *v)
{
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, "");
    for (const char *p = v; *p;) {
        if (*p != '$') {
            cb_buf_putc(&b, *p++);
            continue;
        }
        if (p[1] == '$') {
            cb_buf_putc(&b, '$');
            p += 2;
            continue;
        }
        bool braced = p[1] == '{';
        const char *s = p + 1 + braced, *e = s;
        if ((*e >= 'A' && *e <= 'Z') || (*e >= 'a' && *e <= 'z') || *e == '_')
            while ((*e >= 'A' && *e <= 'Z') || (*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9') || *e == '_')
                e++;
        if (e == s || (braced && *e != '}')) {
            cb_buf_putc(&b, *p++);
            continue;
        }
        cb_autofree char *name = cb_strndup(s, (size_t)(e - s));
        const char *val = getenv(name);
        const char *end = e + braced;
        if (val)
            cb_buf_puts(&b, val);
        else
            cb_buf_append(&b, p, (size_t)(end - p));
        p = end;
    }
    return cb_buf_steal(&b);
}

static bool env_name_is(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

/* environ + the spec's env + JPY_PARENT_PID. Owned NULL-terminated vector. */
static char **build_env(const kn_kernelspec *spec)
{
    size_t n = 0, cap = 16;
    char **env = cb_malloc(cap * sizeof *env);
    const cJSON *extra = spec->env;
    for (char **e = environ; *e; e++) {
        bool overridden = env_name_is(*e, "JPY_PARENT_PID");
        for (const cJSON *x = extra ? extra->child : NULL; x && !overridden; x = x->next)
            overridden = env_name_is(*e, x->string);
        if (overridden)
            continue;
        if (n + 2 >= cap)
            env = cb_realloc(env, (cap *= 2) * sizeof *env);
        env[n++] = cb_strdup(*e);
    }
    for (const cJSON *x = extra ? extra->child : NULL; x; x = x->next) {
        if (!cJSON_IsString(x))
            continue;
        cb_autofree char *v = env_substitute(x->valuestring);
        if (n + 2 >= cap)
            env = cb_realloc(env, (cap *= 2) * sizeof *env);
        env[n++] = cb_printf_new("%s=%s", x->string, v);
    }
    if (n + 2 >= cap)
        env = cb_realloc(env, (cap += 2) * sizeof *env);
    env[n++] = cb_printf_new("JPY_PARENT_PID=%d", (int)getpid());
    env[n] = NULL;
    return env;
}

/* {connection_file}, {resource_dir}, {prefix}; a leading ~ (like jupyter_client). */
static char *format_arg(const char *arg, const kn_client *c, const kn_kernelspec *spec)
{
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, "");
    const char *p = arg;
    if (p[0] == '~' && (p[1] == '/' || p[1] == '\0')) {
        cb_buf_puts(&b, cb_home_dir());
        p++;
    }
    while (*p) {
        const char *e = NULL;
        if (*p == '{' && (e = strchr(p, '}'))) {
            size_t n = (size_t)(e - p - 1);
            const char *val = NULL;
            if (n == strlen("connection_file") && memcmp(p + 1, "connection_file", n) == 0)
                val = c->conn_path;
            else if (n == strlen("resource_dir") && memcmp(p + 1, "resource_dir", n) == 0)
                val = spec->resource_dir;
            else if (n == strlen("prefix") && memcmp(p + 1, "prefix", n) == 0)
                val = "/usr";
            if (val) {
                cb_buf_puts(&b, val);
                p = e + 1;
                continue;
            }
        }
        cb_buf_putc(&b, *p++);
    }
    return cb_buf_steal(&b);
}

/* The read end of the guards' pipe (>= 10, close-on-exec), or -1. The
 * write end is held until this process ends. */
static int guard_rfd = -1;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void guard_pipe_init(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    guard_rfd = fcntl(p[0], F_DUPFD_CLOEXEC, 10);  /* clear of fd 3, the guard's dup2 target */
    close(p[0]);
    if (guard_rfd < 0)
        close(p[1]);
}

/* Starts the guard of the kernel whose process group is pgid (see the top
 * of the file). A kernel without a guard still runs (logged). */
static pid_t spawn_guard(pid_t pgid)
{
    pthread_once(&guard_once, guard_pipe_init);
    if (guard_rfd < 0)
        return 0;
    char arg[24];
    snprintf(arg, sizeof arg, "%d", (int)pgid);
    char *argv[] = {"/bin/sh", "-c",
                    "trap '' HUP INT QUIT TERM; read _ <&3; "
                    "kill -s KILL -- -\"$1\" 2>/dev/null; kill -s KILL \"$1\" 2>/dev/null",
                    "cellbox-kernel-guard", arg, NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, guard_rfd, 3);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setpgroup(&at, 0);  /* a Ctrl-C or a kill of our group does not reach it */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        cb_warn("client", "no guard for kernel pid %d (it may outlive a killed cellbox): /bin/sh: %s", (int)pgid,
                strerror(rc));
        return 0;
    }
    return pid;
}

static void stop_guard(kn_client *c)
{
    if (c->guard_pid <= 0)
        return;
    kill(c->guard_pid, SIGKILL);
    while (waitpid(c->guard_pid, NULL, 0) < 0 && errno == EINTR)
        ;
    c->guard_pid = 0;
}

static int spawn_kernel(kn_client *c, const kn_kernelspec *spec, const kn_client_opts *o, char **err)
{
    char **argv = cb_calloc((size_t)spec->argc + 1, sizeof *argv);
    for (int i = 0; i < spec->argc; i++)
        argv[i] = format_arg(spec->argv[i], c, spec);
    char **envp = build_env(spec);

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (o->stdout_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, o->stdout_fd, STDOUT_FILENO);
    if (o->stderr_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, o->stderr_fd, STDERR_FILENO);
    if (o->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    int dflt_sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < CB_ARRAY_LEN(dflt_sigs); i++)
        sigaddset(&dflt, dflt_sigs[i]);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dflt);
    /* a new session: the kernel's process group is ours to signal */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawnp(&c->pid, argv[0], &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        c->pid = 0;
        if (o->cwd && (rc == ENOENT || rc == ENOTDIR || rc == EACCES) && access(o->cwd, X_OK) != 0)
            *err = cb_printf_new("cannot start kernel '%s' in %s: %s", spec->name, o->cwd, strerror(rc));
        else
            *err = cb_printf_new("cannot start kernel '%s' (%s): %s", spec->name, argv[0], strerror(rc));
    } else {
        cb_debug("client", "kernel %s started: pid %d", spec->name, (int)c->pid);
    }
    kn_strv_free(argv);
    kn_strv_free(envp);
    if (rc != 0)
        return -1;
    c->guard_pid = spawn_guard(c->pid);
#if HAVE_PIDFD_OPEN
    c->pidfd = pidfd_open(c->pid, 0);
#else
    c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
#endif
    return 0;
}

/* -------------------------------------------------------------- connection */

/* The kernel's tcp ports.  They are picked outside this machine's ephemeral range
 * (net.ipv4.ip_local_port_range): the client connects before the kernel has bound (and
 * retries every 10 ms), and a connect to 127.0.0.1:P whose ephemeral source port happens
 * to be P is a TCP self-connect that holds the port, so the kernel's bind fails with
 * "Address already in use" (about one start in a hundred with bind-to-port-0 ports).
 * Ports handed out by this process in the last minute are not handed out again, so
 * kernels started at once (-j) cannot be given the same port before binding it. */
#define PORT_FLOOR 10000       /* below: well-known and registered services */
#define PORT_RECENT 64         /* ports remembered ... */
#define PORT_RECENT_S 60.0     /* ... for this long */

static pthread_mutex_t port_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { int port; double at; } port_recent[PORT_RECENT];
static unsigned port_recent_next;

static void ephemeral_range(int *lo, int *hi)
{
    *lo = 32768, *hi = 60999;  /* the kernel's default */
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    if (f) {
        int a, b;
        if (fscanf(f, "%d %d", &a, &b) == 2 && a > 0 && b >= a && b <= 65535)
            *lo = a, *hi = b;
        fclose(f);
    }
}

static bool port_recently_used(int port, double now)
{
    for (unsigned i = 0; i < PORT_RECENT; i++)
        if (port_recent[i].port == port && now - port_recent[i].at < PORT_RECENT_S)
            return true;
    return false;
}

/* A socket bound to 127.0.0.1:port (port 0: any), or -1. */
static int bind_loopback(int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

/* Five free loopback ports, all bound at once so that they differ. */
static int pick_ports(int ports[5])
{
    int lo, hi;
    ephemeral_range(&lo, &hi);
    /* candidates: [PORT_FLOOR, lo) and (hi, 65535] */
    int below = lo > PORT_FLOOR ? lo - PORT_FLOOR : 0, above = 65535 - hi;
    int space = below + (above > 0 ? above : 0);
    int fds[5], n = 0, rc = 0;
    pthread_mutex_lock(&port_lock);
    double now = cb_mono_s();
    for (; n < 5; n++) {
        fds[n] = -1;
        for (int tries = 0; space >= 256 && tries < 200 && fds[n] < 0; tries++) {
            int k = (int)randombytes_uniform((uint32_t)space);
            int port = k < below ? PORT_FLOOR + k : hi + 1 + (k - below);
            if (!port_recently_used(port, now))
                fds[n] = bind_loopback(port, &ports[n]);
        }
        if (fds[n] < 0)  /* no room outside the ephemeral range: any free port */
            fds[n] = bind_loopback(0, &ports[n]);
        if (fds[n] < 0) {
            rc = -1;
            break;
        }
    }
    int e = errno;
    for (int i = 0; i < n; i++) {
        if (rc == 0) {
            port_recent[port_recent_next % PORT_RECENT].port = ports[i];
            port_recent[port_recent_next % PORT_RECENT].at = now;
            port_recent_next++;
        }
        close(fds[i]);
    }
    pthread_mutex_unlock(&port_lock);
    errno = e;
    return rc;
}

/* max_frame: the bounds of kn_client_opts.max_frame on socket s, and a
 * monitor (c->mon[i]) that tells when one of its connections is dropped. */
static int bound_socket(kn_client *c, void *s, int i)
{
    int64_t max = (int64_t)c->max_frame;
    if (i == 4 && max > 4096)
        max = 4096;  /* the heartbeat echoes "ping" */
    int hwm = i == KN_CH_IOPUB ? KN_CLIENT_BOUNDED_HWM_IOPUB : KN_CLIENT_BOUNDED_HWM;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://kn-client-monitor-%p-%d", (void *)c, i);
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max) < 0 ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
        zmq_socket_monitor(s, ep, ZMQ_EVENT_DISCONNECTED) < 0 || !(c->mon[i] = zmq_socket(c->ctx, ZMQ_PAIR)))
        return -1;
    return zmq_connect(c->mon[i], ep);
}

static void *open_socket(kn_client *c, int type, int port, const char *identity, int i)
{
    void *s = zmq_socket(c->ctx, type);
    if (!s)
        return NULL;
    if (c->max_frame && bound_socket(c, s, i) < 0) {
        zmq_close(s);
        return NULL;
    }
    int zero = 0, ivl = 10, ivl_max = 0;  /* 0: no back-off, retry every 10 ms */
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    /* the kernel binds a moment after we connect: retry fast (libzmq's
     * default of 100 ms is what makes jupyter_client's startup quantised) */
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    if (identity)
        zmq_setsockopt(s, ZMQ_ROUTING_ID, identity, strlen(identity));
    if (type == ZMQ_SUB)
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    cb_autofree char *ep = kn_conn_endpoint(&c->conn, port);
    if (zmq_connect(s, ep) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

static int connect_channels(kn_client *c, char **err)
{
    if (!c->ctx)
        c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        *err = cb_printf_new("cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        return -1;
    }
    const char *id = c->session.id;
    c->sock[KN_CH_SHELL] = open_socket(c, ZMQ_DEALER, c->conn.shell_port, id, KN_CH_SHELL);
    c->sock[KN_CH_IOPUB] = open_socket(c, ZMQ_SUB, c->conn.iopub_port, NULL, KN_CH_IOPUB);
    c->sock[KN_CH_STDIN] = open_socket(c, ZMQ_DEALER, c->conn.stdin_port, id, KN_CH_STDIN);
    c->sock[KN_CH_CONTROL] = open_socket(c, ZMQ_DEALER, c->conn.control_port, id, KN_CH_CONTROL);
    c->hb = open_socket(c, ZMQ_DEALER, c->conn.hb_port, NULL, 4);
    for (int i = 0; i < 4; i++)
        if (!c->sock[i]) {
            *err = cb_printf_new("cannot connect the %s channel: %s", channel_names[i], zmq_strerror(errno));
            return -1;
        }
    if (!c->hb) {
        *err = cb_printf_new("cannot connect the heartbeat channel: %s", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- messages */

void kn_client_msg_free(kn_client_msg *m)
{
    if (!m)
        return;
    cJSON_Delete(m->header);
    cJSON_Delete(m->parent);
    cJSON_Delete(m->metadata);
    cJSON_Delete(m->content);
    for (size_t i = 0; i < m->n_buffers; i++)
        free(m->buffers[i].data);
    free(m->buffers);
    free(m);
}

/* Receives one message from a channel (non-blocking), through the wire
 * layer. Returns 1 with *out, 0 when nothing was waiting, -1 for a message
 * that was dropped (logged). */
static int recv_one(kn_client *c, kn_channel ch, kn_client_msg **out)
{
    *out = NULL;
    kn_msg *w = NULL;
    kn_recv_status st = kn_wire_recv_with(c->sock[ch], &c->session.signer, MAX_MSG_BYTES, ZMQ_DONTWAIT,
                                          c->parse, &w);
    if (st == KN_RECV_AGAIN)
        return 0;
    if (st == KN_RECV_CLOSED) {
        /* the socket is unusable: no message (never -1: the caller would retry forever) */
        cb_warn("client", "receiving on %s from kernel %s: %s", channel_names[ch], c->name, zmq_strerror(errno));
        return 0;
    }
    if (st != KN_RECV_OK) {
        cb_warn("client", "dropped a message on %s from kernel %s: %s", channel_names[ch], c->name,
                kn_recv_status_str(st));
        kn_msg_free(w);
        return -1;
    }
    kn_client_msg *m = cb_calloc(1, sizeof *m);
    m->channel = ch;
    m->header = cb_steal(&w->header);
    m->parent = cb_steal(&w->parent);
    m->metadata = cb_steal(&w->metadata);
    m->content = cb_steal(&w->content);
    m->buffers = cb_steal(&w->buffers);
    m->n_buffers = w->n_buffers;
    w->n_buffers = 0;
    kn_msg_free(w);
    m->msg_type = cb_json_str(m->header, "msg_type", "");
    m->msg_id = cb_json_str(m->header, "msg_id", "");
    m->parent_id = cb_json_str(m->parent, "msg_id", "");
    m->date = cb_json_str(m->header, "date", "");
    *out = m;
    return 1;
}

int kn_client_send(kn_client *c, kn_channel ch, const char *msg_type, const char *content, char *msg_id_out)
{
    if (ch != KN_CH_SHELL && ch != KN_CH_CONTROL && ch != KN_CH_STDIN)
        return -1;
    kn_out m = {.msg_type = msg_type, .content = content ? content : "{}"};
    return kn_session_send(&c->session, c->sock[ch], NULL, NULL, 0, &m, msg_id_out);
}

int kn_client_send_with_parent(kn_client *c, kn_channel ch, const char *msg_type, const char *content,
                               const cJSON *parent)
{
    if (ch != KN_CH_SHELL && ch != KN_CH_CONTROL && ch != KN_CH_STDIN)
        return -1;
    cb_autofree char *ptext = parent ? cJSON_PrintUnformatted(parent) : NULL;
    kn_bytes pb = {ptext, ptext ? strlen(ptext) : 0};
    kn_out m = {.msg_type = msg_type, .parent = ptext ? &pb : NULL, .content = content ? content : "{}"};
    return kn_session_send(&c->session, c->sock[ch], NULL, NULL, 0, &m, NULL);
}

int kn_client_input_reply(kn_client *c, const kn_client_msg *request, const char *value)
{
    cJSON *content = cJSON_CreateObject();
    cJSON_AddStringToObject(content, "value", value ? value : "");
    cb_autofree char *text = cJSON_PrintUnformatted(content);
    cJSON_Delete(content);
    return kn_client_send_with_parent(c, KN_CH_STDIN, "input_reply", text, request->header);
}

int kn_client_execute(kn_client *c, const char *code, bool store_history, bool allow_stdin, bool stop_on_error,
                      char *msg_id_out)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "code", code);
    cJSON_AddBoolToObject(j, "silent", false);
    cJSON_AddBoolToObject(j, "store_history", store_history);
    cJSON_AddObjectToObject(j, "user_expressions");
    cJSON_AddBoolToObject(j, "allow_stdin", allow_stdin);
    cJSON_AddBoolToObject(j, "stop_on_error", stop_on_error);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    int rc = kn_client_send(c, KN_CH_SHELL, "execute_request", text, msg_id_out);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------ polling */

static bool fd_readable(int fd)
{
    if (fd < 0)
        return false;
    zmq_pollitem_t it = {NULL, fd, ZMQ_POLLIN, 0};
    return zmq_poll(&it, 1, 0) > 0 && (it.revents & ZMQ_POLLIN);
}

static void heartbeat_drain(kn_client *c)
{
    char buf[64];
    bool echoed = false;
    while (zmq_recv(c->hb, buf, sizeof buf, ZMQ_DONTWAIT) >= 0)
        echoed = true;
    if (echoed)
        c->ping_outstanding_since = 0;
}

static void heartbeat_ping(kn_client *c, double now)
{
    if (now < c->next_ping)
        return;
    /* [empty delimiter, payload]: REP and echoing ROUTERs both answer it */
    if (zmq_send(c->hb, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 && zmq_send(c->hb, "ping", 4, ZMQ_DONTWAIT) >= 0 &&
        c->ping_outstanding_since == 0)
        c->ping_outstanding_since = now;
    c->next_ping = now + c->hb_interval;
}

/* max_frame: has a connection been dropped? (libzmq does not reconnect
 * after an oversized part, and what was in flight is gone either way) */
static bool check_lost(kn_client *c)
{
    for (int i = 0; i < 5 && !c->lost; i++) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (c->mon[i] && zmq_msg_recv(&ev, c->mon[i], ZMQ_DONTWAIT) >= 0) {
            c->lost = true;
            cb_warn("client", "kernel %s: the %s connection was dropped (a message part over %zu bytes, or "
                    "closed by the kernel)", c->name, i < 4 ? channel_names[i] : "heartbeat", c->max_frame);
        }
        zmq_msg_close(&ev);
    }
    return c->lost;
}

kn_poll_status kn_client_poll(kn_client *c, double timeout, kn_client_msg **out)
{
    static const kn_channel order[] = {KN_CH_IOPUB, KN_CH_SHELL, KN_CH_CONTROL, KN_CH_STDIN};
    double deadline = cb_mono_s() + (timeout > 0 ? timeout : 0);
    *out = NULL;
    for (;;) {
        if (c->max_frame && check_lost(c))
            return KN_POLL_LOST;
        for (size_t i = 0; i < CB_ARRAY_LEN(order); i++) {
            int r;
            while ((r = recv_one(c, order[i], out)) < 0)
                ;  /* dropped (logged): try the next one */
            if (r > 0)
                return KN_POLL_MSG;
        }
        double now = cb_mono_s();
        bool hb_on = c->ready && c->hb_timeout > 0 && !c->exited;
        if (hb_on)
            heartbeat_drain(c);
        if (check_exit(c) && now - c->exit_seen_at >= EXIT_DRAIN_S)
            return KN_POLL_DIED;
        if (fd_readable(c->cancel_fd))
            return KN_POLL_CANCELLED;
        if (hb_on && c->ping_outstanding_since > 0 && now - c->ping_outstanding_since > c->hb_timeout)
            return KN_POLL_HB_LOST;
        if (now >= deadline && !c->exited)
            return KN_POLL_TIMEOUT;
        double wake = deadline;
        if (c->exited)
            wake = c->exit_seen_at + EXIT_DRAIN_S;
        if (hb_on) {
            heartbeat_ping(c, now);
            if (c->next_ping < wake)
                wake = c->next_ping;
            if (c->ping_outstanding_since > 0 && c->ping_outstanding_since + c->hb_timeout < wake)
                wake = c->ping_outstanding_since + c->hb_timeout + 0.001;
        }
        zmq_pollitem_t items[13];
        int n = 0;
        for (int i = 0; i < 4; i++)
            items[n++] = (zmq_pollitem_t){c->sock[i], 0, ZMQ_POLLIN, 0};
        for (int i = 0; i < 5; i++)
            if (c->mon[i])
                items[n++] = (zmq_pollitem_t){c->mon[i], 0, ZMQ_POLLIN, 0};
        if (hb_on)
            items[n++] = (zmq_pollitem_t){c->hb, 0, ZMQ_POLLIN, 0};
        if (c->pidfd >= 0 && !c->exited)
            items[n++] = (zmq_pollitem_t){NULL, c->pidfd, ZMQ_POLLIN, 0};
        if (c->cancel_fd >= 0)
            items[n++] = (zmq_pollitem_t){NULL, c->cancel_fd, ZMQ_POLLIN, 0};
        double wait = wake - now;
        if (c->pidfd < 0 && !c->exited && wait > 0.05)
            wait = 0.05;  /* no pidfd: look at the process now and then */
        long ms = wait <= 0 ? 0 : (long)(wait * 1000) + 1;
        if (zmq_poll(items, n, ms) < 0 && errno != EINTR) {
            cb_warn("client", "zmq_poll: %s", zmq_strerror(errno));
            usleep(1000);
        }
    }
}

/* ---------------------------------------------------------------- lifetime */

static int wait_ready(kn_client *c, double timeout, cJSON **info, char **err)
{
    double start = cb_mono_s(), deadline = start + timeout, last_request = 0;
    cJSON *reply = NULL;
    bool iopub_seen = false;
    char ids[64][KN_MSG_ID_LEN];
    int n_ids = 0;
    for (;;) {
        double now = cb_mono_s();
        /* re-ask every second while no reply; every 50 ms once the reply is
         * in and only IOPub is missing (each request makes IOPub traffic) */
        if (n_ids == 0 || now - last_request >= (reply ? 0.05 : 1.0)) {
            if (kn_client_send(c, KN_CH_SHELL, "kernel_info_request", "{}", ids[n_ids % 64]) < 0) {
                *err = cb_printf_new("cannot send kernel_info_request: %s", zmq_strerror(errno));
                break;
            }
            n_ids++;
            last_request = now;
        }
        if (now >= deadline) {
            *err = cb_printf_new("kernel '%s' did not become ready within %g s (%s)", c->name, timeout,
                                 reply ? "kernel_info_reply received, but no IOPub message"
                                       : "no kernel_info_reply");
            break;
        }
        double wait = (reply ? 0.05 : 1.0) - (now - last_request);
        if (wait > deadline - now)
            wait = deadline - now;
        kn_client_msg *m = NULL;
        kn_poll_status st = kn_client_poll(c, wait, &m);
        if (st == KN_POLL_MSG) {
            if (m->channel == KN_CH_IOPUB)
                iopub_seen = true;
            else if (m->channel == KN_CH_SHELL && strcmp(m->msg_type, "kernel_info_reply") == 0 && !reply) {
                reply = m->content;
                m->content = NULL;
            }
            kn_client_msg_free(m);
            if (reply && iopub_seen) {
                c->ready = true;
                cb_debug("client", "kernel %s ready after %.3f s", c->name, cb_mono_s() - start);
                if (info)
                    *info = reply;
                else
                    cJSON_Delete(reply);
                return 0;
            }
        } else if (st == KN_POLL_DIED) {
            *err = cb_printf_new("kernel '%s' %s during startup", c->name, c->exit_text);
            break;
        } else if (st == KN_POLL_CANCELLED) {
            *err = cb_strdup("cancelled while the kernel was starting");
            break;
        } else if (st == KN_POLL_LOST) {
            *err = cb_printf_new("kernel '%s' dropped a connection during startup", c->name);
            break;
        }
    }
    cJSON_Delete(reply);
    return -1;
}

static char *make_private_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    cb_autofree char *tmpl = cb_printf_new("%s/cellbox-kernel-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl))
        return NULL;
    return cb_steal(&tmpl);
}

kn_client *kn_client_start(const kn_kernelspec *spec, const kn_client_opts *opts, cJSON **info, char **err)
{
    kn_client_opts dflt = KN_CLIENT_OPTS_INIT;
    const kn_client_opts *o = opts ? opts : &dflt;
    *err = NULL;
    if (info)
        *info = NULL;
    kn_client *c = cb_calloc(1, sizeof *c);
    c->pidfd = -1;
    c->name = cb_strdup(spec->name);
    c->interrupt_by_message = spec->interrupt_mode && strcmp(spec->interrupt_mode, "message") == 0;
    c->hb_interval = o->hb_interval > 0 ? o->hb_interval : 1.0;
    c->hb_timeout = o->hb_timeout;
    c->parse = o->parse;
    c->cancel_fd = o->cancel_fd;
    c->max_frame = o->max_frame;

    cb_autofree char *key = cb_random_hex(16);
    c->dir = make_private_dir();
    if (!c->dir) {
        const char *tmp = getenv("TMPDIR");
        *err = cb_printf_new("cannot create a folder for the connection file in %s%s: %s",
                             tmp && *tmp ? tmp : "/tmp", tmp && *tmp ? " ($TMPDIR)" : "", strerror(errno));
        goto fail;
    }
    char uuid[37];
    cb_uuid4(uuid);
    c->conn_path = cb_printf_new("%s/kernel-%s.json", c->dir, uuid);
    bool ipc = o->transport && strcmp(o->transport, "ipc") == 0;
    int ports[5] = {1, 2, 3, 4, 5};
    if (!ipc && pick_ports(ports) < 0) {
        *err = cb_printf_new("cannot pick free ports on 127.0.0.1: %s", strerror(errno));
        goto fail;
    }
    c->conn = (kn_conn){
        .transport = cb_strdup(ipc ? "ipc" : "tcp"),
        .ip = ipc ? cb_printf_new("%s/kernel-ipc", c->dir) : cb_strdup("127.0.0.1"),
        .key = cb_strdup(key),
        .signature_scheme = cb_strdup("hmac-sha256"),
        .kernel_name = cb_strdup(spec->name),
        .shell_port = ports[0], .iopub_port = ports[1], .stdin_port = ports[2],
        .control_port = ports[3], .hb_port = ports[4],
    };
    if (kn_conn_write(&c->conn, c->conn_path) < 0) {
        *err = cb_printf_new("cannot write %s: %s", c->conn_path, strerror(errno));
        goto fail;
    }
    if (kn_session_init(&c->session, "hmac-sha256", key) < 0) {
        *err = cb_strdup("cannot set up message signing");
        goto fail;
    }
    if (connect_channels(c, err) < 0)
        goto fail;
    if (spawn_kernel(c, spec, o, err) < 0)
        goto fail;
    if (wait_ready(c, o->startup_timeout > 0 ? o->startup_timeout : 60, info, err) < 0)
        goto fail;
    c->next_ping = 0;
    return c;
fail:
    kn_client_kill(c);
    kn_client_free(c);
    return NULL;
}

kn_client *kn_client_attach(const kn_conn *conn, void *zctx, const kn_client_opts *opts, cJSON **info,
                            char **err)
{
    kn_client_opts dflt = KN_CLIENT_OPTS_INIT;
    const kn_client_opts *o = opts ? opts : &dflt;
    *err = NULL;
    if (info)
        *info = NULL;
    kn_client *c = cb_calloc(1, sizeof *c);
    c->pidfd = -1;
    c->attached = true;
    c->interrupt_by_message = true;
    c->name = cb_strdup(conn->kernel_name && *conn->kernel_name ? conn->kernel_name : "attached");
    c->hb_interval = o->hb_interval > 0 ? o->hb_interval : 1.0;
    c->hb_timeout = o->hb_timeout;
    c->parse = o->parse;
    c->cancel_fd = o->cancel_fd;
    c->max_frame = o->max_frame;
    c->ctx = zctx;
    c->ctx_borrowed = zctx != NULL;
    c->conn = (kn_conn){
        .transport = cb_strdup(conn->transport ? conn->transport : "tcp"),
        .ip = cb_strdup(conn->ip ? conn->ip : "127.0.0.1"),
        .key = cb_strdup(conn->key ? conn->key : ""),
        .signature_scheme = cb_strdup("hmac-sha256"),
        .kernel_name = cb_strdup(c->name),
        .shell_port = conn->shell_port, .iopub_port = conn->iopub_port,
        .stdin_port = conn->stdin_port, .control_port = conn->control_port,
        .hb_port = conn->hb_port,
    };
    if (kn_session_init(&c->session, "hmac-sha256", c->conn.key) < 0) {
        *err = cb_strdup("cannot set up message signing");
        goto fail;
    }
    if (connect_channels(c, err) < 0)
        goto fail;
    if (wait_ready(c, o->startup_timeout > 0 ? o->startup_timeout : 60, info, err) < 0)
        goto fail;
    c->next_ping = 0;
    return c;
fail:
    kn_client_free(c);
    return NULL;
}

int kn_client_interrupt(kn_client *c)
{
    if (c->attached)
        return c->ready ? kn_client_send(c, KN_CH_CONTROL, "interrupt_request", "{}", NULL) : -1;
    if (c->pid <= 0 || check_exit(c))
        return -1;
    if (c->interrupt_by_message)
        return kn_client_send(c, KN_CH_CONTROL, "interrupt_request", "{}", NULL);
    return killpg(c->pid, SIGINT);
}

void kn_client_set_cancel_fd(kn_client *c, int fd)
{
    c->cancel_fd = fd;
}

/* cb_proc_each: stop at a live (not zombie) process of group *arg. */
static bool not_in_group(pid_t pid, char state, pid_t ppid, pid_t pgrp, void *arg)
{
    (void)pid, (void)ppid;
    pid_t *pgid = arg;
    if (pgrp == *pgid && state != 'Z' && state != 'X') {
        *pgid = 0;  /* found */
        return false;
    }
    return true;
}

/* Does process group pgid still hold a process that is not a zombie? */
static bool group_alive(pid_t pgid)
{
    if (killpg(pgid, 0) < 0)
        return false;  /* no process at all (zombies count for kill) */
    pid_t seek = pgid;
    cb_proc_each(not_in_group, &seek);
    return seek == 0;
}

void kn_client_kill(kn_client *c)
{
    if (c->pid <= 0 || c->reaped)
        return;
    killpg(c->pid, SIGKILL);
    kill(c->pid, SIGKILL);  /* in case it left its group */
    stop_guard(c);  /* before the pid can be reused */
    reap(c);
    /* SIGKILL takes effect as each process next runs: on a loaded machine
     * user code's children (a forked worker, a server started by a cell)
     * were seen alive after this returned. Wait, up to 2 s, until none is
     * left, so that nothing of the kernel outlives its end. */
    for (int i = 0; i < 400 && group_alive(c->pid); i++)
        usleep(5000);
}

int kn_client_shutdown(kn_client *c, double grace)
{
    if (c->attached) {
        if (c->ready && !c->shut_down)
            kn_client_send(c, KN_CH_CONTROL, "shutdown_request", "{\"restart\":false}", NULL);
        c->shut_down = true;
        (void)grace;
        return 0;
    }
    if (c->pid <= 0 || c->reaped)
        return c->shut_down ? 0 : -1;
    int rc = -1;
    if (!check_exit(c)) {
        kn_client_send(c, KN_CH_CONTROL, "shutdown_request", "{\"restart\":false}", NULL);
        if (wait_exit(c, grace)) {
            rc = 0;
        } else {
            cb_warn("client", "kernel %s did not exit %g s after shutdown_request: SIGTERM", c->name, grace);
            kill(c->pid, SIGTERM);
            if (!wait_exit(c, grace))
                cb_warn("client", "kernel %s ignored SIGTERM: SIGKILL", c->name);
        }
    }
    c->shut_down = rc == 0;
    /* whatever is left in its process group (user code's children) goes too */
    kn_client_kill(c);
    return rc;
}

void kn_client_free(kn_client *c)
{
    if (!c)
        return;
    if (c->pid > 0 && !c->reaped)
        kn_client_shutdown(c, 5.0);
    for (int i = 0; i < 5; i++)
        if (c->mon[i])
            zmq_close(c->mon[i]);
    for (int i = 0; i < 4; i++)
        if (c->sock[i])
            zmq_close(c->sock[i]);
    if (c->hb)
        zmq_close(c->hb);
    if (c->ctx && !c->ctx_borrowed)
        zmq_ctx_term(c->ctx);
    if (c->pidfd >= 0)
        close(c->pidfd);
    if (c->conn_path)
        unlink(c->conn_path);
    if (c->dir) {
        if (c->conn.transport && strcmp(c->conn.transport, "ipc") == 0) {
            for (int port = 1; port <= 5; port++) {
                cb_autofree char *p = cb_printf_new("%s/kernel-ipc-%d", c->dir, port);
                unlink(p);
            }
        }
        rmdir(c->dir);
    }
    kn_session_clear(&c->session);
    kn_conn_clear(&c->conn);
    free(c->conn_path);
    free(c->dir);
    free(c->name);
    free(c);
}

bool kn_client_alive(kn_client *c)
{
    return c->pid > 0 && !check_exit(c);
}

pid_t kn_client_pid(const kn_client *c)
{
    return c->pid;
}

const char *kn_client_exit_status(const kn_client *c)
{
    return c->exit_text;
}

const char *kn_client_session(const kn_client *c)
{
    return c->session.id;
}
