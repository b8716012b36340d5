/* sandbox/sb_cgroup.c: see sb_cgroup.h.
 *
 * Layouts: /sys/fs/cgroup/cgroup.controllers exists on pure v2; then the
 * server's group (from /proc/self/cgroup, line "0::") gets a "cellbox" child
 * with memory, pids and cpu enabled. Otherwise v1 hierarchies are used at
 * /sys/fs/cgroup/{memory,pids,cpu}, each below the server's own group in that
 * hierarchy. A v2 parent that still holds processes cannot delegate
 * controllers ("no internal processes"); the server then moves itself into a
 * "cellbox.server" leaf first.
 */
#include "config.h"
#include "sandbox/sb_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

static const char *v1_names[3] = {"memory", "pids", "cpu"};

static int write_str(const char *dir, const char *file, const char *val)
{
    cb_autofree char *path = cb_printf_new("%s/%s", dir, file);
    cb_autoclose int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    return cb_write_all(fd, val, strlen(val));
}

/* The server's own group in hierarchy `name` ("" for the v2 line). Lines
 * look like "4:memory:/a/b", "2:cpu,cpuacct:/" or "0::/user.slice". */
static char *own_group(const char *name)
{
    cb_autofree char *text = cb_read_file("/proc/self/cgroup", NULL);
    if (!text)
        return NULL;
    char *save_line = NULL;
    for (char *line = strtok_r(text, "\n", &save_line); line; line = strtok_r(NULL, "\n", &save_line)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        char *ctrls = c1 + 1;
        bool found = false;
        if (!*name) {
            found = *ctrls == '\0';
        } else {
            char *save = NULL;
            for (char *t = strtok_r(ctrls, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, name) == 0)
                    found = true;
        }
        if (found)
            return cb_strdup(c2 + 1);
    }
    return NULL;
}

static int detect_v2(sb_cg_layout *l, sb_error *err)
{
    cb_autofree char *own = own_group("");
    if (!own)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v2: no 0:: line in /proc/self/cgroup"), -1;
    cb_autofree char *parent = cb_printf_new("/sys/fs/cgroup%s", strcmp(own, "/") ? own : "");
    cb_autofree char *base = cb_printf_new("%s/cellbox", parent);
    if (mkdir(base, 0755) < 0 && errno != EEXIST)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v2: mkdir %s: %s", base, strerror(errno)), -1;
    if (write_str(parent, "cgroup.subtree_control", "+memory +pids +cpu") < 0 && errno == EBUSY) {
        /* our group holds processes: move ourselves into a leaf, then retry */
        cb_autofree char *leaf = cb_printf_new("%s/cellbox.server", parent);
        char pid[32];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        if ((mkdir(leaf, 0755) == 0 || errno == EEXIST) && write_str(leaf, "cgroup.procs", pid) == 0)
            write_str(parent, "cgroup.subtree_control", "+memory +pids +cpu");
    }
    if (write_str(base, "cgroup.subtree_control", "+memory +pids +cpu") < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR,
                       "cgroup v2: cannot enable memory, pids and cpu in %s: %s (run the server "
                       "in a group of its own, e.g. systemd-run --scope, or delegate controllers)",
                       base, strerror(errno)), -1;
    l->version = 2;
    l->base[0] = cb_steal(&base);
    snprintf(l->desc, sizeof l->desc, "v2 at %s", l->base[0]);
    return 0;
}

static int detect_v1(sb_cg_layout *l, sb_error *err)
{
    for (int i = 0; i < 3; i++) {
        cb_autofree char *own = own_group(v1_names[i]);
        cb_autofree char *root = cb_printf_new("/sys/fs/cgroup/%s", v1_names[i]);
        struct stat st;
        if (!own || stat(root, &st) < 0)
            return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v1: no %s hierarchy", v1_names[i]), -1;
        cb_autofree char *base = cb_printf_new("%s%s/cellbox", root, strcmp(own, "/") ? own : "");
        if (mkdir(base, 0755) < 0 && errno != EEXIST)
            return sb_fail(err, SB_E_INTERNAL_ERROR, "cgroup v1: mkdir %s: %s", base,
                           strerror(errno)), -1;
        l->base[i] = cb_steal(&base);
    }
    l->version = 1;
    snprintf(l->desc, sizeof l->desc, "v1/hybrid at %s, %s, %s", l->base[0], l->base[1], l->base[2]);
    return 0;
}

int sb_cg_detect(sb_cg_layout *l, sb_error *err)
{
    memset(l, 0, sizeof *l);
    struct stat st;
    if (stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0)
        return detect_v2(l, err);
    return detect_v1(l, err);
}

void sb_cg_layout_clear(sb_cg_layout *l)
{
    for (int i = 0; i < 3; i++)
        free(l->base[i]);
    memset(l, 0, sizeof *l);
}

int sb_cg_create(const sb_cg_layout *l, const char *name, sb_cgroup *cg, sb_error *err)
{
    memset(cg, 0, sizeof *cg);
    int n = l->version == 2 ? 1 : l->version == 1 ? 3 : 0;
    for (int i = 0; i < n; i++) {
        cg->dir[i] = cb_printf_new("%s/%s", l->base[i], name);
        if (mkdir(cg->dir[i], 0755) < 0 && errno != EEXIST) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup %s: %s", cg->dir[i], strerror(errno));
            sb_cg_destroy(cg);
            return -1;
        }
    }
    return 0;
}

int sb_cg_set_limits(const sb_cg_layout *l, const sb_cgroup *cg, const sb_limits *lim,
                     sb_error *err)
{
    if (l->version == 0)
        return 0;
    char val[64];
    long long mem = (long long)lim->memory_mb << 20;
    unsigned period = 100000, quota = lim->cpu_milli * 100;
    const char *what = "memory";
    if (l->version == 2) {
        snprintf(val, sizeof val, "%lld", mem);
        if (write_str(cg->dir[0], "memory.max", val) < 0)
            goto fail;
        write_str(cg->dir[0], "memory.swap.max", "0");
        what = "pids";
        snprintf(val, sizeof val, "%u", lim->pids);
        if (write_str(cg->dir[0], "pids.max", val) < 0)
            goto fail;
        what = "cpu";
        snprintf(val, sizeof val, "%u %u", quota, period);
        if (write_str(cg->dir[0], "cpu.max", val) < 0)
            goto fail;
    } else {
        /* memsw (memory+swap) must stay >= memory: lower it first when
         * shrinking, raise it last when growing; absent without swap
         * accounting, which is fine */
        snprintf(val, sizeof val, "%lld", mem);
        write_str(cg->dir[0], "memory.memsw.limit_in_bytes", val);
        if (write_str(cg->dir[0], "memory.limit_in_bytes", val) < 0)
            goto fail;
        write_str(cg->dir[0], "memory.memsw.limit_in_bytes", val);
        what = "pids";
        snprintf(val, sizeof val, "%u", lim->pids);
        if (write_str(cg->dir[1], "pids.max", val) < 0)
            goto fail;
        what = "cpu";
        snprintf(val, sizeof val, "%u", period);
        write_str(cg->dir[2], "cpu.cfs_period_us", val);
        snprintf(val, sizeof val, "%u", quota);
        if (write_str(cg->dir[2], "cpu.cfs_quota_us", val) < 0)
            goto fail;
    }
    return 0;
fail:
    return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup %s limit: %s", what, strerror(errno)), -1;
}

int sb_cg_rename(sb_cgroup *cg, const char *name, sb_error *err)
{
    for (int i = 0; i < 3; i++) {
        if (!cg->dir[i])
            continue;
        cb_autofree char *parent = cb_strdup(cg->dir[i]);
        char *slash = strrchr(parent, '/');
        *slash = '\0';
        char *to = cb_printf_new("%s/%s", parent, name);
        rmdir(to);  /* a stale, empty one from a crash */
        if (rename(cg->dir[i], to) < 0) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup rename %s: %s", to, strerror(errno));
            free(to);
            return -1;
        }
        free(cg->dir[i]);
        cg->dir[i] = to;
    }
    return 0;
}

int sb_cg_attach(const sb_cgroup *cg, pid_t pid, sb_error *err)
{
    char val[32];
    snprintf(val, sizeof val, "%d", (int)pid);
    for (int i = 0; i < 3; i++)
        if (cg->dir[i] && write_str(cg->dir[i], "cgroup.procs", val) < 0) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cgroup attach %s: %s", cg->dir[i],
                    strerror(errno));
            return -1;
        }
    return 0;
}

void sb_cg_destroy(sb_cgroup *cg)
{
    for (int i = 0; i < 3; i++) {
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

long long sb_cg_memory(const sb_cgroup *cg, const sb_cg_layout *l)
{
    if (!cg->dir[0])
        return -1;
    cb_autofree char *path = cb_printf_new("%s/%s", cg->dir[0],
                                           l->version == 2 ? "memory.current" : "memory.usage_in_bytes");
    cb_autofree char *text = cb_read_file(path, NULL);
    return text ? atoll(text) : -1;
}
