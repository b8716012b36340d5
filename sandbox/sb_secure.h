/* sandbox/sb_secure.h: the last steps before a sandboxed command runs.
 *
 * Called in the forked child right before execve, in this order: rlimits,
 * drop to the unprivileged uid (bounding set and ambient caps cleared first,
 * so nothing survives), no_new_privs, then the seccomp filter. Every function
 * is async-signal-safe (no allocation) and returns 0 or -1 with errno.
 */
#ifndef SB_SECURE_H
#define SB_SECURE_H

#include <sys/types.h>

#define SB_USER_UID 1000
#define SB_USER_GID 1000

/* Some kernel budgets are counted per user up the chain of user namespaces:
 * inotify instances and watches, POSIX message queue bytes, queued signals.
 * What a sandbox's user holds also counts for the user that created the
 * sandbox's namespace, the host's root, against the host's per-user limit,
 * which every sandbox and every root process of the host (the server's own
 * file watches) share. A sandbox may take 1/SB_HOST_SHARE of each: the
 * rlimits below for message queues and signals, a plan step (sb_plan.c) for
 * its namespace's inotify limits. An egress sandbox also gets that share of
 * the host's connection tracking table (sb_net.c). */
#define SB_HOST_SHARE 8

/* No core dumps, 8192 fds, no nice raise; RLIMIT_SIGPENDING and
 * RLIMIT_MSGQUEUE 1/SB_HOST_SHARE of what the process had (the server's). */
int sb_secure_rlimits(void);
int sb_secure_drop_privs(uid_t uid, gid_t gid);
/* Install the filter (needs no_new_privs). Denied: mount and friends,
 * pivot_root, ptrace, process_vm_*, kexec, bpf, keyctl, perf_event_open,
 * new namespaces (unshare, setns, clone with CLONE_NEW*; clone3 -> ENOSYS so
 * libc falls back to clone), modules, reboot, swap, clock setting, TIOCSTI,
 * personality values other than the Linux personas; AF_VSOCK sockets
 * (EAFNOSUPPORT: vsock ignores network namespaces); syscalls newer than the
 * filter -> ENOSYS; another architecture's ABI kills the process. */
int sb_secure_seccomp(void);

#endif
