/* sandbox/sb_net.c: egress networking and egress policy; see sb_net.h.
 *
 * Plumbing is done with the standard tools (ip from iproute2, nft from
 * nftables), run without a shell through posix_spawn: this happens only for
 * sandboxes that ask for egress, at start, and the tools say clearly what
 * went wrong. Inside the sandbox's network namespace the commands run via
 * nsenter --net=/proc/PID/ns/net. The host rules live in two nftables
 * tables of the same shape, "ip cellbox" and (when the host has IPv6)
 * "ip6 cellbox", created on first use and deleted at shutdown:
 *   postrouting: masquerade 10.231.0.0/16 (fdce:11b0::/48) leaving by a
 *                non-cellbox interface
 *   forward:     drop sandbox -> sandbox; then each sandbox's traffic goes
 *                (map "egress", keyed by its host-side veth cbhN) to its own
 *                chain egN, which holds its policy; a cbh interface with no
 *                entry is refused (fail closed)
 *                A sandbox's chain also refuses its new connections while
 *                it has nf_conntrack_max / SB_HOST_SHARE tracked (per
 *                family): the host's connection table is one for all, and
 *                a full one drops every new connection of the host
 *   refuse:      TCP gets a reset, anything else ICMP (ICMPv6)
 *                admin-prohibited, so a client fails at once instead of
 *                waiting for a timeout
 *   input:       drop what sandboxes send to the host itself (only replies
 *                to connections the host opened pass, and for IPv6 the
 *                neighbour solicitations and advertisements the link needs:
 *                no router advertisement from a sandbox reaches the host);
 *                allowOut cannot open the host or other sandboxes. Without
 *                the ip6 table (IPv6 egress unavailable) the host's end of
 *                each veth has IPv6 disabled instead: no link-local address
 *                of the host is reachable
 * A sandbox's chains are made when its network is set up (every start, so a
 * server restart re-applies them) and removed with it. Their rules are data
 * (chain_rules): sets of addresses built from the policy, the host's
 * nameservers and the default-denied ranges, one set per address family,
 * merged into disjoint intervals so nft never sees overlapping elements.
 * The IPv6 chain also drops packets whose source is not the sandbox's own
 * address (every IPv6 packet that leaves is masqueraded).
 *
 * IPv6 forwarding: net.ipv6.conf.all.forwarding is turned on at the first
 * egress start (as net.ipv4.ip_forward) and left on. With forwarding on the
 * kernel ignores router advertisements on interfaces whose accept_ra is 1,
 * so a host that learns its IPv6 default route by SLAAC would lose it when
 * the route expires. accept_ra 2 accepts them even when forwarding, and
 * without forwarding means the same as 1: each interface (and "default")
 * with accept_ra 1 is set to 2 first. Our cbh interfaces get accept_ra 0.
 */
#include "config.h"
#include "sandbox/sb_net.h"

#include <arpa/inet.h>
#include <dirent.h>
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
#include "sandbox/sb_secure.h"
#include "sandbox/sb_util.h"

#define NET_MAX 16384
#define NET6_PREFIX "fdce:11b0:0"   /* the ULA /48 of sandboxes: slot n is fdce:11b0:0:n::/64 */

static pthread_mutex_t net_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char used[NET_MAX];
static bool rules_ready;
static bool ipv6_on;          /* decided with rules_ready: the host has IPv6 */
static bool private_allowed;  /* --egress-private allow */
static unsigned conn_max;     /* new connections a sandbox may have tracked at once */

/* The host's table of one family (printf: family, sandboxes' range,
 * ICMP's name, what input lets in beyond replies). */
static const char NFT_RULES_FMT[] =
    "table %1$s cellbox {\n"
    "  chain postrouting {\n"
    "    type nat hook postrouting priority srcnat; policy accept;\n"
    "    %1$s saddr %2$s oifname != \"cbh*\" masquerade\n"
    "  }\n"
    "  map egress {\n"
    "    type ifname : verdict;\n"
    "  }\n"
    "  chain refuse {\n"
    "    meta l4proto tcp reject with tcp reset\n"
    "    reject with %3$s type admin-prohibited\n"
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
    "%4$s"
    "    iifname \"cbh*\" drop\n"
    "  }\n"
    "}\n";

static char *nft_rules(bool v6)
{
    return v6 ? cb_printf_new(NFT_RULES_FMT, "ip6", NET6_PREFIX "::/48", "icmpv6",
                              "    iifname \"cbh*\" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n")
              : cb_printf_new(NFT_RULES_FMT, "ip", "10.231.0.0/16", "icmp", "");
}

/* Runs a tool for network set-up (sb_run_tool). */
static int run(char *const argv[], const char *stdin_text, sb_error *err)
{
    return sb_run_tool(argv, stdin_text, "network setup", "iproute2 nftables util-linux", err);
}

static int write_sysctl(const char *path, const char *value)
{
    cb_autoclose int fd = open(path, O_WRONLY | O_CLOEXEC);
    return fd < 0 || cb_write_all(fd, value, strlen(value)) < 0 ? -1 : 0;
}

/* Is the sysctl at path "1"? */
static bool sysctl_is_1(const char *path)
{
    cb_autofree char *v = cb_read_file(path, NULL);
    return v && v[0] == '1' && (v[1] == '\n' || v[1] == '\0');
}

/* Does the host have IPv6: the kernel has it, and it is not disabled for
 * all interfaces or for new ones (our cbh interfaces)? */
static bool host_has_ipv6(void)
{
    return access("/proc/sys/net/ipv6", F_OK) == 0 &&
           !sysctl_is_1("/proc/sys/net/ipv6/conf/all/disable_ipv6") &&
           !sysctl_is_1("/proc/sys/net/ipv6/conf/default/disable_ipv6");
}

/* Turns IPv6 forwarding on, first moving accept_ra 1 to 2 (see the top of
 * this file). Nothing is changed if forwarding is on already. */
static int ipv6_forwarding_on(sb_error *err)
{
    if (sysctl_is_1("/proc/sys/net/ipv6/conf/all/forwarding"))
        return 0;
    DIR *d = opendir("/proc/sys/net/ipv6/conf");
    cb_buf moved = CB_BUF_INIT;
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[300];
        if (e->d_name[0] == '.' || strcmp(e->d_name, "all") == 0)
            continue;
        snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/accept_ra", e->d_name);
        if (sysctl_is_1(path) && write_sysctl(path, "2") == 0)
            cb_buf_printf(&moved, "%s%s", moved.len ? "," : "", e->d_name);
    }
    if (d)
        closedir(d);
    cb_autofree char *names = cb_buf_steal(&moved);
    if (*names)
        cb_logkv(CB_LOG_INFO, "net", "accept_ra=2", "IPv6 forwarding: interfaces %s keep "
                 "accepting router advertisements (accept_ra 1 -> 2)", names);
    if (write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1") < 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "cannot enable IPv6 forwarding: %s",
                       strerror(errno)), -1;
    return 0;
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
    char *del6[] = {"nft", "delete", "table", "ip6", "cellbox", NULL};
    sb_error ignore;
    run(del, NULL, &ignore);  /* a table left by a crash */
    run(del6, NULL, &ignore);
    char *load[] = {"nft", "-f", "-", NULL};
    cb_autofree char *rules4 = nft_rules(false), *rules6 = nft_rules(true);
    if (run(load, rules4, err) < 0)
        return -1;
    /* The host's connection tracking table (nf_conntrack_max entries) is
     * one for everything: every connection or UDP flow a sandbox opens
     * takes an entry (UDP ones for 30 s even unanswered), and a full table
     * drops every new connection of the host. A sandbox may hold a share. */
    cb_autofree char *ct = cb_read_file("/proc/sys/net/netfilter/nf_conntrack_max", NULL);
    long ct_max = ct ? strtol(ct, NULL, 10) : 0;
    conn_max = (unsigned)((ct_max > 0 ? ct_max : 65536) / SB_HOST_SHARE);
    ipv6_on = host_has_ipv6();
    sb_error e6 = {0};
    if (!ipv6_on)
        cb_log(CB_LOG_INFO, "net", "IPv6 is disabled on this host: egress sandboxes are IPv4 only");
    else if (ipv6_forwarding_on(&e6) < 0 || run(load, rules6, &e6) < 0) {
        /* IPv6 is extra: a host whose kernel lacks IPv6 NAT (or whose
         * /proc/sys is read-only) still gets IPv4 egress */
        run(del6, NULL, &ignore);
        ipv6_on = false;
        cb_warn("net", "IPv6 egress is not available on this host (%s): egress sandboxes are IPv4 only",
                e6.msg);
    }
    rules_ready = true;
    return 0;
}

/* ---- egress policy: options ---------------------------------------------- */

void sb_net_set_private_allowed(bool allowed)
{
    private_allowed = allowed;
}

/* Parses one allowOut/denyOut entry: an address (a /32 or /128) or
 * "address/len". Strict: the address as inet_pton reads it (IPv4: dotted
 * quad, no leading zeros, no short forms; IPv6: no zone), len in plain
 * decimal up to 32 (IPv4) or 128 (IPv6), no host bits. NULL, or why not
 * (with host bits set, *out still holds the network). */
static const char *cidr_parse(const char *s, sb_net_cidr *out)
{
    char a[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof a)
        return "not an IPv4 or IPv6 address or CIDR";
    memcpy(a, s, alen);
    a[alen] = '\0';
    memset(out, 0, sizeof *out);
    out->v6 = strchr(a, ':') != NULL;
    if (inet_pton(out->v6 ? AF_INET6 : AF_INET, a, out->addr) != 1)
        return out->v6 ? "not an IPv6 address or CIDR" : "not an IPv4 address or CIDR";
    unsigned max = out->v6 ? 128 : 32, len = max;
    const char *range = out->v6 ? "the prefix length must be 0..128" : "the prefix length must be 0..32";
    if (slash) {
        const char *l = slash + 1;
        size_t n = strlen(l);
        if (n == 0 || n > 3 || strspn(l, "0123456789") != n || (n > 1 && l[0] == '0'))
            return range;
        len = (unsigned)atoi(l);
        if (len > max)
            return range;
    }
    out->len = (uint8_t)len;
    bool host_bits = false;
    for (unsigned i = 0; i < max / 8; i++) {
        unsigned keep = len >= 8 * (i + 1) ? 8 : len > 8 * i ? len - 8 * i : 0;
        uint8_t mask = (uint8_t)(0xff00u >> keep);
        host_bits |= (out->addr[i] & ~mask) != 0;
        out->addr[i] &= mask;
    }
    return host_bits ? "has host bits set" : NULL;
}

static void cidr_str(const sb_net_cidr *c, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(c->v6 ? AF_INET6 : AF_INET, c->addr, a, sizeof a);
    if (c->len == (c->v6 ? 128 : 32))
        snprintf(out, cap, "%s", a);
    else
        snprintf(out, cap, "%s/%u", a, c->len);
}

static int list_parse(const cJSON *j, const char *key, sb_net_cidr *out, unsigned *n,
                      sb_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "%s must be an array of IPv4 or IPv6 addresses or CIDRs, like "
                       "[\"10.1.2.0/24\", \"8.8.8.8\", \"2001:db8::/32\"]", key), -1;
    if (cJSON_GetArraySize(arr) > SB_NET_POLICY_MAX)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "%s has more than %d entries", key,
                       SB_NET_POLICY_MAX), -1;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e))
            return sb_fail(err, SB_E_VALIDATION_FAILED,
                           "%s[%d] must be a string (an IPv4 or IPv6 address or CIDR)", key, i), -1;
        const char *why = cidr_parse(e->valuestring, &out[*n]);
        char net[SB_NET_CIDR_STRLEN] = "";
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
        char s[SB_NET_CIDR_STRLEN];
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
    {"::/128", false},          /* unspecified */
    {"::1/128", false},         /* loopback */
    {"::ffff:0:0/96", false},   /* IPv4-mapped */
    {"64:ff9b::/96", false},    /* NAT64 (IPv4 embedded: 64:ff9b::a9fe:a9fe is 169.254.169.254) */
    {"64:ff9b:1::/48", false},  /* NAT64, local use */
    {"2001::/32", false},       /* Teredo (IPv4 embedded) */
    {"2002::/16", false},       /* 6to4 (IPv4 embedded) */
    {"fe80::/10", false},       /* link-local */
    {"fec0::/10", false},       /* site-local (deprecated) */
    {"ff00::/8", false},        /* multicast */
    {"fc00::/7", true},         /* unique local (ULA): the private ranges of IPv6 */
};

#define NAMESERVERS_MAX 8

/* Sets of addresses a sandbox's chain matches (one address family). */
typedef struct addr_set {
    sb_net_cidr c[SB_NET_POLICY_MAX];
    unsigned n;
} addr_set;

typedef enum { SET_ALLOW, SET_DENY, SET_NAMESERVERS, SET_DEFAULTS, SET_N } set_kind;

/* A sandbox's chain egN, in order: the first rule that matches decides;
 * what none matches is accepted. A rule whose set is empty is left out. */
static const struct {
    set_kind set;
    const char *also;     /* more to match after "ip daddr SET" (ip6) */
    const char *verdict;
} chain_rules[] = {
    {SET_ALLOW, "", "accept"},
    {SET_DENY, "", "goto refuse"},
    {SET_NAMESERVERS, " meta l4proto { tcp, udp } th dport 53", "accept"},
    {SET_DEFAULTS, "", "goto refuse"},
};

/* The host's nameservers: what the sandbox's /etc/resolv.conf (the host's,
 * bound read-only) points to, sorted into sets by family. A link-local one
 * with a zone (fe80::1%eth0) cannot be reached from a sandbox: left out. */
static void nameservers(addr_set *v4, addr_set *v6)
{
    cb_autofree char *text = cb_read_file("/etc/resolv.conf", NULL);
    if (!text)
        return;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char word[16], addr[64];
        sb_net_cidr c;
        if (sscanf(line, " %15s %63s", word, addr) != 2 || strcmp(word, "nameserver") != 0 ||
            cidr_parse(addr, &c) != NULL || strchr(addr, '/'))
            continue;
        addr_set *s = c.v6 ? v6 : v4;
        if (s->n < NAMESERVERS_MAX)
            s->c[s->n++] = c;
    }
}

typedef unsigned __int128 u128;

static u128 cidr_lo(const sb_net_cidr *c)
{
    u128 v = 0;
    for (int i = 0; i < (c->v6 ? 16 : 4); i++)
        v = v << 8 | c->addr[i];
    return v;
}

static u128 cidr_hi(const sb_net_cidr *c)
{
    unsigned host = (c->v6 ? 128u : 32u) - c->len;
    return host == 128 ? ~(u128)0 : cidr_lo(c) | (((u128)1 << host) - 1);
}

static void u128_str(u128 v, bool v6, char *out, size_t cap)
{
    sb_net_cidr c = {.v6 = v6, .len = v6 ? 128 : 32};
    for (int i = (v6 ? 16 : 4) - 1; i >= 0; i--, v >>= 8)
        c.addr[i] = (uint8_t)v;
    cidr_str(&c, out, cap);
}

static int range_cmp(const void *a, const void *b)
{
    const u128 *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Appends s (all of one family) to buf as an nft anonymous set of disjoint
 * intervals ("{ 10.0.0.0-10.255.255.255, 8.8.8.8 }"): overlapping or
 * adjacent entries are merged, which nft requires of an interval set. */
static void set_text(cb_buf *buf, const addr_set *s, bool v6)
{
    static u128 r[SB_NET_POLICY_MAX][2];  /* [lo, hi]; net_mu held */
    for (unsigned i = 0; i < s->n; i++) {
        r[i][0] = cidr_lo(&s->c[i]);
        r[i][1] = cidr_hi(&s->c[i]);
    }
    qsort(r, s->n, sizeof r[0], range_cmp);
    cb_buf_puts(buf, "{ ");
    bool first = true;
    for (unsigned i = 0; i < s->n;) {
        u128 lo = r[i][0], hi = r[i][1];
        for (i++; i < s->n && (hi == ~(u128)0 || r[i][0] <= hi + 1); i++)
            if (r[i][1] > hi)
                hi = r[i][1];
        char a[SB_NET_CIDR_STRLEN], b[SB_NET_CIDR_STRLEN];
        u128_str(lo, v6, a, sizeof a);
        u128_str(hi, v6, b, sizeof b);
        cb_buf_printf(buf, "%s%s%s%s", first ? "" : ", ", a, lo == hi ? "" : "-", lo == hi ? "" : b);
        first = false;
    }
    cb_buf_puts(buf, " }");
}

static void addr_of(int n, int host_side, char *out, size_t cap)
{
    unsigned base = (unsigned)n * 4;
    snprintf(out, cap, "10.231.%u.%u", base >> 8, (base & 255) + (host_side ? 1 : 2));
}

static void addr6_of(int n, int host_side, char *out, size_t cap)
{
    snprintf(out, cap, NET6_PREFIX ":%x::%d", (unsigned)n, host_side ? 1 : 2);
}

/* Appends to buf the commands that give slot n (interface cbhN) its chain
 * egN in the table of one family; ns: the host's nameservers of that family. */
static void policy_family_script(cb_buf *buf, int n, const sb_net_policy *p, bool v6,
                                 const addr_set *ns)
{
    static addr_set sets[SET_N];  /* big: not on the stack; net_mu held */
    memset(sets, 0, sizeof sets);
    for (unsigned i = 0; i < p->n_allow; i++)
        if (p->allow[i].v6 == v6)
            sets[SET_ALLOW].c[sets[SET_ALLOW].n++] = p->allow[i];
    for (unsigned i = 0; i < p->n_deny; i++)
        if (p->deny[i].v6 == v6)
            sets[SET_DENY].c[sets[SET_DENY].n++] = p->deny[i];
    sets[SET_NAMESERVERS] = *ns;
    for (size_t i = 0; i < CB_ARRAY_LEN(default_denied); i++) {
        sb_net_cidr c;
        cidr_parse(default_denied[i].cidr, &c);
        if (c.v6 == v6 && !(default_denied[i].is_private && private_allowed))
            sets[SET_DEFAULTS].c[sets[SET_DEFAULTS].n++] = c;
    }

    const char *fam = v6 ? "ip6" : "ip";
    cb_buf_printf(buf, "add chain %s cellbox eg%d\nflush chain %s cellbox eg%d\n", fam, n, fam, n);
    /* only the sandbox's own source address leaves (a process with
     * CAP_NET_ADMIN in the sandbox's namespace could add another one) */
    char self[64];
    (v6 ? addr6_of : addr_of)(n, 0, self, sizeof self);
    cb_buf_printf(buf, "add rule %s cellbox eg%d %s saddr != %s drop\n", fam, n, fam, self);
    /* its share of the host's connection tracking table (ensure_rules) */
    cb_buf_printf(buf, "add rule %s cellbox eg%d ct state new ct count over %u goto refuse\n", fam, n,
                  conn_max);
    for (size_t i = 0; i < CB_ARRAY_LEN(chain_rules); i++) {
        const addr_set *s = &sets[chain_rules[i].set];
        if (s->n == 0)
            continue;
        cb_buf_printf(buf, "add rule %s cellbox eg%d %s daddr ", fam, n, fam);
        set_text(buf, s, v6);
        cb_buf_printf(buf, "%s %s\n", chain_rules[i].also, chain_rules[i].verdict);
    }
    cb_buf_printf(buf, "add rule %s cellbox eg%d accept\n", fam, n);
    cb_buf_printf(buf, "add element %s cellbox egress { \"cbh%d\" : goto eg%d }\n", fam, n, n);
}

/* The nft script that gives slot n its chains (IPv6 too if v6). */
static char *policy_script(int n, const sb_net_policy *p, bool v6)
{
    static addr_set ns4, ns6;  /* net_mu held */
    ns4.n = ns6.n = 0;
    nameservers(&ns4, &ns6);
    cb_buf buf = CB_BUF_INIT;
    policy_family_script(&buf, n, p, false, &ns4);
    if (v6)
        policy_family_script(&buf, n, p, true, &ns6);
    return cb_buf_steal(&buf);
}

/* Removes slot n's policy (what is there of it) from the table of one
 * family. */
static void policy_remove_family(int n, const char *fam)
{
    char elem[64], chain[96];
    snprintf(elem, sizeof elem, "delete element %s cellbox egress { \"cbh%d\" }\n", fam, n);
    snprintf(chain, sizeof chain, "flush chain %s cellbox eg%d\ndelete chain %s cellbox eg%d\n",
             fam, n, fam, n);
    char *load[] = {"nft", "-f", "-", NULL};
    sb_error ignore;
    run(load, elem, &ignore);   /* apart: either may be missing */
    run(load, chain, &ignore);
}

/* Removes slot n's policy; net_mu held. */
static void policy_remove_locked(int n)
{
    policy_remove_family(n, "ip");
    if (ipv6_on)
        policy_remove_family(n, "ip6");
}

static void policy_remove(int n)
{
    pthread_mutex_lock(&net_mu);
    policy_remove_locked(n);
    pthread_mutex_unlock(&net_mu);
}

static int policy_apply(int n, const sb_net_policy *p, sb_error *err)
{
    pthread_mutex_lock(&net_mu);
    policy_remove_locked(n);  /* left by a failed teardown */
    cb_autofree char *script = policy_script(n, p, ipv6_on);
    char *load[] = {"nft", "-f", "-", NULL};
    int rc = run(load, script, err);
    pthread_mutex_unlock(&net_mu);
    return rc;
}

/* One step of bringing up a sandbox's network: a command, or a sysctl to
 * write. Steps marked v6 are skipped on an IPv4-only host. */
typedef enum {
    NET_ALWAYS,
    NET_V6,       /* only when sandboxes get IPv6 */
    NET_NO_V6,    /* only when they do not, on a kernel that has IPv6 */
} net_when;

typedef struct net_step {
    net_when when;
    const char *sysctl, *value;   /* a path under /proc/sys/net, or NULL */
    char *argv[16];
} net_step;

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
    bool v6 = ipv6_on;
    pthread_mutex_unlock(&net_mu);
    if (rc < 0) {
        if (n >= 0)
            sb_net_release_slot(n);
        return -1;
    }
    char host[32], sand[32], hname[16], sname[16], pidstr[16], host_cidr[40], sand_cidr[40], nsarg[64];
    char host6[64], sand6[64], host6_cidr[72], sand6_cidr[72], accept_ra[96], no_ipv6[96];
    addr_of(n, 1, host, sizeof host);
    addr_of(n, 0, sand, sizeof sand);
    addr6_of(n, 1, host6, sizeof host6);
    addr6_of(n, 0, sand6, sizeof sand6);
    snprintf(host_cidr, sizeof host_cidr, "%s/30", host);
    snprintf(sand_cidr, sizeof sand_cidr, "%s/30", sand);
    snprintf(host6_cidr, sizeof host6_cidr, "%s/64", host6);
    snprintf(sand6_cidr, sizeof sand6_cidr, "%s/64", sand6);
    snprintf(hname, sizeof hname, "cbh%d", n);
    snprintf(sname, sizeof sname, "cbs%d", n);
    snprintf(pidstr, sizeof pidstr, "%d", (int)agent);
    snprintf(nsarg, sizeof nsarg, "--net=/proc/%d/ns/net", (int)agent);
    snprintf(accept_ra, sizeof accept_ra, "/proc/sys/net/ipv6/conf/%s/accept_ra", hname);
    snprintf(no_ipv6, sizeof no_ipv6, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", hname);
    /* IPv6 addresses skip duplicate address detection (nodad): the link has
     * two ends, both ours, and a tentative address could not be used yet. */
    net_step steps[] = {
        {NET_ALWAYS, NULL, NULL, {"ip", "link", "del", hname, NULL}},  /* leftover from a crash; may fail */
        {NET_ALWAYS, NULL, NULL, {"ip", "link", "add", hname, "type", "veth", "peer", "name", sname, "netns", pidstr, NULL}},
        {NET_V6, accept_ra, "0", {NULL}},  /* no router advertisements from the sandbox */
        /* Without IPv6 egress there is no ip6 table either, and so no
         * input rule keeping the sandbox off the host over IPv6: the host's
         * end would get a link-local address (fe80::...%eth0 from inside)
         * and every host service listening on [::] would be reachable. That
         * end gets no IPv6 at all, before it is up (fails closed). */
        {NET_NO_V6, no_ipv6, "1", {NULL}},
        {NET_ALWAYS, NULL, NULL, {"ip", "addr", "add", host_cidr, "dev", hname, NULL}},
        {NET_V6, NULL, NULL, {"ip", "-6", "addr", "add", host6_cidr, "dev", hname, "nodad", NULL}},
        {NET_ALWAYS, NULL, NULL, {"ip", "link", "set", hname, "up", NULL}},
        {NET_ALWAYS, NULL, NULL, {"nsenter", nsarg, "ip", "link", "set", sname, "name", "eth0", NULL}},
        {NET_ALWAYS, NULL, NULL, {"nsenter", nsarg, "ip", "addr", "add", sand_cidr, "dev", "eth0", NULL}},
        {NET_V6, NULL, NULL, {"nsenter", nsarg, "ip", "-6", "addr", "add", sand6_cidr, "dev", "eth0", "nodad", NULL}},
        {NET_ALWAYS, NULL, NULL, {"nsenter", nsarg, "ip", "link", "set", "eth0", "up", NULL}},
        {NET_ALWAYS, NULL, NULL, {"nsenter", nsarg, "ip", "route", "add", "default", "via", host, NULL}},
        {NET_V6, NULL, NULL, {"nsenter", nsarg, "ip", "-6", "route", "add", "default", "via", host6, "dev", "eth0", NULL}},
    };
    bool kernel_v6 = access("/proc/sys/net/ipv6", F_OK) == 0;
    /* the policy first: no packet leaves before it is in place (and a cbh
     * interface without one is refused anyway) */
    if (policy_apply(n, &b->opts.net_policy, err) < 0) {
        sb_net_release_slot(n);
        return -1;
    }
    for (size_t i = 0; i < CB_ARRAY_LEN(steps); i++) {
        sb_error e = {0};
        if ((steps[i].when == NET_V6 && !v6) || (steps[i].when == NET_NO_V6 && (v6 || !kernel_v6)))
            continue;
        if (steps[i].sysctl && write_sysctl(steps[i].sysctl, steps[i].value) < 0)
            sb_fail(&e, SB_E_CONTAINER_UNAVAILABLE, "network setup: cannot write %s: %s",
                    steps[i].sysctl, strerror(errno));
        else if (steps[i].sysctl || run(steps[i].argv, NULL, &e) == 0 || i == 0)
            continue;
        *err = e;
        char *del[] = {"ip", "link", "del", hname, NULL};
        run(del, NULL, &e);
        policy_remove(n);
        sb_net_release_slot(n);
        return -1;
    }
    b->net_index = n;
    char kv[320];
    snprintf(kv, sizeof kv, "sandbox=%s address=%s gateway=%s address6=%s allowOut=%u denyOut=%u",
             b->id, sand, host, v6 ? sand6 : "none", b->opts.net_policy.n_allow,
             b->opts.net_policy.n_deny);
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
        char *del6[] = {"nft", "delete", "table", "ip6", "cellbox", NULL};
        sb_error ignore;
        run(del, NULL, &ignore);
        if (ipv6_on)
            run(del6, NULL, &ignore);
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

bool sb_net_address6(const struct sb_box *b, char *out, size_t cap)
{
    pthread_mutex_lock(&net_mu);
    bool on = ipv6_on;
    pthread_mutex_unlock(&net_mu);
    if (b->net_index < 0 || !on)
        return false;
    char raw[64];
    struct in6_addr a;
    addr6_of(b->net_index, 0, raw, sizeof raw);
    /* shown in canonical form (RFC 5952), as `ip` shows it */
    return inet_pton(AF_INET6, raw, &a) == 1 && inet_ntop(AF_INET6, &a, out, (socklen_t)cap) != NULL;
}
