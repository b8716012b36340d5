/* sandbox/sb_net.c: egress networking; see sb_net.h.
 *
 * Plumbing is done with the standard tools (ip from iproute2, nft from
 * nftables), run without a shell through posix_spawn: this happens only for
 * sandboxes that ask for egress, at start, and the tools say clearly what
 * went wrong. Inside the sandbox's network namespace the commands run via
 * nsenter --net=/proc/PID/ns/net. The host rules live in one nftables
 * table, "ip cellbox", created on first use and deleted at shutdown:
 *   postrouting: masquerade 10.231.0.0/16 leaving by a non-cellbox interface
 *   forward:     drop sandbox -> sandbox
 *   input:       drop what sandboxes send to the host itself (only replies
 *                to connections the host opened pass)
 */
#include "config.h"
#include "sandbox/sb_net.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_util.h"

#define NET_MAX 16384


static pthread_mutex_t net_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char used[NET_MAX];
static bool rules_ready;

static const char NFT_RULES[] =
    "table ip cellbox {\n"
    "  chain postrouting {\n"
    "    type nat hook postrouting priority srcnat; policy accept;\n"
    "    ip saddr 10.231.0.0/16 oifname != \"cbh*\" masquerade\n"
    "  }\n"
    "  chain forward {\n"
    "    type filter hook forward priority filter; policy accept;\n"
    "    iifname \"cbh*\" oifname \"cbh*\" drop\n"
    "  }\n"
    "  chain input {\n"
    "    type filter hook input priority filter; policy accept;\n"
    "    iifname \"cbh*\" ct state established,related accept\n"
    "    iifname \"cbh*\" drop\n"
    "  }\n"
    "}\n";

/* Runs a tool for network set-up (sb_run_tool). */
static int run(char *const argv[], const char *stdin_text, sb_error *err)
{
    return sb_run_tool(argv, stdin_text, "network setup", "iproute2 nftables util-linux", err);
}

static int ensure_rules(sb_error *err)
{
    if (rules_ready)
        return 0;
    cb_autoclose int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || cb_write_all(fd, "1", 1) < 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cannot enable ip_forward: %s",
                       strerror(errno)), -1;
    char *del[] = {"nft", "delete", "table", "ip", "cellbox", NULL};
    sb_error ignore;
    run(del, NULL, &ignore);  /* a table left by a crash */
    char *load[] = {"nft", "-f", "-", NULL};
    if (run(load, NFT_RULES, err) < 0)
        return -1;
    rules_ready = true;
    return 0;
}

static void addr_of(int n, int host_side, char *out, size_t cap)
{
    unsigned base = (unsigned)n * 4;
    snprintf(out, cap, "10.231.%u.%u", base >> 8, (base & 255) + (host_side ? 1 : 2));
}

int sb_net_setup(sb_box *b, pid_t agent, sb_error *err)
{
    pthread_mutex_lock(&net_mu);
    int n = -1;
    for (int i = 0; i < NET_MAX && n < 0; i++)
        if (!used[i])
            n = i;
    if (n >= 0)
        used[n] = 1;
    int rc = n < 0 ? sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "no free network slots"), -1
                   : ensure_rules(err);
    pthread_mutex_unlock(&net_mu);
    if (rc < 0) {
        if (n >= 0)
            sb_net_release_slot(n);
        return -1;
    }
    char host[32], sand[32], hname[16], sname[16], pidstr[16], host_cidr[40], sand_cidr[40], nsarg[64];
    addr_of(n, 1, host, sizeof host);
    addr_of(n, 0, sand, sizeof sand);
    snprintf(host_cidr, sizeof host_cidr, "%s/30", host);
    snprintf(sand_cidr, sizeof sand_cidr, "%s/30", sand);
    snprintf(hname, sizeof hname, "cbh%d", n);
    snprintf(sname, sizeof sname, "cbs%d", n);
    snprintf(pidstr, sizeof pidstr, "%d", (int)agent);
    snprintf(nsarg, sizeof nsarg, "--net=/proc/%d/ns/net", (int)agent);
    char *steps[][16] = {
        {"ip", "link", "del", hname, NULL},  /* leftover from a crash; may fail */
        {"ip", "link", "add", hname, "type", "veth", "peer", "name", sname, "netns", pidstr, NULL},
        {"ip", "addr", "add", host_cidr, "dev", hname, NULL},
        {"ip", "link", "set", hname, "up", NULL},
        {"nsenter", nsarg, "ip", "link", "set", sname, "name", "eth0", NULL},
        {"nsenter", nsarg, "ip", "addr", "add", sand_cidr, "dev", "eth0", NULL},
        {"nsenter", nsarg, "ip", "link", "set", "eth0", "up", NULL},
        {"nsenter", nsarg, "ip", "route", "add", "default", "via", host, NULL},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(steps); i++) {
        sb_error e = {0};
        if (run(steps[i], NULL, &e) < 0 && i > 0) {
            *err = e;
            char *del[] = {"ip", "link", "del", hname, NULL};
            run(del, NULL, &e);
            sb_net_release_slot(n);
            return -1;
        }
    }
    b->net_index = n;
    char kv[256];
    snprintf(kv, sizeof kv, "sandbox=%s address=%s gateway=%s", b->id, sand, host);
    cb_logkv(CB_LOG_INFO, "net", kv, "egress up");
    return 0;
}

void sb_net_release_slot(int n)
{
    pthread_mutex_lock(&net_mu);
    if (n >= 0 && n < NET_MAX)
        used[n] = 0;
    pthread_mutex_unlock(&net_mu);
}

void sb_net_teardown(sb_box *b)
{
    if (b->net_index < 0)
        return;
    /* The sandbox's namespace is gone with its agent, and with it the peer:
     * deleting our side is only needed if it somehow remains. */
    char hname[16];
    snprintf(hname, sizeof hname, "cbh%d", b->net_index);
    char *del[] = {"ip", "link", "del", hname, NULL};
    sb_error ignore;
    run(del, NULL, &ignore);
    sb_net_release_slot(b->net_index);
    b->net_index = -1;
}

void sb_net_shutdown(void)
{
    pthread_mutex_lock(&net_mu);
    if (rules_ready) {
        char *del[] = {"nft", "delete", "table", "ip", "cellbox", NULL};
        sb_error ignore;
        run(del, NULL, &ignore);
        rules_ready = false;
    }
    pthread_mutex_unlock(&net_mu);
}

bool sb_net_address(const sb_box *b, char *out, size_t cap)
{
    if (b->net_index < 0)
        return false;
    addr_of(b->net_index, 0, out, cap);
    return true;
}
