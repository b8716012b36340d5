/* sandbox/sb_plan.c: building, (de)serialising and running sandbox plans.
 *
 * The runner works like this: the ROOT step makes every mount private and
 * mounts a small tmpfs on /tmp of the (private) mount namespace; that tmpfs
 * becomes the sandbox's "/". Every later step before PIVOT targets
 * NEWROOT + dest and creates its own mount point. PIVOT makes it the root and
 * detaches the host's tree; REMOUNT_RO "/" then freezes the skeleton, so the
 * only writable places left are /tmp, /dev/shm and /workspace.
 *
 * It must never touch the host: everything it mounts is in the new mount
 * namespace, which is private from the ROOT step on. It runs in a fresh,
 * single-threaded process, so it may allocate and log.
 */
#include "config.h"
#include "sandbox/sb_plan.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/json.h"
#include "sandbox/sb_secure.h"

#define NEWROOT "/tmp"

static const char *step_names[SB_STEP__COUNT] = {
    "root", "tmpfs", "mkdir", "bind", "symlink", "write", "proc", "devpts",
    "pivot", "remount-ro", "hostname", "loopback", "attach", "resize", "sysctl",
};

const char *sb_step_name(sb_step_kind kind)
{
    return (unsigned)kind < SB_STEP__COUNT ? step_names[kind] : "?";
}

void sb_plan_init(sb_plan *p)
{
    memset(p, 0, sizeof *p);
}

void sb_plan_clear(sb_plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->steps[i].src);
        free(p->steps[i].dest);
    }
    free(p->steps);
    sb_plan_init(p);
}

void sb_plan_add(sb_plan *p, sb_step_kind kind, const char *src, const char *dest,
                 unsigned flags, unsigned mode, unsigned size_mb)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 32;
        p->steps = cb_realloc(p->steps, p->cap * sizeof *p->steps);
    }
    p->steps[p->n++] = (sb_step){kind, cb_strdup(src), cb_strdup(dest), flags, mode, size_mb};
}

/* A host path that is a symlink is recreated as the same symlink; a folder or
 * file is bound read-only; a missing one is skipped. */
static void add_host_path(sb_plan *p, const sb_plan_opts *o, const char *path, unsigned flags)
{
    cb_autofree char *host = cb_printf_new("%s%s", o->host_prefix ? o->host_prefix : "", path);
    struct stat st;
    if (lstat(host, &st) < 0)
        return;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(host, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            sb_plan_add(p, SB_STEP_SYMLINK, target, path, 0, 0, 0);
        }
        return;
    }
    sb_plan_add(p, SB_STEP_BIND, host, path, SB_BIND_RO | SB_BIND_TRY | flags, 0, 0);
}

#define FD_STR_(n) #n
#define FD_STR(n) FD_STR_(n)

void sb_plan_build(sb_plan *p, const sb_plan_opts *o)
{
    /* What of the host a sandbox sees: programs and libraries, read-only. */
    static const char *system_dirs[] = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                                        "/libx32"};
    /* The parts of /etc that programs need to run; never shadow, sudoers, ssh... */
    static const char *etc_files[] = {
        "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates",
        "ca-certificates.conf", "nsswitch.conf", "localtime", "timezone", "resolv.conf",
        "gai.conf", "protocols", "services", "mime.types", "os-release", "debian_version",
        "python3", "python3.11", "matplotlibrc", "fonts", "inputrc", "locale.alias",
        "bash.bashrc", "profile", "magic", "magic.mime", "xdg", "pki", "java-17-openjdk",
    };
    unsigned tmp_mb = o->tmp_mb ? o->tmp_mb : 64;

    sb_plan_add(p, SB_STEP_ROOT, NULL, "/", 0, 0755, 16);
    for (size_t i = 0; i < CB_ARRAY_LEN(system_dirs); i++)
        add_host_path(p, o, system_dirs[i], 0);

    sb_plan_add(p, SB_STEP_MKDIR, NULL, "/etc", 0, 0755, 0);
    for (size_t i = 0; i < CB_ARRAY_LEN(etc_files); i++) {
        cb_autofree char *path = cb_printf_new("/etc/%s", etc_files[i]);
        add_host_path(p, o, path, 0);
    }
    sb_plan_add(p, SB_STEP_WRITE,
                "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                "user:x:1000:1000:user:/workspace:/bin/bash\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                "/etc/passwd", 0, 0644, 0);
    sb_plan_add(p, SB_STEP_WRITE, "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n",
                "/etc/group", 0, 0644, 0);
    sb_plan_add(p, SB_STEP_TMPFS, NULL, "/tmp", 0, 01777, tmp_mb);
    sb_plan_add(p, SB_STEP_MKDIR, NULL, "/root", 0, 0700, 0);
    sb_plan_add(p, SB_STEP_MKDIR, NULL, "/run", 0, 0755, 0);
    /* the server's programs (sb_pin.h), as the agent was started with
     * them: the agent runs again from its own after pivot_root, code
     * contexts start `cellbox kernel` */
    if (o->self_tree)
        sb_plan_add(p, SB_STEP_ATTACH, FD_STR(SB_SELF_FD), SB_SELF_IN_SANDBOX, SB_BIND_RO, 0, 0);
    if (o->agent_tree)
        sb_plan_add(p, SB_STEP_ATTACH, FD_STR(SB_AGENT_FD), SB_AGENT_IN_SANDBOX, SB_BIND_RO, 0, 0);
    sb_plan_add(p, SB_STEP_MKDIR, NULL, "/var", 0, 0755, 0);
    sb_plan_add(p, SB_STEP_SYMLINK, "/tmp", "/var/tmp", 0, 0, 0);
    sb_plan_add(p, SB_STEP_MKDIR, NULL, "/workspace", 0, 0755, 0);

    sb_plan_add(p, SB_STEP_PROC, NULL, "/proc", 0, 0, 0);

    sb_plan_add(p, SB_STEP_TMPFS, NULL, "/dev", 0, 0755, 1);
    static const char *devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < CB_ARRAY_LEN(devices); i++) {
        cb_autofree char *d = cb_printf_new("/dev/%s", devices[i]);
        sb_plan_add(p, SB_STEP_BIND, d, d, SB_BIND_DEV, 0, 0);
    }
    sb_plan_add(p, SB_STEP_DEVPTS, NULL, "/dev/pts", 0, 0, 0);
    sb_plan_add(p, SB_STEP_SYMLINK, "pts/ptmx", "/dev/ptmx", 0, 0, 0);
    sb_plan_add(p, SB_STEP_TMPFS, NULL, "/dev/shm", 0, 01777, tmp_mb);
    sb_plan_add(p, SB_STEP_SYMLINK, "/proc/self/fd", "/dev/fd", 0, 0, 0);
    sb_plan_add(p, SB_STEP_SYMLINK, "/proc/self/fd/0", "/dev/stdin", 0, 0, 0);
    sb_plan_add(p, SB_STEP_SYMLINK, "/proc/self/fd/1", "/dev/stdout", 0, 0, 0);
    sb_plan_add(p, SB_STEP_SYMLINK, "/proc/self/fd/2", "/dev/stderr", 0, 0, 0);
    sb_plan_add(p, SB_STEP_REMOUNT_RO, NULL, "/dev", 0, 0, 0);

    sb_plan_add(p, SB_STEP_PIVOT, NULL, "/", 0, 0, 0);
    sb_plan_add(p, SB_STEP_LOOPBACK, NULL, NULL, 0, 0, 0);

    /* The sandbox's user namespace's own limits (root of it may set them,
     * its users may not). inotify is counted for the host's root as well
     * (sb_secure.h): the sandbox gets a share of the host's limit. */
    static const struct { const char *host, *ns; } inotify[] = {
        {"/proc/sys/fs/inotify/max_user_instances", "/proc/sys/user/max_inotify_instances"},
        {"/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(inotify); i++) {
        cb_autofree char *host = cb_printf_new("%s%s", o->host_prefix ? o->host_prefix : "",
                                               inotify[i].host);
        cb_autofree char *text = cb_read_file(host, NULL);
        long limit = text ? strtol(text, NULL, 10) : 0;
        if (limit <= 0)
            continue;
        char share[24];
        snprintf(share, sizeof share, "%ld", limit / SB_HOST_SHARE > 0 ? limit / SB_HOST_SHARE : 1);
        sb_plan_add(p, SB_STEP_SYSCTL, share, inotify[i].ns, 0, 0, 0);
    }
    /* new namespaces are refused by seccomp already; this holds even for a
     * call the filter would miss */
    sb_plan_add(p, SB_STEP_SYSCTL, "0", "/proc/sys/user/max_user_namespaces", 0, 0, 0);
}

void sb_plan_build_specialize(sb_plan *p, const sb_plan_opts *o)
{
    p->after_pivot = true;
    char fdnum[16];
    snprintf(fdnum, sizeof fdnum, "%d", o->workspace_fd);
    if (o->workspace_fd >= 0)
        sb_plan_add(p, SB_STEP_ATTACH, fdnum, "/workspace", 0, 0, 0);
    cb_autofree char *hosts =
        cb_printf_new("127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                      o->hostname);
    sb_plan_add(p, SB_STEP_WRITE, hosts, "/etc/hosts", 0, 0644, 0);
    cb_autofree char *hostname_line = cb_printf_new("%s\n", o->hostname);
    sb_plan_add(p, SB_STEP_WRITE, hostname_line, "/etc/hostname", 0, 0644, 0);
    unsigned tmp_mb = o->tmp_mb ? o->tmp_mb : 64;
    sb_plan_add(p, SB_STEP_RESIZE, NULL, "/tmp", 0, 01777, tmp_mb);
    sb_plan_add(p, SB_STEP_RESIZE, NULL, "/dev/shm", 0, 01777, tmp_mb);
    sb_plan_add(p, SB_STEP_HOSTNAME, o->hostname, NULL, 0, 0, 0);
    sb_plan_add(p, SB_STEP_REMOUNT_RO, NULL, "/", 0, 0, 0);
}

cJSON *sb_plan_to_json(const sb_plan *p)
{
    cJSON *arr = cJSON_CreateArray();
    if (p->after_pivot) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", "after-pivot");
        cJSON_AddItemToArray(arr, o);
    }
    for (size_t i = 0; i < p->n; i++) {
        const sb_step *s = &p->steps[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", sb_step_name(s->kind));
        if (s->src)
            cJSON_AddStringToObject(o, "src", s->src);
        if (s->dest)
            cJSON_AddStringToObject(o, "dest", s->dest);
        if (s->flags)
            cJSON_AddNumberToObject(o, "flags", s->flags);
        if (s->mode)
            cJSON_AddNumberToObject(o, "mode", s->mode);
        if (s->size_mb)
            cJSON_AddNumberToObject(o, "sizeMb", s->size_mb);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

int sb_plan_from_json(sb_plan *p, const cJSON *arr)
{
    if (!cJSON_IsArray(arr))
        return -1;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        const char *op = cb_json_str(o, "op", "");
        if (strcmp(op, "after-pivot") == 0) {
            p->after_pivot = true;
            continue;
        }
        int kind = -1;
        for (int k = 0; k < SB_STEP__COUNT; k++)
            if (strcmp(op, step_names[k]) == 0)
                kind = k;
        if (kind < 0)
            return -1;
        sb_plan_add(p, (sb_step_kind)kind, cb_json_str(o, "src", NULL), cb_json_str(o, "dest", NULL),
                    (unsigned)cb_json_int(o, "flags", 0), (unsigned)cb_json_int(o, "mode", 0),
                    (unsigned)cb_json_int(o, "sizeMb", 0));
    }
    return 0;
}

void sb_plan_describe(const sb_plan *p, cb_buf *out)
{
    if (p->after_pivot)
        cb_buf_puts(out, "(inside the new root)\n");
    for (size_t i = 0; i < p->n; i++) {
        const sb_step *s = &p->steps[i];
        cb_buf_printf(out, "%-10s", sb_step_name(s->kind));
        if (s->kind == SB_STEP_BIND)
            cb_buf_printf(out, " %s -> %s%s%s%s", s->src, s->dest,
                          s->flags & SB_BIND_RO ? " ro" : " rw",
                          s->flags & SB_BIND_DEV ? " dev" : "", s->flags & SB_BIND_TRY ? " try" : "");
        else if (s->kind == SB_STEP_SYMLINK)
            cb_buf_printf(out, " %s -> %s", s->dest, s->src);
        else if (s->kind == SB_STEP_WRITE)
            cb_buf_printf(out, " %s (%zu bytes, mode %04o)", s->dest, strlen(s->src), s->mode);
        else if (s->kind == SB_STEP_HOSTNAME)
            cb_buf_printf(out, " %s", s->src);
        else if (s->kind == SB_STEP_SYSCTL)
            cb_buf_printf(out, " %s = %s", s->dest, s->src);
        else if (s->dest)
            cb_buf_printf(out, " %s", s->dest);
        if (s->kind == SB_STEP_ATTACH)
            cb_buf_printf(out, " (from fd %s)", s->src);
        if (s->kind == SB_STEP_TMPFS || s->kind == SB_STEP_ROOT || s->kind == SB_STEP_RESIZE)
            cb_buf_printf(out, " size=%um mode=%04o", s->size_mb, s->mode);
        cb_buf_putc(out, '\n');
    }
}

/* ---- the runner ---------------------------------------------------------- */

static int mkdir_p_in(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Flags of the mount at path, as MS_* bits; a remount inside a user
 * namespace must repeat the locked ones (nosuid, nodev, noexec, atime). */
static unsigned long mount_flags_of(const char *path)
{
    struct statvfs sv;
    unsigned long f = 0;
    if (statvfs(path, &sv) < 0)
        return 0;
    static const struct { unsigned long st, ms; } map[] = {
        {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},         {ST_NOEXEC, MS_NOEXEC},
        {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
        {ST_RDONLY, MS_RDONLY},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(map); i++)
        if (sv.f_flag & map[i].st)
            f |= map[i].ms;
    return f;
}

static int remount(const char *path, unsigned long add)
{
    unsigned long flags = mount_flags_of(path) | add;
    return mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | flags, NULL);
}

static int loopback_up(void)
{
    cb_autoclose int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(s, SIOCSIFFLAGS, &ifr);
}

/* An empty folder or file at dest (an existing one is kept), with the
 * folders above it. */
static int mount_point(const char *dest, bool dir)
{
    if (dir)
        return mkdir_p_in(dest, 0755);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dest);
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = '\0';
    if (mkdir_p_in(parent, 0755) < 0)
        return -1;
    int fd = open(dest, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    return close(fd);
}

/* src_fd: the BIND source opened (O_PATH) before the first step, while the
 * whole host tree is visible (the new root is built over /tmp, which hides
 * whatever the host keeps there); -1 with src_errno when it could not be. */
static int run_step(const sb_step *s, bool pivoted, int src_fd, int src_errno, const char **what)
{
    char dest[PATH_MAX];
    if (s->dest)
        snprintf(dest, sizeof dest, "%s%s", pivoted ? "" : NEWROOT,
                 strcmp(s->dest, "/") == 0 && !pivoted ? "" : s->dest);
    struct stat st;
    switch (s->kind) {
    case SB_STEP_ROOT: {
        *what = "make mounts private";
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            return -1;
        *what = "mount root tmpfs";
        cb_autofree char *opts = cb_printf_new("mode=%04o,size=%um", s->mode, s->size_mb);
        /* noatime: an access time update is a write, and a write in
         * progress (the spare shell's exec reading the /bin symlink) makes
         * the remount read-only at the end of specialising fail EBUSY */
        return mount("tmpfs", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOATIME, opts);
    }
    case SB_STEP_TMPFS: {
        *what = "mkdir";
        if (mkdir_p_in(dest, 0755) < 0)
            return -1;
        *what = "mount tmpfs";
        cb_autofree char *opts = cb_printf_new("mode=%04o,size=%um", s->mode, s->size_mb);
        return mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV, opts);
    }
    case SB_STEP_MKDIR:
        *what = "mkdir";
        if (mkdir_p_in(dest, s->mode) < 0)
            return -1;
        return chmod(dest, s->mode);
    case SB_STEP_BIND: {
        *what = "stat source";
        char src[64];
        if (src_fd < 0) {
            errno = src_errno;
            return (s->flags & SB_BIND_TRY) && (errno == ENOENT || errno == EACCES) ? 0 : -1;
        }
        if (fstat(src_fd, &st) < 0)
            return -1;
        snprintf(src, sizeof src, "/proc/self/fd/%d", src_fd);
        *what = "create mount point";
        if (mount_point(dest, S_ISDIR(st.st_mode)) < 0)
            return -1;
        *what = "bind mount";
        if (mount(src, dest, NULL, MS_BIND | MS_REC, NULL) < 0)
            return -1;
        *what = "remount bind";
        return remount(dest, MS_NOSUID | (s->flags & SB_BIND_RO ? MS_RDONLY : 0) |
                                 (s->flags & SB_BIND_DEV ? 0 : MS_NODEV));
    }
    case SB_STEP_SYMLINK:
        *what = "symlink";
        if (symlink(s->src, dest) < 0 && errno != EEXIST)
            return -1;
        return 0;
    case SB_STEP_WRITE: {
        *what = "write file";
        cb_autoclose int fd = open(dest, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, s->mode);
        if (fd < 0)
            return -1;
        return cb_write_all(fd, s->src, strlen(s->src));
    }
    case SB_STEP_PROC:
        *what = "mkdir";
        if (mkdir_p_in(dest, 0555) < 0)
            return -1;
        *what = "mount proc";
        return mount("proc", dest, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    case SB_STEP_DEVPTS:
        *what = "mkdir";
        if (mkdir_p_in(dest, 0755) < 0)
            return -1;
        *what = "mount devpts";
        /* max: the host's kernel.pty.max is shared by every sandbox; one
         * holding them all would leave the others without terminals */
        return mount("devpts", dest, "devpts", MS_NOSUID | MS_NOEXEC,
                     "newinstance,ptmxmode=0666,mode=620,max=" SB_PTY_MAX);
    case SB_STEP_PIVOT:
        *what = "chdir new root";
        if (chdir(NEWROOT) < 0)
            return -1;
        *what = "pivot_root";
        if (syscall(SYS_pivot_root, ".", ".") < 0)
            return -1;
        *what = "detach old root";
        if (umount2(".", MNT_DETACH) < 0)
            return -1;
        return chdir("/");
    case SB_STEP_REMOUNT_RO: {
        *what = "remount read-only";
        /* EBUSY while a write is in progress on the mount: they are short */
        int rc, tries = 0;
        while ((rc = remount(dest, MS_RDONLY)) < 0 && errno == EBUSY && tries++ < 200)
            usleep(1000);
        return rc;
    }
    case SB_STEP_HOSTNAME:
        *what = "sethostname";
        return sethostname(s->src, strlen(s->src));
    case SB_STEP_LOOPBACK:
        *what = "bring up lo";
        return loopback_up();
    case SB_STEP_ATTACH: {
        int fd = atoi(s->src);
        *what = "stat source";
        if (fstat(fd, &st) < 0)
            return -1;
        *what = "create mount point";
        if (mount_point(dest, S_ISDIR(st.st_mode)) < 0)
            return -1;
        *what = "move_mount";
        if (syscall(SYS_move_mount, fd, "", AT_FDCWD, dest, MOVE_MOUNT_F_EMPTY_PATH) < 0)
            return -1;
        close(fd);
        *what = "remount";
        return remount(dest, MS_NOSUID | MS_NODEV | (s->flags & SB_BIND_RO ? MS_RDONLY : 0));
    }
    case SB_STEP_SYSCTL: {
        *what = "write";
        cb_autoclose int fd = open(dest, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -1;
        return cb_write_all(fd, s->src, strlen(s->src));
    }
    case SB_STEP_RESIZE: {
        *what = "resize tmpfs";
        cb_autofree char *opts = cb_printf_new("mode=%04o,size=%um", s->mode, s->size_mb);
        return mount(NULL, dest, NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts);
    }
    default:
        errno = EINVAL;
        *what = "unknown step";
        return -1;
    }
}

int sb_plan_run(const sb_plan *p, bool dry_run, sb_error *err)
{
    bool pivoted = p->after_pivot;
    int *src_fd = cb_calloc(p->n + 1, sizeof *src_fd), *src_errno = cb_calloc(p->n + 1, sizeof *src_errno);
    for (size_t i = 0; i < p->n; i++) {
        src_fd[i] = -1;
        if (!dry_run && p->steps[i].kind == SB_STEP_BIND && p->steps[i].src) {
            src_fd[i] = open(p->steps[i].src, O_PATH | O_CLOEXEC);
            src_errno[i] = errno;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        const sb_step *s = &p->steps[i];
        bool needs_dest = s->kind != SB_STEP_HOSTNAME && s->kind != SB_STEP_LOOPBACK;
        bool needs_src = s->kind == SB_STEP_BIND || s->kind == SB_STEP_SYMLINK ||
                         s->kind == SB_STEP_WRITE || s->kind == SB_STEP_HOSTNAME ||
                         s->kind == SB_STEP_ATTACH || s->kind == SB_STEP_SYSCTL;
        if ((needs_dest && (!s->dest || s->dest[0] != '/' || strstr(s->dest, ".."))) ||
            (needs_src && !s->src) ||
            (s->kind == SB_STEP_SYSCTL && strncmp(s->dest, "/proc/sys/", 10) != 0)) {
            sb_fail(err, SB_E_INTERNAL_ERROR, "plan step %zu (%s): malformed", i, sb_step_name(s->kind));
            rc = -1;
            break;
        }
        if (dry_run)
            continue;
        const char *what = "";
        if (run_step(s, pivoted, src_fd[i], src_errno[i], &what) < 0) {
            sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox setup step %zu (%s %s): %s: %s", i,
                    sb_step_name(s->kind), s->dest ? s->dest : (s->src ? s->src : ""), what,
                    strerror(errno));
            rc = -1;
        }
        if (s->kind == SB_STEP_PIVOT)
            pivoted = true;
    }
    for (size_t i = 0; i < p->n; i++)
        if (src_fd[i] >= 0)
            close(src_fd[i]);
    free(src_fd);
    free(src_errno);
    return rc;
}
