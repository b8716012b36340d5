/* sandbox/sb_git.c: gitCheckout, a `git clone` run inside the sandbox.
 *
 * Flow: validate everything first (URL scheme and no option injection,
 * branch as a strict ref name, depth, targetDir), then run ONE bash script
 * through the exec path as the sandbox's user, in the given session (its
 * env and cwd; its state is read, never saved back). The agent only takes a
 * shell command line, so every value the client gave is passed as a
 * single-quoted word (sb_sh_quote: '...' with ' as '\'') and git gets "--"
 * before the URL and the folder: no value is ever parsed as an option or as
 * shell syntax (tests/sandbox_git.py sends hostile values).
 *
 * The script reports on stdout, one line each: "existed" (targetDir was an
 * empty folder before), "cloning" (git starts: from here on, a failure
 * removes the clone), then "commit=<sha>" and "branch=<name>" after a
 * clone; git's own output goes to stderr, which becomes the error message.
 * Its exit code says what went wrong (GIT_RC_*). A clone that fails removes
 * what it made; one killed by the timeout is cleaned up by a second short
 * command, since the first one's shell is gone with it.
 *
 * Never: run git on the host, follow sandbox paths on the host, or build a
 * command line by pasting an unquoted client value.
 */
#include "config.h"
#include "sandbox/sb_git.h"

#include <math.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_api.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_util.h"

#define GIT_DEFAULT_TIMEOUT_MS 300000
#define GIT_MAX_TIMEOUT_MS (24LL * 3600 * 1000)
#define GIT_STDERR_CAP (64u << 10)

/* Exit codes of the script (git itself exits 128 or 129 on errors). */
enum { GIT_RC_NO_GIT = 90, GIT_RC_EXISTS = 91, GIT_RC_CLONE = 92 };

/* ---- validation ---------------------------------------------------------- */

int sb_git_check_url(const char *url, sb_error *err)
{
    static const char *const schemes[] = {"https://", "http://", "git://", "ssh://", "file://"};
    if (!url || !*url)
        return sb_fail(err, SB_E_INVALID_GIT_URL, "repoUrl must be a non-empty string"), -1;
    if (strlen(url) > 4096)
        return sb_fail(err, SB_E_INVALID_GIT_URL, "repoUrl is too long"), -1;
    if (url[0] == '-')
        return sb_fail(err, SB_E_INVALID_GIT_URL, "repoUrl must not start with '-'"), -1;
    if (sb_has_ctl(url))
        return sb_fail(err, SB_E_INVALID_GIT_URL, "repoUrl contains control characters"), -1;
    if (url[0] == '/')
        return 0;  /* a path inside the sandbox */
    for (size_t i = 0; i < CB_ARRAY_LEN(schemes); i++) {
        size_t n = strlen(schemes[i]);
        if (strncasecmp(url, schemes[i], n) == 0) {
            if (strpbrk(url, " \t") || !url[n])
                break;
            return 0;
        }
    }
    return sb_fail(err, SB_E_INVALID_GIT_URL,
                   "repoUrl must be an https://, http://, git://, ssh:// or file:// URL or an "
                   "absolute path in the sandbox"), -1;
}

/* A strict subset of git-check-ref-format --branch: ASCII letters, digits
 * and . _ - / + @, components not starting with '.' or ending in ".lock",
 * no "..", "//", "@{", no leading '-' or '/', no trailing '/' or '.'. */
int sb_git_check_branch(const char *br, sb_error *err)
{
    size_t n = br ? strlen(br) : 0;
    const char *why = NULL;
    if (n == 0 || n > 255)
        why = "must be 1 to 255 characters";
    else if (br[0] == '-')
        why = "must not start with '-'";
    else if (strspn(br, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/+@") != n)
        why = "may only hold letters, digits and . _ - / + @";
    else if (br[0] == '/' || br[n - 1] == '/' || br[n - 1] == '.')
        why = "must not start or end with '/' or end with '.'";
    else if (strstr(br, "..") || strstr(br, "//") || strstr(br, "@{") || strcmp(br, "@") == 0)
        why = "must not contain '..', '//' or '@{' or be '@'";
    else if (br[0] == '.' || strstr(br, "/."))
        why = "no component may start with '.'";
    else if ((n >= 5 && strcmp(br + n - 5, ".lock") == 0) || strstr(br, ".lock/"))
        why = "no component may end with '.lock'";
    if (why)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "branch is not a valid branch name: it %s", why), -1;
    return 0;
}

char *sb_git_repo_name(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n >= 5 && strncmp(url + n - 5, "/.git", 5) == 0)
        n -= 5;
    while (n > 0 && url[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && url[start - 1] != '/' && url[start - 1] != ':')
        start--;
    size_t len = n - start;
    if (len >= 4 && strncmp(url + n - 4, ".git", 4) == 0)
        len -= 4;
    char *name = cb_printf_new("%.*s", (int)len, url + start);
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || name[0] == '-') {
        free(name);
        return NULL;
    }
    return name;
}

/* url for logs and error messages: credentials in it ("https://user:token@
 * host/...") become "***" (owned). The clone itself gets the url as given. */
static char *url_redacted(const char *url)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return cb_strdup(url);
    const char *host = sep + 3;
    size_t auth_end = strcspn(host, "/?#");
    const char *at = NULL;
    for (const char *p = host; p < host + auth_end; p++)
        if (*p == '@')
            at = p;  /* the last '@' of the authority ends the userinfo */
    if (!at)
        return cb_strdup(url);
    return cb_printf_new("%.*s***%s", (int)(host - url), url, at);
}

/* ---- running a script in the sandbox --------------------------------------- */

typedef struct git_run {
    sb_exec_result res;
    cb_buf out, err;
} git_run;

static void git_run_clear(git_run *g)
{
    cb_buf_clear(&g->out);
    cb_buf_clear(&g->err);
}

/* sb_exec_run's output hook: stdout and stderr, each kept up to a cap. */
static int git_output(void *ctx, char type, const char *data, size_t len, sb_error *err)
{
    git_run *g = ctx;
    cb_buf *b = type == SB_FRAME_STDOUT ? &g->out : &g->err;
    (void)err;
    if (b->len < GIT_STDERR_CAP)
        cb_buf_append(b, data, len < GIT_STDERR_CAP - b->len ? len : GIT_STDERR_CAP - b->len);
    return 0;
}

/* Run script in session sid with the agent's timeout; collect its output
 * and exit in *g. r (may be NULL) is watched so that a client that goes
 * away cancels the command (g->res.cancelled). 0, or -1 + err. */
static int run_script(sb_req *r, sb_box *b, const char *sid, const char *script, int64_t timeout_ms,
                      git_run *g, sb_error *err)
{
    sb_exec_run_opts o = {.command = script, .session = sid, .timeout_ms = timeout_ms,
                          .what = "git", .r = r, .output = git_output, .ctx = g};
    return sb_exec_run(b, &o, &g->res, err);
}

/* ---- the handler ------------------------------------------------------------- */

/* The value of "key=" on its own line of out (owned), or "". */
static char *out_value(const cb_buf *out, const char *key)
{
    size_t klen = strlen(key);
    const char *s = out->data ? out->data : "";
    while (*s) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        if (len > klen && strncmp(s, key, klen) == 0 && s[klen] == '=')
            return cb_printf_new("%.*s", (int)(len - klen - 1), s + klen + 1);
        s += len + (eol ? 1 : 0);
    }
    return cb_strdup("");
}

/* The folder the clone goes to: absolute as given, relative under
 * /workspace, default /workspace/<repo name>; trailing slashes dropped. */
static char *target_dir(const cJSON *body, const char *url, sb_error *err)
{
    cb_autofree char *t = NULL;
    if (sb_json_path_arg(body, "targetDir", &t, err) < 0)
        return NULL;
    char *dir;
    if (t) {
        if (!*t)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "targetDir must be a non-empty string"), NULL;
        if (strlen(t) > 4096 || sb_has_ctl(t))
            return sb_fail(err, SB_E_VALIDATION_FAILED, "targetDir is too long or has control characters"), NULL;
        dir = t[0] == '/' ? cb_strdup(t) : cb_printf_new("/workspace/%s", t);
    } else {
        cb_autofree char *name = sb_git_repo_name(url);
        if (!name)
            return sb_fail(err, SB_E_VALIDATION_FAILED,
                           "cannot name a folder after repoUrl '%s': give targetDir", url), NULL;
        dir = cb_printf_new("/workspace/%s", name);
    }
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    if (strcmp(dir, "/") == 0) {
        free(dir);
        return sb_fail(err, SB_E_VALIDATION_FAILED, "targetDir must not be /"), NULL;
    }
    return dir;
}

/* The clone script; see the top of the file. Every client value is quoted. */
static char *clone_script(const char *url, const char *branch, long depth, const char *dir)
{
    cb_buf s = CB_BUF_INIT;
    cb_buf_puts(&s, "__cb_d=");
    sb_sh_quote(&s, dir);
    cb_buf_printf(&s, "\n"
        "builtin command -v git >/dev/null 2>&1 || { builtin echo 'git is not installed in this sandbox' >&2; builtin exit %d; }\n"
        "__cb_existed=\n"
        "if [ -e \"$__cb_d\" ] || [ -L \"$__cb_d\" ]; then\n"
        "  if [ -L \"$__cb_d\" ] || [ ! -d \"$__cb_d\" ]; then builtin echo \"$__cb_d exists and is not a folder\" >&2; builtin exit %d; fi\n"
        "  builtin shopt -s nullglob dotglob; __cb_f=(\"$__cb_d\"/*); builtin shopt -u nullglob dotglob\n"
        "  if [ ${#__cb_f[@]} -gt 0 ]; then builtin echo \"$__cb_d exists and is not empty\" >&2; builtin exit %d; fi\n"
        "  __cb_existed=1; builtin echo existed\n"
        "fi\n"
        "builtin echo cloning\n"
        "GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=/bin/false SSH_ASKPASS=/bin/false ",
        GIT_RC_NO_GIT, GIT_RC_EXISTS, GIT_RC_EXISTS);
    /* git clone --quiet [--branch B] [--depth N] -- URL DIR, one quoted word each */
    cb_buf_puts(&s, "git -c advice.detachedHead=false clone --quiet");
    if (branch) {
        cb_buf_puts(&s, " --branch ");
        sb_sh_quote(&s, branch);
    }
    if (depth > 0)
        cb_buf_printf(&s, " --depth %ld", depth);
    cb_buf_puts(&s, " -- ");
    sb_sh_quote(&s, url);
    cb_buf_puts(&s, " \"$__cb_d\" </dev/null >&2\n");
    cb_buf_printf(&s,
        "__cb_rc=$?\n"
        "if [ $__cb_rc -ne 0 ]; then\n"
        "  if [ -n \"$__cb_existed\" ]; then find \"$__cb_d\" -mindepth 1 -delete 2>/dev/null; else rm -rf -- \"$__cb_d\"; fi\n"
        "  builtin exit %d\n"
        "fi\n"
        "builtin echo \"commit=$(git -C \"$__cb_d\" rev-parse HEAD 2>/dev/null)\"\n"
        "builtin echo \"branch=$(git -C \"$__cb_d\" rev-parse --abbrev-ref HEAD 2>/dev/null)\"\n",
        GIT_RC_CLONE);
    return cb_buf_steal(&s);
}

/* After a timeout or a cancel: remove what the killed clone left. */
static void clone_cleanup(sb_box *b, const char *sid, const char *dir, bool existed)
{
    cb_buf s = CB_BUF_INIT;
    cb_buf_puts(&s, existed ? "find " : "rm -rf -- ");
    sb_sh_quote(&s, dir);
    cb_buf_puts(&s, existed ? " -mindepth 1 -delete\n" : "\n");
    git_run g = {0};
    sb_error e = {0};
    if (run_script(NULL, b, sid, s.data, 60000, &g, &e) < 0 || g.res.exit_code != 0)
        cb_warn("git", "sandbox %s: cannot clean up %s after a failed clone: %s", b->id, dir,
                e.code ? e.msg : "rm failed");
    git_run_clear(&g);
    cb_buf_clear(&s);
}

int sb_git_checkout(sb_req *r, sb_box *b, sb_error *err)
{
    if (!r->json)
        r->json = cJSON_CreateObject();
    const cJSON *body = r->json;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, "repoUrl");
    if (!u)
        u = cJSON_GetObjectItemCaseSensitive(body, "url");
    if (!cJSON_IsString(u))
        return sb_fail(err, SB_E_INVALID_GIT_URL, "repoUrl must be a string"), -1;
    const char *url = u->valuestring;
    if (sb_git_check_url(url, err) < 0)
        return -1;
    const cJSON *br = cJSON_GetObjectItemCaseSensitive(body, "branch");
    const char *branch = NULL;
    if (br && !cJSON_IsNull(br)) {
        if (!cJSON_IsString(br))
            return sb_fail(err, SB_E_VALIDATION_FAILED, "branch must be a string"), -1;
        branch = br->valuestring;
        if (sb_git_check_branch(branch, err) < 0)
            return -1;
    }
    long depth = 0;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "depth");
    if (d && !cJSON_IsNull(d)) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble > 2147483647.0 ||
            d->valuedouble != floor(d->valuedouble))
            return sb_fail(err, SB_E_VALIDATION_FAILED, "depth must be a positive integer"), -1;
        depth = (long)d->valuedouble;
    }
    int64_t timeout_ms = GIT_DEFAULT_TIMEOUT_MS;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "timeoutMs");
    if (t && !cJSON_IsNull(t)) {
        if (!cJSON_IsNumber(t) || t->valuedouble < 1 || t->valuedouble > (double)GIT_MAX_TIMEOUT_MS)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "timeoutMs must be a number from 1 to 86400000"), -1;
        timeout_ms = (int64_t)t->valuedouble;
    }
    const cJSON *sidj = cJSON_GetObjectItemCaseSensitive(body, "sessionId");
    if (sidj && !cJSON_IsString(sidj))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "sessionId must be a string"), -1;
    const char *sid = sidj ? sidj->valuestring : "default";
    cb_autofree char *dir = target_dir(body, url, err);
    if (!dir)
        return -1;

    cb_autofree char *script = clone_script(url, branch, depth, dir);
    git_run g = {0};
    int ran = run_script(r, b, sid, script, timeout_ms, &g, err);
    bool existed = g.out.data && strstr(g.out.data, "existed\n");
    /* only what git began is removed: never a folder that was there before */
    bool started = g.out.data && strstr(g.out.data, "cloning\n");
    if (ran < 0) {
        if (g.res.cancelled && started)
            clone_cleanup(b, sid, dir, existed);
        git_run_clear(&g);
        return -1;
    }
    cb_autofree char *msg = sb_exec_message(&g.err);
    cb_autofree char *shown = url_redacted(url);  /* never a credential in a log */
    int rc = -1;
    if (g.res.timed_out) {
        if (started)
            clone_cleanup(b, sid, dir, existed);
        sb_fail(err, SB_E_TIMEOUT, "git clone of %s did not finish in %lld ms", shown, (long long)timeout_ms);
    } else if (g.res.exit_code == GIT_RC_NO_GIT) {
        sb_fail(err, SB_E_GIT_NOT_AVAILABLE, "git is not installed in this sandbox (no git on its PATH)");
    } else if (g.res.exit_code == GIT_RC_EXISTS) {
        sb_fail(err, SB_E_FILE_EXISTS, "%s", msg);
    } else if (g.res.exit_code == GIT_RC_CLONE) {
        if (branch && strstr(msg, "Remote branch") && strstr(msg, "not found"))
            sb_fail(err, SB_E_GIT_BRANCH_NOT_FOUND, "branch '%s' not found in %s: %s", branch, shown, msg);
        else
            sb_fail(err, SB_E_GIT_CLONE_FAILED, "git clone %s failed: %s", shown, msg);
    } else if (g.res.exit_code != 0) {
        sb_fail(err, SB_E_GIT_CLONE_FAILED, "git clone %s failed (exit %d): %s", shown, g.res.exit_code, msg);
    } else {
        rc = 0;
    }
    if (rc < 0) {
        git_run_clear(&g);
        return -1;
    }
    cb_autofree char *commit = out_value(&g.out, "commit");
    cb_autofree char *head = out_value(&g.out, "branch");
    git_run_clear(&g);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "repoUrl", url);
    /* a remote's branch name is any bytes git allows, not always UTF-8 */
    sb_json_add_path(j, "branch", *head ? head : (branch ? branch : ""));
    sb_json_add_path(j, "targetDir", dir);
    cJSON_AddStringToObject(j, "commit", commit);
    sb_json_add_now(j, "timestamp");
    cb_logkv(CB_LOG_INFO, "git", NULL, "sandbox %s: cloned %s into %s", b->id, shown, dir);
    return sb_reply_json(r, 200, j);
}
