/* sandbox/sb_agent_main.c: `cellbox-agent`, the sandbox agent as a program
 * of its own (sb_agent.c; `cellbox agent` is the same code).
 *
 * Every sandbox starts with an exec of the agent, and once its root is
 * built the agent execs itself again from inside it (so that nothing of the
 * host's file systems stays mapped). The cellbox binary links 36 libraries
 * (ZeroMQ, GnuTLS through libmicrohttpd, ...): 4 ms an exec here. This one
 * links libc, cJSON and libsodium only, and starts in about 1 ms. */
#include "config.h"

#include "main.h"

int main(int argc, char **argv)
{
    return sb_cmd_agent(argc, argv);
}
