/* sandbox/sb_cgroup.c: see sb_cgroup.h.
 *
 * Layouts: ROOT/sys/fs/cgroup/cgroup.controllers exists only on pure v2 (a
 * hybrid system has its v2 tree at /sys/fs/cgroup/unified, without the
 * controllers we need). The server's group comes from /proc/self/cgroup
 * ("0::/path" on v2, "4:memory:/path" on v1) and its folder from
 * /proc/self/mountinfo: a hierarchy may be mounted from below its real root
 * (a container's bind mount), so the folder is the mount point plus the
 * group's path under the mount's root.
 *
 * v2: the server's group G must offer memory, pids and cpu
 * (G/cgroup.controllers). The kernel's "no internal processes" rule forbids
 * enabling controllers for the children of a group that holds processes
 * (the root excepted), so the server first moves itself into the leaf
 * G/cellbox.server, then enables the controllers in G and in G/cellbox,
 * whose children are the sandboxes. v1: G/cellbox in each of the memory,
 * pids and cpu hierarchies, and in the freezer hierarchy when one is
 * mounted (optional: only pause needs it).
 *
 * Freezing: v2 writes 1 to cgroup.freeze and waits for "frozen 1" in
 * cgroup.events (the kernel freezes each task at its next return to user
 * space, so this takes a moment); v1 writes FROZEN to freezer.state and
 * waits until it reads FROZEN (FREEZING meanwhile). Thawing is the reverse.
 * v1's frozen tasks ignore even SIGKILL until thawed, so every removal here
 * thaws first.
 *
 * Limits are tables of (hierarchy, file, value) written in order, in the
 * kernel's units (Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/):
 * bytes, a count, microseconds. This file moves no process but the ones it
 * is given, and the server itself during detection.
 */
#include "config.h"
#include "sandbox/sb_cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

static const char *ctrl_names[SB_CG_N] = {"memory", "pids", "cpu", "freezer"};
static const char v2_enable[] = "+memory +pids +cpu";

/* Each write is the file's whole value; O_TRUNC is a no-op on cgroupfs and
 * makes a regular file (the unit test's fake) behave the same. No O_CREAT:
 * a file the kernel does not have fails with ENOENT. */
static int write_str(const char *dir, const char *file, const char *val)
{
    cb_autofree char *path = cb_printf_new("%s/%s", dir, file);
    cb_autoclose int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return -1;
    return cb_write_all(fd, val, strlen(val));
}

/* The text of the absolute `path` below `prefix` ("" or a folder). Owned. */
static char *read_under(const char *prefix, const char *path)
{
    cb_autofree char *full = cb_printf_new("%s%s", prefix, path);
    return cb_read_file(full, NULL);
}

/* Is `word` an item of `list` (items separated by `sep`)? */
static bool list_has(const char *list, const char *word, char sep)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == sep) && (p[n] == sep || p[n] == '\0' || p[n] == '\n'))
            return true;
    return false;
}

/* The server's group in hierarchy `name` ("" for v2). Lines of
 * /proc/self/cgroup look like "4:memory:/a/b", "2:cpu,cpuacct:/" or
 * "0::/user.slice". Returns owned or NULL. */
static char *own_group(const char *root, const char *name)
{
    cb_autofree char *text = read_under(root, "/proc/self/cgroup");
    if (!text)
        return NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1;
        if (*name ? list_has(ctrls, name, ',') : *ctrls == '\0')
            return cb_strdup(c2 + 1);
    }
    return NULL;
}

/* The folder (under root) of `group` in hierarchy `name` ("" for the v2
 * tree at /sys/fs/cgroup): the first mount of that hierarchy whose root
 * holds the group. Lines of /proc/self/mountinfo look like
 * "36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory"
 * (fields 4 and 5: the mount's root and mount point). Returns owned or NULL. */
static char *group_dir(const char *root, const char *name, const char *group)
{
    cb_autofree char *text = read_under(root, "/proc/self/mountinfo");
    if (!text)
        return NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *dash = strstr(line, " - ");
        char fstype[32], opts[256];
        if (!dash || sscanf(dash + 3, "%31s %*s %255s", fstype, opts) != 2)
            continue;
        *dash = '\0';
        char *f[5], *fsave = NULL;
        int n = 0;
        for (char *t = strtok_r(line, " ", &fsave); t && n < 5; t = strtok_r(NULL, " ", &fsave))
            f[n++] = t;
        if (n < 5)
            continue;
        const char *mroot = f[3], *mpoint = f[4];
        bool match = *name ? strcmp(fstype, "cgroup") == 0 && list_has(opts, name, ',')
                           : strcmp(fstype, "cgroup2") == 0 && strcmp(mpoint, "/sys/fs/cgroup") == 0;
        size_t rn = strcmp(mroot, "/") == 0 ? 0 : strlen(mroot);
        if (!match || strncmp(group, mroot, rn) != 0 || (group[rn] != '/' && group[rn] != '\0'))
            continue;
        const char *rel = group + rn;
        return cb_printf_new("%s%s%s", root, mpoint, strcmp(rel, "/") == 0 ? "" : rel);
    }
    return NULL;
}

static int detect_v2(sb_cg_layout *l, const char *root, sb_error *err)
{
    cb_autofree char *own = own_group(root, "");
    if (!own)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v2: no 0:: line in /proc/self/cgroup"), -1;
    cb_autofree char *group = group_dir(root, "", own);
    if (!group)
        return sb_fail(err, SB_E_INTERNAL_ERROR,
                       "cgroup v2: the server's group %s is not below the cgroup2 mount at "
                       "/sys/fs/cgroup (see /proc/self/mountinfo)", own), -1;
    cb_autofree char *offered = read_under(group, "/cgroup.controllers");
    if (offered)
        offered[strcspn(offered, "\n")] = '\0';
    for (int i = 0; i < 3; i++)
        if (!offered || !list_has(offered, ctrl_names[i], ' '))
            return sb_fail(err, SB_E_INTERNAL_ERROR,
                           "cgroup v2: the %s controller is not available to the server's group "
                           "%s (cgroup.controllers: \"%s\"): its parent must delegate memory, pids "
                           "and cpu (e.g. systemd-run -p Delegate=yes --scope cellbox serve)",
                           ctrl_names[i], group, offered ? offered : "unreadable"), -1;
    /* no internal processes: leave the group before it enables controllers */
    cb_autofree char *leaf = cb_printf_new("%s/cellbox.server", group);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if ((mkdir(leaf, 0755) < 0 && errno != EEXIST) || write_str(leaf, "cgroup.procs", pid) < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v2: cannot move the server into %s: %s",
                       leaf, strerror(errno)), -1;
    if (write_str(group, "cgroup.subtree_control", v2_enable) < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR,
                       "cgroup v2: cannot enable memory, pids and cpu in %s/cgroup.subtree_control: "
                       "%s%s", group, strerror(errno),
                       errno == EBUSY ? " (other processes share the server's group: run the server "
                                        "in a group of its own, e.g. systemd-run -p Delegate=yes "
                                        "--scope cellbox serve)" : ""), -1;
    cb_autofree char *base = cb_printf_new("%s/cellbox", group);
    if (mkdir(base, 0755) < 0 && errno != EEXIST)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v2: mkdir %s: %s", base, strerror(errno)), -1;
    if (write_str(base, "cgroup.subtree_control", v2_enable) < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR,
                       "cgroup v2: cannot enable memory, pids and cpu in %s/cgroup.subtree_control: %s",
                       base, strerror(errno)), -1;
    l->version = 2;
    l->base[0] = cb_steal(&base);
    snprintf(l->desc, sizeof l->desc, "v2 at %s", l->base[0]);
    return 0;
}

static int detect_v1(sb_cg_layout *l, const char *root, sb_error *err)
{
    for (int i = 0; i < SB_CG_N; i++) {
        cb_autofree char *own = own_group(root, ctrl_names[i]);
        cb_autofree char *group = own ? group_dir(root, ctrl_names[i], own) : NULL;
        if (!group && i == SB_CG_FREEZER)
            continue;  /* sandboxes run, but cannot be paused */
        if (!group)
            return sb_fail(err, SB_E_INTERNAL_ERROR,
                           "cgroup v1: no %s hierarchy is mounted for the server's group %s (see "
                           "/proc/self/cgroup and /proc/self/mountinfo)",
                           ctrl_names[i], own ? own : "(none)"), -1;
        l->base[i] = cb_printf_new("%s/cellbox", group);
        if (mkdir(l->base[i], 0755) < 0 && errno != EEXIST)
            return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v1: mkdir %s: %s", l->base[i],
                           strerror(errno)), -1;
    }
    l->version = 1;
    snprintf(l->desc, sizeof l->desc, "v1/hybrid at %s, %s, %s, %s", l->base[0], l->base[1],
             l->base[2], l->base[SB_CG_FREEZER] ? l->base[SB_CG_FREEZER]
                                                : "no freezer (pause is not available)");
    return 0;
}

int sb_cg_detect(sb_cg_layout *l, const char *root, sb_error *err)
{
    memset(l, 0, sizeof *l);
    cb_autofree char *v2 = cb_printf_new("%s/sys/fs/cgroup/cgroup.controllers", root);
    struct stat st;
    int rc = stat(v2, &st) == 0 ? detect_v2(l, root, err) : detect_v1(l, root, err);
    if (rc < 0)
        sb_cg_layout_clear(l);
    return rc;
}

void sb_cg_layout_clear(sb_cg_layout *l)
{
    for (int i = 0; i < SB_CG_N; i++)
        free(l->base[i]);
    memset(l, 0, sizeof *l);
}

int sb_cg_create(const sb_cg_layout *l, const char *name, sb_cgroup *cg, sb_error *err)
{
    memset(cg, 0, sizeof *cg);
    int n = l->version == 2 ? 1 : l->version == 1 ? SB_CG_N : 0;
    for (int i = 0; i < n; i++) {
        if (!l->base[i])
            continue;  /* v1 without a freezer */
        cg->dir[i] = cb_printf_new("%s/%s", l->base[i], name);
        if (mkdir(cg->dir[i], 0755) < 0 && errno != EEXIST) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup %s: %s", cg->dir[i], strerror(errno));
            sb_cg_destroy(cg);
            return -1;
        }
    }
    return 0;
}

/* ---- limits -------------------------------------------------------------- */

enum { VAL_MEMORY, VAL_PIDS, VAL_CPU_MAX, VAL_CPU_PERIOD, VAL_CPU_QUOTA, VAL_ZERO, VAL_N };

typedef struct cg_write {
    int dir;          /* index into sb_cgroup.dir */
    const char *file;
    int val;          /* VAL_* */
    bool optional;    /* absent on some kernels, or allowed to fail (memsw, below) */
} cg_write;

static const cg_write v2_limits[] = {
    {0, "memory.max", VAL_MEMORY, false},
    {0, "memory.swap.max", VAL_ZERO, true},   /* absent without swap accounting */
    {0, "pids.max", VAL_PIDS, false},
    {0, "cpu.max", VAL_CPU_MAX, false},       /* "$QUOTA $PERIOD" */
};

/* memsw (memory+swap, absent without swap accounting) must never be below
 * memory: written before (succeeds when growing) and after (when shrinking).
 * v1 charges TCP buffers to a group only once its kmem.tcp limit is set
 * (v2 counts them in memory.current): without one, a 64 MB sandbox held
 * 2 GB of the host's memory in loopback connections, up to the host-wide
 * net.ipv4.tcp_mem, where every TCP socket of the host is squeezed. They get
 * the memory limit again, on top of it (a shrink below what is in use
 * fails with EBUSY: optional). */
static const cg_write v1_limits[] = {
    {0, "memory.memsw.limit_in_bytes", VAL_MEMORY, true},
    {0, "memory.limit_in_bytes", VAL_MEMORY, false},
    {0, "memory.memsw.limit_in_bytes", VAL_MEMORY, true},
    {0, "memory.kmem.tcp.limit_in_bytes", VAL_MEMORY, true},
    {1, "pids.max", VAL_PIDS, false},
    {2, "cpu.cfs_period_us", VAL_CPU_PERIOD, true},
    {2, "cpu.cfs_quota_us", VAL_CPU_QUOTA, false},
};

int sb_cg_set_limits(const sb_cg_layout *l, const sb_cgroup *cg, const sb_limits *lim,
                     sb_error *err)
{
    if (l->version == 0)
        return 0;
    const unsigned period = 100000;                 /* µs: 100 ms, the kernel's default */
    const unsigned quota = lim->cpu_milli * (period / 1000);  /* µs per period */
    char vals[VAL_N][48];
    snprintf(vals[VAL_MEMORY], sizeof vals[0], "%llu", (unsigned long long)lim->memory_mb << 20);
    snprintf(vals[VAL_PIDS], sizeof vals[0], "%u", lim->pids);
    snprintf(vals[VAL_CPU_MAX], sizeof vals[0], "%u %u", quota, period);
    snprintf(vals[VAL_CPU_PERIOD], sizeof vals[0], "%u", period);
    snprintf(vals[VAL_CPU_QUOTA], sizeof vals[0], "%u", quota);
    snprintf(vals[VAL_ZERO], sizeof vals[0], "0");
    const cg_write *w = l->version == 2 ? v2_limits : v1_limits;
    size_t n = l->version == 2 ? CB_ARRAY_LEN(v2_limits) : CB_ARRAY_LEN(v1_limits);
    for (size_t i = 0; i < n; i++)
        if (write_str(cg->dir[w[i].dir], w[i].file, vals[w[i].val]) < 0 && !w[i].optional)
            return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup limit %s/%s = %s: %s",
                           cg->dir[w[i].dir], w[i].file, vals[w[i].val], strerror(errno)), -1;
    return 0;
}

/* ---- membership and removal ---------------------------------------------- */

int sb_cg_attach(const sb_cgroup *cg, pid_t pid, sb_error *err)
{
    char val[32];
    snprintf(val, sizeof val, "%d", (int)pid);
    for (int i = 0; i < SB_CG_N; i++)
        if (cg->dir[i] && write_str(cg->dir[i], "cgroup.procs", val) < 0) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup attach %s: %s", cg->dir[i],
                    strerror(errno));
            return -1;
        }
    return 0;
}

/* Thaw the group in `dir` whatever its layout (v2: cgroup.freeze; v1's
 * freezer: freezer.state): each file exists only where it applies, so the
 * other write fails with ENOENT. No wait: the tasks are about to die. */
static void thaw_any(const char *dir)
{
    write_str(dir, "freezer.state", "THAWED");
    write_str(dir, "cgroup.freeze", "0");
}

void sb_cg_destroy(sb_cgroup *cg)
{
    /* first, so that the tasks the caller killed can die */
    if (cg->dir[SB_CG_FREEZER])
        thaw_any(cg->dir[SB_CG_FREEZER]);
    for (int i = 0; i < SB_CG_N; i++) {
        if (!cg->dir[i])
            continue;
        write_str(cg->dir[i], "cgroup.kill", "1");  /* v2 only; harmless elsewhere */
        /* the agent is already reaped, so the group empties within moments */
        for (int tries = 0; tries < 200 && rmdir(cg->dir[i]) < 0 && errno == EBUSY; tries++)
            usleep(5000);
        free(cg->dir[i]);
        cg->dir[i] = NULL;
    }
}

/* ---- freezing -------------------------------------------------------------- */

bool sb_cg_can_freeze(const sb_cg_layout *l)
{
    return l->version == 2 || (l->version == 1 && l->base[SB_CG_FREEZER]);
}

/* Has the kernel finished (un)freezing the group? */
static bool freeze_done(const sb_cg_layout *l, const sb_cgroup *cg, bool frozen)
{
    if (l->version == 2) {
        cb_autofree char *ev = read_under(cg->dir[0], "/cgroup.events");
        const char *p = ev ? strstr(ev, "frozen ") : NULL;
        return p && (p == ev || p[-1] == '\n') && p[7] == (frozen ? '1' : '0');
    }
    cb_autofree char *st = read_under(cg->dir[SB_CG_FREEZER], "/freezer.state");
    return st && strncmp(st, frozen ? "FROZEN" : "THAWED", 6) == 0;
}

int sb_cg_freeze(const sb_cg_layout *l, const sb_cgroup *cg, bool frozen, int timeout_ms,
                 sb_error *err)
{
    if (!sb_cg_can_freeze(l))
        return sb_fail(err, SB_E_PAUSE_NOT_SUPPORTED,
                       "cannot freeze: %s", l->version == 1
                           ? "no cgroup v1 freezer hierarchy is mounted for the server "
                             "(mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer)"
                           : "no cgroups (--isolation none)"), -1;
    const char *dir = l->version == 2 ? cg->dir[0] : cg->dir[SB_CG_FREEZER];
    const char *file = l->version == 2 ? "cgroup.freeze" : "freezer.state";
    const char *val = l->version == 2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
    if (!dir || write_str(dir, file, val) < 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup %s/%s = %s: %s",
                       dir ? dir : "(none)", file, val, dir ? strerror(errno) : "no group"), -1;
    for (int waited = 0; !freeze_done(l, cg, frozen); waited++) {
        if (waited >= timeout_ms) {
            if (frozen)
                write_str(dir, file, l->version == 2 ? "0" : "THAWED");
            return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                           "cgroup %s: the kernel did not %s every task within %d ms (a task in "
                           "uninterruptible sleep, e.g. on a hung file system?)%s", dir,
                           frozen ? "freeze" : "thaw", timeout_ms,
                           frozen ? "; the group was thawed again" : ""), -1;
        }
        usleep(1000);
        /* v1: tasks busy at the write (forking, exec'ing) leave the group
         * FREEZING; the documented retry is to write FROZEN again */
        if (frozen && l->version == 1 && waited % 20 == 19)
            write_str(dir, file, val);
    }
    return 0;
}

/* ---- groups of servers that are gone ------------------------------------- */

/* Is `pid` (below `root`) a running `cellbox serve`? Its argv[1] says. */
static bool server_alive(const char *root, long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    size_t n = 0;
    cb_autofree char *full = cb_printf_new("%s%s", root, path);
    cb_autofree char *cmd = cb_read_file(full, &n);
    if (!cmd)
        return false;
    const char *arg1 = memchr(cmd, '\0', n);
    return arg1 && (size_t)(arg1 + 1 - cmd) < n && strcmp(arg1 + 1, "serve") == 0;
}

/* Kill whatever is left in a group: v2 has cgroup.kill; on v1 each pid of
 * cgroup.procs gets SIGKILL (only on the real host, never a fake tree's). */
static void kill_members(const char *dir, const char *root)
{
    if (write_str(dir, "cgroup.kill", "1") == 0 || *root) {
        thaw_any(dir);
        return;
    }
    cb_autofree char *procs = read_under(dir, "/cgroup.procs");
    for (char *p = procs; p && *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 1)
            kill((pid_t)pid, SIGKILL);
        p = end + strspn(end, "\n");
    }
    thaw_any(dir);  /* v1: killed, they die once thawed (a paused sandbox) */
}

int sb_cg_sweep(const sb_cg_layout *l, const char *root)
{
    int removed = 0;
    /* the freezer first: its members die only once thawed, and the other
     * hierarchies' groups can go only when they did */
    static const int order[] = {SB_CG_FREEZER, SB_CG_MEMORY, SB_CG_PIDS, SB_CG_CPU};
    int n = l->version == 2 ? 1 : l->version == 1 ? SB_CG_N : 0;
    for (int k = 0; k < n; k++) {
        int i = l->version == 2 ? 0 : order[k];
        if (!l->base[i])
            continue;
        DIR *d = opendir(l->base[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            long pid;
            unsigned seq;
            char tail;
            if (sscanf(e->d_name, "pool-%ld-%u%c", &pid, &seq, &tail) != 2 || pid <= 0 ||
                server_alive(root, pid))
                continue;
            cb_autofree char *dir = cb_printf_new("%s/%s", l->base[i], e->d_name);
            kill_members(dir, root);
            int tries = 0;
            while (rmdir(dir) < 0 && errno == EBUSY && tries++ < 400)  /* 2 s: killed members of a pid namespace can take a while */
                usleep(5000);
            if (access(dir, F_OK) != 0)
                removed++;
            else
                cb_warn("sandbox", "cannot remove the stale cgroup %s: %s", dir, strerror(errno));
        }
        if (d)
            closedir(d);
    }
    return removed;
}

long long sb_cg_oom_kills(const sb_cgroup *cg, const sb_cg_layout *l)
{
    if (!cg->dir[SB_CG_MEMORY] || l->version == 0)
        return -1;
    cb_autofree char *path = cb_printf_new("%s/%s", cg->dir[SB_CG_MEMORY],
                                           l->version == 2 ? "memory.events" : "memory.oom_control");
    cb_autofree char *text = cb_read_file(path, NULL);
    for (char *s = text; s && *s;) {
        if (strncmp(s, "oom_kill ", 9) == 0)
            return atoll(s + 9);
        char *nl = strchr(s, '\n');
        s = nl ? nl + 1 : NULL;
    }
    return -1;
}

pid_t *sb_cg_procs(const sb_cgroup *cg, const sb_cg_layout *l, size_t *n)
{
    *n = 0;
    const char *dir = l->version == 2 ? cg->dir[0] : cg->dir[SB_CG_PIDS];
    if (!dir)
        return NULL;
    cb_autofree char *path = cb_printf_new("%s/cgroup.procs", dir);
    cb_autofree char *text = cb_read_file(path, NULL);
    if (!text)
        return NULL;
    size_t cap = 16;
    pid_t *out = cb_malloc(cap * sizeof *out);
    for (char *s = text, *end; *s; s = end) {
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        if (*n == cap)
            out = cb_realloc(out, (cap *= 2) * sizeof *out);
        out[(*n)++] = (pid_t)v;
    }
    return out;
}

long long sb_cg_memory(const sb_cgroup *cg, const sb_cg_layout *l)
{
    if (!cg->dir[0])
        return -1;
    cb_autofree char *path = cb_printf_new("%s/%s", cg->dir[0],
                                           l->version == 2 ? "memory.current" : "memory.usage_in_bytes");
    cb_autofree char *text = cb_read_file(path, NULL);
    return text ? atoll(text) : -1;
}
