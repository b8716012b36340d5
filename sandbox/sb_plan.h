/* sandbox/sb_plan.h: a sandbox's file-system and identity setup, as data.
 *
 * Like bubblewrap, the setup is a list of steps built by the server
 * (sb_plan_build, pure: it only inspects the host's file system) and executed
 * by one function inside the new namespaces (sb_plan_run, in the agent). The
 * list can be printed (dry run), sent over a pipe as JSON and tested.
 *
 * Destinations are paths inside the sandbox; until the PIVOT step the runner
 * builds the new root under a private tmpfs (see sb_plan.c).
 *
 * Ownership: sb_plan is embedded (sb_plan_init / sb_plan_clear); steps own
 * their strings. sb_plan_to_json returns an owned cJSON; sb_plan_from_json
 * fills an initialised plan and borrows its input.
 */
#ifndef SB_PLAN_H
#define SB_PLAN_H

#include <cjson/cJSON.h>

#include "base/buf.h"
#include "sandbox/sb_err.h"

/* A sandbox's pseudo-terminals at once (its devpts's max=; the host's
 * kernel.pty.max is shared by every sandbox). */
#define SB_PTY_MAX "64"

typedef enum {
    SB_STEP_ROOT,       /* make mounts private, mount the new root tmpfs */
    SB_STEP_TMPFS,      /* dest, size_mb, mode */
    SB_STEP_MKDIR,      /* dest, mode */
    SB_STEP_BIND,       /* src -> dest, flags SB_BIND_* */
    SB_STEP_SYMLINK,    /* dest -> src (the link's target) */
    SB_STEP_WRITE,      /* dest gets content src, mode */
    SB_STEP_PROC,       /* fresh procfs at dest */
    SB_STEP_DEVPTS,     /* fresh devpts instance at dest, at most SB_PTY_MAX terminals */
    SB_STEP_PIVOT,      /* pivot_root into the new root, drop the old one */
    SB_STEP_REMOUNT_RO, /* make dest read-only (after PIVOT, for "/") */
    SB_STEP_HOSTNAME,   /* sethostname(src) */
    SB_STEP_LOOPBACK,   /* bring lo up */
    SB_STEP_ATTACH,     /* move the detached mount in fd src (a number) to dest */
    SB_STEP_RESIZE,     /* remount the tmpfs at dest with size_mb */
    SB_STEP_SYSCTL,     /* write src to dest, a file under /proc/sys/ */
    SB_STEP__COUNT
} sb_step_kind;

enum {
    SB_BIND_RO = 1,     /* read-only */
    SB_BIND_DEV = 2,    /* device nodes usable (else nodev) */
    SB_BIND_TRY = 4,    /* skip silently when the source is missing or out of reach */
};

/* Where a sandbox sees the server's binary (the agent runs from it after
 * pivot_root, code contexts start `cellbox kernel` from it). */
#define SB_SELF_IN_SANDBOX "/run/cellbox/cellbox"
/* Where it sees the agent program (cellbox-agent), when the server has one. */
#define SB_AGENT_IN_SANDBOX "/run/cellbox/agent"
/* The fds a new agent has them on: detached mounts of the server's pinned
 * copies (sb_pin.h); the agent was executed from one of them. */
#define SB_SELF_FD 6
#define SB_AGENT_FD 7

typedef struct sb_step {
    sb_step_kind kind;
    char *src;
    char *dest;
    unsigned flags;
    unsigned mode;
    unsigned size_mb;
} sb_step;

typedef struct sb_plan {
    sb_step *steps;
    size_t n, cap;
    bool after_pivot;   /* steps target the sandbox's root directly */
} sb_plan;

typedef struct sb_plan_opts {
    const char *hostname;      /* the sandbox id */
    int workspace_fd;          /* specialise: fd number of the detached workspace mount */
    unsigned tmp_mb;           /* size of /tmp and /dev/shm */
    const char *host_prefix;   /* "" normally; tests point it at a fake host tree */
    bool self_tree;            /* this binary on fd SB_SELF_FD, attached at SB_SELF_IN_SANDBOX */
    bool agent_tree;           /* cellbox-agent on fd SB_AGENT_FD, attached at SB_AGENT_IN_SANDBOX */
} sb_plan_opts;

void sb_plan_init(sb_plan *p);
void sb_plan_clear(sb_plan *p);
void sb_plan_add(sb_plan *p, sb_step_kind kind, const char *src, const char *dest,
                 unsigned flags, unsigned mode, unsigned size_mb);
/* A sandbox is set up in two plans. The generic one (run ahead of time by
 * pooled agents) builds everything that is the same for all sandboxes:
 * read-only system folders, a chosen part of /etc, private /tmp, /proc, a
 * minimal /dev, pivot_root, lo, and the limits of the sandbox's user
 * namespace (/proc/sys/user: its share of the host root's inotify budget,
 * see SB_HOST_SHARE in sb_secure.h, and no user namespaces below it). The
 * specialising one (run when a sandbox
 * takes the agent) attaches /workspace, writes /etc/hosts and /etc/hostname,
 * sizes /tmp, sets the hostname and makes "/" read-only. */
void sb_plan_build(sb_plan *p, const sb_plan_opts *o);
void sb_plan_build_specialize(sb_plan *p, const sb_plan_opts *o);

const char *sb_step_name(sb_step_kind kind);
cJSON *sb_plan_to_json(const sb_plan *p);
int sb_plan_from_json(sb_plan *p, const cJSON *arr);    /* 0 or -1 on a malformed plan */
void sb_plan_describe(const sb_plan *p, cb_buf *out);   /* one line per step */

/* Execute every step in order (in the agent, inside the new namespaces, as
 * root of the new user namespace). Stops at the first failing step and
 * describes it in err. dry_run only checks the plan and returns 0. */
int sb_plan_run(const sb_plan *p, bool dry_run, sb_error *err);

#endif
