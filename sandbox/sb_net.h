/* sandbox/sb_net.h: network "egress" for a sandbox: a veth pair, addresses,
 * a default route, NAT on the host, and the sandbox's egress policy.
 * Network "none" (the default) needs nothing from here: the sandbox's own
 * network namespace has only lo.
 *
 * Addresses: slot n (0..16383) is the n-th /30 of 10.231.0.0/16 and, when
 * the host has IPv6, the n-th /64 of the ULA fdce:11b0::/48
 * (fdce:11b0:0:n::/64, n in hex): the host side gets its first address
 * (.1, ::1), the sandbox (eth0) the second (.2, ::2), with default routes
 * through the host. Host rules (nftables tables "ip cellbox" and
 * "ip6 cellbox"): masquerade traffic from the sandboxes to the outside
 * (NAT66 for IPv6), drop what sandboxes send to the host itself and to each
 * other, and hold each sandbox's connections to its egress policy, the
 * same for both families:
 *
 *   a destination in allowOut is allowed; else one in denyOut or in the
 *   server's default-denied ranges is refused (TCP: reset; anything else:
 *   ICMP / ICMPv6 admin-prohibited); else it is allowed.
 *
 * Default-denied ranges: 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16 (link-local,
 * cloud metadata), 224.0.0.0/4 and 240.0.0.0/4 (multicast, reserved,
 * broadcast), ::/128, ::1/128, ::ffff:0:0/96 (IPv4-mapped), 64:ff9b::/96 and
 * 64:ff9b:1::/48 (NAT64), 2001::/32 (Teredo), 2002::/16 (6to4), fe80::/10
 * (link-local), fec0::/10 (site-local) and ff00::/8 (multicast) always;
 * 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 and fc00::/7
 * (unique local) unless the server runs with --egress-private allow. The
 * host's nameservers (its /etc/resolv.conf, which sandboxes see) stay
 * reachable on port 53 despite the default-denied ranges (not despite
 * denyOut). A host without IPv6 (no /proc/sys/net/ipv6, or disable_ipv6)
 * gives sandboxes IPv4 only, and says so in its log.
 *
 * Ownership: sb_net_policy is a plain value (no pointers): copy it freely.
 * sb_net_policy_json adds to an object the caller owns. Functions taking a
 * sandbox are called with the box's mutex held; 0 or -1 + err.
 */
#ifndef SB_NET_H
#define SB_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#include "sandbox/sb_err.h"

struct sb_box;

#define SB_NET_POLICY_MAX 256   /* entries in allowOut, and in denyOut */

typedef struct sb_net_cidr {
    uint8_t addr[16];           /* network byte order (IPv4: the first 4), host bits zero */
    uint8_t len;                /* prefix length 0..32 (IPv4), 0..128 (IPv6) */
    bool v6;
} sb_net_cidr;

#define SB_NET_CIDR_STRLEN 64   /* room for one as text ("ffff:...:ffff/128") */

typedef struct sb_net_policy {
    unsigned n_allow, n_deny;
    sb_net_cidr allow[SB_NET_POLICY_MAX];   /* "allowOut", as given (normalised) */
    sb_net_cidr deny[SB_NET_POLICY_MAX];    /* "denyOut" */
} sb_net_policy;

/* Server-wide, before the first sandbox starts: may sandboxes reach the
 * private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7)?
 * Default: no. */
void sb_net_set_private_allowed(bool allowed);

/* Reads "allowOut" and "denyOut" of sandbox options j into *p (zeroed
 * first). Strict: arrays of at most SB_NET_POLICY_MAX IPv4 or IPv6
 * addresses or CIDRs with no host bits set; non-empty lists need egress. 0, or -1 +
 * VALIDATION_FAILED naming the bad entry. */
int sb_net_policy_parse(const cJSON *j, bool egress, sb_net_policy *p, sb_error *err);
/* Adds "allowOut" and "denyOut" (normalised strings) to the object o. */
void sb_net_policy_json(const sb_net_policy *p, cJSON *o);

/* Brings up the sandbox's veth pair and applies b->opts' egress policy. */
int sb_net_setup(struct sb_box *b, pid_t agent, sb_error *err);
/* Removes the veth pair and the sandbox's policy. */
void sb_net_teardown(struct sb_box *b);
void sb_net_release_slot(int n);
void sb_net_shutdown(void);
/* The sandbox's own IPv4 address (egress only). */
bool sb_net_address(const struct sb_box *b, char *out, size_t cap);
/* Its IPv6 address (egress on a host with IPv6 only). */
bool sb_net_address6(const struct sb_box *b, char *out, size_t cap);

#endif
