/* sandbox/sb_box.h: the server's sandboxes: registry, lifecycle, sessions.
 *
 * A sandbox (sb_box) is a record that lives as long as it is in the registry
 * or referenced: its options, sessions and processes persist in
 * STATE/sandboxes/<id>/, and while it runs it also has an agent (pid 1 in its
 * namespaces), a control socket, cgroups and an fd on its root folder.
 * Sandboxes start lazily: a request on a stopped (new, slept or restored)
 * sandbox starts it first (sb_box_acquire), so a restart or a sleep is
 * invisible to clients apart from lost processes.
 *
 * A running sandbox may be paused (sb_box_pause): every process of it, the
 * agent included, is frozen with the cgroup freezer; it keeps its memory
 * (still charged to its cgroup) and is exempt from sleepAfter. State stays
 * SB_BOX_RUNNING with `paused` set, so code that only asks "does it run?"
 * (fds, root, generation) is unaffected. sb_box_acquire thaws it first,
 * the way it starts a stopped one; requests that do not acquire (the
 * sandbox's record, lists, process records and logs) leave it paused. A
 * stop of any kind thaws what it killed. Paused is not persisted: after a
 * server restart the sandbox is stopped like every other.
 *
 * Threads: every field below `mu` is protected by it. Requests hold a
 * reference (sb_box_get/sb_box_unref) and, while they use the agent, an
 * "active" count (sb_box_acquire/sb_box_release) that keeps the sleeper away.
 * Stop and resume run with `mu` held for their whole length, so they never
 * interleave. A start and a pause work without it (an agent may take
 * seconds to answer; a task in uninterruptible sleep freezes only when it
 * wakes): they set `starting` or `pausing`; meanwhile reads are served (the
 * record shows "starting" or "pausing": true), and whatever would change
 * the sandbox (stop, delete, another start, resume, a request that uses its
 * processes, another pause, a change of its options) first waits on `cv`
 * for the end of it, then looks again.
 *
 * Ownership: sb_box_get/sb_box_create/sb_box_ref return a reference the
 * caller drops with sb_box_unref. JSON returned by *_json functions is
 * owned by the caller.
 */
#ifndef SB_BOX_H
#define SB_BOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "sandbox/sb_cgroup.h"
#include "sandbox/sb_err.h"
#include "sandbox/sb_net.h"

/* Host ids. Each sandbox's user namespace maps its ids 0..65535 to a range
 * of host ids of its own: index i is SB_UID_BASE + i * SB_ID_RANGE ..
 * + 65535. Kernel counters kept per host uid (fds in flight over unix
 * sockets, epoll watches, pipe buffer pages, locked memory) are then not
 * shared between sandboxes. Index 0 is the range every sandbox shared
 * before (1000000..1065535, so old workspaces fit it). Index 1 is never
 * given: its block holds the owners of the sandboxes' user namespaces,
 * SB_NS_OWNER_BASE + index (see clone_owned in sb_box.c), outside every
 * sandbox's map. The last index keeps its range below 2^32 - 1 (uid_t -1
 * is no id): SB_UID_BASE + 65520 * 65536 - 1 = 4294918719. So a server
 * holds at most SB_ID_COUNT sandboxes (created ones: a stopped sandbox
 * keeps its range, its files are owned by it).
 *
 * A sandbox gets its index at its first start (a pooled agent was made
 * with the index of its own, see sb_box.c), keeps it in its sandbox.json
 * and gives it back when it is deleted. */
#define SB_UID_BASE 1000000u
#define SB_ID_RANGE 65536u
#define SB_NS_OWNER_BASE (SB_UID_BASE + SB_ID_RANGE)
#define SB_ID_INDEX_MAX 65519
#define SB_ID_COUNT SB_ID_INDEX_MAX     /* indexes 0 and 2..SB_ID_INDEX_MAX */
#define SB_USER_IN_SANDBOX 1000u        /* the sandbox's user ("user"), uid and gid inside */

/* The first host id of range index (0 or 2..SB_ID_INDEX_MAX). */
static inline unsigned sb_ids_base(int index)
{
    return SB_UID_BASE + (unsigned)index * SB_ID_RANGE;
}

typedef struct sb_proc sb_proc;
typedef struct sb_ctx sb_ctx;

typedef struct sb_box_opts {
    char instance[16];          /* lite | standard | heavy | custom */
    sb_limits lim;
    bool egress;                /* network "egress" (else "none") */
    sb_net_policy net_policy;   /* allowOut / denyOut (egress only), see sb_net.h */
    int64_t sleep_after_ms;
    bool keep_alive;
    unsigned disk_mb;           /* /workspace size limit (its own file system); 0 = none */
    cJSON *env;                 /* object of strings, owned */
    cJSON *metadata;            /* object of strings (client labels), owned */
} sb_box_opts;

typedef enum { SB_BOX_STOPPED, SB_BOX_RUNNING } sb_box_state;

typedef struct sb_box {
    char id[64];
    char *dir;                  /* STATE/sandboxes/<id> */
    int64_t created_us;
    sb_box_opts opts;
    bool removing;              /* reg.mu (sb_box.c): DELETE is removing it; no longer
                                 * found or listed, its id not free yet */

    pthread_mutex_t mu;
    pthread_cond_t cv;          /* signalled when processes change, and when a pause ends */
    pthread_mutex_t backup_mu;  /* one backup or restore at a time (sb_backup.c) */
    int refs;                   /* atomic, not under mu (sb_box_ref/sb_box_unref) */
    bool deleted;
    sb_box_state state;
    pid_t agent;
    int pidfd, ctl, root_fd, netns_fd;
    sb_cgroup cg;
    int net_index;              /* egress: veth pair number, -1 if none */
    bool disk_mounted;          /* diskMB: the workspace image is mounted (on its folder
                                 * with --isolation none; else only in the sandbox) */
    int disk_fd;                /* diskMB, isolated: the image's detached mount (fsmount)
                                 * until it is handed to the agent; -1 otherwise */
    int64_t started_us;
    bool paused;                /* running, its processes frozen (sb_box_pause) */
    bool pausing;               /* a pause is freezing it now, without mu: while set,
                                 * state, paused and cg do not change (wait on cv) */
    bool starting;              /* its agent is being started, without mu (box_start):
                                 * while set, nothing else changes it (wait on cv) */
    int64_t paused_us;          /* when it was paused (real time) */
    unsigned generation;        /* bumped at each start */
    int active;                 /* requests using the agent now */
    int64_t last_used_ms;
    cJSON *sessions;            /* {"id": {"id","cwd","env","state","createdAt"}} */
    sb_proc *procs;             /* see sb_proc.h */
    cJSON *proc_starting;       /* {"id": true}: processes being started (sb_proc_start), or NULL */
    sb_ctx *contexts;           /* see sb_ctx.h */
    cJSON *ports;               /* exposed ports, see sb_port.h (NULL until first used) */
    bool backup_check;          /* started since sb_backup_recover last looked */
    /* Its host id range (SB_ID_RANGE above): -1 until its first start
     * (and with --isolation none). Set once, while `starting`; read
     * without mu by requests that acquired it. */
    int id_index;
    int id_shift_from;          /* -1, or the range its files still have (an
                                 * old workspace, see ids_shift in sb_box.c) */
    bool ids_legacy;            /* loaded from a sandbox.json of before id ranges,
                                 * not given one yet (--isolation none) */
} sb_box;

typedef enum { SB_ISOLATION_FULL, SB_ISOLATION_NONE } sb_isolation;

/* The host-wide file through which servers lease id ranges from each other
 * (see ids_lease in sb_box.c). */
#define SB_ID_LOCK_DEFAULT "/run/cellbox/id-ranges.lock"

typedef struct sb_server_conf {
    const char *state_dir;
    sb_isolation isolation;
    const char *id_lock;        /* --id-lock: NULL = SB_ID_LOCK_DEFAULT, "none" = no leases */
} sb_server_conf;

/* Process-wide setup: state dir, cgroup layout, persisted sandboxes. */
int sb_boxes_init(const sb_server_conf *conf, sb_error *err);
/* How many warm agents to keep ready (default 2; 0 = none). Before init. */
void sb_boxes_set_pool(int n);
/* At most n sandboxes running at once (0 = no limit; --max-running): see
 * admit() in sb_box.c. Before init. */
void sb_boxes_set_max_running(int n);
/* Stop every sandbox (SIGTERM shutdown). */
void sb_boxes_shutdown(void);
/* Start the thread that puts idle sandboxes to sleep. */
void sb_boxes_start_sleeper(void);
const char *sb_boxes_cgroup_desc(void);
bool sb_boxes_isolated(void);
int sb_boxes_count(void);

sb_box *sb_box_get(const char *id);                  /* NULL if unknown */
/* Create-or-get: *created tells which. opts is the request body (may be NULL). */
sb_box *sb_box_create(const char *id, const cJSON *opts, bool *created, sb_error *err);
/* Create-or-get with the options of src (limits, network and its policy,
 * sleepAfter, keepAlive, diskMB, env; not its sessions, processes or
 * files): for a fork. *created false = id existed, returned unchanged. */
sb_box *sb_box_create_from(const char *id, sb_box *src, bool *created, sb_error *err);
sb_box *sb_box_ref(sb_box *b);                       /* returns b */
void sb_box_unref(sb_box *b);
int sb_box_delete(sb_box *b, sb_error *err);
/* Change options of a sandbox (PATCH): sleepAfter, keepAlive, metadata
 * (replaced), memoryMB, cpus, pids (applied at once to a running sandbox;
 * memory never below what it uses now, SANDBOX_CONFLICT). Others are
 * fixed at creation (VALIDATION_FAILED). Saved like the rest. */
int sb_box_update(sb_box *b, const cJSON *body, sb_error *err);
/* A list of every sandbox (owned array). */
cJSON *sb_boxes_list_json(void);
cJSON *sb_box_json(sb_box *b);
/* How many of the sandbox's processes the kernel's OOM killer has killed
 * since it started (its memory cgroup's count), or -1 (not running, no
 * cgroups). _locked: b->mu held. sb_oom_killed: whether a command that
 * started at count `before` and ended with exit_code / signal was (most
 * likely) one of them: killed by SIGKILL while the count grew (locked:
 * whether the caller holds b->mu). */
long long sb_box_oom_kills(sb_box *b);
long long sb_box_oom_kills_locked(sb_box *b);
bool sb_oom_killed(sb_box *b, bool locked, long long before, int exit_code, const char *signal);
/* What a running sandbox uses now (E2B's getMetrics): CPU (seconds in all,
 * and the share of its limit over a 100 ms window, so this takes 100 ms),
 * memory, processes, /tmp and a diskMB workspace, with the limits. A
 * stopped one (not woken) has only id, status and timestamp. Owned. */
cJSON *sb_box_metrics(sb_box *b);

/* Make sure the agent runs (start a stopped sandbox, resume a paused one)
 * and count this request as active. */
int sb_box_acquire(sb_box *b, sb_error *err);
/* The same, except that a paused sandbox stays paused: for requests that
 * use only its files, through sb_box_root (files, watch), never its
 * processes. */
int sb_box_acquire_files(sb_box *b, sb_error *err);
/* Start b (or thaw it) as sb_box_acquire does, without holding it: no
 * sb_box_release. What a create does before it answers. */
int sb_box_start_now(sb_box *b, sb_error *err);
/* Freeze every process of a running sandbox (cgroup freezer), without
 * holding b->mu while the kernel freezes (b->pausing meanwhile). A no-op on
 * a paused one; while another pause of it runs, waits for that one's end
 * first. -1 + err: SANDBOX_CONFLICT when it is not running (asleep,
 * stopped, deleted), PAUSE_NOT_SUPPORTED without a freezer (--isolation
 * none; cgroup v1 without the freezer hierarchy), CONTAINER_UNAVAILABLE
 * when the kernel does not finish in time (then it is thawed again).
 * *rec: the record as this pause left it (taken before b->mu is released,
 * so a resume queued behind the pause does not show in it); the caller owns
 * it; NULL on -1. */
int sb_box_pause(sb_box *b, cJSON **rec, sb_error *err);
/* Thaw a paused sandbox. A no-op on a running one; a stopped one is
 * started, as by any request. -1 + err as sb_box_acquire. *rec as for
 * sb_box_pause: the record as this resume left it. */
int sb_box_resume(sb_box *b, cJSON **rec, sb_error *err);
void sb_box_release(sb_box *b);
/* The agent did not answer on a channel: if it died, restart the sandbox
 * (waits a moment for a dying agent). The restart is admitted like any
 * start (--max-running: it may put the least recently used idle sandbox to
 * sleep, or fail with TOO_MANY_SANDBOXES). b acquired, b->mu not held.
 * -1 + err when it cannot. */
int sb_box_recover(sb_box *b, sb_error *err);
/* A new operation channel to the agent (after acquire). */
int sb_box_open_channel(sb_box *b, sb_error *err);
/* The host uid (and gid) of the sandbox's user (SB_USER_IN_SANDBOX inside)
 * in its own range; the server's own uid with --isolation none. After
 * acquire. */
unsigned sb_box_user_id(const sb_box *b);
/* A dup of the sandbox's root folder fd (after acquire), for file access. */
int sb_box_root(sb_box *b, sb_error *err);
/* Has the sandbox been deleted (DELETE) since b was looked up? For long
 * requests that hold it (uploads) and must stop rather than write on. */
bool sb_box_deleted(sb_box *b);
/* A socket created inside the sandbox's network namespace (after acquire). */
int sb_box_socket_in_netns(sb_box *b, int domain, int type, sb_error *err);

/* Runs fn(arg) on a thread of its own inside the sandbox's network
 * namespace (after acquire; with --isolation none, in the host's). Threads
 * fn creates stay in that namespace. 0, or -1 + err. */
int sb_box_in_netns(sb_box *b, void *(*fn)(void *), void *arg, sb_error *err);

/* Sessions. The default session always exists. *_json return owned JSON. */
int sb_session_create(sb_box *b, const cJSON *body, cJSON **out, sb_error *err);
cJSON *sb_session_json(sb_box *b, const char *sid);           /* NULL if none */
cJSON *sb_sessions_list_json(sb_box *b);
int sb_session_delete(sb_box *b, const char *sid, sb_error *err);
int sb_session_set_env(sb_box *b, const char *sid, const cJSON *env, sb_error *err);
/* The shell state of a session (owned text), NULL if the session is unknown. */
char *sb_session_state(sb_box *b, const char *sid);
void sb_session_save_state(sb_box *b, const char *sid, const char *state);

#endif
