/* sandbox/sb_pin.c: the server's own programs, pinned (see sb_pin.h). */
#include "config.h"
#include "sandbox/sb_pin.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

static struct {
    int fd;         /* O_PATH of the copy (or of the program in place); -1: none */
    char *path;     /* where the server runs it from */
} pins[2] = {{-1, NULL}, {-1, NULL}};

static const char *const pin_names[] = {"cellbox", "cellbox-agent"};

/* src's bytes into a new file dst, mode 0755: 0 or -1 with errno (dst
 * removed). copy_file_range shares the blocks where the file system can. */
static int copy_program(int src, const char *dst)
{
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    if (out < 0)
        return -1;
    int rc = 0;
    for (;;) {
        ssize_t n = copy_file_range(src, NULL, out, NULL, 1 << 30, 0);
        if (n > 0)
            continue;
        if (n == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) {
            rc = -1;
            break;
        }
        /* a plain copy from where copy_file_range left off */
        char buf[1 << 16];
        ssize_t r;
        while ((r = read(src, buf, sizeof buf)) != 0) {
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 || cb_write_all(out, buf, (size_t)r) < 0) {
                rc = -1;
                break;
            }
        }
        break;
    }
    /* the umask may have taken bits: the sandboxes' users must run it */
    if (rc == 0 && fchmod(out, 0755) < 0)
        rc = -1;
    int e = errno;
    if (close(out) < 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc < 0) {
        unlink(dst);
        errno = e;
    }
    return rc;
}

/* prog (open for reading: src) copied to bin/<name>, by a temporary name
 * and a rename: a copy half made is never at the final path. */
static char *pin_copy(const char *bin, sb_pin_prog prog, int src)
{
    char *tmp = cb_printf_new("%s/.%s.%d", bin, pin_names[prog], (int)getpid());
    char *dst = cb_printf_new("%s/%s", bin, pin_names[prog]);
    unlink(tmp);  /* left by a server of this pid that was killed */
    if (copy_program(src, tmp) < 0 || rename(tmp, dst) < 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        free(dst);
        errno = e;
        return NULL;
    }
    free(tmp);
    return dst;
}

static void pin_one(const char *bin, sb_pin_prog prog, const char *from)
{
    cb_autoclose int src = open(from, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        cb_warn("sandbox", "cannot open %s to run it in sandboxes: %s", from, strerror(errno));
        return;
    }
    char *copy = bin ? pin_copy(bin, prog, src) : NULL;
    if (!copy) {
        cb_warn("sandbox", "cannot copy %s into %s (%s): sandboxes run it in place, and a new "
                "version put there while this server runs reaches them", from, bin ? bin : "?",
                strerror(errno));
        /* the running file itself (for this binary, even once replaced);
         * this binary's path is sb_pin_path's fallback */
        pins[prog].fd = open(from, O_PATH | O_CLOEXEC);
        pins[prog].path = prog == SB_PIN_SELF ? NULL : cb_strdup(from);
        return;
    }
    pins[prog].fd = open(copy, O_PATH | O_CLOEXEC);
    if (pins[prog].fd < 0) {
        cb_warn("sandbox", "cannot open %s: %s", copy, strerror(errno));
        free(copy);
        return;
    }
    pins[prog].path = copy;
}

void sb_pin_init(const char *state_dir, const char *agent_exe)
{
    cb_autofree char *bin = cb_printf_new("%s/bin", state_dir);
    if (cb_mkdir_p(bin, 0700) < 0) {
        cb_warn("sandbox", "cannot create %s: %s", bin, strerror(errno));
        free(bin);
        bin = NULL;
    }
    pin_one(bin, SB_PIN_SELF, "/proc/self/exe");
    if (agent_exe)
        pin_one(bin, SB_PIN_AGENT, agent_exe);
}

bool sb_pin_have(sb_pin_prog prog)
{
    return pins[prog].fd >= 0;
}

const char *sb_pin_path(sb_pin_prog prog)
{
    static char *self;
    if (pins[prog].path)
        return pins[prog].path;
    if (prog != SB_PIN_SELF)
        return NULL;
    if (!self)
        self = cb_self_exe();
    return self;
}

int sb_pin_tree(sb_pin_prog prog)
{
    if (pins[prog].fd < 0) {
        errno = ENOENT;
        return -1;
    }
    int t = (int)syscall(SYS_open_tree, pins[prog].fd, "",
                         OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (t < 0)
        return -1;
    /* the state folder's file system may be noexec; the agent clears the
     * rest again when it attaches the mount (SB_STEP_ATTACH). Kernels
     * before 5.12 have no mount_setattr: the mount keeps its source's
     * flags until then. */
    struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                           .attr_clr = MOUNT_ATTR_NOEXEC};
    if (syscall(SYS_mount_setattr, t, "", AT_EMPTY_PATH, &a, sizeof a) < 0 && errno != ENOSYS) {
        int e = errno;
        close(t);
        errno = e;
        return -1;
    }
    return t;
}
