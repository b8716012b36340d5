/* sandbox/sb_pin.h: the server's own programs, pinned for its lifetime.
 *
 * Sandboxes run programs of the server: the agent (cellbox-agent, or this
 * binary as `cellbox agent`), and this binary as `cellbox kernel` for code
 * contexts and as the s3fs helper's fusermount. A new build or package put
 * at their paths while the server runs (dpkg, `make install` and the linker
 * replace files) must not reach the sandboxes this server starts next: an
 * agent of another version would speak another protocol, and a file being
 * written cannot be run at all. So at start the server copies each program
 * into STATE/bin and only ever runs those copies, which nothing else
 * replaces (one server per state folder).
 *
 * A sandbox gets each program as a detached mount of its copy (open_tree in
 * the server's mount namespace, where the server may clone it): the agent
 * is executed from that mount and attaches it inside its root at
 * /run/cellbox (sb_plan.h). The sandbox's users need no path to STATE.
 *
 * Ownership: the module keeps the copies' fds for the server's life;
 * sb_pin_tree's fd belongs to the caller. */
#ifndef SB_PIN_H
#define SB_PIN_H

#include <stdbool.h>

typedef enum {
    SB_PIN_SELF,    /* this binary (cellbox) */
    SB_PIN_AGENT,   /* cellbox-agent */
} sb_pin_prog;

/* Copies the programs into state_dir/bin (agent_exe NULL: there is no
 * cellbox-agent). A copy that cannot be made (no space, a read-only state
 * folder) is warned about and the program is used in place. Called once,
 * before any sandbox starts. */
void sb_pin_init(const char *state_dir, const char *agent_exe);

bool sb_pin_have(sb_pin_prog prog);

/* The program's path on the host, to run it from the server's namespace;
 * NULL when it has none (sb_pin_have false, or sb_pin_init not called:
 * this binary's own path then, for SB_PIN_SELF). */
const char *sb_pin_path(sb_pin_prog prog);

/* A new detached mount of the program (read-only, nosuid, nodev, exec
 * allowed), close-on-exec; -1 with errno. */
int sb_pin_tree(sb_pin_prog prog);

#endif
