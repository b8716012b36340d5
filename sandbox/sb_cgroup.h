/* sandbox/sb_cgroup.h: resource limits with cgroups, v1/hybrid or v2.
 *
 * sb_cg_detect() looks at the running system once (server start): pure v2
 * (one tree with controllers) or v1 / hybrid (one hierarchy per controller:
 * memory, pids, cpu). Every sandbox gets one group per hierarchy, named
 * "cellbox/<id>" below the server's own group, with memory, pids and cpu
 * limits; the agent is moved in before it runs anything.
 *
 * Ownership: sb_cg_layout and sb_cgroup are embedded; _clear frees their
 * strings. Functions return 0 or -1 and describe the failure in err.
 */
#ifndef SB_CGROUP_H
#define SB_CGROUP_H

#include <sys/types.h>

#include "sandbox/sb_err.h"

typedef struct sb_limits {
    unsigned memory_mb;
    unsigned cpu_milli;   /* 1000 = one CPU */
    unsigned pids;
    unsigned tmp_mb;
} sb_limits;

typedef struct sb_cg_layout {
    int version;          /* 2, 1 (v1 or hybrid), 0 = none usable */
    char *base[3];        /* v1: memory, pids, cpu parents; v2: base[0] only */
    char desc[256];       /* for the startup log */
} sb_cg_layout;

typedef struct sb_cgroup {
    char *dir[3];
} sb_cgroup;

int sb_cg_detect(sb_cg_layout *l, sb_error *err);
void sb_cg_layout_clear(sb_cg_layout *l);
/* Make the groups "cellbox/<name>" (no limits yet). */
int sb_cg_create(const sb_cg_layout *l, const char *name, sb_cgroup *cg, sb_error *err);
int sb_cg_set_limits(const sb_cg_layout *l, const sb_cgroup *cg, const sb_limits *lim,
                     sb_error *err);
/* Rename the groups to "cellbox/<name>" (a pooled agent becoming a sandbox);
 * a stale group of that name is removed first. */
int sb_cg_rename(sb_cgroup *cg, const char *name, sb_error *err);
int sb_cg_attach(const sb_cgroup *cg, pid_t pid, sb_error *err);
/* Kill what is left (v2: cgroup.kill) and remove the groups. */
void sb_cg_destroy(sb_cgroup *cg);
/* Memory use in bytes (current), or -1. */
long long sb_cg_memory(const sb_cgroup *cg, const sb_cg_layout *l);

#endif
