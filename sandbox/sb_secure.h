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

int sb_secure_rlimits(void);
int sb_secure_drop_privs(uid_t uid, gid_t gid);
/* Install the filter (needs no_new_privs). Denied: mount and friends,
 * pivot_root, ptrace, process_vm_*, kexec, bpf, keyctl, perf_event_open,
 * new namespaces (unshare, setns, clone with CLONE_NEW*; clone3 -> ENOSYS so
 * libc falls back to clone), modules, reboot, swap, clock setting, TIOCSTI. */
int sb_secure_seccomp(void);

#endif
