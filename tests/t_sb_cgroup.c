/* tests/t_sb_cgroup.c: unit tests of sandbox/sb_cgroup.c.
 *
 * Most cases run on fake trees in a temporary folder: a pure v2 host, a v2
 * host whose server runs in a nested group or in a container's bind mount,
 * and a v1/hybrid host. Regular files stand in for the kernel's; the "fake
 * kernel" below lays down the interface files a real mkdir would make, so
 * a write to a file the kernel does not have fails as it would (ENOENT).
 * The checks are the exact files and values: detection's base paths, the
 * controllers enabled in cgroup.subtree_control, memory in bytes, pids,
 * cpu.max "$QUOTA $PERIOD" against v1's cfs_quota_us/cfs_period_us, attach,
 * destroy, memory use, freezing (v2 cgroup.freeze + cgroup.events, v1's
 * optional freezer hierarchy and freezer.state) and thawing before removal.
 *
 * The last case uses this machine's real cgroup2 tree, when there is one
 * and we are root: create, attach a child, destroy with cgroup.kill (none
 * of which needs a controller), freeze and thaw, and the kernel's refusal
 * to rename a v2 group (why sandboxes keep their pooled agent's group
 * name). Then this machine's v1 freezer hierarchy, when mounted: a frozen
 * child stops running, survives a SIGKILL until thawed, and destroy thaws
 * it so it dies. Everything is removed again.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "sandbox/sb_cgroup.h"
#include "tests/tap.h"

static char root[64];   /* the fake host's "/" */

/* ---- the fake kernel ------------------------------------------------------ */

static char *at(const char *rel)
{
    return cb_printf_new("%s%s", root, rel);
}

static void put_bytes(const char *rel, const char *data, size_t len)
{
    cb_autofree char *path = at(rel);
    cb_autofree char *dir = cb_strdup(path);
    *strrchr(dir, '/') = '\0';
    cb_mkdir_p(dir, 0755);
    cb_autoclose int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || cb_write_all(fd, data, len) < 0)
        printf("# cannot write %s: %s\n", path, strerror(errno));
}

static void put(const char *rel, const char *text)
{
    put_bytes(rel, text, strlen(text));
}

static void mkdir_at(const char *rel)
{
    cb_autofree char *path = at(rel);
    cb_mkdir_p(path, 0755);
}

/* The file's text ("(absent)" if there is none). Owned. */
static char *get(const char *rel)
{
    cb_autofree char *path = at(rel);
    char *t = cb_read_file(path, NULL);
    return t ? t : cb_strdup("(absent)");
}

static bool exists(const char *rel)
{
    cb_autofree char *path = at(rel);
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *v2_files[] = {"cgroup.procs", "cgroup.kill", "cgroup.type", "cgroup.controllers",
                                 "cgroup.subtree_control", "cgroup.freeze", "cgroup.events",
                                 "memory.max", "memory.swap.max", "memory.current", "pids.max",
                                 "cpu.max", NULL};
static const char *v1_memory[] = {"cgroup.procs", "tasks", "memory.limit_in_bytes",
                                  "memory.memsw.limit_in_bytes", "memory.usage_in_bytes", NULL};
static const char *v1_pids[] = {"cgroup.procs", "tasks", "pids.max", NULL};
static const char *v1_cpu[] = {"cgroup.procs", "tasks", "cpu.cfs_period_us", "cpu.cfs_quota_us",
                               "cpu.shares", NULL};
static const char *v1_freezer[] = {"cgroup.procs", "tasks", "freezer.state", "freezer.self_freezing",
                                   "freezer.parent_freezing", NULL};

/* What the kernel does on mkdir: the group's interface files, empty. */
static void populate(const char *rel, const char **files)
{
    for (int i = 0; files[i]; i++) {
        cb_autofree char *f = cb_printf_new("%s/%s", rel, files[i]);
        put(f, "");
    }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void fresh_root(void)
{
    if (root[0])
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(root, sizeof root, "/tmp/t_sb_cgroup.XXXXXX");
    if (!mkdtemp(root))
        printf("Bail out! mkdtemp: %s\n", strerror(errno)), exit(1);
}

/* A pure v2 host: cgroup2 at /sys/fs/cgroup, the server in `own`, the
 * mount's root `mroot` ("/" unless a container bind-mounts a subtree). */
static void fake_v2_host(const char *own, const char *mroot, const char *group_rel)
{
    fresh_root();
    cb_autofree char *cg = cb_printf_new("0::%s\n", own);
    put("/proc/self/cgroup", cg);
    cb_autofree char *mi = cb_printf_new(
        "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
        "24 23 0:22 / /sys/fs/cgroup/unified rw shared:3 - tmpfs tmpfs rw\n"
        "25 23 0:23 %s /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
        "rw,nsdelegate,memory_recursiveprot\n", mroot);
    put("/proc/self/mountinfo", mi);
    populate("/sys/fs/cgroup", v2_files);
    put("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put("/sys/fs/cgroup/cgroup.procs", "1\n");
    if (*group_rel) {
        populate(group_rel, v2_files);
        cb_autofree char *f = cb_printf_new("%s/cgroup.controllers", group_rel);
        put(f, "cpu memory pids\n");
    }
}

/* A hybrid host as systemd sets it up, with the memory hierarchy of a
 * container (mounted from /docker/abc) and cpuset listed before cpu; the
 * freezer (mounted as on this machine's CI) below the server's group
 * /frz when with_freezer. */
static void fake_hybrid_host(bool with_pids, bool with_freezer)
{
    fresh_root();
    cb_autofree char *cg = cb_printf_new(
        "%s%s", with_freezer ? "9:freezer:/frz\n" : "",
        with_pids ? "12:pids:/user.slice/user-1000.slice\n"
                    "7:cpuset:/wrong\n"
                    "5:cpu,cpuacct:/user.slice\n"
                    "4:memory:/docker/abc\n"
                    "1:name=systemd:/user.slice/session-1.scope\n"
                    "0::/user.slice/session-1.scope\n"
                  : "5:cpu,cpuacct:/user.slice\n4:memory:/docker/abc\n0::/\n");
    put("/proc/self/cgroup", cg);
    cb_autofree char *mi = cb_printf_new(
        "25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
        "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
        "27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
        "28 25 0:25 / /sys/fs/cgroup/cpuset rw,nosuid shared:12 - cgroup cgroup rw,cpuset\n"
        "29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct\n"
        "30 25 0:27 /docker/abc /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory\n"
        "31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid shared:15 - cgroup cgroup rw,pids\n"
        "%s", with_freezer ? "32 25 0:29 / /sys/fs/cgroup/freezer rw,nosuid shared:16 - cgroup "
                             "cgroup rw,freezer\n" : "");
    put("/proc/self/mountinfo", mi);
    if (with_freezer)
        populate("/sys/fs/cgroup/freezer/frz", v1_freezer);
    /* the v2 tree of a hybrid host has no controllers to offer */
    populate("/sys/fs/cgroup/unified", (const char *[]){"cgroup.procs", "cgroup.controllers",
                                                        "cgroup.subtree_control", NULL});
    populate("/sys/fs/cgroup/memory", v1_memory);
    populate("/sys/fs/cgroup/pids/user.slice/user-1000.slice", v1_pids);
    populate("/sys/fs/cgroup/cpu,cpuacct/user.slice", v1_cpu);
    populate("/sys/fs/cgroup/cpuset/wrong", (const char *[]){"cgroup.procs", NULL});
}

static bool contains(const char *s, const char *part)
{
    return s && strstr(s, part);
}

/* rc must be 0; on failure show the error. */
#define is_ok(rc, err, ...)                                                                        \
    do {                                                                                           \
        if (!ok((rc) == 0, __VA_ARGS__))                                                           \
            printf("#   %s\n", (err).msg);                                                        \
    } while (0)

/* ---- detection -------------------------------------------------------------- */

static void test_detect_v2_root(void)
{
    fake_v2_host("/", "/", "");
    sb_cg_layout l;
    sb_error err = {0};
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());

    /* Detection makes its groups itself: each time, the fake kernel has not
     * populated the new one yet, so the next write fails and names it. */
    is_int(sb_cg_detect(&l, root, &err), -1, "v2: a leaf without cgroup.procs fails");
    ok(contains(err.msg, "cannot move the server into") && contains(err.msg, "/cellbox.server"),
       "v2: the error names the server's leaf (%s)", err.msg);
    ok(exists("/sys/fs/cgroup/cellbox.server"), "v2: the leaf cellbox.server was made");
    populate("/sys/fs/cgroup/cellbox.server", v2_files);
    is_int(sb_cg_detect(&l, root, &err), -1, "v2: a base group without files fails");
    ok(contains(err.msg, "/sys/fs/cgroup/cellbox/cgroup.subtree_control"),
       "v2: the error names the base's subtree_control (%s)", err.msg);
    populate("/sys/fs/cgroup/cellbox", v2_files);
    put("/sys/fs/cgroup/cgroup.subtree_control", "");
    put("/sys/fs/cgroup/cellbox.server/cgroup.procs", "");

    is_int(sb_cg_detect(&l, root, &err), 0, "v2: detected once the kernel made the files");
    is_int(l.version, 2, "v2: version 2 (cgroup.controllers at /sys/fs/cgroup)");
    cb_autofree char *want = at("/sys/fs/cgroup/cellbox");
    is_str(l.base[0], want, "v2: base is /sys/fs/cgroup/cellbox");
    ok(!l.base[1] && !l.base[2], "v2: one tree, one base");
    cb_autofree char *procs = get("/sys/fs/cgroup/cellbox.server/cgroup.procs");
    is_str(procs, pid, "v2: the server moved itself into cellbox.server (no internal processes)");
    cb_autofree char *top = get("/sys/fs/cgroup/cgroup.subtree_control");
    is_str(top, "+memory +pids +cpu", "v2: memory, pids and cpu enabled in the server's group");
    cb_autofree char *sub = get("/sys/fs/cgroup/cellbox/cgroup.subtree_control");
    is_str(sub, "+memory +pids +cpu", "v2: and in cellbox, for the sandboxes' groups");
    ok(contains(l.desc, "v2 at ") && contains(l.desc, want), "v2: desc '%s'", l.desc);
    sb_cg_layout_clear(&l);
}

static void test_detect_v2_nested(void)
{
    const char *svc = "/sys/fs/cgroup/system.slice/cellbox.service";
    fake_v2_host("/system.slice/cellbox.service", "/", svc);
    char rel[256];
    snprintf(rel, sizeof rel, "%s/cellbox.server", svc);
    populate(rel, v2_files);
    snprintf(rel, sizeof rel, "%s/cellbox", svc);
    populate(rel, v2_files);
    sb_cg_layout l;
    sb_error err = {0};
    is_ok(sb_cg_detect(&l, root, &err), err, "nested v2: detected");
    cb_autofree char *want = at("/sys/fs/cgroup/system.slice/cellbox.service/cellbox");
    is_str(l.base[0], want, "nested v2: base below the server's own group");
    snprintf(rel, sizeof rel, "%s/cgroup.subtree_control", svc);
    cb_autofree char *sc = get(rel);
    is_str(sc, "+memory +pids +cpu", "nested v2: controllers enabled in the service's group");
    cb_autofree char *top = get("/sys/fs/cgroup/cgroup.subtree_control");
    is_str(top, "", "nested v2: the root group is left alone");
    snprintf(rel, sizeof rel, "%s/cellbox.server/cgroup.procs", svc);
    cb_autofree char *procs = get(rel);
    is_int(atoi(procs), getpid(), "nested v2: the server moved into the service's cellbox.server");
    sb_cg_layout_clear(&l);

    /* The same group without the controllers delegated to it */
    fake_v2_host("/system.slice/cellbox.service", "/", svc);
    snprintf(rel, sizeof rel, "%s/cgroup.controllers", svc);
    put(rel, "cpu io\n");
    is_int(sb_cg_detect(&l, root, &err), -1, "nested v2 without delegation fails");
    ok(contains(err.msg, "memory controller is not available") && contains(err.msg, "\"cpu io\"") &&
       contains(err.msg, "Delegate=yes"), "and says what is missing and what to do (%s)", err.msg);
    snprintf(rel, sizeof rel, "%s/cellbox.server", svc);
    ok(!exists(rel), "nothing was moved or made before that check");
    is_int(l.version, 0, "a failed detection leaves an empty layout");
}

static void test_detect_v2_container(void)
{
    /* A container without a cgroup namespace: /proc/self/cgroup shows the
     * host's path, the mount shows only the container's subtree. */
    fake_v2_host("/lxc/ct1/app", "/lxc/ct1", "/sys/fs/cgroup/app");
    populate("/sys/fs/cgroup/app/cellbox.server", v2_files);
    populate("/sys/fs/cgroup/app/cellbox", v2_files);
    sb_cg_layout l;
    sb_error err = {0};
    is_ok(sb_cg_detect(&l, root, &err), err, "v2 in a bind-mounted subtree: detected");
    cb_autofree char *want = at("/sys/fs/cgroup/app/cellbox");
    is_str(l.base[0], want, "the group's path is taken relative to the mount's root");
    sb_cg_layout_clear(&l);

    fake_v2_host("/elsewhere/app", "/lxc/ct1", "");
    is_int(sb_cg_detect(&l, root, &err), -1, "a group outside the mounted subtree fails");
    ok(contains(err.msg, "/elsewhere/app") && contains(err.msg, "mountinfo"),
       "and names the group and mountinfo (%s)", err.msg);

    fake_v2_host("/", "/", "");
    put("/proc/self/cgroup", "4:memory:/\n");
    is_int(sb_cg_detect(&l, root, &err), -1, "v2 without a 0:: line fails");
    ok(contains(err.msg, "0::"), "and says so (%s)", err.msg);
}

static void test_detect_hybrid(void)
{
    fake_hybrid_host(true, true);
    sb_cg_layout l;
    sb_error err = {0};
    is_ok(sb_cg_detect(&l, root, &err), err, "hybrid: detected");
    is_int(l.version, 1, "hybrid: v1 (the v2 tree at unified/ has no controllers)");
    cb_autofree char *mem = at("/sys/fs/cgroup/memory/cellbox");
    cb_autofree char *pids = at("/sys/fs/cgroup/pids/user.slice/user-1000.slice/cellbox");
    cb_autofree char *cpu = at("/sys/fs/cgroup/cpu,cpuacct/user.slice/cellbox");
    is_str(l.base[0], mem, "hybrid: memory base (container mount from /docker/abc)");
    is_str(l.base[1], pids, "hybrid: pids base below the server's pids group");
    is_str(l.base[2], cpu, "hybrid: cpu base in the cpu,cpuacct hierarchy, not cpuset");
    cb_autofree char *frz = at("/sys/fs/cgroup/freezer/frz/cellbox");
    is_str(l.base[SB_CG_FREEZER], frz, "hybrid: freezer base below the server's freezer group");
    ok(exists("/sys/fs/cgroup/freezer/frz/cellbox"), "hybrid: the freezer's cellbox group was made");
    ok(sb_cg_can_freeze(&l), "hybrid with a freezer: can freeze");
    ok(exists("/sys/fs/cgroup/memory/cellbox") && exists("/sys/fs/cgroup/cpu,cpuacct/user.slice/cellbox"),
       "hybrid: the cellbox groups were made");
    ok(!exists("/sys/fs/cgroup/cpuset/wrong/cellbox") && !exists("/sys/fs/cgroup/unified/cellbox"),
       "hybrid: nothing made in cpuset or in the v2 tree");
    cb_autofree char *procs = get("/sys/fs/cgroup/memory/cgroup.procs");
    is_str(procs, "", "hybrid: the server does not move itself");
    ok(contains(l.desc, "v1/hybrid") && contains(l.desc, pids) && contains(l.desc, frz),
       "hybrid: desc names the bases");
    sb_cg_layout_clear(&l);

    /* the freezer is optional: sandboxes run, pause is refused */
    fake_hybrid_host(true, false);
    is_ok(sb_cg_detect(&l, root, &err), err, "hybrid without a freezer: detected");
    ok(!l.base[SB_CG_FREEZER] && !sb_cg_can_freeze(&l), "hybrid without a freezer: cannot freeze");
    ok(contains(l.desc, "no freezer"), "and desc says so (%s)", l.desc);
    sb_cgroup nf;
    is_int(sb_cg_create(&l, "box-nf", &nf, &err), 0, "hybrid without a freezer: create");
    ok(nf.dir[0] && nf.dir[1] && nf.dir[2] && !nf.dir[SB_CG_FREEZER], "three groups, no freezer group");
    err.code = SB_OK;
    is_int(sb_cg_freeze(&l, &nf, true, 10, &err), -1, "freezing fails");
    ok(err.code == SB_E_PAUSE_NOT_SUPPORTED && contains(err.msg, "freezer"),
       "with PAUSE_NOT_SUPPORTED naming the freezer (%s)", err.msg);
    sb_cg_destroy(&nf);
    ok(!exists("/sys/fs/cgroup/memory/cellbox/box-nf"), "and its groups are removed");
    sb_cg_layout_clear(&l);

    fake_hybrid_host(false, false);
    is_int(sb_cg_detect(&l, root, &err), -1, "v1 without a pids hierarchy fails");
    ok(contains(err.msg, "no pids hierarchy"), "and names it (%s)", err.msg);
    ok(!l.base[0], "the bases made so far are freed");
}

/* ---- limits, attach, destroy ---------------------------------------------- */

static bool detect_v2_fake(sb_cg_layout *l)
{
    fake_v2_host("/", "/", "");
    populate("/sys/fs/cgroup/cellbox.server", v2_files);
    populate("/sys/fs/cgroup/cellbox", v2_files);
    sb_error err = {0};
    return sb_cg_detect(l, root, &err) == 0;
}

static void test_v2_groups(void)
{
    sb_cg_layout l;
    if (!ok(detect_v2_fake(&l), "v2 groups: fake host detected"))
        return;
    sb_cgroup cg;
    sb_error err = {0};
    is_int(sb_cg_create(&l, "box-1", &cg, &err), 0, "v2 create");
    ok(exists("/sys/fs/cgroup/cellbox/box-1") && !cg.dir[1] && !cg.dir[2], "v2: one group made");
    populate("/sys/fs/cgroup/cellbox/box-1", v2_files);

    sb_limits lite = {256, 500, 256, 64};
    is_ok(sb_cg_set_limits(&l, &cg, &lite, &err), err, "v2 limits");
    cb_autofree char *mem = get("/sys/fs/cgroup/cellbox/box-1/memory.max");
    cb_autofree char *swap = get("/sys/fs/cgroup/cellbox/box-1/memory.swap.max");
    cb_autofree char *pids = get("/sys/fs/cgroup/cellbox/box-1/pids.max");
    cb_autofree char *cpu = get("/sys/fs/cgroup/cellbox/box-1/cpu.max");
    is_str(mem, "268435456", "memory.max: 256 MB in bytes");
    is_str(swap, "0", "memory.swap.max: no swap");
    is_str(pids, "256", "pids.max");
    is_str(cpu, "50000 100000", "cpu.max: half a CPU is 50 ms per 100 ms");
    ok(!exists("/sys/fs/cgroup/cellbox/box-1/memory.limit_in_bytes") &&
       !exists("/sys/fs/cgroup/cellbox/box-1/cpu.cfs_quota_us"), "no v1 files on v2");

    sb_limits big = {1u << 20, 256000, 1u << 20, 1};
    is_int(sb_cg_set_limits(&l, &cg, &big, &err), 0, "v2 limits at the API's maximum");
    cb_autofree char *mem2 = get("/sys/fs/cgroup/cellbox/box-1/memory.max");
    cb_autofree char *cpu2 = get("/sys/fs/cgroup/cellbox/box-1/cpu.max");
    cb_autofree char *pids2 = get("/sys/fs/cgroup/cellbox/box-1/pids.max");
    is_str(mem2, "1099511627776", "memory.max: 1 TiB does not overflow");
    is_str(cpu2, "25600000 100000", "cpu.max: 256 CPUs does not overflow");
    is_str(pids2, "1048576", "pids.max: 1048576");
    sb_limits small = {32, 50, 8, 1};
    sb_cg_set_limits(&l, &cg, &small, &err);
    cb_autofree char *cpu3 = get("/sys/fs/cgroup/cellbox/box-1/cpu.max");
    cb_autofree char *mem3 = get("/sys/fs/cgroup/cellbox/box-1/memory.max");
    is_str(cpu3, "5000 100000", "cpu.max: 0.05 CPU is 5 ms per 100 ms");
    is_str(mem3, "33554432", "memory.max: 32 MB");

    cb_autofree char *sp = at("/sys/fs/cgroup/cellbox/box-1/memory.swap.max");
    remove(sp);
    is_int(sb_cg_set_limits(&l, &cg, &lite, &err), 0, "without swap accounting the limits still apply");
    cb_autofree char *mp = at("/sys/fs/cgroup/cellbox/box-1/memory.max");
    remove(mp);
    is_int(sb_cg_set_limits(&l, &cg, &lite, &err), -1, "without memory.max the limits fail");
    ok(contains(err.msg, "box-1/memory.max = 268435456"), "and the error names file and value (%s)",
       err.msg);

    is_int(sb_cg_attach(&cg, 4242, &err), 0, "v2 attach");
    cb_autofree char *procs = get("/sys/fs/cgroup/cellbox/box-1/cgroup.procs");
    is_str(procs, "4242", "v2 attach writes the pid to cgroup.procs");

    put("/sys/fs/cgroup/cellbox/box-1/memory.current", "1572864\n");
    is_int(sb_cg_memory(&cg, &l), 1572864, "v2 memory use from memory.current");

    /* freezing: the kernel reports the end in cgroup.events */
    ok(sb_cg_can_freeze(&l), "v2 can always freeze");
    put("/sys/fs/cgroup/cellbox/box-1/cgroup.events", "populated 1\nfrozen 1\n");
    is_ok(sb_cg_freeze(&l, &cg, true, 100, &err), err, "v2 freeze once cgroup.events says frozen 1");
    cb_autofree char *fz = get("/sys/fs/cgroup/cellbox/box-1/cgroup.freeze");
    is_str(fz, "1", "v2 freeze writes 1 to cgroup.freeze");
    ok(!exists("/sys/fs/cgroup/cellbox/box-1/freezer.state"), "and no v1 freezer.state");
    is_int(sb_cg_freeze(&l, &cg, false, 20, &err), -1, "v2 thaw waits for frozen 0, in vain here");
    ok(contains(err.msg, "did not thaw"), "and says so (%s)", err.msg);
    put("/sys/fs/cgroup/cellbox/box-1/cgroup.events", "populated 1\nfrozen 0\n");
    is_ok(sb_cg_freeze(&l, &cg, false, 100, &err), err, "v2 thaw once cgroup.events says frozen 0");
    cb_autofree char *th = get("/sys/fs/cgroup/cellbox/box-1/cgroup.freeze");
    is_str(th, "0", "v2 thaw writes 0 to cgroup.freeze");
    err.code = SB_OK;
    is_int(sb_cg_freeze(&l, &cg, true, 20, &err), -1, "v2 freeze that never completes fails");
    cb_autofree char *undone = get("/sys/fs/cgroup/cellbox/box-1/cgroup.freeze");
    ok(err.code == SB_E_CONTAINER_UNAVAILABLE && contains(err.msg, "did not freeze") &&
       contains(err.msg, "thawed again"), "with CONTAINER_UNAVAILABLE (%s)", err.msg);
    is_str(undone, "0", "and the group is thawed again");

    sb_cg_destroy(&cg);
    cb_autofree char *kill = get("/sys/fs/cgroup/cellbox/box-1/cgroup.kill");
    is_str(kill, "1", "v2 destroy writes 1 to cgroup.kill");
    ok(!cg.dir[0], "destroy forgets the group");
    /* (the fake group keeps its files, so only an empty one can go) */
    sb_cgroup empty;
    sb_cg_create(&l, "box-4", &empty, &err);
    sb_cg_destroy(&empty);
    ok(!exists("/sys/fs/cgroup/cellbox/box-4"), "destroy removes the group");

    /* groups left by servers that are gone: a SIGKILLed server's pool-<pid>-<n> */
    cb_autofree char *me = cb_printf_new("/sys/fs/cgroup/cellbox/pool-%d-0", (int)getpid());
    const char *keep[] = {"/sys/fs/cgroup/cellbox/pool-4000001-0", me,
                          "/sys/fs/cgroup/cellbox/box-1", "/sys/fs/cgroup/cellbox/pool-x-1", NULL};
    const char *gone[] = {"/sys/fs/cgroup/cellbox/pool-4000002-0",
                          "/sys/fs/cgroup/cellbox/pool-4000002-1",
                          "/sys/fs/cgroup/cellbox/pool-4000003-0", NULL};
    for (const char **g = keep; *g; g++)
        mkdir_at(*g);
    for (const char **g = gone; *g; g++)
        mkdir_at(*g);
    /* 4000001 is a running server, 4000003 a pid reused by something else,
     * 4000002 no process at all; our own pid is a server here too */
    static const char server_cmd[] = "/usr/bin/cellbox\0serve\0--listen\0";
    cb_autofree char *own_cmd = cb_printf_new("/proc/%d/cmdline", (int)getpid());
    put_bytes("/proc/4000001/cmdline", server_cmd, sizeof server_cmd - 1);
    put_bytes(own_cmd, server_cmd, sizeof server_cmd - 1);
    put("/proc/4000003/cmdline", "bash");
    is_int(sb_cg_sweep(&l, root), 3, "sweep removes the three stale groups");
    bool all_gone = true, all_kept = true;
    for (const char **g = gone; *g; g++)
        all_gone &= !exists(*g);
    for (const char **g = keep; *g; g++)
        all_kept &= exists(*g);
    ok(all_gone, "groups of dead servers and of reused pids are gone");
    ok(all_kept, "groups of live servers and other names are kept");
    sb_cg_layout_clear(&l);
}

static void test_v1_groups(void)
{
    fake_hybrid_host(true, true);
    sb_cg_layout l;
    sb_error err = {0};
    if (!ok(sb_cg_detect(&l, root, &err) == 0, "v1 groups: fake host detected"))
        return;
    const char *mem = "/sys/fs/cgroup/memory/cellbox/box-1";
    const char *pids = "/sys/fs/cgroup/pids/user.slice/user-1000.slice/cellbox/box-1";
    const char *cpu = "/sys/fs/cgroup/cpu,cpuacct/user.slice/cellbox/box-1";
    const char *frz = "/sys/fs/cgroup/freezer/frz/cellbox/box-1";
    sb_cgroup cg;
    is_int(sb_cg_create(&l, "box-1", &cg, &err), 0, "v1 create");
    ok(exists(mem) && exists(pids) && exists(cpu) && exists(frz), "v1: one group per hierarchy, freezer too");
    populate(mem, v1_memory);
    populate(pids, v1_pids);
    populate(cpu, v1_cpu);
    populate(frz, v1_freezer);

    sb_limits lite = {256, 500, 256, 64};
    is_ok(sb_cg_set_limits(&l, &cg, &lite, &err), err, "v1 limits");
    char rel[256];
#define V1_FILE(dir, file) (snprintf(rel, sizeof rel, "%s/%s", dir, file), get(rel))
    cb_autofree char *lim = V1_FILE(mem, "memory.limit_in_bytes");
    cb_autofree char *memsw = V1_FILE(mem, "memory.memsw.limit_in_bytes");
    cb_autofree char *pmax = V1_FILE(pids, "pids.max");
    cb_autofree char *period = V1_FILE(cpu, "cpu.cfs_period_us");
    cb_autofree char *quota = V1_FILE(cpu, "cpu.cfs_quota_us");
    cb_autofree char *v2mem = V1_FILE(mem, "memory.max");
    cb_autofree char *v2cpu = V1_FILE(cpu, "cpu.max");
    is_str(lim, "268435456", "memory.limit_in_bytes: 256 MB in bytes");
    is_str(memsw, "268435456", "memory.memsw.limit_in_bytes: the same (no swap on top)");
    is_str(pmax, "256", "pids.max in the pids hierarchy");
    is_str(period, "100000", "cpu.cfs_period_us: 100 ms");
    is_str(quota, "50000", "cpu.cfs_quota_us: half of it");
    ok(strcmp(v2mem, "(absent)") == 0 && strcmp(v2cpu, "(absent)") == 0, "no v2 files on v1");

    /* without swap accounting the kernel has no memsw files */
    snprintf(rel, sizeof rel, "%s%s/memory.memsw.limit_in_bytes", root, mem);
    remove(rel);
    sb_limits std = {512, 1000, 512, 128};
    is_ok(sb_cg_set_limits(&l, &cg, &std, &err), err, "v1 limits without memsw");
    cb_autofree char *lim2 = V1_FILE(mem, "memory.limit_in_bytes");
    cb_autofree char *quota2 = V1_FILE(cpu, "cpu.cfs_quota_us");
    cb_autofree char *memsw2 = V1_FILE(mem, "memory.memsw.limit_in_bytes");
    is_str(lim2, "536870912", "memory.limit_in_bytes: 512 MB");
    is_str(quota2, "100000", "cpu.cfs_quota_us: one CPU");
    is_str(memsw2, "(absent)", "memsw is not created");

    is_int(sb_cg_attach(&cg, 4242, &err), 0, "v1 attach");
    cb_autofree char *p0 = V1_FILE(mem, "cgroup.procs");
    cb_autofree char *p1 = V1_FILE(pids, "cgroup.procs");
    cb_autofree char *p2 = V1_FILE(cpu, "cgroup.procs");
    cb_autofree char *p3 = V1_FILE(frz, "cgroup.procs");
    ok(!strcmp(p0, "4242") && !strcmp(p1, "4242") && !strcmp(p2, "4242") && !strcmp(p3, "4242"),
       "v1 attach writes the pid in every hierarchy, the freezer's too");
    snprintf(rel, sizeof rel, "%s/memory.usage_in_bytes", mem);
    put(rel, "2097152\n");
    is_int(sb_cg_memory(&cg, &l), 2097152, "v1 memory use from memory.usage_in_bytes");

    /* freezing: the fake freezer.state reads back what was written, as the
     * kernel's does once every task is frozen */
    is_ok(sb_cg_freeze(&l, &cg, true, 100, &err), err, "v1 freeze");
    cb_autofree char *st1 = V1_FILE(frz, "freezer.state");
    is_str(st1, "FROZEN", "v1 freeze writes FROZEN to freezer.state");
    cb_autofree char *v2f = V1_FILE(mem, "cgroup.freeze");
    is_str(v2f, "(absent)", "and no v2 cgroup.freeze");
    is_ok(sb_cg_freeze(&l, &cg, false, 100, &err), err, "v1 thaw");
    cb_autofree char *st2 = V1_FILE(frz, "freezer.state");
    is_str(st2, "THAWED", "v1 thaw writes THAWED");
    sb_cg_freeze(&l, &cg, true, 100, &err);

    sb_cg_destroy(&cg);
    cb_autofree char *kill = get("/sys/fs/cgroup/memory/cellbox/box-1/cgroup.kill");
    is_str(kill, "(absent)", "v1 destroy writes no cgroup.kill (v1 has none)");
    cb_autofree char *st3 = get("/sys/fs/cgroup/freezer/frz/cellbox/box-1/freezer.state");
    is_str(st3, "THAWED", "v1 destroy thaws a frozen group first (its tasks could not die)");
    ok(!cg.dir[0] && !cg.dir[1] && !cg.dir[2] && !cg.dir[3], "v1 destroy forgets the groups");
    sb_cgroup empty;
    sb_cg_create(&l, "box-3", &empty, &err);
    sb_cg_destroy(&empty);
    ok(!exists("/sys/fs/cgroup/memory/cellbox/box-3") &&
       !exists("/sys/fs/cgroup/cpu,cpuacct/user.slice/cellbox/box-3") &&
       !exists("/sys/fs/cgroup/freezer/frz/cellbox/box-3"), "v1 destroy removes the groups");

    /* a stale group of a dead server, left frozen (a paused sandbox): the
     * sweep thaws it, in the freezer hierarchy too */
    const char *stale = "/sys/fs/cgroup/freezer/frz/cellbox/pool-4000002-0";
    mkdir_at(stale);
    snprintf(rel, sizeof rel, "%s/freezer.state", stale);
    put(rel, "FROZEN\n");
    sb_cg_sweep(&l, root);
    cb_autofree char *st4 = get(rel);
    is_str(st4, "THAWED", "sweep thaws a frozen stale group before removing it");
    cb_autofree char *st4_path = at(rel);
    remove(st4_path);
    sb_cg_sweep(&l, root);
    ok(!exists(stale), "and removes it from the freezer hierarchy");
#undef V1_FILE
    sb_cg_layout_clear(&l);
}

/* ---- this machine's cgroup2 tree ----------------------------------------------- */

/* The folder of our own group in the real v2 tree, or NULL. */
static char *real_v2_group(void)
{
    cb_autofree char *mi = cb_read_file("/proc/self/mountinfo", NULL);
    cb_autofree char *cg = cb_read_file("/proc/self/cgroup", NULL);
    char *own = cg ? strstr(cg, "0::") : NULL;
    if (!mi || !own || (own != cg && own[-1] != '\n'))
        return NULL;
    own += 3;
    own[strcspn(own, "\n")] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(mi, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char mroot[256], mpoint[256];
        if (strstr(line, " - cgroup2 ") && sscanf(line, "%*s %*s %*s %255s %255s", mroot, mpoint) == 2 &&
            strcmp(mroot, "/") == 0)
            return cb_printf_new("%s%s", mpoint, strcmp(own, "/") ? own : "");
    }
    return NULL;
}

static void test_real_v2(void)
{
    cb_autofree char *group = geteuid() == 0 ? real_v2_group() : NULL;
    if (!group) {
        printf("ok %d - # SKIP real cgroup2: needs root and a cgroup2 mount\n", ++tap_n);
        return;
    }
    sb_cg_layout l = {.version = 2};
    l.base[0] = cb_printf_new("%s/cellbox-test-%d", group, (int)getpid());
    if (mkdir(l.base[0], 0755) < 0) {
        printf("ok %d - # SKIP real cgroup2: mkdir %s: %s\n", ++tap_n, l.base[0], strerror(errno));
        sb_cg_layout_clear(&l);
        return;
    }
    sb_cgroup cg;
    sb_error err = {0};
    is_int(sb_cg_create(&l, "box", &cg, &err), 0, "real v2: create under %s", l.base[0]);
    cb_autofree char *kill_file = cb_printf_new("%s/cgroup.kill", cg.dir[0]);
    struct stat st;
    if (stat(kill_file, &st) < 0) {
        printf("ok %d - # SKIP real cgroup2: no cgroup.kill (kernel before 5.14)\n", ++tap_n);
        sb_cg_destroy(&cg);
        rmdir(l.base[0]);
        sb_cg_layout_clear(&l);
        return;
    }
    cb_autofree char *mem_max = cb_printf_new("%s/memory.max", cg.dir[0]);
    if (stat(mem_max, &st) < 0) {
        sb_limits lite = {256, 500, 256, 64};
        ok(sb_cg_set_limits(&l, &cg, &lite, &err) < 0 && contains(err.msg, "memory.max"),
           "real v2 without the memory controller: limits fail naming memory.max (%s)", err.msg);
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    is_ok(sb_cg_attach(&cg, child, &err), err, "real v2: attach a child");
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)child);
    cb_autofree char *before = cb_read_file(path, NULL);
    ok(contains(before, "/box\n"), "real v2: the child is in the group (/proc/PID/cgroup)");
    cb_autofree char *freeze_file = cb_printf_new("%s/cgroup.freeze", cg.dir[0]);
    if (stat(freeze_file, &st) == 0) {
        is_ok(sb_cg_freeze(&l, &cg, true, 5000, &err), err, "real v2: freeze");
        cb_autofree char *events_path = cb_printf_new("%s/cgroup.events", cg.dir[0]);
        cb_autofree char *ev = cb_read_file(events_path, NULL);
        ok(contains(ev, "frozen 1"), "real v2: cgroup.events says frozen 1");
        is_ok(sb_cg_freeze(&l, &cg, false, 5000, &err), err, "real v2: thaw");
        sb_cg_freeze(&l, &cg, true, 5000, &err);  /* destroy must kill it frozen */
    } else {
        printf("ok %d - # SKIP real cgroup2: no cgroup.freeze (kernel before 5.2)\n", ++tap_n);
    }
    /* why a sandbox keeps its pooled agent's group name */
    cb_autofree char *to = cb_printf_new("%s/renamed", l.base[0]);
    ok(rename(cg.dir[0], to) < 0 && errno == EPERM, "real v2: the kernel refuses to rename a group");
    cb_autofree char *dir = cb_strdup(cg.dir[0]);
    sb_cg_destroy(&cg);
    int status = 0;
    pid_t w = waitpid(child, &status, WNOHANG);
    for (int i = 0; i < 200 && w == 0; i++) {
        usleep(5000);
        w = waitpid(child, &status, WNOHANG);
    }
    ok(w == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
       "real v2: destroy killed the (frozen) child with cgroup.kill");
    if (w != child) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    ok(stat(dir, &st) < 0 && errno == ENOENT, "real v2: destroy removed the group");
    rmdir(dir);
    is_int(rmdir(l.base[0]), 0, "real v2: the test's parent group is removed");
    sb_cg_layout_clear(&l);
}

/* ---- this machine's v1 freezer hierarchy ------------------------------------- */

/* Bytes waiting in a non-blocking pipe (read and dropped). */
static size_t drain(int fd)
{
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        n += (size_t)r;
    return n;
}

static void test_real_v1_freezer(void)
{
    const char *mnt = "/sys/fs/cgroup/freezer";
    cb_autofree char *tasks = cb_printf_new("%s/tasks", mnt);
    struct stat st;
    if (geteuid() != 0 || stat(tasks, &st) < 0) {
        printf("ok %d - # SKIP real v1 freezer: needs root and %s mounted\n", ++tap_n, mnt);
        return;
    }
    sb_cg_layout l = {.version = 1};
    l.base[SB_CG_FREEZER] = cb_printf_new("%s/cellbox-test-%d", mnt, (int)getpid());
    if (mkdir(l.base[SB_CG_FREEZER], 0755) < 0) {
        printf("ok %d - # SKIP real v1 freezer: mkdir %s: %s\n", ++tap_n, l.base[SB_CG_FREEZER],
               strerror(errno));
        sb_cg_layout_clear(&l);
        return;
    }
    sb_cgroup cg;
    sb_error err = {0};
    is_int(sb_cg_create(&l, "box", &cg, &err), 0, "real v1: create a freezer group");
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        printf("Bail out! pipe: %s\n", strerror(errno)), exit(1);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (;;) {  /* a byte every millisecond while it runs */
            if (write(p[1], "x", 1) < 0 && errno != EAGAIN)
                _exit(1);
            usleep(1000);
        }
    }
    close(p[1]);
    is_ok(sb_cg_attach(&cg, child, &err), err, "real v1: attach a child");
    usleep(20000);
    ok(drain(p[0]) > 0, "real v1: the child runs (writes to its pipe)");
    is_ok(sb_cg_freeze(&l, &cg, true, 5000, &err), err, "real v1: freeze");
    cb_autofree char *state_path = cb_printf_new("%s/freezer.state", cg.dir[SB_CG_FREEZER]);
    cb_autofree char *state = cb_read_file(state_path, NULL);
    ok(contains(state, "FROZEN"), "real v1: freezer.state reads FROZEN");
    drain(p[0]);  /* what it wrote before it froze */
    usleep(100000);
    is_int((int)drain(p[0]), 0, "real v1: a frozen child writes nothing in 100 ms");
    kill(child, SIGKILL);
    usleep(100000);
    is_int(waitpid(child, NULL, WNOHANG), 0, "real v1: a frozen child survives SIGKILL until thawed");
    is_ok(sb_cg_freeze(&l, &cg, false, 5000, &err), err, "real v1: thaw");
    int status = 0;
    pid_t w = waitpid(child, &status, 0);
    ok(w == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
       "real v1: thawed, the killed child dies");
    /* a frozen group with a live child: destroy thaws, the child (killed
     * by us, as box_teardown kills pid 1) dies, the group goes */
    child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    sb_cg_attach(&cg, child, &err);
    sb_cg_freeze(&l, &cg, true, 5000, &err);
    kill(child, SIGKILL);
    cb_autofree char *dir = cb_strdup(cg.dir[SB_CG_FREEZER]);
    sb_cg_destroy(&cg);
    w = waitpid(child, &status, WNOHANG);
    for (int i = 0; i < 400 && w == 0; i++) {
        usleep(5000);
        w = waitpid(child, &status, WNOHANG);
    }
    ok(w == child && WIFSIGNALED(status), "real v1: destroy thawed the frozen, killed child");
    if (w != child) {  /* never leave a frozen child behind */
        cb_autofree char *fs = cb_printf_new("%s/freezer.state", dir);
        int fd = open(fs, O_WRONLY);
        if (fd >= 0 && write(fd, "THAWED", 6) < 0)
            printf("# thaw %s: %s\n", fs, strerror(errno));
        if (fd >= 0)
            close(fd);
        waitpid(child, NULL, 0);
    }
    ok(stat(dir, &st) < 0 && errno == ENOENT, "real v1: destroy removed the frozen group");
    close(p[0]);
    is_int(rmdir(l.base[SB_CG_FREEZER]), 0, "real v1: the test's parent group is removed");
    sb_cg_layout_clear(&l);
}

int main(void)
{
    test_detect_v2_root();
    test_detect_v2_nested();
    test_detect_v2_container();
    test_detect_hybrid();
    test_v2_groups();
    test_v1_groups();
    test_real_v2();
    test_real_v1_freezer();
    if (root[0])
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return tap_done();
}
