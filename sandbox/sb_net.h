/* sandbox/sb_net.h: network "egress" for a sandbox: a veth pair, addresses,
 * a default route, NAT on the host, and the sandbox's egress policy.
 * Network "none" (the default) needs nothing from here: the sandbox's own
 * network namespace has only lo.
 *
 * Addresses: slot n (0..16383) is the n-th /30 of 10.231.0.0/16: the host
 * side gets its first address, the sandbox (eth0) the second, with a
 * default route through the host. Host rules (nftables
 * table "ip cellbox"): masquerade traffic from 10.231.0.0/16 to the outside,
 * drop what sandboxes send to the host itself and to each other, and hold
 * each sandbox's connections to its egress policy:
 *
 *   a destination in allowOut is allowed; else one in denyOut or in the
 *   server's default-denied ranges is refused (TCP: reset; anything else:
 *   ICMP admin-prohibited); else it is allowed.
 *
 * Default-denied ranges: 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16 (link-local,
 * cloud metadata), 224.0.0.0/4 and 240.0.0.0/4 (multicast, reserved,
 * broadcast) always; 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and
 * 100.64.0.0/10 unless the server runs with --egress-private allow. The
 * host's IPv4 nameservers (its /etc/resolv.conf, which sandboxes see) stay
 * reachable on port 53 despite the default-denied ranges (not despite
 * denyOut). Egress is IPv4 only: a sandbox has no IPv6 route.
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
    uint32_t addr;              /* host byte order, host bits zero */
    uint8_t len;                /* prefix length 0..32 */
} sb_net_cidr;

typedef struct sb_net_policy {
    unsigned n_allow, n_deny;
    sb_net_cidr allow[SB_NET_POLICY_MAX];   /* "allowOut", as given (normalised) */
    sb_net_cidr deny[SB_NET_POLICY_MAX];    /* "denyOut" */
} sb_net_policy;

/* Server-wide, before the first sandbox starts: may sandboxes reach the
 * private ranges (10/8, 172.16/12, 192.168/16, 100.64/10)? Default: no. */
void sb_net_set_private_allowed(bool allowed);

/* Reads "allowOut" and "denyOut" of sandbox options j into *p (zeroed
 * first). Strict: arrays of at most SB_NET_POLICY_MAX IPv4 addresses or
 * CIDRs with no host bits set; non-empty lists need egress. 0, or -1 +
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
/* The sandbox's own address (egress only). */
bool sb_net_address(const struct sb_box *b, char *out, size_t cap);

#endif
