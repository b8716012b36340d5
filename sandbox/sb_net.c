/* sandbox/sb_net.c: egress networking and egress policy; see sb_net.h.
 *
 * Plumbing is done with the standard tools (ip from iproute2, nft from
 * nftables), run without a shell through posix_spawn: this happens only for
 * sandboxes that ask for egress, at start, and the tools say clearly what
 * went wrong. Inside the sandbox's network namespace the commands run via
 * nsenter --net=/proc/PID/ns/net. The host rules live in one nftables
 * table, "ip cellbox", created on first use and deleted at shutdown:
 *   postrouting: masquerade 10.231.0.0/16 leaving by a non-cellbox interface
 *   forward:     drop sandbox -> sandbox; then each sandbox's traffic goes
 *                (map "egress", keyed by its host-side veth cbhN) to its own
 *                chain egN, which holds its policy; a cbh interface with no
 *                entry is refused (fail closed)
 *   refuse:      TCP gets a reset, anything else ICMP admin-prohibited, so
 *                a client fails at once instead of waiting for a timeout
 *   input:       drop what sandboxes send to the host itself (only replies
 *                to connections the host opened pass); allowOut cannot
 *                open the host or other sandboxes
 * A sandbox's chain is made when its network is set up (every start, so a
 * server restart re-applies it) and removed with it. Its rules are data
 * (chain_rules): sets of addresses built from the policy, the host's
 * nameservers and the default-denied ranges, merged into disjoint intervals
 * so nft never sees overlapping elements.
 */
#include "config.h"
#include "sandbox/sb_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_box.h"
#include "sandbox/sb_util.h"

#define NET_MAX 16384


static pthread_mutex_t net_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char used[NET_MAX];
static bool rules_ready;
static bool private_allowed;  /* --egress-private allow */

static const char NFT_RULES[] =
    "table ip cellbox {\n"
    "  chain postrouting {\n"
    "    type nat hook postrouting priority srcnat; policy accept;\n"
    "    ip saddr 10.231.0.0/16 oifname != \"cbh*\" masquerade\n"
    "  }\n"
    "  map egress {\n"
    "    type ifname : verdict;\n"
    "  }\n"
    "  chain refuse {\n"
    "    meta l4proto tcp reject with tcp reset\n"
    "    reject with icmp type admin-prohibited\n"
    "  }\n"
    "  chain forward {\n"
    "    type filter hook forward priority filter; policy accept;\n"
    "    iifname \"cbh*\" oifname \"cbh*\" drop\n"
    "    iifname vmap @egress\n"
    "    iifname \"cbh*\" goto refuse\n"
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

/* ---- egress policy: options ---------------------------------------------- */

void sb_net_set_private_allowed(bool allowed)
{
    private_allowed = allowed;
}

/* Parses one allowOut/denyOut entry: "a.b.c.d" (a /32) or "a.b.c.d/len".
 * Strict: dotted quad as inet_pton reads it (no leading zeros, no short
 * forms), len 0..32 in plain decimal, no host bits. NULL, or why not
 * (with host bits set, *out still holds the network). */
static const char *cidr_parse(const char *s, sb_net_cidr *out)
{
    char a[INET_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (strchr(s, ':'))
        return "not an IPv4 address (egress is IPv4 only)";
    if (alen == 0 || alen >= sizeof a)
        return "not an IPv4 address or CIDR";
    memcpy(a, s, alen);
    a[alen] = '\0';
    struct in_addr in;
    if (inet_pton(AF_INET, a, &in) != 1)
        return "not an IPv4 address or CIDR";
    unsigned len = 32;
    if (slash) {
        const char *l = slash + 1;
        size_t n = strlen(l);
        if (n == 0 || n > 2 || strspn(l, "0123456789") != n || (n == 2 && l[0] == '0'))
            return "the prefix length must be 0..32";
        len = (unsigned)atoi(l);
        if (len > 32)
            return "the prefix length must be 0..32";
    }
    uint32_t addr = ntohl(in.s_addr);
    uint32_t mask = len ? 0xffffffffu << (32 - len) : 0;
    out->addr = addr & mask;
    out->len = (uint8_t)len;
    return addr & ~mask ? "has host bits set" : NULL;
}

static void cidr_str(const sb_net_cidr *c, char *out, size_t cap)
{
    uint32_t a = c->addr;
    int n = snprintf(out, cap, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
    if (c->len != 32 && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, "/%u", c->len);
}

static int list_parse(const cJSON *j, const char *key, sb_net_cidr *out, unsigned *n,
                      sb_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "%s must be an array of IPv4 addresses or CIDRs, like [\"10.1.2.0/24\", "
                       "\"8.8.8.8\"]", key), -1;
    if (cJSON_GetArraySize(arr) > SB_NET_POLICY_MAX)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "%s has more than %d entries", key,
                       SB_NET_POLICY_MAX), -1;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e))
            return sb_fail(err, SB_E_VALIDATION_FAILED,
                           "%s[%d] must be a string (an IPv4 address or CIDR)", key, i), -1;
        const char *why = cidr_parse(e->valuestring, &out[*n]);
        char net[24] = "";
        if (why && strcmp(why, "has host bits set") == 0)
            cidr_str(&out[*n], net, sizeof net);
        if (why)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "%s[%d] '%.64s': %s%s%s%s", key, i,
                           e->valuestring, why, *net ? " (the network is " : "", net,
                           *net ? ")" : ""), -1;
        (*n)++, i++;
    }
    return 0;
}

int sb_net_policy_parse(const cJSON *j, bool egress, sb_net_policy *p, sb_error *err)
{
    memset(p, 0, sizeof *p);
    if (list_parse(j, "allowOut", p->allow, &p->n_allow, err) < 0 ||
        list_parse(j, "denyOut", p->deny, &p->n_deny, err) < 0)
        return -1;
    if (!egress && (p->n_allow || p->n_deny))
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "allowOut and denyOut need network \"egress\": with network \"none\" "
                       "a sandbox has no way out to allow or deny"), -1;
    return 0;
}

static cJSON *list_json(const sb_net_cidr *c, unsigned n)
{
    cJSON *arr = cJSON_CreateArray();
    for (unsigned i = 0; i < n; i++) {
        char s[24];
        cidr_str(&c[i], s, sizeof s);
        cJSON_AddItemToArray(arr, cJSON_CreateString(s));
    }
    return arr;
}

void sb_net_policy_json(const sb_net_policy *p, cJSON *o)
{
    cJSON_AddItemToObject(o, "allowOut", list_json(p->allow, p->n_allow));
    cJSON_AddItemToObject(o, "denyOut", list_json(p->deny, p->n_deny));
}

/* ---- egress policy: nftables rules ---------------------------------------- */

/* Refused to every egress sandbox unless its allowOut says otherwise. */
static const struct {
    const char *cidr;
    bool is_private;  /* permitted by --egress-private allow */
} default_denied[] = {
    {"0.0.0.0/8", false},       /* "this network" */
    {"127.0.0.0/8", false},     /* loopback (martian on the wire anyway) */
    {"169.254.0.0/16", false},  /* link-local: cloud metadata (169.254.169.254) */
    {"224.0.0.0/4", false},     /* multicast */
    {"240.0.0.0/4", false},     /* reserved, and the broadcast 255.255.255.255 */
    {"10.0.0.0/8", true},       /* private (RFC 1918) */
    {"172.16.0.0/12", true},
    {"192.168.0.0/16", true},
    {"100.64.0.0/10", true},    /* shared address space (carrier-grade NAT) */
};

#define NAMESERVERS_MAX 8

/* Sets of addresses a sandbox's chain matches. */
typedef struct addr_set {
    sb_net_cidr c[SB_NET_POLICY_MAX];
    unsigned n;
} addr_set;

typedef enum { SET_ALLOW, SET_DENY, SET_NAMESERVERS, SET_DEFAULTS, SET_N } set_kind;

/* A sandbox's chain egN, in order: the first rule that matches decides;
 * what none matches is accepted. A rule whose set is empty is left out. */
static const struct {
    set_kind set;
    const char *also;     /* more to match after "ip daddr SET" */
    const char *verdict;
} chain_rules[] = {
    {SET_ALLOW, "", "accept"},
    {SET_DENY, "", "goto refuse"},
    {SET_NAMESERVERS, " meta l4proto { tcp, udp } th dport 53", "accept"},
    {SET_DEFAULTS, "", "goto refuse"},
};

/* The host's IPv4 nameservers: what the sandbox's /etc/resolv.conf (the
 * host's, bound read-only) points to. */
static void nameservers(addr_set *s)
{
    cb_autofree char *text = cb_read_file("/etc/resolv.conf", NULL);
    if (!text)
        return;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && s->n < NAMESERVERS_MAX;
         line = strtok_r(NULL, "\n", &save)) {
        char word[16], addr[64];
        struct in_addr in;
        if (sscanf(line, " %15s %63s", word, addr) == 2 && strcmp(word, "nameserver") == 0 &&
            inet_pton(AF_INET, addr, &in) == 1)
            s->c[s->n++] = (sb_net_cidr){ntohl(in.s_addr), 32};
    }
}

static int range_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Appends s to buf as an nft anonymous set of disjoint intervals
 * ("{ 10.0.0.0-10.255.255.255, 8.8.8.8 }"): overlapping or adjacent
 * entries are merged, which nft requires of an interval set. */
static void set_text(cb_buf *buf, const addr_set *s)
{
    uint64_t r[SB_NET_POLICY_MAX][2];  /* [lo, hi] */
    for (unsigned i = 0; i < s->n; i++) {
        uint64_t size = 1ull << (32 - s->c[i].len);
        r[i][0] = s->c[i].addr;
        r[i][1] = s->c[i].addr + size - 1;
    }
    qsort(r, s->n, sizeof r[0], range_cmp);
    cb_buf_puts(buf, "{ ");
    bool first = true;
    for (unsigned i = 0; i < s->n;) {
        uint64_t lo = r[i][0], hi = r[i][1];
        for (i++; i < s->n && r[i][0] <= hi + 1; i++)
            if (r[i][1] > hi)
                hi = r[i][1];
        char a[24], b[24];
        cidr_str(&(sb_net_cidr){(uint32_t)lo, 32}, a, sizeof a);
        cidr_str(&(sb_net_cidr){(uint32_t)hi, 32}, b, sizeof b);
        cb_buf_printf(buf, "%s%s%s%s", first ? "" : ", ", a, lo == hi ? "" : "-", lo == hi ? "" : b);
        first = false;
    }
    cb_buf_puts(buf, " }");
}

/* The nft script that gives slot n (interface cbhN) its chain egN. */
static char *policy_script(int n, const sb_net_policy *p)
{
    static addr_set sets[SET_N];  /* big: not on the stack; net_mu held */
    memset(sets, 0, sizeof sets);
    memcpy(sets[SET_ALLOW].c, p->allow, p->n_allow * sizeof p->allow[0]);
    sets[SET_ALLOW].n = p->n_allow;
    memcpy(sets[SET_DENY].c, p->deny, p->n_deny * sizeof p->deny[0]);
    sets[SET_DENY].n = p->n_deny;
    nameservers(&sets[SET_NAMESERVERS]);
    for (size_t i = 0; i < CB_ARRAY_LEN(default_denied); i++)
        if (!(default_denied[i].is_private && private_allowed))
            cidr_parse(default_denied[i].cidr, &sets[SET_DEFAULTS].c[sets[SET_DEFAULTS].n++]);

    cb_buf buf = CB_BUF_INIT;
    cb_buf_printf(&buf, "add chain ip cellbox eg%d\nflush chain ip cellbox eg%d\n", n, n);
    for (size_t i = 0; i < CB_ARRAY_LEN(chain_rules); i++) {
        const addr_set *s = &sets[chain_rules[i].set];
        if (s->n == 0)
            continue;
        cb_buf_printf(&buf, "add rule ip cellbox eg%d ip daddr ", n);
        set_text(&buf, s);
        cb_buf_printf(&buf, "%s %s\n", chain_rules[i].also, chain_rules[i].verdict);
    }
    cb_buf_printf(&buf, "add rule ip cellbox eg%d accept\n", n);
    cb_buf_printf(&buf, "add element ip cellbox egress { \"cbh%d\" : goto eg%d }\n", n, n);
    return cb_buf_steal(&buf);
}

/* Removes slot n's policy (what is there of it). */
static void policy_remove(int n)
{
    char elem[64], chain[64];
    snprintf(elem, sizeof elem, "delete element ip cellbox egress { \"cbh%d\" }\n", n);
    snprintf(chain, sizeof chain, "flush chain ip cellbox eg%d\ndelete chain ip cellbox eg%d\n", n, n);
    char *load[] = {"nft", "-f", "-", NULL};
    sb_error ignore;
    run(load, elem, &ignore);   /* apart: either may be missing */
    run(load, chain, &ignore);
}

static int policy_apply(int n, const sb_net_policy *p, sb_error *err)
{
    pthread_mutex_lock(&net_mu);
    policy_remove(n);  /* left by a failed teardown */
    cb_autofree char *script = policy_script(n, p);
    char *load[] = {"nft", "-f", "-", NULL};
    int rc = run(load, script, err);
    pthread_mutex_unlock(&net_mu);
    return rc;
}

static void addr_of(int n, int host_side, char *out, size_t cap)
{
    unsigned base = (unsigned)n * 4;
    snprintf(out, cap, "10.231.%u.%u", base >> 8, (base & 255) + (host_side ? 1 : 2));
}

int sb_net_setup(struct sb_box *b, pid_t agent, sb_error *err)
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
    /* the policy first: no packet leaves before it is in place (and a cbh
     * interface without one is refused anyway) */
    if (policy_apply(n, &b->opts.net_policy, err) < 0) {
        sb_net_release_slot(n);
        return -1;
    }
    for (size_t i = 0; i < CB_ARRAY_LEN(steps); i++) {
        sb_error e = {0};
        if (run(steps[i], NULL, &e) < 0 && i > 0) {
            *err = e;
            char *del[] = {"ip", "link", "del", hname, NULL};
            run(del, NULL, &e);
            policy_remove(n);
            sb_net_release_slot(n);
            return -1;
        }
    }
    b->net_index = n;
    char kv[256];
    snprintf(kv, sizeof kv, "sandbox=%s address=%s gateway=%s allowOut=%u denyOut=%u", b->id,
             sand, host, b->opts.net_policy.n_allow, b->opts.net_policy.n_deny);
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

void sb_net_teardown(struct sb_box *b)
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
    policy_remove(b->net_index);
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

bool sb_net_address(const struct sb_box *b, char *out, size_t cap)
{
    if (b->net_index < 0)
        return false;
    addr_of(b->net_index, 0, out, cap);
    return true;
}
