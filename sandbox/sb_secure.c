/* sandbox/sb_secure.c: rlimits, privilege drop and the seccomp filter.
 *
 * The filter is a deny list (EPERM) on top of what the user namespace already
 * forbids: the namespace makes most of these calls fail anyway, the filter
 * closes the kernel attack surface behind them. The architecture is checked
 * first; foreign-ABI calls are killed. Syscalls newer than this list (above
 * SB_NR_LAST_KNOWN) answer ENOSYS, as on an older kernel: a deny list must
 * not let through what the kernel adds after it was written (open_tree_attr,
 * a mount call, came in 6.15 and was allowed). Runs in a forked child: no
 * malloc.
 */
#include "config.h"
#include "sandbox/sb_secure.h"

#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "base/util.h"

#if defined(__x86_64__)
#define SB_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SB_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "cellbox's seccomp filter knows x86_64 and aarch64"
#endif

/* A share of what this process may have (the server's limit, inherited). */
static int share_rlimit(int resource)
{
    struct rlimit r;
    if (getrlimit(resource, &r) < 0)
        return -1;
    rlim_t have = r.rlim_cur == RLIM_INFINITY ? r.rlim_max : r.rlim_cur;
    if (have == RLIM_INFINITY)
        return 0;  /* the host sets no limit to share */
    r.rlim_cur = r.rlim_max = have / SB_HOST_SHARE;
    return setrlimit(resource, &r);
}

int sb_secure_rlimits(void)
{
    struct rlimit core = {0, 0}, nofile = {8192, 8192}, nice = {0, 0};
    if (setrlimit(RLIMIT_CORE, &core) < 0 || setrlimit(RLIMIT_NOFILE, &nofile) < 0 ||
        setrlimit(RLIMIT_NICE, &nice) < 0)
        return -1;
    /* counted for the host's root too (sb_secure.h) */
    if (share_rlimit(RLIMIT_SIGPENDING) < 0 || share_rlimit(RLIMIT_MSGQUEUE) < 0)
        return -1;
    return 0;
}

int sb_secure_drop_privs(uid_t uid, gid_t gid)
{
    if (setgroups(0, NULL) < 0)
        return -1;
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        return -1;
    /* uid 0 -> non-zero without keep-caps cleared every capability set. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return 0;
}

/* Numbers from 424 on are the same on every architecture. */
#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467
#endif
/* The newest syscall this filter was written for (file_setattr, Linux 6.17). */
#define SB_NR_LAST_KNOWN 469

/* personality() values a sandbox may set (Docker's list): the Linux and
 * 32-bit Linux personas, with or without UNAME26, and the query. Others
 * (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC...) weaken what the kernel
 * enforces for the processes started afterwards. */
#define PER_QUERY 0xffffffffu

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LD_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))
#define DENY(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
                 BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
/* as if the kernel had no such call: programs fall back (libaio users) */
#define ABSENT(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
                   BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS)

#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
                  CLONE_NEWNET | CLONE_NEWCGROUP)

int sb_secure_seccomp(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SB_AUDIT_ARCH, 1, 0),
        RET(SECCOMP_RET_KILL_PROCESS),
        LD_NR,
#if defined(__x86_64__)
        /* x32 ABI numbers: refuse them all. */
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
        RET(SECCOMP_RET_ERRNO | EPERM),
#endif
        /* newer than this filter: as if the kernel did not have it */
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, SB_NR_LAST_KNOWN, 0, 1),
        RET(SECCOMP_RET_ERRNO | ENOSYS),
        /* clone: allowed unless it asks for a new namespace. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4),
        LD_ARG(0),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1),
        RET(SECCOMP_RET_ERRNO | EPERM),
        RET(SECCOMP_RET_ALLOW),
        /* clone3 hides its flags in memory: make libc fall back to clone. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        RET(SECCOMP_RET_ERRNO | ENOSYS),
        /* socket: no AF_VSOCK. vsock is not network-namespaced: it reaches
         * the hypervisor and the VM's other guests past any `network` of the
         * sandbox and its egress policy. As if the kernel had no vsock. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 4),
        LD_ARG(0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_VSOCK, 0, 1),
        RET(SECCOMP_RET_ERRNO | EAFNOSUPPORT),
        RET(SECCOMP_RET_ALLOW),
        /* ioctl: no typing into someone else's terminal. */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 5),
        LD_ARG(1),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 0, 1),
        RET(SECCOMP_RET_ERRNO | EPERM),
        RET(SECCOMP_RET_ALLOW),
        /* personality: the values in the list above only */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, 8),
        LD_ARG(0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0, 5, 0),           /* PER_LINUX */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x8, 4, 0),           /* PER_LINUX32 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20000, 3, 0),       /* UNAME26 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20008, 2, 0),       /* PER_LINUX32 | UNAME26 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PER_QUERY, 1, 0),
        RET(SECCOMP_RET_ERRNO | EPERM),
        RET(SECCOMP_RET_ALLOW),
        DENY(__NR_mount), DENY(__NR_umount2), DENY(__NR_pivot_root), DENY(__NR_chroot),
        DENY(__NR_ptrace), DENY(__NR_process_vm_readv), DENY(__NR_process_vm_writev),
        DENY(__NR_kexec_load), DENY(__NR_kexec_file_load), DENY(__NR_bpf), DENY(__NR_keyctl),
        DENY(__NR_add_key), DENY(__NR_request_key), DENY(__NR_perf_event_open),
        DENY(__NR_unshare), DENY(__NR_setns), DENY(__NR_init_module), DENY(__NR_finit_module),
        DENY(__NR_delete_module), DENY(__NR_reboot), DENY(__NR_swapon), DENY(__NR_swapoff),
        DENY(__NR_acct), DENY(__NR_settimeofday), DENY(__NR_clock_settime),
        DENY(__NR_clock_adjtime), DENY(__NR_adjtimex), DENY(__NR_open_by_handle_at),
        DENY(__NR_name_to_handle_at), DENY(__NR_userfaultfd), DENY(__NR_quotactl),
        DENY(__NR_fsopen), DENY(__NR_fsconfig), DENY(__NR_fsmount), DENY(__NR_fspick),
        DENY(__NR_move_mount), DENY(__NR_open_tree), DENY(__NR_mount_setattr),
        DENY(__NR_open_tree_attr), DENY(__NR_quotactl_fd),
        DENY(__NR_syslog), DENY(__NR_vhangup), DENY(__NR_kcmp), DENY(__NR_pidfd_getfd),
        DENY(__NR_io_uring_setup), DENY(__NR_io_uring_enter), DENY(__NR_io_uring_register),
        DENY(__NR_fanotify_init), DENY(__NR_lookup_dcookie),
        /* native AIO: its limit (fs.aio-max-nr) is one for the whole host,
         * and one io_setup(65536) took all of it; io_uring is refused too */
        ABSENT(__NR_io_setup), ABSENT(__NR_io_destroy), ABSENT(__NR_io_submit),
        ABSENT(__NR_io_cancel), ABSENT(__NR_io_getevents), ABSENT(__NR_io_pgetevents),
#if defined(__x86_64__)
        DENY(__NR_iopl), DENY(__NR_ioperm), DENY(__NR_uselib), DENY(__NR_modify_ldt),
#endif
        RET(SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)CB_ARRAY_LEN(f), f};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}
