/* sandbox/sb_net.h: network "egress" for a sandbox: a veth pair, addresses,
 * a default route and NAT on the host. Network "none" (the default) needs
 * nothing from here: the sandbox's own network namespace has only lo.
 *
 * Addresses: slot n (0..16383) is the n-th /30 of 10.231.0.0/16: the host
 * side gets its first address, the sandbox (eth0) the second, with a
 * default route through the host. Host rules (nftables
 * table "ip cellbox"): masquerade traffic from 10.231.0.0/16 to the outside,
 * drop what sandboxes send to the host itself and to each other.
 * All functions are called with the box's mutex held; 0 or -1 + err.
 */
#ifndef SB_NET_H
#define SB_NET_H

#include <sys/types.h>

#include "sandbox/sb_box.h"

int sb_net_setup(sb_box *b, pid_t agent, sb_error *err);
void sb_net_teardown(sb_box *b);
void sb_net_release_slot(int n);
void sb_net_shutdown(void);
/* The sandbox's own address (egress only). */
bool sb_net_address(const sb_box *b, char *out, size_t cap);

#endif
