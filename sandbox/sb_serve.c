/* sandbox/sb_serve.c: `cellbox serve`, the sandbox manager's entry point.
 *
 * Reads the options, prepares the state folder and the token, starts the
 * HTTP layer with the API's route table, then waits for SIGTERM/SIGINT. On
 * a signal it stops accepting connections, stops every sandbox (which ends
 * the requests still running against them with errors) and exits 0. All
 * state that matters is already on disk.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "main.h"
#include "sandbox/sb_api.h"
#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"
#include "sandbox/sb_net.h"
#include "sandbox/sb_plan.h"
#include "sandbox/sb_port.h"

/* A whole number 0..max given to an option, or -1. */
static int count_arg(const char *v, long max)
{
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n >= 0 && n <= max ? (int)n : -1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cellbox serve [--listen ADDR:PORT] [--state-dir DIR] [--token-file FILE]\n"
            "                     [--pool N] [--max-running N] [--preview-base URL] [--print-plan]\n"
            "                     [--isolation full|none] [--egress-private deny|allow] [--id-lock FILE]\n"
            "\n"
            "Run the sandbox manager: an HTTP/JSON API (see docs/api.md) that creates\n"
            "isolated sandboxes and runs commands, files, processes and sessions in them.\n"
            "\n"
            "  --listen ADDR:PORT   where to listen (default 127.0.0.1:7070; [::1]:7070 for IPv6;\n"
            "                       port 0 picks a free one, printed at startup)\n"
            "  --state-dir DIR      sandboxes, workspaces, logs (default\n"
            "                       $XDG_STATE_HOME/cellbox or ~/.local/state/cellbox)\n"
            "  --token-file FILE    the API token; made on first start, mode 0600\n"
            "                       (default STATE-DIR/token)\n"
            "  --pool N             warm agents kept ready for new sandboxes (default 2, 0 = none)\n"
            "  --max-running N      at most N sandboxes running at once (default 0: no limit); a\n"
            "                       start beyond it puts the least recently used idle one to\n"
            "                       sleep, or is refused (429) when none is idle\n"
            "  --preview-base URL   where preview URLs of exposed ports point: SCHEME://DOMAIN[:PORT]\n"
            "                       (default http://localhost:<port>; *.localhost is loopback);\n"
            "                       a port's URL is SCHEME://{port}-{id}-{token}.DOMAIN[:PORT]/,\n"
            "                       answered by this server (give it wildcard DNS)\n"
            "  --print-plan         print the setup plan of a sandbox (dry run) and exit\n"
            "  --egress-private allow\n"
            "                       let network \"egress\" sandboxes reach the private ranges\n"
            "                       10/8, 172.16/12, 192.168/16, 100.64/10 and IPv6 fc00::/7\n"
            "                       (default: deny); link-local 169.254/16 (cloud metadata)\n"
            "                       and fe80::/10 stay denied; a\n"
            "                       sandbox's allowOut opens any range for itself\n"
            "  --id-lock FILE       the host-wide file through which the servers of this host\n"
            "                       lease sandboxes' host uid/gid ranges from each other, so\n"
            "                       no two sandboxes share one (default " SB_ID_LOCK_DEFAULT ";\n"
            "                       none = this server's ranges are its own)\n"
            "  --isolation none     DEVELOPMENT ONLY: run commands without namespaces,\n"
            "                       cgroups or seccomp, as the server's user\n"
            "\n"
            "Requests need 'Authorization: Bearer TOKEN' (except GET /v1/health).\n"
            "Log level: CELLBOX_LOG=error|warn|info|debug (default info).\n");
}

static const char *preview_base;  /* --preview-base, or NULL */

/* sb_http_conf.on_bound: the preview URLs' port, set before any request
 * is served (with port 0 it is known only once bound). */
static void on_bound(unsigned short port)
{
    sb_error err;
    sb_ports_configure(preview_base, port, &err);  /* checked once already: cannot fail */
}

/* One server per state folder: two would start agents for the same
 * sandboxes, move each other's files to other id ranges and finish each
 * other's restores. An OFD write lock on STATE/server.lock, held for the
 * server's life (the kernel drops it however the server ends; close-on-exec,
 * so no agent keeps it); the file holds the pid, for the message. The fd
 * (kept open), or -1 after saying why. */
static int lock_state(const char *state)
{
    cb_autofree char *path = cb_printf_new("%s/server.lock", state);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (fd < 0) {
        fprintf(stderr, "cellbox serve: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &l) < 0) {
        if (errno == EAGAIN || errno == EACCES) {
            char pid[24] = "";
            ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            fprintf(stderr, "cellbox serve: another server (pid %s) uses the state folder %s: stop it, or "
                    "give this one a --state-dir of its own\n", *pid ? pid : "unknown", state);
            close(fd);
            return -1;
        }
        /* a file system without locks (some network ones): say so, go on */
        cb_warn("serve", "cannot lock %s (%s): nothing stops a second server on this state folder", path,
                strerror(errno));
        return fd;
    }
    char buf[24];
    int len = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len)
        cb_warn("serve", "cannot write the pid into %s: %s", path, strerror(errno));
    return fd;
}

static char *default_state_dir(void)
{
    const char *x = getenv("XDG_STATE_HOME");
    if (x && *x == '/')
        return cb_printf_new("%s/cellbox", x);
    return cb_printf_new("%s/.local/state/cellbox", cb_home_dir());
}

/* Read the token, or make one. Returns owned or NULL with a message. */
static char *load_token(const char *path)
{
    char *t = cb_read_file(path, NULL);
    if (t) {
        t[strcspn(t, "\r\n")] = '\0';
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077)) {
            cb_warn("serve", "token file %s was readable by others: now mode 0600", path);
            chmod(path, 0600);
        }
        if (strlen(t) < 16) {
            fprintf(stderr, "cellbox serve: the token in %s is shorter than 16 characters\n", path);
            free(t);
            return NULL;
        }
        return t;
    }
    if (errno != ENOENT) {
        fprintf(stderr, "cellbox serve: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    t = cb_random_hex(24);
    cb_autofree char *dir = cb_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        cb_mkdir_p(dir, 0700);
    }
    if (cb_write_file_atomic(path, t, strlen(t), 0600) < 0) {
        fprintf(stderr, "cellbox serve: cannot write %s: %s\n", path, strerror(errno));
        free(t);
        return NULL;
    }
    return t;
}

static int parse_listen(const char *s, char *host, size_t hcap, unsigned short *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        snprintf(host, hcap, "%.*s", (int)(end - s - 1), s + 1);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        snprintf(host, hcap, "%.*s", (int)(colon - s), s);
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return -1;
    *port = (unsigned short)p;
    return 0;
}

/* The dry run: what a sandbox's agent would do, step by step. */
static int print_plan(void)
{
    sb_plan plan;
    sb_plan_init(&plan);
    sb_plan_opts po = {.hostname = "example", .workspace_fd = 5, .tmp_mb = 64, .self_tree = true,
                       .agent_tree = true};
    sb_plan_build(&plan, &po);
    sb_error err = {0};
    int rc = sb_plan_run(&plan, true, &err);
    cb_buf out = CB_BUF_INIT;
    cb_buf_puts(&out, "# generic plan (run ahead of time by pooled agents)\n");
    sb_plan_describe(&plan, &out);
    sb_plan_clear(&plan);
    sb_plan_init(&plan);
    sb_plan_build_specialize(&plan, &po);
    if (rc == 0)
        rc = sb_plan_run(&plan, true, &err);
    cb_buf_puts(&out, "# specialising plan (run when a sandbox takes the agent)\n");
    sb_plan_describe(&plan, &out);
    sb_plan_clear(&plan);
    fwrite(out.data, 1, out.len, stdout);
    cb_buf_clear(&out);
    if (rc < 0)
        fprintf(stderr, "cellbox serve: %s\n", err.msg);
    return rc < 0 ? 1 : 0;
}

int sb_cmd_serve(int argc, char **argv)
{
    const char *listen = "127.0.0.1:7070";
    cb_autofree char *state_dir = NULL;
    const char *token_file = NULL;
    const char *id_lock = NULL;
    sb_isolation isolation = SB_ISOLATION_FULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--listen") == 0 && v) {
            listen = v, i++;
        } else if (strcmp(a, "--state-dir") == 0 && v) {
            state_dir = cb_strdup(v), i++;
        } else if (strcmp(a, "--token-file") == 0 && v) {
            token_file = v, i++;
        } else if (strcmp(a, "--pool") == 0 && v) {
            int n = count_arg(v, 64);
            if (n < 0) {
                fprintf(stderr, "cellbox serve: --pool is 0..64\n");
                return 2;
            }
            sb_boxes_set_pool(n);
            i++;
        } else if (strcmp(a, "--max-running") == 0 && v) {
            int n = count_arg(v, 100000);
            if (n < 0) {
                fprintf(stderr, "cellbox serve: --max-running is 0 (no limit) .. 100000\n");
                return 2;
            }
            sb_boxes_set_max_running(n);
            i++;
        } else if (strcmp(a, "--preview-base") == 0 && v) {
            preview_base = v, i++;
        } else if (strcmp(a, "--print-plan") == 0) {
            return print_plan();
        } else if (strcmp(a, "--egress-private") == 0 && v) {
            if (strcmp(v, "allow") != 0 && strcmp(v, "deny") != 0) {
                fprintf(stderr, "cellbox serve: --egress-private is deny or allow\n");
                return 2;
            }
            sb_net_set_private_allowed(strcmp(v, "allow") == 0);
            i++;
        } else if (strcmp(a, "--id-lock") == 0 && v) {
            id_lock = v, i++;
        } else if (strcmp(a, "--isolation") == 0 && v) {
            if (strcmp(v, "none") == 0)
                isolation = SB_ISOLATION_NONE;
            else if (strcmp(v, "full") != 0) {
                fprintf(stderr, "cellbox serve: --isolation is full or none\n");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "cellbox serve: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    cb_log_init_from_env(CB_LOG_INFO);
    if (sodium_init() < 0) {
        fprintf(stderr, "cellbox serve: libsodium failed to initialise\n");
        return 1;
    }
    char host[128];
    unsigned short port;
    if (parse_listen(listen, host, sizeof host, &port) < 0) {
        fprintf(stderr, "cellbox serve: --listen wants ADDR:PORT, like 127.0.0.1:7070\n");
        return 2;
    }
    if (!state_dir)
        state_dir = default_state_dir();
    if (cb_mkdir_p(state_dir, 0700) < 0) {
        fprintf(stderr, "cellbox serve: cannot create %s: %s\n", state_dir, strerror(errno));
        return 1;
    }
    chmod(state_dir, 0700);
    cb_autofree char *abs_state = realpath(state_dir, NULL);
    if (!abs_state) {
        fprintf(stderr, "cellbox serve: %s: %s\n", state_dir, strerror(errno));
        return 1;
    }
    int state_lock = lock_state(abs_state);
    if (state_lock < 0)
        return 1;
    cb_autofree char *tf = token_file ? cb_strdup(token_file) : cb_printf_new("%s/token", abs_state);
    cb_autofree char *token = load_token(tf);
    if (!token)
        return 1;
    if (isolation == SB_ISOLATION_NONE)
        cb_warn("serve", "--isolation none: commands run WITHOUT any isolation, as this user. "
                         "For development only; never expose this server.");
    else if (geteuid() != 0)
        cb_warn("serve", "not running as root: creating sandboxes needs root (uid maps of "
                         "65536 ids and cgroups)");

    /* Signals: handled by sigwait in this thread only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Open files: up to the hard limit (a soft limit of 1024 is common),
     * for the 2048 connections and every running sandbox's few fds. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
            cb_debug("serve", "cannot raise the open file limit: %s", strerror(errno));
    }

    sb_error err = {0};
    sb_server_conf conf = {abs_state, isolation, id_lock};
    if (sb_boxes_init(&conf, &err) < 0) {
        fprintf(stderr, "cellbox serve: %s\n", err.msg);
        return 1;
    }
    if (sb_ports_configure(preview_base, port, &err) < 0) {
        fprintf(stderr, "cellbox serve: %s\n", err.msg);
        return 2;
    }
    sb_http_conf hc = {host, port, token, sb_api_routes, sb_api_nroutes, sb_port_route_host,
                        sb_api_check_body, on_bound};
    unsigned short bound = 0;
    struct MHD_Daemon *d = sb_http_start(&hc, &bound, &err);
    if (!d) {
        fprintf(stderr, "cellbox serve: %s\n", err.msg);
        return 1;
    }
    sb_boxes_start_sleeper();
    bool v6 = strchr(host, ':') != NULL;
    printf("cellbox serve: listening on http://%s%s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "", bound);
    printf("cellbox serve: token %s (stored in %s)\n", token, tf);
    printf("cellbox serve: state in %s\n", abs_state);
    fflush(stdout);
    char kv[1024];
    snprintf(kv, sizeof kv, "listen=%s:%u state=\"%s\" isolation=%s cgroups=\"%s\"", host, bound,
             abs_state, isolation == SB_ISOLATION_NONE ? "none" : "full", sb_boxes_cgroup_desc());
    cb_logkv(CB_LOG_INFO, "serve", kv, "ready");

    int sig = 0;
    sigwait(&sigs, &sig);
    cb_logkv(CB_LOG_INFO, "serve", NULL, "signal %d: shutting down", sig);
    MHD_quiesce_daemon(d);
    sb_boxes_shutdown();
    sb_http_stop(d);
    cb_logkv(CB_LOG_INFO, "serve", NULL, "stopped");
    close(state_lock);
    return 0;
}
