/* sandbox/sb_cgroup.h: resource limits with cgroups, v1/hybrid or v2.
 *
 * sb_cg_detect() looks at the running system once (server start): pure v2
 * (one tree with controllers) or v1 / hybrid (one hierarchy per controller:
 * memory, pids, cpu, and freezer when it is mounted: without it sandboxes
 * run but cannot be paused). Every sandbox gets one group per hierarchy, named
 * "cellbox/<id>" below the server's own group, with memory, pids and cpu
 * limits; the agent is moved in before it runs anything. Groups are never
 * renamed: cgroup v2 refuses rename(2) (EPERM), so a pooled agent's group
 * keeps its "pool-..." name for the sandbox's whole life.
 *
 * Where to look is a root prefix: "" on a real host; the unit test passes a
 * temporary folder holding a fake /sys/fs/cgroup and /proc/self/{cgroup,
 * mountinfo} (regular files standing in for the kernel's). Every path in a
 * layout or group already carries that prefix.
 *
 * Freezing (pause/resume) uses v2's cgroup.freeze, or v1's freezer.state.
 * A frozen task does not run, not even to die: on v1 a SIGKILL waits for
 * the thaw, so whoever kills a frozen group thaws it too (sb_cg_destroy and
 * sb_cg_sweep do; a caller that kills and waits for a pid itself calls
 * sb_cg_freeze(.., false, ..) between the two). v2 kills frozen tasks.
 *
 * Ownership: sb_cg_layout and sb_cgroup are embedded; _clear frees their
 * strings. Functions return 0 or -1 and describe the failure in err.
 */
#ifndef SB_CGROUP_H
#define SB_CGROUP_H

#include <stdbool.h>
#include <sys/types.h>

#include "sandbox/sb_err.h"

typedef struct sb_limits {
    unsigned memory_mb;
    unsigned cpu_milli;   /* 1000 = one CPU */
    unsigned pids;
    unsigned tmp_mb;
} sb_limits;

/* Hierarchies of a v1 layout, in the order of base[] and dir[]; v2 uses
 * index 0 only. The freezer may be missing (NULL). */
enum { SB_CG_MEMORY, SB_CG_PIDS, SB_CG_CPU, SB_CG_FREEZER, SB_CG_N };

typedef struct sb_cg_layout {
    int version;          /* 2, 1 (v1 or hybrid), 0 = none usable */
    char *base[SB_CG_N];  /* v1: memory, pids, cpu, freezer parents; v2: base[0] only */
    char desc[768];       /* for the startup log */
} sb_cg_layout;

typedef struct sb_cgroup {
    char *dir[SB_CG_N];   /* NULL where the layout has no such hierarchy */
} sb_cgroup;

/* Find the layout below `root` ("" = this machine) and make the "cellbox"
 * parent group(s). On v2 the server moves itself into a leaf
 * "cellbox.server" of its own group and enables memory, pids and cpu for
 * the children (the kernel allows no processes in a group that does). */
int sb_cg_detect(sb_cg_layout *l, const char *root, sb_error *err);
void sb_cg_layout_clear(sb_cg_layout *l);
/* Make the groups "cellbox/<name>" (no limits yet). */
int sb_cg_create(const sb_cg_layout *l, const char *name, sb_cgroup *cg, sb_error *err);
int sb_cg_set_limits(const sb_cg_layout *l, const sb_cgroup *cg, const sb_limits *lim,
                     sb_error *err);
int sb_cg_attach(const sb_cgroup *cg, pid_t pid, sb_error *err);
/* Can groups of this layout be frozen? (v2, or v1 with a freezer.) */
bool sb_cg_can_freeze(const sb_cg_layout *l);
/* Freeze (frozen = true) or thaw every task of the group, and wait up to
 * timeout_ms for the kernel to say it is done (v2: "frozen 1|0" in
 * cgroup.events; v1: freezer.state reads FROZEN|THAWED). A freeze that
 * does not complete in time is undone (thawed) and fails. 0, or -1 + err. */
int sb_cg_freeze(const sb_cg_layout *l, const sb_cgroup *cg, bool frozen, int timeout_ms,
                 sb_error *err);
/* Thaw (a frozen group's tasks could not die), kill what is left (v2:
 * cgroup.kill) and remove the groups. */
void sb_cg_destroy(sb_cgroup *cg);
/* Remove the groups that servers no longer running left behind
 * ("pool-<server pid>-<n>" where that pid is not a `cellbox serve`, e.g.
 * after a SIGKILL or a reboot of the host's services), killing anything
 * still in them first. Without this, the "cellbox" parents could never be
 * removed. Returns how many groups went. */
int sb_cg_sweep(const sb_cg_layout *l, const char *root);
/* Memory use in bytes (current), or -1. */
long long sb_cg_memory(const sb_cgroup *cg, const sb_cg_layout *l);
/* How many processes of the group the kernel's OOM killer has killed so
 * far (v2 memory.events, v1 memory.oom_control: "oom_kill N"), or -1. */
long long sb_cg_oom_kills(const sb_cgroup *cg, const sb_cg_layout *l);
/* The processes in the group (its cgroup.procs): an owned array, *n of
 * them; NULL (and *n = 0) when it cannot be read. */
pid_t *sb_cg_procs(const sb_cgroup *cg, const sb_cg_layout *l, size_t *n);

#endif
