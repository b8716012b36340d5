/* sandbox/sb_net.c: egress networking; see sb_net.h. */
#include "config.h"
#include "sandbox/sb_net.h"

int sb_net_setup(sb_box *b, pid_t agent, sb_error *err)
{
    (void)agent;
    return sb_fail(err, SB_E_VALIDATION_FAILED, "network egress is not available yet (%s)", b->id), -1;
}

void sb_net_teardown(sb_box *b)
{
    b->net_index = -1;
}

void sb_net_shutdown(void)
{
}
