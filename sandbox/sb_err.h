/* sandbox/sb_err.h: the error codes of the HTTP API, in one table.
 *
 * Every failure a handler can report is one of these; sb_http turns it into
 * {"error": {"code": NAME, "message": ...}} with the table's HTTP status, in
 * one place (sb_http_error). Names and statuses follow the Cloudflare Sandbox
 * SDK (see docs/api.md); SANDBOX_NOT_FOUND, UNAUTHORIZED, TIMEOUT and the
 * others marked "cellbox" are ours, in the same style.
 */
#ifndef SB_ERR_H
#define SB_ERR_H

#define SB_ERRORS(X)                                   \
    X(VALIDATION_FAILED, 400)                          \
    X(UNAUTHORIZED, 401)              /* cellbox */    \
    X(PERMISSION_DENIED, 403)                          \
    X(READ_ONLY, 403)                                  \
    X(NOT_FOUND, 404)                 /* cellbox */    \
    X(SANDBOX_NOT_FOUND, 404)         /* cellbox */    \
    X(FILE_NOT_FOUND, 404)                             \
    X(COMMAND_NOT_FOUND, 404)                          \
    X(PROCESS_NOT_FOUND, 404)                          \
    X(SESSION_NOT_FOUND, 404)         /* cellbox */    \
    X(CONTEXT_NOT_FOUND, 404)                          \
    X(PORT_NOT_EXPOSED, 404)                           \
    X(PORT_ALREADY_EXPOSED, 409)                       \
    X(INVALID_PORT_NUMBER, 400)                        \
    X(METHOD_NOT_ALLOWED, 405)        /* cellbox */    \
    X(TIMEOUT, 408)                   /* cellbox */    \
    X(PROCESS_READY_TIMEOUT, 408)                      \
    X(FILE_EXISTS, 409)                                \
    X(SESSION_ALREADY_EXISTS, 409)                     \
    X(PROCESS_ALREADY_EXISTS, 409)    /* cellbox */    \
    X(SANDBOX_CONFLICT, 409)          /* cellbox */    \
    X(FILE_TOO_LARGE, 413)                             \
    X(REQUEST_TOO_LARGE, 413)         /* cellbox */    \
    X(IS_DIRECTORY, 400)                               \
    X(NOT_DIRECTORY, 400)                              \
    X(NAME_TOO_LONG, 400)                              \
    X(INVALID_COMMAND, 400)                            \
    X(DIRECTORY_NOT_EMPTY, 409)       /* cellbox */    \
    X(WATCH_LIMIT, 429)               /* cellbox */    \
    X(TOO_MANY_SANDBOXES, 429)        /* cellbox */    \
    X(STDIN_FULL, 429)                /* cellbox */    \
    X(WATCH_OVERFLOW, 503)            /* cellbox */    \
    X(NO_SPACE, 500)                                   \
    X(INTERNAL_ERROR, 500)                             \
    X(PROCESS_EXITED_BEFORE_READY, 500)                \
    X(SERVICE_NOT_RESPONDING, 502)                     \
    X(CONTAINER_UNAVAILABLE, 503)                      \
    X(INTERPRETER_NOT_READY, 503)                      \
    X(SHUTTING_DOWN, 503)             /* cellbox */    \
    X(PAUSE_NOT_SUPPORTED, 501)       /* cellbox */    \
    X(INVALID_GIT_URL, 400)                            \
    X(GIT_BRANCH_NOT_FOUND, 404)                       \
    X(GIT_CLONE_FAILED, 500)                           \
    X(GIT_NOT_AVAILABLE, 500)         /* cellbox */    \
    X(BACKUP_NOT_FOUND, 404)          /* cellbox */    \
    X(BACKUP_FAILED, 500)             /* cellbox */    \
    X(INVALID_MOUNT_CONFIG, 400)                       \
    X(MISSING_CREDENTIALS, 400)                        \
    X(BUCKET_ALREADY_MOUNTED, 409)    /* cellbox */    \
    X(MOUNT_NOT_FOUND, 404)           /* cellbox */    \
    X(S3FS_MOUNT_ERROR, 502)                           \
    X(MOUNT_NOT_AVAILABLE, 501)       /* cellbox */

typedef enum {
    SB_OK = 0,
#define SB_ERR_ENUM(name, status) SB_E_##name,
    SB_ERRORS(SB_ERR_ENUM)
#undef SB_ERR_ENUM
    SB_E__COUNT
} sb_err;

const char *sb_err_name(sb_err e);
int sb_err_status(sb_err e);
/* The error code for a file-system errno (ENOENT -> FILE_NOT_FOUND...). */
sb_err sb_err_from_errno(int e);
/* The code named name ("FILE_NOT_FOUND"), or SB_E_INTERNAL_ERROR. */
sb_err sb_err_from_name(const char *name);

/* A typed error with its message, filled by lower layers, replied by sb_http.
 * msg is a fixed buffer so that helpers can fill it without allocation. */
typedef struct sb_error {
    sb_err code;
    char msg[512];
} sb_error;

/* Set *err (if not NULL) and return code: `return sb_fail(err, SB_E_X, "...")`. */
sb_err sb_fail(sb_error *err, sb_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
