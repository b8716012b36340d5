/* sandbox/sb_port.h: exposed ports and preview URLs.
 *
 * Exposing a port of a sandbox gives it a preview URL,
 *     SCHEME://{port}-{sandboxId}-{token}.{domain}[:PORT]/
 * (the Cloudflare Sandbox SDK's scheme). A request whose Host header parses
 * that way and whose domain is ours is not an API request: the dispatcher
 * (sb_http.c, through sb_http_conf.route_host) gives it to the proxy here,
 * which checks the token (constant time), opens a socket inside the
 * sandbox's network namespace (no veth, works for network-none sandboxes),
 * forwards the request as sent (method, target, headers minus hop-by-hop
 * and client-supplied X-Forwarded-*, plus X-Forwarded-Host/Proto/For, body
 * streamed), and relays the response (chunked bodies decoded, streamed).
 * WebSocket upgrades pass through: after the 101, bytes flow both ways.
 *
 * Host parsing: the first DNS label; port = the digits before the first
 * hyphen (1024-65535, never the server's own port), token = after the last
 * hyphen ([a-z0-9_]{1,63}), sandbox id = what lies between. Anything else is
 * not a preview request.
 *
 * Exposed ports persist in STATE/sandboxes/<id>/ports.json, read once into
 * box->ports (under box->mu), so URLs survive a server restart. Ownership: *_json results are owned.
 */
#ifndef SB_PORT_H
#define SB_PORT_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

/* Where preview URLs point: base like "http://localhost:7070" (scheme,
 * domain and optional port; NULL = http://localhost:<server port>). */
int sb_ports_configure(const char *base, unsigned short server_port, sb_error *err);

int sb_port_expose(sb_box *b, const cJSON *body, cJSON **out, sb_error *err);
cJSON *sb_ports_list_json(sb_box *b);
cJSON *sb_port_json(sb_box *b, int port);               /* NULL if not exposed */
int sb_port_unexpose(sb_box *b, int port, sb_error *err);

/* For sb_http_conf.route_host. */
const sb_route *sb_port_route_host(sb_req *r, const char *host);

/* Pure, for tests: split a Host header value. true when it is a preview
 * host of `domain`; id (64 bytes) and token (64 bytes) filled. */
bool sb_port_parse_host(const char *host, const char *domain, int *port, char *id, char *token);

#endif
