/* sandbox/sb_box.c: sandboxes on the server: registry, start/stop, state.
 *
 * This file is the one place that creates namespaces. An agent is made in
 * two steps:
 *   warm_spawn: cgroups (with default limits) -> clone(new user, pid, mount,
 *     uts, ipc, net ns) -> the child waits on a pipe -> the parent writes the
 *     uid/gid maps and moves it into the cgroups -> "go" -> the child becomes
 *     root of its namespace and execs `cellbox agent`, which runs the generic
 *     plan (sb_plan.h) and answers "warm". The pool keeps a few of these.
 *   box_start: take a warm agent, set this sandbox's limits and network, and
 *     send the specialising plan with a detached copy of the workspace mount
 *     (open_tree); the agent answers "ready"; the server opens the sandbox's
 *     root, network namespace and a pidfd.
 * Between clone and exec the child only makes async-signal-safe calls (the
 * server is multi-threaded). Stopping kills pid 1, which makes the kernel
 * kill the whole pid namespace, then removes the cgroups.
 *
 * Pause freezes the sandbox's cgroup (sb_cg_freeze) with b->mu released
 * (b->pausing set: see sb_box.h); resume thaws it under b->mu. A frozen
 * pid 1 cannot die (cgroup v1), so a stop of a paused sandbox sends
 * SIGKILL, thaws, and only then waits for it.
 *
 * Persistence: sandbox.json (options, and its host id range once it has
 * one: "idRange", see SB_ID_RANGE in sb_box.h), sessions.json (sessions
 * and their shell state) under STATE/sandboxes/<id>/, plus workspace/
 * which is attached at /workspace. Nothing else is needed to bring a
 * sandbox back.
 *
 * Id ranges: a warm agent's namespace maps one range, written once before
 * it runs, so the pool holds agents made with free ranges; a sandbox's
 * first start takes one and its range with it. A later start (after a
 * sleep, a server restart, a crash of its agent) makes an agent for the
 * sandbox's own range instead: a cold start, as when the pool is empty.
 */
#include "config.h"
#include "sandbox/sb_box.h"
#include "sandbox/sb_pin.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <endian.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_backup.h"
#include "sandbox/sb_mount.h"
#include "sandbox/sb_net.h"
#include "sandbox/sb_plan.h"
#include "sandbox/sb_ctx.h"
#include "sandbox/sb_proc.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_util.h"

/* How long a pause waits for every task to freeze (b->mu released).
 * A task in uninterruptible sleep (waiting for a busy disk, say) freezes
 * only when it wakes: CI saw more than 5 s under parallel load. */
#define PAUSE_WAIT_MS 10000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t gone;    /* a deleted sandbox left boxes (its id is free again) */
    sb_box **boxes;         /* those being deleted (removing) too, until their folder is gone */
    size_t n, cap;
    char *state_dir;
    char *boxes_dir;
    sb_isolation isolation;
    sb_cg_layout cg;
    bool shutting_down;     /* set under mu, read without it too: atomic accesses */
    int agent_log;  /* write end of the pipe every agent's stderr is (-1: the server's own) */
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER, .gone = PTHREAD_COND_INITIALIZER, .agent_log = -1};

int sb_session_create_locked(sb_box *b, const cJSON *body, cJSON **out, sb_error *err);
static void pool_start(void);
static void pool_stop(void);

static const struct { const char *name; sb_limits lim; } presets[] = {
    {"lite", {256, 500, 256, 64}},
    {"standard", {512, 1000, 512, 128}},
    {"heavy", {1024, 2000, 1024, 256}},
};

/* ---- options ------------------------------------------------------------- */

/* metadata (E2B's): labels a client gives a sandbox to find it again
 * (GET /v1/sandboxes?metadata=...), an object of up to 64 strings. */
static int metadata_check(const cJSON *md, sb_error *err)
{
    if (!cJSON_IsObject(md))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "metadata must be an object of strings"), -1;
    int n = 0;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, md) {
        cb_autofree char *key = sb_utf8_lossy(kv->string, NULL);
        if (++n > 64)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "metadata holds more than 64 keys"), -1;
        if (!*kv->string || strlen(kv->string) > 128 || sb_has_ctl(kv->string))
            return sb_fail(err, SB_E_VALIDATION_FAILED, "metadata: the key '%.64s' must be 1-128 bytes "
                           "without control characters", key), -1;
        if (!cJSON_IsString(kv) || strlen(kv->valuestring) > 1024)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "metadata: '%.64s' must be a string of at most "
                           "1024 bytes", key), -1;
    }
    return 0;
}

static int parse_opts(const cJSON *j, sb_box_opts *o, sb_error *err)
{
    memset(o, 0, sizeof *o);
    const char *inst = cb_json_str(j, "instanceType", "lite");
    /* "custom" is what the options of a sandbox with explicit limits show
     * (and persist): read back, its limits are all there, over lite's */
    bool found = strcmp(inst, "custom") == 0;
    if (found)
        o->lim = presets[0].lim;
    for (size_t i = 0; i < CB_ARRAY_LEN(presets); i++)
        if (strcmp(inst, presets[i].name) == 0) {
            o->lim = presets[i].lim;
            found = true;
        }
    if (!found)
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "instanceType must be lite, standard or heavy, not '%s'", inst), -1;
    snprintf(o->instance, sizeof o->instance, "%s", inst);
    const sb_limits preset = o->lim;
    bool custom = false;
    if (cb_json_has(j, "memoryMB")) {
        long long v = cb_json_int(j, "memoryMB", -1);
        if (v < 32 || v > 1 << 20)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "memoryMB must be 32..1048576"), -1;
        o->lim.memory_mb = (unsigned)v, custom = true;
    }
    if (cb_json_has(j, "cpus")) {
        double v = cb_json_num(j, "cpus", -1);
        if (v < 0.05 || v > 256)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "cpus must be 0.05..256"), -1;
        o->lim.cpu_milli = (unsigned)(v * 1000), custom = true;
    }
    if (cb_json_has(j, "pids")) {
        long long v = cb_json_int(j, "pids", -1);
        if (v < 8 || v > 1 << 20)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "pids must be 8..1048576"), -1;
        o->lim.pids = (unsigned)v, custom = true;
    }
    if (cb_json_has(j, "tmpMB")) {
        long long v = cb_json_int(j, "tmpMB", -1);
        if (v < 1 || v > 1 << 20)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "tmpMB must be 1..1048576"), -1;
        o->lim.tmp_mb = (unsigned)v, custom = true;
    }
    /* explicit limits equal to the preset's are the preset (the persisted
     * options hold every limit: a "standard" sandbox must read back as one) */
    if (custom && memcmp(&o->lim, &preset, sizeof preset) != 0)
        snprintf(o->instance, sizeof o->instance, "custom");
    if (cb_json_has(j, "diskMB")) {
        long long v = cb_json_int(j, "diskMB", -1);
        if (v < 16 || v > 16 << 20)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "diskMB must be 16..16777216"), -1;
        o->disk_mb = (unsigned)v;
    }
    const char *net = cb_json_str(j, "network", "none");
    if (strcmp(net, "none") != 0 && strcmp(net, "egress") != 0)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "network must be none or egress"), -1;
    o->egress = strcmp(net, "egress") == 0;
    if (sb_net_policy_parse(j, o->egress, &o->net_policy, err) < 0)
        return -1;
    o->sleep_after_ms = 10 * 60 * 1000;
    const cJSON *sa = cJSON_GetObjectItemCaseSensitive(j, "sleepAfter");
    if (cJSON_IsString(sa))
        o->sleep_after_ms = sb_duration_ms(sa->valuestring);
    else if (cJSON_IsNumber(sa))  /* seconds; out of range (or NaN) is refused below */
        o->sleep_after_ms = sa->valuedouble >= 0 && sa->valuedouble * 1000 < 9e18
                                ? (int64_t)(sa->valuedouble * 1000) : -1;
    else if (sa)
        o->sleep_after_ms = -1;
    if (o->sleep_after_ms < 0)
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "sleepAfter must be a duration like \"30s\", \"10m\", \"1h\""), -1;
    o->keep_alive = cb_json_bool(j, "keepAlive", false);
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(j, "env");
    if (env && sb_env_check(env, err) < 0)
        return -1;
    o->env = env ? cJSON_Duplicate(env, 1) : cJSON_CreateObject();
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    if (md && !cJSON_IsNull(md) && metadata_check(md, err) < 0)
        return -1;
    o->metadata = md && !cJSON_IsNull(md) ? cJSON_Duplicate(md, 1) : cJSON_CreateObject();
    return 0;
}

/* What a sandbox's options own (env, metadata); o stays usable as empty. */
static void opts_clear(sb_box_opts *o)
{
    cJSON_Delete(o->env);
    cJSON_Delete(o->metadata);
    o->env = o->metadata = NULL;
}

static cJSON *opts_json(const sb_box_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "instanceType", o->instance);
    cJSON_AddNumberToObject(j, "memoryMB", o->lim.memory_mb);
    cJSON_AddNumberToObject(j, "cpus", o->lim.cpu_milli / 1000.0);
    cJSON_AddNumberToObject(j, "pids", o->lim.pids);
    cJSON_AddNumberToObject(j, "tmpMB", o->lim.tmp_mb);
    if (o->disk_mb)
        cJSON_AddNumberToObject(j, "diskMB", o->disk_mb);
    cJSON_AddStringToObject(j, "network", o->egress ? "egress" : "none");
    if (o->egress)
        sb_net_policy_json(&o->net_policy, j);
    char sa[32];
    snprintf(sa, sizeof sa, "%lldms", (long long)o->sleep_after_ms);
    cJSON_AddStringToObject(j, "sleepAfter", sa);
    cJSON_AddBoolToObject(j, "keepAlive", o->keep_alive);
    cJSON_AddItemToObject(j, "env", cJSON_Duplicate(o->env, 1));
    cJSON_AddItemToObject(j, "metadata", cJSON_Duplicate(o->metadata, 1));
    return j;
}

/* ---- registry ------------------------------------------------------------ */

static sb_box *box_new(const char *id)
{
    sb_box *b = cb_calloc(1, sizeof *b);
    snprintf(b->id, sizeof b->id, "%s", id);
    b->dir = cb_printf_new("%s/%s", reg.boxes_dir, id);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    pthread_mutex_init(&b->backup_mu, NULL);
    b->refs = 1;  /* the registry's */
    b->pidfd = b->ctl = b->root_fd = b->netns_fd = b->disk_fd = -1;
    b->net_index = -1;
    b->id_index = b->id_shift_from = -1;
    b->last_used_ms = sb_now_ms();
    b->sessions = cJSON_CreateObject();
    return b;
}

static void box_free(sb_box *b)
{
    sb_ctxs_free(b);
    sb_procs_free(b);
    cJSON_Delete(b->ports);
    opts_clear(&b->opts);
    cJSON_Delete(b->sessions);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->backup_mu);
    pthread_cond_destroy(&b->cv);
    free(b->dir);
    free(b);
}

/* refs is atomic, not under b->mu: sb_box_get takes a reference while it
 * holds reg.mu, and b->mu may be held for seconds (a start waits for its
 * agent, a stop for the kernel): every lookup of every sandbox would wait. */
sb_box *sb_box_ref(sb_box *b)
{
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void sb_box_unref(sb_box *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
        box_free(b);
}

sb_box *sb_box_get(const char *id)
{
    sb_box *found = NULL;
    pthread_mutex_lock(&reg.mu);
    for (size_t i = 0; i < reg.n; i++)
        if (!reg.boxes[i]->removing && strcmp(reg.boxes[i]->id, id) == 0) {
            found = sb_box_ref(reg.boxes[i]);
            break;
        }
    pthread_mutex_unlock(&reg.mu);
    return found;
}

static void reg_add(sb_box *b)
{
    if (reg.n == reg.cap) {
        reg.cap = reg.cap ? reg.cap * 2 : 64;
        reg.boxes = cb_realloc(reg.boxes, reg.cap * sizeof *reg.boxes);
    }
    reg.boxes[reg.n++] = b;
}

/* Every registered sandbox but those being deleted, each with a reference
 * for the caller to drop (then it frees the array); *n tells how many.
 * reg.mu held. */
static sb_box **reg_snapshot_locked(size_t *n)
{
    *n = 0;
    sb_box **copy = cb_calloc(reg.n ? reg.n : 1, sizeof *copy);
    for (size_t i = 0; i < reg.n; i++)
        if (!reg.boxes[i]->removing)
            copy[(*n)++] = sb_box_ref(reg.boxes[i]);
    return copy;
}

/* Tests only (CELLBOX_TEST_AGENT_GO_DELAY_MS): the pause between an agent's
 * clone and its "go", to kill the server while a clone waits for it. */
static int agent_go_delay_ms;

/* ---- host id ranges (see SB_ID_RANGE in sb_box.h) -------------------------------
 *
 * Which indexes are taken: by a registered sandbox (until its folder is
 * removed), or by a warm agent that no sandbox took yet (its namespace maps
 * that range already). ids.max is SB_ID_INDEX_MAX, lowered by
 * CELLBOX_MAX_ID_RANGES (tests: to see the server run out).
 *
 * Every server on the host hands out the same indexes, so they lease them
 * from each other: an index this server takes is a write lock on byte
 * `index` of the host-wide lock file (--id-lock, SB_ID_LOCK_DEFAULT), an
 * open-file-description lock of ids.lock_fd. The kernel drops a server's
 * leases when it ends, however it ends; agents never hold the fd (it is
 * close-on-exec). A range another server holds is skipped by ids_alloc; a
 * sandbox whose saved range another server holds by now (it was stopped
 * while that server started sandboxes) gets another at its next start, as
 * for a copied state folder, and its files follow (ids_shift). Without the
 * lock file (it cannot be opened: a warning) ranges are this server's
 * alone, as before. */
static struct {
    pthread_mutex_t mu;
    uint8_t used[SB_ID_INDEX_MAX / 8 + 1];
    int max;
    int lock_fd;        /* the host-wide lease file, or -1 */
} ids = {.mu = PTHREAD_MUTEX_INITIALIZER, .max = SB_ID_INDEX_MAX, .lock_fd = -1};

/* Lease index i from the other servers of the host (false: one of them
 * holds it). ids.mu held. */
static bool ids_lease(int i)
{
    if (ids.lock_fd < 0)
        return true;
    struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};
    if (fcntl(ids.lock_fd, F_OFD_SETLK, &l) == 0)
        return true;
    if (errno == EAGAIN || errno == EACCES)
        return false;
    cb_warn("sandbox", "cannot lease host id range %d: %s (taken without a lease)", i, strerror(errno));
    return true;
}

/* ids.mu held. */
static void ids_unlease(int i)
{
    if (ids.lock_fd < 0)
        return;
    struct flock l = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};
    if (fcntl(ids.lock_fd, F_OFD_SETLK, &l) < 0)
        cb_warn("sandbox", "cannot give back the lease of host id range %d: %s", i, strerror(errno));
}

/* Open the host-wide lease file (isolated servers, at init). */
static void ids_lock_open(const char *path)
{
    if (!path)
        path = SB_ID_LOCK_DEFAULT;
    if (strcmp(path, "none") == 0)
        return;
    cb_autofree char *dir = cb_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (cb_mkdir_p(dir, 0700) < 0)
            cb_debug("sandbox", "cannot create %s: %s", dir, strerror(errno));
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())) {
        close(fd);
        fd = -1;
        errno = EPERM;
    }
    if (fd < 0) {
        cb_warn("sandbox", "cannot open the host-wide id lock %s: %s; the host id ranges of this server's "
                "sandboxes are not coordinated with other servers on this host (--id-lock FILE)",
                path, strerror(errno));
        return;
    }
    ids.lock_fd = fd;
}

static bool ids_valid(int i)
{
    return i == 0 || (i >= 2 && i <= ids.max);
}

/* How many sandboxes may exist: one per valid index. */
static int ids_count(void)
{
    return ids.max >= 2 ? ids.max : 1;
}

/* Every range is taken: the reply of a create, or of a first start. */
static int ids_full(sb_error *err)
{
    return sb_fail(err, SB_E_TOO_MANY_SANDBOXES, "no free host uid/gid range for another sandbox: the "
                   "server gives each sandbox 65536 ids of its own and holds at most %d sandboxes (stopped "
                   "ones included; ranges other servers on this host hold are skipped); delete one",
                   ids_count()), -1;
}

/* Take index i (false: invalid or taken already). */
static bool ids_take(int i)
{
    if (!ids_valid(i))
        return false;
    pthread_mutex_lock(&ids.mu);
    bool free_ = !(ids.used[i / 8] & (1u << (i % 8))) && ids_lease(i);
    if (free_)
        ids.used[i / 8] |= (uint8_t)(1u << (i % 8));
    pthread_mutex_unlock(&ids.mu);
    return free_;
}

/* Take the lowest free index: freed ones are given again. -1 + err when
 * every range is taken. */
static int ids_alloc(sb_error *err)
{
    pthread_mutex_lock(&ids.mu);
    int found = -1;
    for (int i = 0; i <= ids.max && found < 0; i = i ? i + 1 : 2)
        if (!(ids.used[i / 8] & (1u << (i % 8))) && ids_lease(i)) {
            ids.used[i / 8] |= (uint8_t)(1u << (i % 8));
            found = i;
        }
    pthread_mutex_unlock(&ids.mu);
    return found >= 0 ? found : ids_full(err);
}

static void ids_free(int i)
{
    if (!ids_valid(i))
        return;
    pthread_mutex_lock(&ids.mu);
    if (ids.used[i / 8] & (1u << (i % 8)))
        ids_unlease(i);
    ids.used[i / 8] &= (uint8_t)~(1u << (i % 8));
    pthread_mutex_unlock(&ids.mu);
}

unsigned sb_box_user_id(const sb_box *b)
{
    if (reg.isolation == SB_ISOLATION_NONE)
        return (unsigned)getuid();
    if (b->id_index < 0)
        return 65534;  /* never started: nobody's (never the server's root) */
    return sb_ids_base(b->id_index) + SB_USER_IN_SANDBOX;
}

/* save_meta, save_sessions: b->mu held (or b not shared yet). Never for a
 * deleted sandbox: its folder is being removed, and a sandbox of the same id
 * created after it would get these files. */
static void save_meta(sb_box *b)
{
    if (b->deleted)
        return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", b->id);
    cJSON_AddNumberToObject(j, "createdAt", (double)b->created_us);
    cJSON_AddItemToObject(j, "options", opts_json(&b->opts));
    /* no idRange at all: a sandbox.json of before id ranges (see load_box) */
    if (!b->ids_legacy)
        cJSON_AddNumberToObject(j, "idRange", b->id_index);
    if (b->id_shift_from >= 0)
        cJSON_AddNumberToObject(j, "idShiftFrom", b->id_shift_from);
    cb_autofree char *text = cb_json_print(j);
    cb_autofree char *path = cb_printf_new("%s/sandbox.json", b->dir);
    if (sb_write_file_quick(path, text, strlen(text), 0600) < 0)
        cb_warn("sandbox", "cannot save %s: %s", path, strerror(errno));
    cJSON_Delete(j);
}

static void save_sessions(sb_box *b)
{
    if (b->deleted)
        return;
    cb_autofree char *text = cb_json_print(b->sessions);
    cb_autofree char *path = cb_printf_new("%s/sessions.json", b->dir);
    if (sb_write_file_quick(path, text, strlen(text), 0600) < 0)
        cb_warn("sandbox", "cannot save %s: %s", path, strerror(errno));
}

static const char *default_cwd(void)
{
    return reg.isolation == SB_ISOLATION_NONE ? NULL : "/workspace";
}

static char *workspace_path(sb_box *b)
{
    return cb_printf_new("%s/workspace", b->dir);
}

static void ensure_default_session(sb_box *b)
{
    if (cJSON_GetObjectItemCaseSensitive(b->sessions, "default"))
        return;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "id", "default");
    cJSON *out = NULL;
    sb_error err;
    /* mu is held by callers (or the box is not shared yet) */
    sb_session_create_locked(b, body, &out, &err);
    cJSON_Delete(out);
    cJSON_Delete(body);
}

static int load_box(const char *id)
{
    sb_box *b = box_new(id);
    cb_autofree char *path = cb_printf_new("%s/sandbox.json", b->dir);
    cb_autofree char *text = cb_read_file(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    sb_error err;
    if (!j || parse_opts(cb_json_obj(j, "options"), &b->opts, &err) < 0) {
        cb_warn("sandbox", "skipping %s: unreadable sandbox.json", id);
        cJSON_Delete(j);
        box_free(b);
        return -1;
    }
    b->created_us = (int64_t)cb_json_num(j, "createdAt", (double)cb_real_us());
    /* its id range: claimed now, before any is given to a new sandbox or a
     * pooled agent; a sandbox.json without one is resolved by ids_resolve */
    const cJSON *range = cJSON_GetObjectItemCaseSensitive(j, "idRange");
    b->ids_legacy = !range;
    b->id_index = cJSON_IsNumber(range) ? range->valueint : -1;
    b->id_shift_from = (int)cb_json_num(j, "idShiftFrom", -1);
    if (b->id_shift_from > SB_ID_INDEX_MAX || b->id_shift_from == 1)
        b->id_shift_from = -1;  /* no range: nothing of it to move */
    cJSON_Delete(j);
    if (b->id_index >= 0 && reg.isolation == SB_ISOLATION_FULL && !ids_take(b->id_index)) {
        /* two folders claim one range (a copied state folder), another
         * server of the host holds it now (see ids_lease), or it is above
         * CELLBOX_MAX_ID_RANGES: it gets another at its start, and its
         * files follow (ids_shift) */
        cb_warn("sandbox", "%s: its host id range %d is taken (by another sandbox of this state folder or "
                "another server on this host) or out of bounds: it gets another at its next start",
                id, b->id_index);
        if (b->id_shift_from < 0 && b->id_index <= SB_ID_INDEX_MAX && b->id_index != 1)
            b->id_shift_from = b->id_index;
        b->id_index = -1;
    }
    cb_autofree char *spath = cb_printf_new("%s/sessions.json", b->dir);
    cb_autofree char *stext = cb_read_file(spath, NULL);
    cJSON *s = stext ? cJSON_Parse(stext) : NULL;
    if (cJSON_IsObject(s)) {
        cJSON_Delete(b->sessions);
        b->sessions = s;
    } else {
        cJSON_Delete(s);
    }
    ensure_default_session(b);
    sb_procs_load(b);
    sb_mounts_on_load(b);
    reg_add(b);
    return 0;
}

/* The sandboxes of a server from before id ranges (their sandbox.json has
 * no idRange): all of them had range 0, 1000000..1065535, and their files
 * are owned by it (the workspace by 1001000). The first one found keeps
 * that range, so it runs as before; every other one gets a range of its
 * own at its next start, and its files are moved there then (ids_shift).
 * Saved at once: the next server start sees the decision, not the old
 * file. Isolated servers only (b->mu not needed: not shared yet). */
static void ids_resolve(void)
{
    for (size_t i = 0; i < reg.n; i++) {
        sb_box *b = reg.boxes[i];
        if (!b->ids_legacy)
            continue;
        b->ids_legacy = false;
        if (ids_take(0)) {
            b->id_index = 0;
            cb_info("sandbox", "%s (from before id ranges) keeps the host ids %u..%u", b->id,
                    sb_ids_base(0), sb_ids_base(0) + SB_ID_RANGE - 1);
        } else {
            b->id_shift_from = 0;
            cb_info("sandbox", "%s (from before id ranges) gets a host id range of its own at its next "
                    "start; its files follow", b->id);
        }
        save_meta(b);
    }
}

/* Agents write their diagnostics to one pipe, copied to the server's stderr
 * by this thread: an agent holding the server's log file (or anything else
 * of the host's file systems) would keep its copy of the host's mount tree
 * alive after pivot_root, and with it every host mount of the moment.
 * Lines up to PIPE_BUF arrive whole. */
static void *agent_log_copier(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[PIPE_BUF];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        if (cb_write_all(2, buf, (size_t)n) < 0 && errno != EAGAIN)
            return NULL;
    }
}

/* The agent program: cellbox-agent next to this binary (a build tree), or
 * the installed one when this binary is the installed cellbox (never an
 * agent of another build), else this binary as `cellbox agent` (the same
 * code, slower to start: see sb_agent_main.c). */
static char *find_agent(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? memrchr(exe, '/', (size_t)n) : NULL;
    if (slash) {
        *slash = '\0';
        char *near = cb_printf_new("%s/cellbox-agent", exe);
        if (access(near, X_OK) == 0)
            return near;
        free(near);
        if (strcmp(exe, CB_BINDIR) == 0 && access(CB_PKGLIBEXECDIR "/cellbox-agent", X_OK) == 0)
            return cb_strdup(CB_PKGLIBEXECDIR "/cellbox-agent");
    }
    cb_warn("sandbox", "no cellbox-agent next to this binary (or in %s for %s/cellbox): "
            "sandboxes start 'cellbox agent' instead, 4 ms slower", CB_PKGLIBEXECDIR, CB_BINDIR);
    return NULL;
}

static void agent_log_start(void)
{
    int p[2];
    pthread_t t;
    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    if (pthread_create(&t, NULL, agent_log_copier, (void *)(intptr_t)p[0]) != 0) {
        close(p[0]), close(p[1]);
        return;
    }
    pthread_detach(t);
    reg.agent_log = p[1];
}

int sb_boxes_init(const sb_server_conf *conf, sb_error *err)
{
    reg.state_dir = cb_strdup(conf->state_dir);
    reg.boxes_dir = cb_printf_new("%s/sandboxes", conf->state_dir);
    reg.isolation = conf->isolation;
    if (cb_mkdir_p(reg.boxes_dir, 0700) < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot create %s: %s", reg.boxes_dir,
                       strerror(errno)), -1;
    if (reg.isolation == SB_ISOLATION_FULL) {
        if (sb_cg_detect(&reg.cg, "", err) < 0)
            return -1;
        int stale = sb_cg_sweep(&reg.cg, "");
        if (stale > 0)
            cb_info("sandbox", "removed %d cgroups left by servers that are gone", stale);
        agent_log_start();
        cb_autofree char *agent = find_agent();
        sb_pin_init(conf->state_dir, agent);
    } else {
        snprintf(reg.cg.desc, sizeof reg.cg.desc, "none (isolation none)");
        sb_pin_init(conf->state_dir, NULL);
    }
    const char *gd = getenv("CELLBOX_TEST_AGENT_GO_DELAY_MS");
    if (gd && atoi(gd) > 0 && atoi(gd) <= 60000)
        agent_go_delay_ms = atoi(gd);
    const char *max = getenv("CELLBOX_MAX_ID_RANGES");
    if (max && atoi(max) >= 0 && atoi(max) < SB_ID_INDEX_MAX)
        ids.max = atoi(max);
    if (reg.isolation == SB_ISOLATION_FULL)
        ids_lock_open(conf->id_lock);
    DIR *d = opendir(reg.boxes_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (sb_id_valid(e->d_name))
            load_box(e->d_name);
    if (d)
        closedir(d);
    if (reg.isolation == SB_ISOLATION_FULL)
        ids_resolve();
    pool_start();  /* after every sandbox claimed its range: pooled agents take free ones */
    return 0;
}

bool sb_boxes_isolated(void)
{
    return reg.isolation == SB_ISOLATION_FULL;
}

const char *sb_boxes_cgroup_desc(void)
{
    return reg.cg.desc;
}

int sb_boxes_count(void)
{
    pthread_mutex_lock(&reg.mu);
    int n = 0;
    for (size_t i = 0; i < reg.n; i++)
        n += !reg.boxes[i]->removing;
    pthread_mutex_unlock(&reg.mu);
    return n;
}

/* ---- start / stop ---------------------------------------------------------- */


/* ---- warm agents ----------------------------------------------------------
 *
 * An agent is started in two steps: warm_spawn() creates the namespaces and
 * cgroups and runs the generic plan; box_start() later hands it to a sandbox
 * (set its limits, send the specialising plan). The pool keeps a few warm
 * agents ready, refilled by a thread, so that creating a sandbox does not
 * wait for namespace setup or for the RCU grace period that moving a
 * process into a v1 memory cgroup costs (~15 ms). */

typedef struct sb_warm {
    pid_t pid;
    int ctl;
    sb_cgroup cg;
    int id_index;   /* the id range its namespace maps (-1: --isolation none);
                     * a pooled agent holds it taken (ids_take) */
} sb_warm;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sb_warm *items;
    int n, target;
    unsigned seq;
    int64_t last_take_ms;
    bool stop;
    bool making;    /* the refiller holds an id range for an agent it is making:
                     * a start that finds every range taken waits for that agent */
    pthread_t thread;
    bool running;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .target = 2};

static void warm_kill(sb_warm *w)
{
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (w->ctl >= 0)
        close(w->ctl);
    sb_cg_destroy(&w->cg);
    w->pid = 0;
    w->ctl = -1;
}

static cJSON *generic_setup_json(void)
{
    cJSON *s = cJSON_CreateObject();
    bool none = reg.isolation == SB_ISOLATION_NONE;
    cJSON_AddStringToObject(s, "isolation", none ? "none" : "full");
    if (!none) {
        sb_plan plan;
        sb_plan_init(&plan);
        sb_plan_opts po = {.hostname = "sandbox", .workspace_fd = -1, .tmp_mb = 64, .self_tree = true,
                           .agent_tree = sb_pin_have(SB_PIN_AGENT)};
        sb_plan_build(&plan, &po);
        cJSON_AddItemToObject(s, "plan", sb_plan_to_json(&plan));
        sb_plan_clear(&plan);
    }
    return s;
}

/* The errors below name the cause and the setting to change: an operator
 * reads them in a 503 reply or in the log, not in the kernel's source. */
static const char ns_dev_only[] = "; --isolation none runs without namespaces, for development only";

/* clone() of the sandbox's namespaces failed with e. */
static int ns_clone_fail(int e, sb_error *err)
{
    if (e == ENOSPC || e == EUSERS) {
        /* a user.max_*_namespaces limit: 0 here, or used up in an enclosing
         * user namespace (whose limit cannot be read from in here) */
        static const char *kinds[] = {"user", "pid", "mnt", "net", "uts", "ipc", "cgroup"};
        for (size_t i = 0; i < CB_ARRAY_LEN(kinds); i++) {
            cb_autofree char *path = cb_printf_new("/proc/sys/user/max_%s_namespaces", kinds[i]);
            cb_autofree char *v = cb_read_file(path, NULL);
            if (v && atoll(v) == 0)
                return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                               "cannot create the sandbox's namespaces: %s: sysctl "
                               "user.max_%s_namespaces is 0; set it above 0 (sysctl -w "
                               "user.max_%s_namespaces=15000)%s",
                               strerror(e), kinds[i], kinds[i], ns_dev_only), -1;
        }
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "cannot create the sandbox's namespaces: %s: no user namespace may be "
                       "created here: the limit sysctl user.max_user_namespaces is used up, or an "
                       "enclosing sandbox forbids them (bwrap --disable-userns, a container); raise "
                       "user.max_user_namespaces where it is set, or run the server outside that "
                       "sandbox%s", strerror(e), ns_dev_only), -1;
    }
    if (e == EPERM)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "cannot create the sandbox's namespaces: %s: user namespaces are not allowed "
                       "for this server: check sysctl kernel.unprivileged_userns_clone (must be 1), "
                       "kernel.apparmor_restrict_unprivileged_userns (must be 0), and the seccomp "
                       "profile of a container the server runs in%s", strerror(e), ns_dev_only), -1;
    if (e == EINVAL)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "cannot create the sandbox's namespaces: %s: the kernel lacks user, pid, "
                       "mount, uts, ipc or network namespaces (CONFIG_USER_NS and friends)%s",
                       strerror(e), ns_dev_only), -1;
    return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cannot create the sandbox's namespaces: %s",
                   strerror(e)), -1;
}

/* The sandbox's id range `index` cannot be used (uid_map write or chown
 * failed with e): the server itself runs in a user namespace without it. */
static int ns_ids_fail(const char *what, int e, int index, sb_error *err)
{
    /* "         0          0          1\n" -> "0 0 1", lines joined by "; " */
    cb_autofree char *text = cb_read_file("/proc/self/uid_map", NULL);
    char map[256] = "unreadable";
    if (text) {
        size_t n = 0;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            unsigned long a, b, c;
            if (sscanf(line, "%lu %lu %lu", &a, &b, &c) == 3 && n < sizeof map)
                n += (size_t)snprintf(map + n, sizeof map - n, "%s%lu %lu %lu", n ? "; " : "", a, b, c);
        }
    }
    return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                   "%s: %s: the sandbox's uids and gids %u..%u are not mapped in the server's user "
                   "namespace (/proc/self/uid_map: \"%s\"); run the server in the host's user "
                   "namespace, or in one that maps that range%s",
                   what, strerror(e), sb_ids_base(index), sb_ids_base(index) + SB_ID_RANGE - 1,
                   map, ns_dev_only), -1;
}

static int write_proc_file(pid_t pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    cb_autoclose int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    return cb_write_all(fd, text, strlen(text));
}

#define SB_AGENT_START_TIMEOUT_MS 20000

/* Wait for one control record from a starting agent: "warm", "ready" or
 * "error ...". */
static int wait_agent(int ctl, const char *want, sb_error *err)
{
    struct pollfd p = {ctl, POLLIN, 0};
    char msg[1024];
    int fd = -1;
    ssize_t n = -1;
    int ready;
    while ((ready = poll(&p, 1, SB_AGENT_START_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    if (ready == 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "sandbox agent did not answer within %d s of its start (a frozen or overloaded host?)",
                       SB_AGENT_START_TIMEOUT_MS / 1000), -1;
    if (ready == 1)
        n = sb_ctl_recv(ctl, msg, sizeof msg - 1, &fd);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "sandbox agent exited during setup (its exec or its setup plan failed: the "
                       "server's log has its reason)"), -1;
    msg[n] = '\0';
    if (strcmp(msg, want) != 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "%s",
                       strncmp(msg, "error ", 6) == 0 ? msg + 6 : msg), -1;
    return 0;
}

/* clone(2) like fork (returns 0 in the child), making the new user
 * namespace (when flags ask for one) with the effective uid `owner`.
 *
 * The kernel counts some resources per user up the chain of user
 * namespaces (inotify instances and watches, POSIX message queue bytes,
 * pending signals): what a sandbox holds is also charged to the uid that
 * created its namespace. Made by root, every sandbox shared the host root's
 * limits, and could use them up for the host and all other sandboxes (the
 * server's own file watches included). So the namespace is made with an
 * effective uid of its own per sandbox (SB_NS_OWNER_BASE + its range's
 * index), outside every sandbox's map. A raw
 * setresuid changes this thread's credentials only (glibc's would change
 * every thread's) and root comes back right after: the saved uid stays 0.
 * Where only root may make user namespaces (unprivileged ones disabled),
 * the namespace is made by root as before. */
static pid_t clone_owned(unsigned long flags, uid_t owner)
{
    if ((flags & CLONE_NEWUSER) && syscall(SYS_setresuid, -1, owner, -1) == 0) {
        pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
            return 0;
        int e = errno;
        if (syscall(SYS_setresuid, -1, 0, -1) < 0)
            abort();  /* cannot happen (saved uid 0): never serve on unprivileged */
        if (pid > 0)
            return pid;
        errno = e;
    }
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
}

/* fd moved to 64 or above (close-on-exec), out of the way of the fds a
 * new agent is given; -1 stays -1 (errno kept). */
static int lift_fd(int fd)
{
    if (fd < 0 || fd >= 64)
        return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 64);
    int e = errno;
    close(fd);
    errno = e;
    return high;
}

/* Start a generic agent: namespaces mapping the id range `index` (-1 with
 * --isolation none; the caller took it), cgroups, generic plan. */
static int warm_spawn(sb_warm *w, int index, sb_error *err)
{
    bool none = reg.isolation == SB_ISOLATION_NONE;
    int64_t t0 = cb_mono_ns();
    memset(w, 0, sizeof *w);
    w->ctl = -1;
    w->id_index = index;
    char name[32];
    pthread_mutex_lock(&pool.mu);
    unsigned seq = pool.seq++;
    snprintf(name, sizeof name, "pool-%d-%u", (int)getpid(), seq);
    pthread_mutex_unlock(&pool.mu);
    /* The group keeps this name for the sandbox's whole life: cgroup v2
     * cannot rename groups (EPERM), and on v1 a rename would take the
     * global cgroup lock, which an attach elsewhere may hold for a whole
     * RCU grace period. It gets the default limits now. */
    if (!none && (sb_cg_create(&reg.cg, name, &w->cg, err) < 0 ||
                  sb_cg_set_limits(&reg.cg, &w->cg, &presets[0].lim, err) < 0)) {
        sb_cg_destroy(&w->cg);
        return -1;
    }
    cJSON *setup = generic_setup_json();
    cb_autofree char *setup_text = cb_json_print(setup);
    cJSON_Delete(setup);

    int ctl[2] = {-1, -1}, spipe[2] = {-1, -1}, sync[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0 ||
        pipe2(spipe, O_CLOEXEC) < 0 || pipe2(sync, O_CLOEXEC) < 0) {
        sb_fail(err, SB_E_INTERNAL_ERROR, "sandbox start: %s", strerror(errno));
        goto fail;
    }
    /* the child's fds, lifted out of the way of 0..4 */
    int c_ctl = fcntl(ctl[1], F_DUPFD_CLOEXEC, 64), c_setup = fcntl(spipe[0], F_DUPFD_CLOEXEC, 64);
    int c_sync = fcntl(sync[0], F_DUPFD_CLOEXEC, 64);
    int c_log = reg.agent_log >= 0 ? fcntl(reg.agent_log, F_DUPFD_CLOEXEC, 64) : -1;
    /* the programs it runs (sb_pin.h): isolated, detached mounts of the
     * server's copies, which its plan attaches in its root (fds
     * SB_SELF_FD, SB_AGENT_FD); else the copy itself, run by fd */
    bool agent_prog = sb_pin_have(SB_PIN_AGENT);
    int c_self = -1, c_agent = -1;
    if (!none) {
        c_self = lift_fd(sb_pin_tree(SB_PIN_SELF));
        c_agent = agent_prog && c_self >= 0 ? lift_fd(sb_pin_tree(SB_PIN_AGENT)) : -1;
    } else {
        c_self = sb_pin_have(SB_PIN_SELF) ? lift_fd(open(sb_pin_path(SB_PIN_SELF), O_PATH | O_CLOEXEC))
                                          : -1;
    }
    /* without them the child cannot start (its dup2 of -1 fails); reported
     * after the clone, whose own failure (no user namespaces: the same lack
     * of privilege) names the cause a host can fix */
    int progs_errno = c_self < 0 || (agent_prog && !none && c_agent < 0) ? errno : 0;
    unsigned long flags = none ? 0
                               : CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                                     CLONE_NEWIPC | CLONE_NEWNET;
    pid_t pid = clone_owned(flags, SB_NS_OWNER_BASE + (unsigned)(index < 0 ? 0 : index));
    if (pid == 0) {
        /* child: async-signal-safe calls only until execve. Its fds first:
         * 0 and 1 /dev/null, 2 the agents' log, 3 control, 4 setup, 5 sync,
         * and none of the server's others: a copy of the write end of its
         * sync pipe (or of another spawn's, cloned meanwhile) would keep it
         * waiting for ever for a "go" from a server that was killed. */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(c_ctl, 3) < 0 ||
            dup2(c_setup, 4) < 0 || dup2(c_sync, 5) < 0 || (c_log >= 0 && dup2(c_log, 2) < 0) ||
            dup2(c_self, SB_SELF_FD) < 0 || (c_agent >= 0 && dup2(c_agent, SB_AGENT_FD) < 0))
            _exit(127);
        syscall(SYS_close_range, SB_AGENT_FD + 1, ~0U, 0);
        if (c_agent < 0)
            close(SB_AGENT_FD);
        char go;
        if (read(5, &go, 1) != 1)
            _exit(127);
        close(5);
        /* Become root of the new user namespace before exec, or exec drops
         * every capability. Raw syscalls: glibc's wrappers would try to
         * signal the parent's threads. */
        if (!none && (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0))
            _exit(126);
        char *envp[] = {NULL};
        /* isolated, the mounts stay open for the plan (dup2 cleared
         * close-on-exec); else the fd goes with the exec */
        if (none)
            fcntl(SB_SELF_FD, F_SETFD, FD_CLOEXEC);
        if (agent_prog)
            syscall(SYS_execveat, SB_AGENT_FD, "", (char *[]){"cellbox-agent", NULL}, envp, AT_EMPTY_PATH);
        else
            syscall(SYS_execveat, SB_SELF_FD, "", (char *[]){"cellbox", "agent", NULL}, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    int clone_errno = errno;
    close(c_ctl), close(c_setup), close(c_sync);
    if (c_self >= 0)
        close(c_self);
    if (c_agent >= 0)
        close(c_agent);
    if (c_log >= 0)
        close(c_log);
    close(ctl[1]), close(spipe[0]), close(sync[0]);
    ctl[1] = spipe[0] = sync[0] = -1;
    if (pid < 0) {
        ns_clone_fail(clone_errno, err);
        goto fail;
    }
    w->pid = pid;
    if (progs_errno) {
        sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox start: cannot mount the server's programs for it: %s",
                strerror(progs_errno));
        goto fail;
    }
    w->ctl = ctl[0];
    ctl[0] = -1;
    if (!none) {
        char map[64];
        snprintf(map, sizeof map, "0 %u %u\n", sb_ids_base(index), SB_ID_RANGE);
        if (write_proc_file(pid, "uid_map", map) < 0 || write_proc_file(pid, "gid_map", map) < 0) {
            ns_ids_fail("cannot map the sandbox's user namespace", errno, index, err);
            goto fail;
        }
        if (sb_cg_attach(&w->cg, pid, err) < 0)
            goto fail;
        /* the OOM killer should pick the command, not pid 1 */
        write_proc_file(pid, "oom_score_adj", "-900");
    }
    /* Warming up only uses idle CPU, so it never slows a request down. The
     * agent returns itself to normal priority once its generic plan ran
     * (RLIMIT_NICE 20 allows going back to nice 0, never above). */
    struct rlimit nice = {20, 20};
    prlimit(pid, RLIMIT_NICE, &nice, NULL);
    sched_setscheduler(pid, SCHED_IDLE, &(struct sched_param){0});
    if (agent_go_delay_ms)
        usleep((useconds_t)agent_go_delay_ms * 1000);
    if (write(sync[1], "g", 1) != 1 || cb_write_all(spipe[1], setup_text, strlen(setup_text)) < 0) {
        sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox agent did not start");
        goto fail;
    }
    close(spipe[1]), close(sync[1]);
    spipe[1] = sync[1] = -1;
    if (wait_agent(w->ctl, "warm", err) < 0)
        goto fail;
    cb_debug("sandbox", "warm agent %d ready in %.2f ms", (int)pid, (double)(cb_mono_ns() - t0) / 1e6);
    return 0;
fail:
    for (int *fd = (int[]){ctl[0], ctl[1], spipe[0], spipe[1], sync[0], sync[1], -2}; *fd != -2; fd++)
        if (*fd >= 0)
            close(*fd);
    warm_kill(w);
    return -1;
}

static void *pool_refill(void *arg)
{
    (void)arg;
    char last_err[sizeof ((sb_error *)0)->msg] = "";
    int backoff_ms = 0;
    for (;;) {
        pthread_mutex_lock(&pool.mu);
        while (!pool.stop && pool.n >= pool.target)
            pthread_cond_wait(&pool.cv, &pool.mu);
        bool stop = pool.stop;
        int64_t since = sb_now_ms() - pool.last_take_ms;
        bool empty = pool.n == 0;
        pthread_mutex_unlock(&pool.mu);
        if (stop)
            return NULL;
        /* let the sandbox just taken answer its first requests before
         * competing for the CPU (unless nothing is left in the pool) */
        if (!empty && since < 40) {
            usleep((useconds_t)(40 - since) * 1000);
            continue;
        }
        sb_warm w;
        sb_error err = {0};
        pthread_mutex_lock(&pool.mu);
        pool.making = true;
        pthread_mutex_unlock(&pool.mu);
        int index = reg.isolation == SB_ISOLATION_NONE ? -1 : ids_alloc(&err);
        /* every id range is taken: no fault of the host (a start of a new
         * sandbox says so); retried as slowly as a failure, not logged */
        bool full = index < 0 && err.code == SB_E_TOO_MANY_SANDBOXES;
        bool spawned = !full && warm_spawn(&w, index, &err) == 0;
        if (!spawned && !full)
            ids_free(index);
        if (!spawned) {
            pthread_mutex_lock(&pool.mu);
            pool.making = false;
            pthread_cond_broadcast(&pool.cv);
            pthread_mutex_unlock(&pool.mu);
            /* Said once (again if the cause changes), then retried ever more
             * slowly: a host that cannot make namespaces would otherwise log
             * every second. A request still tries on its own (warm_take). */
            if (full)
                cb_debug("sandbox", "no pooled agent for now: %s", err.msg);
            else if (strcmp(err.msg, last_err) != 0)
                cb_error("sandbox", "cannot prepare a pooled agent: %s", err.msg);
            else
                cb_debug("sandbox", "cannot prepare a pooled agent: %s", err.msg);
            if (!full)
                snprintf(last_err, sizeof last_err, "%s", err.msg);
            backoff_ms = backoff_ms ? (backoff_ms * 2 > 30000 ? 30000 : backoff_ms * 2) : 1000;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += backoff_ms / 1000;
            pthread_mutex_lock(&pool.mu);
            if (!pool.stop)
                pthread_cond_timedwait(&pool.cv, &pool.mu, &until);
            pthread_mutex_unlock(&pool.mu);
            continue;
        }
        if (last_err[0])
            cb_info("sandbox", "pooled agents start again");
        last_err[0] = '\0';
        backoff_ms = 0;
        pthread_mutex_lock(&pool.mu);
        pool.making = false;
        pthread_cond_broadcast(&pool.cv);
        if (pool.stop) {
            pthread_mutex_unlock(&pool.mu);
            warm_kill(&w);
            ids_free(w.id_index);
            return NULL;
        }
        pool.items[pool.n++] = w;
        pthread_mutex_unlock(&pool.mu);
    }
}

void sb_boxes_set_pool(int n)
{
    pool.target = n < 0 ? 0 : n > 64 ? 64 : n;
}

static void pool_start(void)
{
    pool.items = cb_calloc((size_t)pool.target + 1, sizeof *pool.items);
    if (pool.target > 0 && pthread_create(&pool.thread, NULL, pool_refill, NULL) == 0)
        pool.running = true;
}

/* An agent for a sandbox of id range `index`. A sandbox that has none yet
 * (-1: never started) takes a pooled agent, and with it its range, or a
 * fresh one in the lowest free range; w->id_index tells which, and the
 * caller owns it from now on. A sandbox that has a range needs an agent
 * made for it: pooled ones map other ranges, and a map is written once. */
static int warm_take(sb_warm *w, int index, sb_error *err)
{
    if (index >= 0 || reg.isolation == SB_ISOLATION_NONE)
        return warm_spawn(w, index, err);
    /* A pooled agent, else a range of our own for a new one. Every range
     * taken while the refiller makes an agent (it took the range a delete
     * just freed): that agent is ours once made. */
    bool got = false;
    int64_t until = sb_now_ms() + SB_AGENT_START_TIMEOUT_MS;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        if ((got = pool.n > 0)) {
            *w = pool.items[--pool.n];
            break;
        }
        if ((index = ids_alloc(err)) >= 0 || !pool.making || pool.stop || sb_now_ms() >= until)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&pool.cv, &pool.mu, &ts);
    }
    pool.last_take_ms = sb_now_ms();
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    if (got) {
        *err = (sb_error){0};  /* what a failed ids_alloc said while it waited */
        int status;
        if (waitpid(w->pid, &status, WNOHANG) == 0)
            return 0;
        index = w->id_index;  /* died while pooled: reaped, make a new one in its range */
        w->pid = 0;
        warm_kill(w);
    } else if (index < 0) {
        return -1;
    }
    if (warm_spawn(w, index, err) == 0)
        return 0;
    ids_free(index);
    return -1;
}

static void pool_stop(void)
{
    pthread_mutex_lock(&pool.mu);
    pool.stop = true;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    if (pool.running)
        pthread_join(pool.thread, NULL);
    for (int i = 0; i < pool.n; i++) {
        warm_kill(&pool.items[i]);
        ids_free(pool.items[i].id_index);
    }
    pool.n = 0;
}

/* ---- start / stop ---------------------------------------------------------- */

static cJSON *specialize_json(sb_box *b)
{
    cJSON *s = cJSON_CreateObject();
    bool none = reg.isolation == SB_ISOLATION_NONE;
    cb_autofree char *ws = workspace_path(b);
    cJSON_AddStringToObject(s, "cwd", none ? ws : "/workspace");
    cJSON *env = cJSON_AddArrayToObject(s, "env");
    const char *home = none ? ws : "/workspace";
    const char *base[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "LANG=C.UTF-8", "USER=user", "LOGNAME=user", "SHELL=/bin/bash"};
    for (size_t i = 0; i < CB_ARRAY_LEN(base); i++)
        cJSON_AddItemToArray(env, cJSON_CreateString(base[i]));
    cb_autofree char *h = cb_printf_new("HOME=%s", home);
    cb_autofree char *hn = cb_printf_new("HOSTNAME=%s", b->id);
    cJSON_AddItemToArray(env, cJSON_CreateString(h));
    cJSON_AddItemToArray(env, cJSON_CreateString(hn));
    const cJSON *kv;
    cJSON_ArrayForEach(kv, b->opts.env) {
        cb_autofree char *e = cb_printf_new("%s=%s", kv->string, kv->valuestring);
        cJSON_AddItemToArray(env, cJSON_CreateString(e));
    }
    if (!none) {
        sb_plan plan;
        sb_plan_init(&plan);
        sb_plan_opts po = {.hostname = b->id, .workspace_fd = 5, .tmp_mb = b->opts.lim.tmp_mb};
        sb_plan_build_specialize(&plan, &po);
        cJSON_AddItemToObject(s, "plan", sb_plan_to_json(&plan));
        sb_plan_clear(&plan);
    }
    return s;
}

static void box_teardown(sb_box *b);

/* ---- /workspace with a size limit (diskMB) ------------------------------------
 *
 * The workspace is then a file system of its own: an ext4 image in the
 * sandbox's state folder (sparse: it takes only what is written), made on
 * the first start with mkfs.ext4 and mounted through a loop device on the
 * workspace folder while the sandbox runs (the agent gets a clone of that
 * mount, as for a plain folder). Writing past the size fails with ENOSPC
 * inside the sandbox, and the host's disk is untouched. */

static int loop_attach(int imgfd, char *dev, size_t cap, int *lfd_out, sb_error *err)
{
    cb_autoclose int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "diskMB needs loop devices: /dev/loop-control: %s (modprobe loop)", strerror(errno)), -1;
    for (int tries = 0; tries < 32; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "no free loop device: %s", strerror(errno)), -1;
        snprintf(dev, cap, "/dev/loop%d", n);
        int lfd = open(dev, O_RDWR | O_CLOEXEC);
        if (lfd < 0 && errno == ENOENT) {
            /* no devtmpfs to make the node: make it */
            mknod(dev, S_IFBLK | 0600, makedev(7, (unsigned)n));
            lfd = open(dev, O_RDWR | O_CLOEXEC);
        }
        if (lfd < 0)
            return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "%s: %s", dev, strerror(errno)), -1;
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (unsigned)imgfd;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
            *lfd_out = lfd;
            return 0;
        }
        int e = errno;
        close(lfd);
        if (e != EBUSY)  /* EBUSY: another attach took it first */
            return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "%s: LOOP_CONFIGURE: %s", dev, strerror(e)), -1;
    }
    return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "no loop device could be attached"), -1;
}

/* Whether a loop device is still backed by img (an earlier mount of it that
 * was detached lazily and is not released yet: its last writes would land
 * on the image under a new mount). */
static bool image_in_use(const char *img)
{
    char real[PATH_MAX];
    if (!realpath(img, real))
        return false;
    DIR *d = opendir("/sys/block");
    if (!d)
        return false;
    bool used = false;
    for (struct dirent *e; !used && (e = readdir(d));) {
        if (strncmp(e->d_name, "loop", 4) != 0)
            continue;
        cb_autofree char *f = cb_printf_new("/sys/block/%s/loop/backing_file", e->d_name);
        char buf[PATH_MAX + 16];
        cb_autoclose int fd = open(f, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (n <= 0)
            continue;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        used = strcmp(buf, real) == 0;
    }
    closedir(d);
    return used;
}

/* The workspace image's file system off ws: everything written to the
 * image first (syncfs), then a plain unmount; a lazy one only when the
 * mount is still busy. */
static void disk_unmount(const char *ws)
{
    int fd = open(ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (syncfs(fd) < 0)
            cb_warn("sandbox", "syncfs %s: %s", ws, strerror(errno));
        close(fd);
    }
    if (umount2(ws, 0) == 0 || errno == EINVAL || errno == ENOENT)
        return;
    if (errno == EBUSY && umount2(ws, MNT_DETACH) == 0)
        return;
    cb_warn("sandbox", "umount %s: %s", ws, strerror(errno));
}

/* b->mu held. */
static int disk_mount(sb_box *b, const char *ws, sb_error *err)
{
    cb_autofree char *img = cb_printf_new("%s/workspace.img", b->dir);
    disk_unmount(ws);  /* one left by a server that was killed */
    /* a lazily detached earlier mount must be gone before the image is
     * mounted again (two mounts of one ext4 image corrupt it) */
    for (int i = 0; i < 200 && image_in_use(img); i++)
        usleep(50 * 1000);
    if (image_in_use(img))
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "the workspace image %s is still mounted by a loop device that was not released; "
                       "try again later", img), -1;
    struct stat st;
    if (stat(img, &st) < 0) {
        cb_autoclose int fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)b->opts.disk_mb << 20) < 0)
            return sb_fail(err, SB_E_INTERNAL_ERROR, "workspace image %s: %s", img, strerror(errno)), -1;
        char ext[160];
        snprintf(ext, sizeof ext, "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=%u:%u",
                 sb_box_user_id(b), reg.isolation == SB_ISOLATION_NONE ? (unsigned)getgid() : sb_box_user_id(b));
        char *argv[] = {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", ext, img, NULL};
        if (sb_run_tool(argv, NULL, "the workspace's file system (diskMB)", "e2fsprogs", err) < 0) {
            unlink(img);
            return -1;
        }
    }
    cb_autoclose int imgfd = open(img, O_RDWR | O_CLOEXEC);
    if (imgfd < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "workspace image %s: %s", img, strerror(errno)), -1;
    char dev[32];
    int lfd = -1;
    if (loop_attach(imgfd, dev, sizeof dev, &lfd, err) < 0)
        return -1;
    int rc;
    if (reg.isolation == SB_ISOLATION_NONE) {
        rc = mount(dev, ws, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, NULL);
    } else {
        /* A mount that is never in the server's namespace: a namespace made
         * meanwhile (a warm agent, any other process) would keep a copy of
         * it alive after the sandbox stops, and the image would then be
         * mounted twice at its next start. The sandbox's agent attaches it. */
        rc = -1;
        int fsfd = (int)syscall(SYS_fsopen, "ext4", FSOPEN_CLOEXEC);
        if (fsfd >= 0 && syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "source", dev, 0) == 0 &&
            syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0) {
            b->disk_fd = (int)syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC,
                                      MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOATIME);
            rc = b->disk_fd >= 0 ? 0 : -1;
        }
        int e0 = errno;
        if (fsfd >= 0)
            close(fsfd);
        errno = e0;
    }
    int e = errno;
    if (rc < 0)
        ioctl(lfd, LOOP_CLR_FD, 0);
    close(lfd);  /* autoclear: the loop device goes with the last mount */
    if (rc < 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "mount the workspace image %s: %s", img,
                       strerror(e)), -1;
    b->disk_mounted = true;
    return 0;
}

/* ---- files of another id range --------------------------------------------------
 *
 * Every file, folder and link below top whose owner or group is in the range
 * `from` gets the same id in the range `to` (nftw, physical, one file
 * system: a restore's or a user's mounts are never entered). chown drops
 * the setuid/setgid bits of a file: its mode is set again. Owners outside
 * `from` are left alone. Run again after a crash, it goes on where it
 * stopped (shifted files are no longer in `from`). POSIX ACL entries that
 * name ids of `from` (user:ID, group:ID, access and default ACLs) follow
 * too (shift_acl), before the owner: a crash between the two leaves the
 * file in `from`, so a new run comes back to it. */
static __thread unsigned shift_from, shift_to;

/* The ACL xattr `name` of path with its ids of the range shift_from moved
 * to shift_to. The kernel's format (uapi posix_acl_xattr.h): a le32 version
 * (2), then entries {le16 tag, le16 perm, le32 id}; only ACL_USER (2) and
 * ACL_GROUP (8) entries carry an id. 0 or an errno. */
static int shift_acl(const char *path, const char *name)
{
    static __thread uint8_t buf[65536];  /* XATTR_SIZE_MAX */
    ssize_t n = lgetxattr(path, name, buf, sizeof buf);
    if (n < 0)
        return errno == ENODATA || errno == ENOTSUP ? 0 : errno;
    uint32_t version;
    memcpy(&version, buf, n >= 4 ? 4 : 0);
    if (n < 4 || (n - 4) % 8 != 0 || le32toh(version) != 2)
        return 0;  /* not a format this knows: left as it is */
    bool changed = false;
    for (ssize_t off = 4; off + 8 <= n; off += 8) {
        uint16_t tag;
        uint32_t id;
        memcpy(&tag, buf + off, 2);
        memcpy(&id, buf + off + 4, 4);
        id = le32toh(id);
        if ((le16toh(tag) == 2 || le16toh(tag) == 8) && id - shift_from < SB_ID_RANGE) {
            id = htole32(id - shift_from + shift_to);
            memcpy(buf + off + 4, &id, 4);
            changed = true;
        }
    }
    return changed && lsetxattr(path, name, buf, (size_t)n, XATTR_REPLACE) < 0 ? errno : 0;
}

static int shift_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag, (void)ftw;
    if (!S_ISLNK(st->st_mode)) {
        int e = shift_acl(path, "system.posix_acl_access");
        if (!e && S_ISDIR(st->st_mode))
            e = shift_acl(path, "system.posix_acl_default");
        if (e)
            return e;
    }
    bool u = st->st_uid - shift_from < SB_ID_RANGE, g = st->st_gid - shift_from < SB_ID_RANGE;
    if (!u && !g)
        return 0;
    uid_t uid = u ? st->st_uid - shift_from + shift_to : (uid_t)-1;
    gid_t gid = g ? st->st_gid - shift_from + shift_to : (gid_t)-1;
    if (lchown(path, uid, gid) < 0)
        return errno ? errno : EIO;
    if (!S_ISLNK(st->st_mode) && !S_ISDIR(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
        chmod(path, st->st_mode & 07777) < 0)
        return errno ? errno : EIO;
    return 0;
}

static int ids_shift(const char *top, int from, int to, sb_error *err)
{
    shift_from = sb_ids_base(from);
    shift_to = sb_ids_base(to);
    int rc = nftw(top, shift_one, 32, FTW_PHYS | FTW_MOUNT);
    if (rc != 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot give the workspace's files to the sandbox's host ids "
                       "%u..%u: %s", shift_to, shift_to + SB_ID_RANGE - 1,
                       strerror(rc > 0 ? rc : errno)), -1;
    return 0;
}

/* Give a warm agent to this sandbox. b->mu held. */
/* ---- admission: --max-running ----------------------------------------------
 *
 * At most max_running sandboxes run (paused ones included) or start at
 * once. A start beyond that first puts the least recently used idle one to
 * sleep (running, not paused, not keepAlive, no request using it), as
 * sleepAfter would; when none is idle it fails with 429.
 *
 * Locks: make_room runs with no sandbox's mu held (box_acquire drops its
 * own first) and holds admit_mu while it picks and stops; the order is
 * admit_mu -> reg.mu -> b->mu, as everywhere (reg.mu is taken before a
 * sandbox's mu). `running` and `starting` are atomic, so a start that ends
 * (under its own mu) never needs admit_mu. */
static void box_stop(sb_box *b, const char *reason);
static void wait_settled(sb_box *b, bool pause);

static pthread_mutex_t admit_mu = PTHREAD_MUTEX_INITIALIZER;
static int max_running;     /* 0 = no limit */
static int starting;        /* reserved by make_room, not yet running or failed (atomic) */
static int running;         /* sandboxes in SB_BOX_RUNNING (atomic) */

void sb_boxes_set_max_running(int n)
{
    max_running = n;
}

static bool box_idle(const sb_box *o)
{
    return o->state == SB_BOX_RUNNING && !o->paused && !o->pausing && !o->starting && !o->opts.keep_alive &&
           o->active == 0 && !o->deleted;
}

/* The least recently used idle running sandbox but self, referenced, or
 * NULL. admit_mu held, no sandbox's mu. */
static sb_box *lru_idle(sb_box *self)
{
    size_t n;
    pthread_mutex_lock(&reg.mu);
    sb_box **copy = reg_snapshot_locked(&n);
    pthread_mutex_unlock(&reg.mu);
    sb_box *best = NULL;
    int64_t best_used = 0;
    for (size_t i = 0; i < n; i++) {
        sb_box *o = copy[i];
        pthread_mutex_lock(&o->mu);
        /* a start in progress (without its mu): wait to see what it becomes
         * (the sandbox of a create is idle once its PUT answered) */
        if (o != self)
            wait_settled(o, false);
        bool better = o != self && box_idle(o) && (!best || o->last_used_ms < best_used);
        if (better)
            best_used = o->last_used_ms;
        pthread_mutex_unlock(&o->mu);
        if (better) {
            sb_box_unref(best);
            best = o;
        } else {
            sb_box_unref(o);
        }
    }
    free(copy);
    return best;
}

/* Reserve a start for self (no sandbox's mu held): 0, and the caller calls
 * admit_done once that start ended or was not needed; -1 + err. */
static int make_room(sb_box *self, sb_error *err)
{
    pthread_mutex_lock(&admit_mu);
    for (;;) {
        if (__atomic_load_n(&running, __ATOMIC_SEQ_CST) + __atomic_load_n(&starting, __ATOMIC_SEQ_CST) <
            max_running) {
            __atomic_add_fetch(&starting, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&admit_mu);
            return 0;
        }
        sb_box *o = lru_idle(self);
        if (!o)
            break;
        pthread_mutex_lock(&o->mu);
        if (box_idle(o)) {
            char kv[160];
            snprintf(kv, sizeof kv, "sandbox=%s for=%s max=%d", o->id, self->id, max_running);
            cb_logkv(CB_LOG_INFO, "sandbox", kv, "the least recently used idle sandbox goes to sleep to "
                     "make room (--max-running)");
            box_stop(o, "max-running");
        }
        pthread_mutex_unlock(&o->mu);
        sb_box_unref(o);
    }
    pthread_mutex_unlock(&admit_mu);
    char kv[128];
    snprintf(kv, sizeof kv, "sandbox=%s max=%d", self->id, max_running);
    cb_logkv(CB_LOG_WARN, "sandbox", kv, "sandbox start refused: no idle sandbox to put to sleep");
    return sb_fail(err, SB_E_TOO_MANY_SANDBOXES, "the server runs at most %d sandboxes at once "
                   "(--max-running) and none of them is idle (each is in use, paused or keepAlive): "
                   "retry later, or delete, stop or pause one", max_running), -1;
}

static void admit_done(void)
{
    __atomic_sub_fetch(&starting, 1, __ATOMIC_SEQ_CST);
}

/* The work of a start, b->mu released (box_start). It sets the agent's
 * fields of b (agent, ctl, cg, disk, network): nobody reads them while the
 * state is STOPPED, and nobody else changes b while starting is set. The
 * fds other requests read under b->mu whatever the state go to fds[] (pidfd,
 * root, netns), for box_start to publish. 0; -1 + err with nothing to undo;
 * -2 + err: box_teardown undoes it. */
static int box_start_work(sb_box *b, int fds[3], sb_error *err)
{
    bool none = reg.isolation == SB_ISOLATION_NONE;
    int64_t t0 = cb_mono_ns();
    cb_autofree char *ws = workspace_path(b);
    if (cb_mkdir_p(ws, 0755) < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "workspace %s: %s", ws, strerror(errno)), -1;
    /* the agent first: if namespaces cannot be made, that is the cause to report */
    sb_warm w;
    if (warm_take(&w, b->id_index, err) < 0)
        return -1;
    if (b->id_index < 0 && w.id_index >= 0) {
        /* its first start: the range is its own from now on, saved before
         * any file is given to it (starting: nobody else changes b) */
        b->id_index = w.id_index;
        save_meta(b);
    }
    if (b->opts.disk_mb && disk_mount(b, ws, err) < 0) {
        b->agent = w.pid;
        b->ctl = w.ctl;
        b->cg = w.cg;
        goto fail;
    }
    int64_t t_take = cb_mono_ns();
    b->agent = w.pid;
    b->ctl = w.ctl;
    b->cg = w.cg;
    if (!none && chown(ws, sb_box_user_id(b), sb_box_user_id(b)) < 0) {
        if (errno == EINVAL)  /* uid not mapped in our user namespace */
            ns_ids_fail("cannot give the workspace to the sandbox's user", errno, b->id_index, err);
        else
            sb_fail(err, SB_E_INTERNAL_ERROR, "chown workspace %s: %s", ws, strerror(errno));
        goto fail;
    }
    if (!none && b->id_shift_from >= 0 && b->id_shift_from != b->id_index) {
        /* files of another range (an old workspace): the image's own root
         * when diskMB (reached through its detached mount; "/." makes
         * nftw's lstat follow the fd's link), else the folder */
        cb_autofree char *top = b->disk_fd >= 0 ? cb_printf_new("/proc/self/fd/%d/.", b->disk_fd) : cb_strdup(ws);
        if (ids_shift(top, b->id_shift_from, b->id_index, err) < 0)
            goto fail;
        cb_info("sandbox", "%s: files moved from the host ids %u.. to %u..", b->id,
                sb_ids_base(b->id_shift_from), sb_ids_base(b->id_index));
        b->id_shift_from = -1;
        save_meta(b);
    } else if (b->id_shift_from >= 0) {
        b->id_shift_from = -1;
        save_meta(b);
    }
    if (!none) {
        if (memcmp(&b->opts.lim, &presets[0].lim, sizeof b->opts.lim) != 0 &&
            sb_cg_set_limits(&reg.cg, &b->cg, &b->opts.lim, err) < 0)
            goto fail;
        if (b->opts.egress && sb_net_setup(b, b->agent, err) < 0)
            goto fail;
    }
    int wsfd = -1;
    if (!none) {
        /* a detached copy of the workspace mount, for the agent to attach
         * (diskMB: the image's own mount, handed over) */
        wsfd = b->disk_fd >= 0 ? b->disk_fd
                               : (int)syscall(SYS_open_tree, AT_FDCWD, ws, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        b->disk_fd = -1;
        if (wsfd < 0) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "open_tree %s: %s", ws, strerror(errno));
            goto fail;
        }
    }
    cJSON *spec = specialize_json(b);
    char *spec_text = cb_json_print(spec);
    cJSON_Delete(spec);
    int rc = sb_ctl_send(b->ctl, spec_text, strlen(spec_text), wsfd);
    free(spec_text);
    if (wsfd >= 0)
        close(wsfd);
    if (rc < 0) {
        sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox agent is gone: %s", strerror(errno));
        goto fail;
    }
    int64_t t_sent = cb_mono_ns();
    if (wait_agent(b->ctl, "ready", err) < 0)
        goto fail;
    cb_debug("sandbox", "start %s: take %.2f ms, cgroups+send %.2f ms, agent %.2f ms", b->id,
             (double)(t_take - t0) / 1e6, (double)(t_sent - t_take) / 1e6,
             (double)(cb_mono_ns() - t_sent) / 1e6);
    fds[0] = (int)syscall(SYS_pidfd_open, b->agent, 0);
    if (none) {
        fds[1] = open(b->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    } else {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/root", (int)b->agent);
        fds[1] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)b->agent);
        fds[2] = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fds[1] < 0 || fds[0] < 0) {
        sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox root: %s", strerror(errno));
        goto fail;
    }
    return 0;

fail:
    return -2;
}

/* Start a stopped sandbox. b->mu held on entry and on return, but not while
 * the agent starts (up to 20 s for one that does not answer; a diskMB image
 * is made and mounted): meanwhile b->starting is set, its record and the
 * lists are served ("starting": true), and whatever would change it waits
 * (wait_settled). */
static int box_start(sb_box *b, sb_error *err)
{
    int64_t t0 = cb_mono_ns();
    int fds[3] = {-1, -1, -1};
    b->starting = true;
    pthread_mutex_unlock(&b->mu);
    int rc = box_start_work(b, fds, err);
    pthread_mutex_lock(&b->mu);
    b->pidfd = fds[0], b->root_fd = fds[1], b->netns_fd = fds[2];
    if (rc == -2)
        box_teardown(b);  /* closes the fds too */
    if (rc == 0) {
        b->state = SB_BOX_RUNNING;
        __atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
        b->generation++;
        b->backup_check = true;  /* a restore may have been cut off: see sb_box_acquire */
        b->started_us = cb_real_us();
        sb_mounts_on_start(b);   /* its buckets, mounted again */
    }
    b->starting = false;
    pthread_cond_broadcast(&b->cv);
    if (rc < 0) {
        char fkv[128];
        snprintf(fkv, sizeof fkv, "sandbox=%s code=%s", b->id, sb_err_name(err->code));
        cb_logkv(CB_LOG_WARN, "sandbox", fkv, "sandbox start failed: %s", err->msg);
        return -1;
    }
    char kv[128];
    snprintf(kv, sizeof kv, "sandbox=%s pid=%d ms=%.2f", b->id, (int)b->agent,
             (double)(cb_mono_ns() - t0) / 1e6);
    cb_logkv(CB_LOG_INFO, "sandbox", kv, "sandbox started");
    return 0;
}

/* Kill the agent (and with it the pid namespace), free everything. b->mu held. */
static void box_teardown(sb_box *b)
{
    int64_t t0 = cb_mono_ns();
    if (b->agent > 0) {
        /* without a pid namespace nothing ends the agent's processes for us */
        if (reg.isolation == SB_ISOLATION_NONE)
            sb_signal_descendants(b->agent, SIGKILL);
        if (b->pidfd >= 0)
            syscall(SYS_pidfd_send_signal, b->pidfd, SIGKILL, NULL, 0);
        else
            kill(b->agent, SIGKILL);
        sb_error terr;
        if (b->paused && sb_cg_freeze(&reg.cg, &b->cg, false, 5000, &terr) < 0)
            cb_warn("sandbox", "stop %s: %s", b->id, terr.msg);  /* waitpid may then hang */
        b->paused = false;
        while (waitpid(b->agent, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    for (int *fd = (int[]){b->pidfd, b->ctl, b->root_fd, b->netns_fd, -2}; *fd != -2; fd++)
        if (*fd >= 0)
            close(*fd);
    b->pidfd = b->ctl = b->root_fd = b->netns_fd = -1;
    b->agent = 0;
    b->paused = false;
    if (b->net_index >= 0)
        sb_net_teardown(b);
    int64_t t1 = cb_mono_ns();
    sb_cg_destroy(&b->cg);
    if (b->disk_fd >= 0) {   /* mounted but never handed over */
        close(b->disk_fd);
        b->disk_fd = -1;
    }
    if (b->disk_mounted && reg.isolation == SB_ISOLATION_NONE) {
        cb_autofree char *ws = workspace_path(b);
        disk_unmount(ws);
    }
    if (b->disk_mounted) {
        b->disk_mounted = false;
    }
    if (b->state == SB_BOX_RUNNING)
        __atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
    b->state = SB_BOX_STOPPED;
    cb_debug("sandbox", "teardown %s: kill+wait %.2f ms, cgroups %.2f ms", b->id,
             (double)(t1 - t0) / 1e6, (double)(cb_mono_ns() - t1) / 1e6);
}

/* Wait until no start (box_start) and, with pause, no pause (sb_box_pause)
 * of b is in progress: both work with b->mu released. b->mu held; dropped
 * while waiting, so what the caller saw of b before may have changed. */
static void wait_settled(sb_box *b, bool pause)
{
    while (b->starting || (pause && b->pausing))
        pthread_cond_wait(&b->cv, &b->mu);
}

/* b->mu held. A start or a pause in progress ends first (a cgroup must not
 * go while the kernel freezes it). */
static void box_stop(sb_box *b, const char *reason)
{
    wait_settled(b, true);
    if (b->state != SB_BOX_RUNNING)
        return;
    box_teardown(b);
    sb_procs_on_stop(b);
    sb_ctxs_on_stop(b);
    pthread_cond_broadcast(&b->cv);
    char kv[128];
    snprintf(kv, sizeof kv, "sandbox=%s reason=%s", b->id, reason);
    cb_logkv(CB_LOG_INFO, "sandbox", kv, "sandbox stopped");
}

/* Did the sandbox start since a cut-off restore was last looked for?
 * Clears the mark. b->mu held; the caller calls sb_backup_recover once it
 * released b->mu (the recovery runs a command, which acquires b). */
static bool take_backup_check(sb_box *b)
{
    bool check = b->state == SB_BOX_RUNNING && b->backup_check;
    b->backup_check = false;
    return check;
}

static bool agent_alive(sb_box *b);
static cJSON *box_json_locked(sb_box *b);
static int box_acquire(sb_box *b, bool resume, bool hold, cJSON **rec, sb_error *err);

/* Thaw a paused sandbox. b->mu held. */
static int box_resume(sb_box *b, const char *reason, sb_error *err)
{
    int64_t t0 = cb_mono_ns();
    if (sb_cg_freeze(&reg.cg, &b->cg, false, 5000, err) < 0)
        return -1;
    b->paused = false;
    b->last_used_ms = sb_now_ms();  /* sleepAfter counts from the resume */
    char kv[160];
    snprintf(kv, sizeof kv, "sandbox=%s reason=%s ms=%.2f", b->id, reason,
             (double)(cb_mono_ns() - t0) / 1e6);
    cb_logkv(CB_LOG_INFO, "sandbox", kv, "sandbox resumed");
    return 0;
}

int sb_box_pause(sb_box *b, cJSON **rec, sb_error *err)
{
    *rec = NULL;
    if (!sb_cg_can_freeze(&reg.cg))
        return sb_fail(err, SB_E_PAUSE_NOT_SUPPORTED, "sandbox '%s' cannot be paused: %s", b->id,
                       reg.isolation == SB_ISOLATION_NONE
                           ? "the server runs with --isolation none, which has no cgroups to freeze"
                           : "this host's cgroup v1 layout has no freezer hierarchy mounted for "
                             "the server (mount -t cgroup -o freezer cgroup /sys/fs/cgroup/freezer)"), -1;
    pthread_mutex_lock(&b->mu);
    wait_settled(b, true);  /* another pause of it first: idempotent, its outcome decides */
    int rc = 0;
    if (b->deleted)
        rc = sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' was deleted", b->id);
    else if (b->state == SB_BOX_RUNNING && !agent_alive(b))
        box_stop(b, "agent died");
    if (rc == 0 && b->state != SB_BOX_RUNNING)
        rc = sb_fail(err, SB_E_SANDBOX_CONFLICT,
                     "sandbox '%s' is not running (asleep or stopped): only a running sandbox can "
                     "be paused", b->id);
    if (rc == 0 && !b->paused) {
        /* The freeze may take seconds (PAUSE_WAIT_MS): without b->mu, so
         * that the sandbox's record, lists and logs are served meanwhile.
         * While pausing is set nobody changes state, paused or cg (they
         * wait_settled), so b->cg is read here without the lock. */
        b->pausing = true;
        pthread_mutex_unlock(&b->mu);
        int64_t t0 = cb_mono_ns();
        int frc = sb_cg_freeze(&reg.cg, &b->cg, true, PAUSE_WAIT_MS, err);
        pthread_mutex_lock(&b->mu);
        b->pausing = false;
        if (frc < 0) {
            rc = -1;
        } else {
            b->paused = true;
            b->paused_us = cb_real_us();
            char kv[160];
            snprintf(kv, sizeof kv, "sandbox=%s ms=%.2f", b->id, (double)(cb_mono_ns() - t0) / 1e6);
            cb_logkv(CB_LOG_INFO, "sandbox", kv, "sandbox paused");
        }
        pthread_cond_broadcast(&b->cv);
    }
    if (rc == 0)  /* as this pause left it: a resume waiting for it may come next */
        *rec = box_json_locked(b);
    pthread_mutex_unlock(&b->mu);
    return rc ? -1 : 0;
}

int sb_box_resume(sb_box *b, cJSON **rec, sb_error *err)
{
    *rec = NULL;
    return box_acquire(b, true, false, rec, err) < 0 ? -1 : 0;
}

/* Has the agent died on its own (e.g. the OOM killer)? b->mu held. */
static bool agent_alive(sb_box *b)
{
    struct pollfd p = {b->pidfd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

/* The two checks every (re)start makes, b->mu held. gone: the sandbox was
 * deleted or the server is stopping: -1 + err. reserve: with --max-running,
 * reserve the start first (make_room, without b's mu, which is dropped and
 * taken again): 1 when it did (the caller looks at b again), 0 when there is
 * nothing to reserve, -1 + err. */
static int box_gone(sb_box *b, sb_error *err)
{
    if (!b->deleted && !__atomic_load_n(&reg.shutting_down, __ATOMIC_ACQUIRE))
        return 0;
    return sb_fail(err, b->deleted ? SB_E_SANDBOX_NOT_FOUND : SB_E_SHUTTING_DOWN,
                   b->deleted ? "sandbox '%s' was deleted" : "server is shutting down (%s)", b->id), -1;
}

static int box_reserve(sb_box *b, bool *reserved, sb_error *err)
{
    if (max_running <= 0 || *reserved)
        return 0;
    pthread_mutex_unlock(&b->mu);
    int rc = make_room(b, err);
    pthread_mutex_lock(&b->mu);
    if (rc < 0)
        return -1;
    *reserved = true;
    return 1;
}

/* hold: count the caller as using b (b->active) until sb_box_release; a
 * create or a resume only starts or thaws it, and does not hold it, so it
 * is idle (make_room may put it to sleep) from the moment b->mu is given
 * back, not a moment later. */
static int box_acquire(sb_box *b, bool resume, bool hold, cJSON **rec, sb_error *err)
{
    bool reserved = false;  /* a start admitted by make_room (--max-running) */
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    bool check = false;
    for (;;) {
        wait_settled(b, resume);  /* a start in progress; a pause too, then resume what it froze */
        if ((rc = box_gone(b, err)) < 0)
            break;
        if (b->state == SB_BOX_RUNNING && !agent_alive(b))
            box_stop(b, "agent died");
        if (b->state != SB_BOX_RUNNING && (rc = box_reserve(b, &reserved, err)) != 0) {
            if (rc < 0)
                break;
            rc = 0;
            continue;  /* b may have changed while its mu was dropped */
        }
        if (b->state != SB_BOX_RUNNING)
            rc = box_start(b, err);
        else if (b->paused && resume)
            rc = box_resume(b, "request", err);
        if (rc == 0) {
            b->active += hold;
            check = take_backup_check(b);
            if (rec)
                *rec = box_json_locked(b);
        }
        break;
    }
    if (reserved)
        admit_done();
    b->last_used_ms = sb_now_ms();
    pthread_mutex_unlock(&b->mu);
    if (check)  /* before the request that started the sandbox uses it */
        sb_backup_recover(b);
    return rc;
}

int sb_box_acquire(sb_box *b, sb_error *err)
{
    return box_acquire(b, true, true, NULL, err);
}

int sb_box_start_now(sb_box *b, sb_error *err)
{
    return box_acquire(b, true, false, NULL, err);
}

int sb_box_acquire_files(sb_box *b, sb_error *err)
{
    return box_acquire(b, false, true, NULL, err);
}

void sb_box_release(sb_box *b)
{
    pthread_mutex_lock(&b->mu);
    b->active--;
    b->last_used_ms = sb_now_ms();
    pthread_mutex_unlock(&b->mu);
}

/* The caller holds b (sb_box_acquire) and found its agent silent. A restart
 * is a start like any other: it goes through make_room (--max-running),
 * since while b was stopped (its agent died; a pause or another request
 * noticed and stopped it) another sandbox may have taken its place. */
int sb_box_recover(sb_box *b, sb_error *err)
{
    bool reserved = false;  /* a start admitted by make_room */
    bool waited = false;
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    for (;;) {
        wait_settled(b, true);
        if (b->state == SB_BOX_RUNNING && !waited) {
            struct pollfd p = {b->pidfd, POLLIN, 0};
            waited = true;
            if (poll(&p, 1, 200) == 1)
                box_stop(b, "agent died");
        }
        if (b->state == SB_BOX_RUNNING)
            break;  /* alive, so it was a one-off (a shell that died); try again */
        if ((rc = box_gone(b, err)) < 0)
            break;
        if ((rc = box_reserve(b, &reserved, err)) != 0) {
            if (rc < 0)
                break;
            rc = 0;
            continue;  /* b may have changed while its mu was dropped */
        }
        rc = box_start(b, err);
        break;
    }
    if (reserved)
        admit_done();
    bool check = rc == 0 && take_backup_check(b);
    pthread_mutex_unlock(&b->mu);
    if (check)
        sb_backup_recover(b);
    return rc < 0 ? -1 : 0;
}

int sb_box_open_channel(sb_box *b, sb_error *err)
{
    /* The send blocks while the agent's socket is full (an agent frozen
     * behind the server's back, hundreds of opens waiting): on a copy of
     * the control socket, without b->mu, so the sandbox's record and its
     * other requests are served meanwhile. A stop closes the agent's end:
     * the send then fails. (SOCK_SEQPACKET: each open is one record, so
     * concurrent sends do not interleave.) */
    pthread_mutex_lock(&b->mu);
    int ctl = b->state == SB_BOX_RUNNING && b->ctl >= 0 ? fcntl(b->ctl, F_DUPFD_CLOEXEC, 3) : -1;
    int e = errno;
    pthread_mutex_unlock(&b->mu);
    int fd = ctl >= 0 ? sb_ctl_open_channel(ctl) : -1;
    if (ctl >= 0) {
        e = errno;
        close(ctl);
    }
    if (fd < 0)
        sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox '%s' is not running: %s", b->id,
                ctl < 0 ? "stopped" : strerror(e));
    return fd;
}

bool sb_box_deleted(sb_box *b)
{
    pthread_mutex_lock(&b->mu);
    bool d = b->deleted;
    pthread_mutex_unlock(&b->mu);
    return d;
}

int sb_box_root(sb_box *b, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    int fd = b->root_fd >= 0 ? fcntl(b->root_fd, F_DUPFD_CLOEXEC, 3) : -1;
    pthread_mutex_unlock(&b->mu);
    if (fd < 0)
        sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox '%s' is not running", b->id);
    return fd;
}

typedef struct netns_call {
    int nsfd;
    void *(*fn)(void *);
    void *arg;
    int err;
} netns_call;

static void *netns_call_thread(void *arg)
{
    netns_call *j = arg;
    if (j->nsfd >= 0 && setns(j->nsfd, CLONE_NEWNET) < 0) {
        j->err = errno;
        return NULL;
    }
    j->fn(j->arg);
    return NULL;
}

int sb_box_in_netns(sb_box *b, void *(*fn)(void *), void *arg, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    int nsfd = b->netns_fd >= 0 ? fcntl(b->netns_fd, F_DUPFD_CLOEXEC, 3) : -1;
    pthread_mutex_unlock(&b->mu);
    if (nsfd < 0 && reg.isolation != SB_ISOLATION_NONE)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox '%s' is not running", b->id), -1;
    netns_call j = {nsfd, fn, arg, 0};
    pthread_t t;
    int rc = pthread_create(&t, NULL, netns_call_thread, &j);
    if (rc == 0)
        pthread_join(t, NULL);
    if (nsfd >= 0)
        close(nsfd);
    if (rc != 0 || j.err)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot enter the sandbox's network: %s",
                       strerror(rc ? rc : j.err)), -1;
    return 0;
}

typedef struct socket_job {
    int domain, type, fd, err;
} socket_job;

static void *make_socket(void *arg)
{
    socket_job *j = arg;
    j->fd = socket(j->domain, j->type | SOCK_CLOEXEC, 0);
    j->err = errno;
    return NULL;
}

int sb_box_socket_in_netns(sb_box *b, int domain, int type, sb_error *err)
{
    socket_job j = {domain, type, -1, 0};
    if (sb_box_in_netns(b, make_socket, &j, err) < 0)
        return -1;
    if (j.fd < 0)
        sb_fail(err, SB_E_INTERNAL_ERROR, "socket in sandbox: %s", strerror(j.err));
    return j.fd;
}

/* ---- create / delete / list -------------------------------------------------- */

static sb_box *box_add(const char *id, sb_box_opts *opts, bool *created, sb_error *err);

sb_box *sb_box_create(const char *id, const cJSON *body, bool *created, sb_error *err)
{
    *created = false;
    if (!sb_id_valid(id)) {
        sb_fail(err, SB_E_VALIDATION_FAILED,
                "sandbox id must match [a-z0-9-]{1,63} and not start or end with '-'");
        return NULL;
    }
    sb_box_opts opts;
    if (parse_opts(body, &opts, err) < 0) {
        opts_clear(&opts);
        return NULL;
    }
    return box_add(id, &opts, created, err);
}

sb_box *sb_box_create_from(const char *id, sb_box *src, bool *created, sb_error *err)
{
    *created = false;
    if (!sb_id_valid(id)) {
        sb_fail(err, SB_E_VALIDATION_FAILED,
                "sandbox id must match [a-z0-9-]{1,63} and not start or end with '-'");
        return NULL;
    }
    pthread_mutex_lock(&src->mu);
    sb_box_opts opts = src->opts;   /* plain values, but env and metadata: copies of its own */
    opts.env = cJSON_Duplicate(src->opts.env, 1);
    opts.metadata = cJSON_Duplicate(src->opts.metadata, 1);
    pthread_mutex_unlock(&src->mu);
    return box_add(id, &opts, created, err);
}

/* The sandbox id, or a new one with *opts (taken: its env and metadata are freed or kept). */
static sb_box *box_add(const char *id, sb_box_opts *opts_in, bool *created, sb_error *err)
{
    sb_box_opts opts = *opts_in;
    pthread_mutex_lock(&reg.mu);
    sb_box *b;
    for (;;) {
        b = NULL;
        for (size_t i = 0; i < reg.n; i++)
            if (strcmp(reg.boxes[i]->id, id) == 0)
                b = reg.boxes[i];
        if (!b || !b->removing)
            break;
        /* being deleted: the new one starts once the old one's folder is
         * gone (sb_box_delete), not with what is left of it */
        pthread_cond_wait(&reg.gone, &reg.mu);
    }
    if (b) {
        sb_box_ref(b);
        pthread_mutex_unlock(&reg.mu);
        opts_clear(&opts);
        return b;
    }
    /* each sandbox will have a host id range of its own (given at its first
     * start), kept while it exists, stopped or not */
    size_t have = 0;
    for (size_t i = 0; i < reg.n; i++)
        have += !reg.boxes[i]->removing;
    if (reg.isolation == SB_ISOLATION_FULL && have >= (size_t)ids_count()) {
        pthread_mutex_unlock(&reg.mu);
        opts_clear(&opts);
        ids_full(err);
        return NULL;
    }
    b = box_new(id);
    b->opts = opts;
    b->created_us = cb_real_us();
    if (cb_mkdir_p(b->dir, 0700) < 0) {
        sb_fail(err, SB_E_INTERNAL_ERROR, "cannot create %s: %s", b->dir, strerror(errno));
        pthread_mutex_unlock(&reg.mu);
        box_free(b);
        return NULL;
    }
    ensure_default_session(b);
    save_meta(b);
    save_sessions(b);
    reg_add(b);
    sb_box_ref(b);  /* the caller's */
    *created = true;
    pthread_mutex_unlock(&reg.mu);
    cb_logkv(CB_LOG_INFO, "sandbox", NULL, "sandbox %s created", id);
    return b;
}

/* The sandbox leaves lookups and lists at once (removing), but stays in
 * reg.boxes until its folder is removed: a create of the same id meanwhile
 * waits for that (box_add), instead of getting the old folder's files and
 * then losing its own to the removal. */
int sb_box_delete(sb_box *b, sb_error *err)
{
    pthread_mutex_lock(&reg.mu);
    bool found = false;
    for (size_t i = 0; i < reg.n; i++)
        if (reg.boxes[i] == b && !b->removing) {
            b->removing = true;
            found = true;
            break;
        }
    pthread_mutex_unlock(&reg.mu);
    if (!found)
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", b->id), -1;
    pthread_mutex_lock(&b->mu);
    b->deleted = true;
    box_stop(b, "deleted");
    pthread_mutex_unlock(&b->mu);
    sb_mounts_on_delete(b);
    if (sb_rm_rf(b->dir) < 0)
        cb_warn("sandbox", "cannot remove %s: %s", b->dir, strerror(errno));
    pthread_mutex_lock(&reg.mu);
    for (size_t i = 0; i < reg.n; i++)
        if (reg.boxes[i] == b) {
            reg.boxes[i] = reg.boxes[--reg.n];
            break;
        }
    pthread_cond_broadcast(&reg.gone);
    pthread_mutex_unlock(&reg.mu);
    /* its files are gone: its range may be given again (a start that took
     * one is over: box_stop waited for it). b->id_index stays, for requests
     * that still hold b. */
    pthread_mutex_lock(&b->mu);
    int index = b->id_index;
    pthread_mutex_unlock(&b->mu);
    if (reg.isolation == SB_ISOLATION_FULL)
        ids_free(index);
    sb_box_unref(b);  /* the registry's reference */
    return 0;
}

int sb_box_update(sb_box *b, const cJSON *body, sb_error *err)
{
    static const char *const can[] = {"sleepAfter", "keepAlive", "metadata", "memoryMB", "cpus", "pids"};
    if (!cJSON_IsObject(body))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "the body must be an object of the options to change"), -1;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, body) {
        bool ok = false;
        for (size_t i = 0; i < CB_ARRAY_LEN(can); i++)
            ok = ok || strcmp(kv->string, can[i]) == 0;
        if (!ok) {
            cb_autofree char *name = sb_utf8_lossy(kv->string, NULL);
            return sb_fail(err, SB_E_VALIDATION_FAILED, "'%s' cannot be changed after creation (these can: "
                           "sleepAfter, keepAlive, metadata, memoryMB, cpus, pids)", name), -1;
        }
    }
    /* the current options with the changes, read by parse_opts: every
     * option is checked by the same code as at creation */
    pthread_mutex_lock(&b->mu);
    cJSON *merged = opts_json(&b->opts);
    pthread_mutex_unlock(&b->mu);
    cJSON_ArrayForEach(kv, body) {
        if (cJSON_IsNull(kv))
            continue;
        cJSON_DeleteItemFromObjectCaseSensitive(merged, kv->string);
        cJSON_AddItemToObject(merged, kv->string, cJSON_Duplicate(kv, 1));
    }
    sb_box_opts n;
    int rc = parse_opts(merged, &n, err);
    cJSON_Delete(merged);
    if (rc < 0) {
        opts_clear(&n);
        return -1;
    }
    pthread_mutex_lock(&b->mu);
    wait_settled(b, false);  /* a start reads the options without the lock */
    if (b->deleted)
        rc = sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' was deleted", b->id);
    bool limits = memcmp(&n.lim, &b->opts.lim, sizeof n.lim) != 0;
    if (rc == 0 && limits && b->state == SB_BOX_RUNNING && reg.isolation != SB_ISOLATION_NONE) {
        /* lowering memory below what the sandbox uses would make the
         * kernel kill its processes (v2) or refuse (v1): say so instead */
        long long used = sb_cg_memory(&b->cg, &reg.cg);
        if (used > 0 && (unsigned long long)used > ((unsigned long long)n.lim.memory_mb << 20))
            rc = sb_fail(err, SB_E_SANDBOX_CONFLICT, "memoryMB %u is below what the sandbox uses now "
                         "(%lld MB): free memory in it first", n.lim.memory_mb, used >> 20);
        else if (sb_cg_set_limits(&reg.cg, &b->cg, &n.lim, err) < 0) {
            sb_error ignored = {0};
            sb_cg_set_limits(&reg.cg, &b->cg, &b->opts.lim, &ignored);  /* back to the old ones */
            rc = -1;
        }
    }
    if (rc == 0) {
        opts_clear(&b->opts);
        b->opts = n;
        save_meta(b);
    } else {
        opts_clear(&n);
    }
    pthread_mutex_unlock(&b->mu);
    return rc ? -1 : 0;
}

/* ---- metrics ---------------------------------------------------------------- */

long long sb_box_oom_kills_locked(sb_box *b)
{
    return b->state == SB_BOX_RUNNING && reg.isolation != SB_ISOLATION_NONE ? sb_cg_oom_kills(&b->cg, &reg.cg) : -1;
}

long long sb_box_oom_kills(sb_box *b)
{
    pthread_mutex_lock(&b->mu);
    long long n = sb_box_oom_kills_locked(b);
    pthread_mutex_unlock(&b->mu);
    return n;
}

bool sb_oom_killed(sb_box *b, bool locked, long long before, int exit_code, const char *signal)
{
    /* SIGKILL shows as the signal, or as 137 from the shell whose child it
     * killed; only then is the count read again (not on every command) */
    bool killed = exit_code == 128 + 9 || (signal && strcmp(signal, "KILL") == 0);
    return killed && before >= 0 && (locked ? sb_box_oom_kills_locked(b) : sb_box_oom_kills(b)) > before;
}

/* CPU time in µs of a process plus the children it reaped (utime, stime,
 * cutime, cstime of /proc/PID/stat); 0 when it is gone. The agent, pid 1,
 * reaps every orphan, so over a sandbox's live processes this is all the
 * CPU time it used. */
static uint64_t proc_cpu_us(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    cb_autofree char *text = cb_read_file(path, NULL);
    char *p = text ? strrchr(text, ')') : NULL;
    if (!p)
        return 0;
    unsigned long long sum = 0;
    int field = 2;  /* ")" ends field 2 (comm); utime..cstime are 14..17 */
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok && field < 17; tok = strtok_r(NULL, " ", &save))
        if (++field >= 14)
            sum += strtoull(tok, NULL, 10);
    long hz = sysconf(_SC_CLK_TCK);
    return sum * 1000000ULL / (unsigned long long)(hz > 0 ? hz : 100);
}

static uint64_t group_cpu_us(const sb_cgroup *cg, size_t *nprocs)
{
    size_t n;
    pid_t *pids = sb_cg_procs(cg, &reg.cg, &n);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += proc_cpu_us(pids[i]);
    free(pids);
    *nprocs = n;
    return sum;
}

static void add_fs(cJSON *j, int root_fd, const char *dir, const char *used_key, const char *total_key)
{
    cb_autoclose int fd = openat(root_fd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct statvfs sv;
    if (fd >= 0 && fstatvfs(fd, &sv) == 0) {
        cJSON_AddNumberToObject(j, used_key, (double)(sv.f_blocks - sv.f_bfree) * (double)sv.f_frsize);
        cJSON_AddNumberToObject(j, total_key, (double)sv.f_blocks * (double)sv.f_frsize);
    }
}

cJSON *sb_box_metrics(sb_box *b)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", b->id);
    pthread_mutex_lock(&b->mu);
    bool run = b->state == SB_BOX_RUNNING && reg.isolation != SB_ISOLATION_NONE;
    cJSON_AddStringToObject(j, "status", b->state != SB_BOX_RUNNING ? "stopped" : b->paused ? "paused" : "running");
    sb_json_add_now(j, "timestamp");
    sb_cgroup cg = {{0}};
    sb_limits lim = b->opts.lim;
    bool disk = b->opts.disk_mb > 0;
    int root = -1;
    if (run) {
        for (int i = 0; i < SB_CG_N; i++)
            cg.dir[i] = cb_strdup(b->cg.dir[i]);
        root = fcntl(b->root_fd, F_DUPFD_CLOEXEC, 3);
    }
    pthread_mutex_unlock(&b->mu);
    if (!run)
        return j;
    /* CPU use over a short window, as a share of the sandbox's CPU limit */
    size_t nprocs;
    int64_t t0 = cb_mono_ns();
    uint64_t c0 = group_cpu_us(&cg, &nprocs);
    struct timespec w = {0, 100 * 1000 * 1000};
    nanosleep(&w, NULL);
    uint64_t c1 = group_cpu_us(&cg, &nprocs);
    double wall_us = (double)(cb_mono_ns() - t0) / 1e3, cpus = lim.cpu_milli / 1000.0;
    double pct = c1 > c0 && wall_us > 0 ? (double)(c1 - c0) / wall_us / cpus * 100.0 : 0;
    cJSON_AddNumberToObject(j, "cpuCount", cpus);
    cJSON_AddNumberToObject(j, "cpuSeconds", (double)c1 / 1e6);
    cJSON_AddNumberToObject(j, "cpuUsedPct", pct > 100 ? 100 : (double)(long)(pct * 10) / 10);
    long long mem = sb_cg_memory(&cg, &reg.cg);
    if (mem >= 0)
        cJSON_AddNumberToObject(j, "memoryBytes", (double)mem);
    cJSON_AddNumberToObject(j, "memoryLimitBytes", (double)((unsigned long long)lim.memory_mb << 20));
    cJSON_AddNumberToObject(j, "processes", (double)nprocs);
    cJSON_AddNumberToObject(j, "pidsLimit", lim.pids);
    if (root >= 0) {
        add_fs(j, root, "tmp", "tmpUsedBytes", "tmpTotalBytes");
        if (disk)
            add_fs(j, root, "workspace", "diskUsedBytes", "diskTotalBytes");
        close(root);
    }
    for (int i = 0; i < SB_CG_N; i++)
        free(cg.dir[i]);
    return j;
}

/* The record, b->mu held. */
static cJSON *box_json_locked(sb_box *b)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", b->id);
    cJSON_AddStringToObject(j, "status", b->state != SB_BOX_RUNNING ? "stopped"
                                         : b->paused ? "paused" : "running");
    char date[CB_ISO_DATE_LEN];
    cb_iso_date(date, b->created_us);
    cJSON_AddStringToObject(j, "createdAt", date);
    if (b->state == SB_BOX_RUNNING) {
        cb_iso_date(date, b->started_us);
        cJSON_AddStringToObject(j, "startedAt", date);
        if (b->paused) {
            cb_iso_date(date, b->paused_us);
            cJSON_AddStringToObject(j, "pausedAt", date);
        }
        if (b->pausing)  /* a pause is freezing it now: still "running" */
            cJSON_AddBoolToObject(j, "pausing", true);
        cJSON_AddNumberToObject(j, "agentPid", b->agent);  /* host pid of its pid 1 */
        char addr[64];
        if (sb_net_address(b, addr, sizeof addr))
            cJSON_AddStringToObject(j, "ipAddress", addr);
        if (sb_net_address6(b, addr, sizeof addr))
            cJSON_AddStringToObject(j, "ipv6Address", addr);
        long long mem = sb_cg_memory(&b->cg, &reg.cg);
        if (mem >= 0)
            cJSON_AddNumberToObject(j, "memoryBytes", (double)mem);
    } else if (b->starting) {  /* its agent is starting: still "stopped" */
        cJSON_AddBoolToObject(j, "starting", true);
    }
    cJSON_AddItemToObject(j, "options", opts_json(&b->opts));
    return j;
}

cJSON *sb_box_json(sb_box *b)
{
    pthread_mutex_lock(&b->mu);
    cJSON *j = box_json_locked(b);
    pthread_mutex_unlock(&b->mu);
    return j;
}

cJSON *sb_boxes_list_json(void)
{
    size_t n;
    pthread_mutex_lock(&reg.mu);
    sb_box **copy = reg_snapshot_locked(&n);
    pthread_mutex_unlock(&reg.mu);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON_AddItemToArray(arr, sb_box_json(copy[i]));
        sb_box_unref(copy[i]);
    }
    free(copy);
    return arr;
}

void sb_boxes_shutdown(void)
{
    pool_stop();
    pthread_mutex_lock(&reg.mu);
    __atomic_store_n(&reg.shutting_down, true, __ATOMIC_RELEASE);
    for (size_t i = 0; i < reg.n; i++) {
        sb_box *b = reg.boxes[i];
        pthread_mutex_lock(&b->mu);
        box_stop(b, "shutdown");
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&reg.mu);
    if (reg.isolation == SB_ISOLATION_FULL)
        sb_net_shutdown();
    /* the "cellbox" parent groups go too, unless another server uses them */
    sb_cg_sweep(&reg.cg, "");
    for (int i = 0; i < SB_CG_N; i++)
        if (reg.cg.base[i])
            rmdir(reg.cg.base[i]);
}

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;) {
        usleep(250 * 1000);
        /* take references under the registry lock, stop outside it: a stop
         * waits for the kernel to end a pid namespace, and nobody should
         * wait for that to look up another sandbox */
        pthread_mutex_lock(&reg.mu);
        if (__atomic_load_n(&reg.shutting_down, __ATOMIC_ACQUIRE)) {
            pthread_mutex_unlock(&reg.mu);
            return NULL;
        }
        size_t n;
        sb_box **copy = reg_snapshot_locked(&n);
        pthread_mutex_unlock(&reg.mu);
        int64_t now = sb_now_ms();
        for (size_t i = 0; i < n; i++) {
            sb_box *b = copy[i];
            pthread_mutex_lock(&b->mu);
            /* never waits for a pause: one in progress is skipped */
            if (b->state == SB_BOX_RUNNING && !b->opts.keep_alive && !b->paused && !b->pausing &&
                b->active == 0 && now - b->last_used_ms >= b->opts.sleep_after_ms)
                box_stop(b, "sleepAfter");
            else if (b->state == SB_BOX_RUNNING && !b->pausing && b->active == 0 && !agent_alive(b))
                box_stop(b, "agent died");
            pthread_mutex_unlock(&b->mu);
            sb_box_unref(b);
        }
        free(copy);
    }
}

void sb_boxes_start_sleeper(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, sleeper, NULL) == 0)
        pthread_detach(t);
}

/* ---- sessions ------------------------------------------------------------------- */

int sb_session_create_locked(sb_box *b, const cJSON *body, cJSON **out, sb_error *err);

static char *initial_state(const char *cwd, const cJSON *env)
{
    cb_buf s = CB_BUF_INIT;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, env) {
        cb_buf_printf(&s, "builtin export %s=", kv->string);
        sb_sh_quote(&s, kv->valuestring);
        cb_buf_putc(&s, '\n');
    }
    if (cwd) {
        cb_buf_puts(&s, "builtin cd -- ");
        sb_sh_quote(&s, cwd);
        cb_buf_puts(&s, " 2>/dev/null\n");
    }
    return cb_buf_steal(&s);
}

int sb_session_create_locked(sb_box *b, const cJSON *body, cJSON **out, sb_error *err)
{
    const char *sid = cb_json_str(body, "id", NULL);
    char gen[32];
    if (!sid) {
        cb_autofree char *hex = cb_random_hex(6);
        snprintf(gen, sizeof gen, "session-%s", hex);
        sid = gen;
    }
    if (!sb_name_valid(sid))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "session id must match [A-Za-z0-9._-]{1,64}"), -1;
    if (cJSON_GetObjectItemCaseSensitive(b->sessions, sid))
        return sb_fail(err, SB_E_SESSION_ALREADY_EXISTS, "session '%s' already exists", sid), -1;
    const char *cwd = cb_json_str(body, "cwd", NULL);
    if (cwd && !*cwd)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "cwd must not be empty"), -1;
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(body, "env");
    if (env && sb_env_check(env, err) < 0)
        return -1;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "id", sid);
    if (cb_json_str(body, "name", NULL))
        cJSON_AddStringToObject(s, "name", cb_json_str(body, "name", ""));
    cb_autofree char *ws = workspace_path(b);
    const char *eff_cwd = cwd ? cwd : default_cwd() ? default_cwd() : ws;
    cJSON_AddStringToObject(s, "cwd", eff_cwd);
    cJSON_AddItemToObject(s, "env", env ? cJSON_Duplicate(env, 1) : cJSON_CreateObject());
    cb_autofree char *state = initial_state(eff_cwd, env);
    cJSON_AddStringToObject(s, "state", state);
    sb_json_add_now(s, "createdAt");
    cJSON_AddItemToObject(b->sessions, sid, s);
    if (out) {
        *out = cJSON_Duplicate(s, 1);
        cJSON_DeleteItemFromObject(*out, "state");
    }
    return 0;
}

int sb_session_create(sb_box *b, const cJSON *body, cJSON **out, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    int rc = sb_session_create_locked(b, body, out, err);
    if (rc == 0)
        save_sessions(b);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

cJSON *sb_session_json(sb_box *b, const char *sid)
{
    pthread_mutex_lock(&b->mu);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(b->sessions, sid);
    cJSON *out = s ? cJSON_Duplicate(s, 1) : NULL;
    pthread_mutex_unlock(&b->mu);
    if (out)
        cJSON_DeleteItemFromObject(out, "state");
    return out;
}

cJSON *sb_sessions_list_json(sb_box *b)
{
    pthread_mutex_lock(&b->mu);
    cJSON *arr = cJSON_CreateArray();
    const cJSON *s;
    cJSON_ArrayForEach(s, b->sessions) {
        cJSON *c = cJSON_Duplicate(s, 1);
        cJSON_DeleteItemFromObject(c, "state");
        cJSON_AddItemToArray(arr, c);
    }
    pthread_mutex_unlock(&b->mu);
    return arr;
}

int sb_session_delete(sb_box *b, const char *sid, sb_error *err)
{
    if (strcmp(sid, "default") == 0)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "the default session cannot be deleted"), -1;
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    if (!cJSON_GetObjectItemCaseSensitive(b->sessions, sid))
        rc = sb_fail(err, SB_E_SESSION_NOT_FOUND, "session '%s' not found", sid) ? -1 : -1;
    else {
        cJSON_DeleteItemFromObjectCaseSensitive(b->sessions, sid);
        save_sessions(b);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int sb_session_set_env(sb_box *b, const char *sid, const cJSON *env, sb_error *err)
{
    if (sb_env_check(env, err) < 0)
        return -1;
    pthread_mutex_lock(&b->mu);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(b->sessions, sid);
    if (!s) {
        pthread_mutex_unlock(&b->mu);
        return sb_fail(err, SB_E_SESSION_NOT_FOUND, "session '%s' not found", sid), -1;
    }
    cb_buf st = CB_BUF_INIT;
    cb_buf_puts(&st, cb_json_str(s, "state", ""));
    cb_autofree char *more = initial_state(NULL, env);
    cb_buf_puts(&st, more);
    cb_json_set(s, "state", cJSON_CreateString(st.data));
    cb_buf_clear(&st);
    cJSON *senv = cb_json_obj(s, "env");
    const cJSON *kv;
    cJSON_ArrayForEach(kv, env)
        cb_json_set(senv, kv->string, cJSON_CreateString(kv->valuestring));
    save_sessions(b);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

char *sb_session_state(sb_box *b, const char *sid)
{
    pthread_mutex_lock(&b->mu);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(b->sessions, sid);
    char *state = s ? cb_strdup(cb_json_str(s, "state", "")) : NULL;
    pthread_mutex_unlock(&b->mu);
    return state;
}

void sb_session_save_state(sb_box *b, const char *sid, const char *state)
{
    pthread_mutex_lock(&b->mu);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(b->sessions, sid);
    if (s && strcmp(cb_json_str(s, "state", ""), state) != 0) {
        cb_json_set(s, "state", cJSON_CreateString(state));
        save_sessions(b);
    }
    pthread_mutex_unlock(&b->mu);
}
