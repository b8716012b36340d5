/* sandbox/sb_git.h: `POST /v1/sandboxes/{id}/git/checkout`, the Cloudflare
 * SDK's gitCheckout(url, {branch, targetDir, depth}).
 *
 * The clone runs INSIDE the sandbox, as its user, through the exec path
 * (sb_exec_prepare/sb_exec_start): the session's env, the cgroup limits and
 * the network policy apply exactly as to any command. The server only
 * validates the request and reads the result; it never touches the clone.
 *
 * Ownership: the handler borrows r and b, replies once or returns -1 with
 * *err (the box-handler contract of sb_api.c).
 */
#ifndef SB_GIT_H
#define SB_GIT_H

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

int sb_git_checkout(sb_req *r, sb_box *b, sb_error *err);

/* Validation, pure (exposed for unit tests): 0 or -1 with err. */
int sb_git_check_url(const char *url, sb_error *err);
int sb_git_check_branch(const char *branch, sb_error *err);
/* The default folder name of a clone of url ("repo" for ".../repo.git/"),
 * owned; NULL when the URL has no usable last component. */
char *sb_git_repo_name(const char *url);

#endif
