/* sandbox/sb_api.h: the HTTP API of `cellbox serve`: the route table and
 * its handlers, split by resource (sb_api.c: sandboxes, exec, sessions,
 * processes; sb_files.c: files). Handlers validate, call the sandbox layer
 * (sb_box, sb_proc) and reply through sb_http; see docs/api.md.
 */
#ifndef SB_API_H
#define SB_API_H

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

extern const sb_route sb_api_routes[];
extern const size_t sb_api_nroutes;

/* Every JSON body, before its handler (sb_http_conf.check_body): the fields
 * whose name means one thing across the API must have that type (null is
 * the same as absent), and no top-level key may appear twice. A wrong type
 * used to fall back silently to the default ("keepAlive": "true" kept
 * false, "sessionId": 5 ran in the default session). 0, or -1 with
 * VALIDATION_FAILED naming the field. */
int sb_api_check_body(const cJSON *body, sb_error *err);

/* The sandbox named by the first route parameter, referenced; replies
 * SANDBOX_NOT_FOUND and returns NULL when there is none. */
sb_box *sb_api_box(sb_req *r);

/* Exec plumbing shared with processes (sb_api.c): turn an API body into an
 * agent request (owned *req_out, *session_out, *stdin_out), and start it on a
 * new channel: returns the channel fd (owned) once the command runs. */
int sb_exec_prepare(sb_box *b, const cJSON *body, bool detach, cJSON **req_out,
                    char **session_out, char **stdin_out, size_t *stdin_len, sb_error *err);
int sb_exec_start(sb_box *b, cJSON *req, const char *in, size_t in_len, bool close_stdin,
                  int *pid, sb_error *err);

/* A command the server itself runs to its end in a sandbox (git clones,
 * backup tar): sb_exec_run prepares and starts it as the sandbox's user in
 * the session's env and cwd (the session's state is read, never saved
 * back), waits for its frames and its exit, enforces the deadline and kills
 * the command by closing the channel when it stops early. The caller's
 * hooks only move data: they are called on the caller's thread with ctx,
 * borrow what they are given and return 0, or -1 with *err to stop (the
 * command is then killed). Everything sb_exec_run opens (the channel, the
 * sandbox's acquisition) is closed before it returns. */
typedef struct sb_exec_run_opts {
    const char *command;        /* a shell command line */
    const char *session;        /* session id */
    int64_t timeout_ms;         /* the agent kills the command then (timed_out) */
    const char *what;           /* names it in errors: "git did not finish in time" */
    sb_req *r;                  /* NULL, or the request whose client going away cancels it */
    bool open_stdin;            /* stdin stays open for feed(); else the command gets none */
    /* Before each wait for a frame: may write SB_FRAME_STDIN / _STDIN_CLOSE
     * frames on fd (borrowed). NULL: nothing to send. */
    int (*feed)(void *ctx, int fd, sb_error *err);
    /* A frame of output (type SB_FRAME_STDOUT or SB_FRAME_STDERR). NULL: dropped. */
    int (*output)(void *ctx, char type, const char *data, size_t len, sb_error *err);
    void *ctx;
} sb_exec_run_opts;

typedef struct sb_exec_result {
    int exit_code;
    bool timed_out;             /* the agent killed it at timeout_ms */
    bool cancelled;             /* the client went away: it was killed */
} sb_exec_result;

/* 0 once the command exited (*res), or -1 + err: it could not start, the
 * sandbox stopped, a hook stopped it, the client went away (res->cancelled)
 * or no exit came in timeout_ms + 30 s. */
int sb_exec_run(sb_box *b, const sb_exec_run_opts *o, sb_exec_result *res, sb_error *err);

/* A command's stderr (borrowed) as an error message (owned): its last 400
 * bytes without trailing newlines, spaces and CRs, on one line (newlines as
 * spaces), valid UTF-8. */
char *sb_exec_message(const cb_buf *stderr_text);

/* Files (sb_files.c). */
int sb_files_read(sb_req *r);
int sb_files_read_raw(sb_req *r);
int sb_files_write(sb_req *r);
int sb_files_write_raw(sb_req *r);
extern const sb_upload_ops sb_files_upload_ops;
int sb_files_list(sb_req *r);
int sb_files_stat(sb_req *r);
int sb_files_exists(sb_req *r);
int sb_files_mkdir(sb_req *r);
int sb_files_delete(sb_req *r);
int sb_files_rename(sb_req *r);

/* The path rules of the files API, shared with file watching (sb_watch.c),
 * so that both resolve and refuse exactly the same things. */

/* Absolute, lexically normalised sandbox path (owned), or NULL + err
 * (VALIDATION_FAILED for NULL or "", NAME_TOO_LONG past 4096 bytes).
 * Relative paths are under /workspace; "." goes, ".." stops at "/"; the
 * result is "/" or has no "//", no trailing '/' and a real last name.
 * Pure: the kernel resolves the result later (sb_open_in_root). */
char *sb_files_norm_path(const char *in, sb_error *err);
/* Switch this thread's file-system identity (setfsuid/setfsgid) to the
 * user of sandbox b (acquired: its host uid in b's own id range, see
 * sb_box_user_id), or back to root (sb_files_as_server); no-ops with
 * --isolation none. Every file operation on a sandbox's tree runs between
 * the two. */
void sb_files_as_user(const sb_box *b);
void sb_files_as_server(void);
/* 0 when fd is on an ordinary file system; -1 + err when it is on a kernel
 * one the server must never act on (procfs, sysfs, devpts, cgroup v1/v2,
 * debugfs, securityfs, bpffs: PERMISSION_DENIED naming path), or when
 * fstatfs fails (its errno's code). */
int sb_files_check_fs(int fd, const char *path, sb_error *err);

#endif
