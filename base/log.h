/* base/log.h: structured log lines (logfmt) on stderr.
 *
 *   ts=2026-11-26T13:13:03.918002Z level=warn mod=kernel msg="bad signature" peer=...
 *
 * The level comes from CELLBOX_LOG (error|warn|info|debug; default warn for the
 * kernel, info for the server, set with cb_log_set_level). Thread-safe: each
 * line is written with one write(2). A no-op below the level: cheap to leave in.
 */
#ifndef CB_LOG_H
#define CB_LOG_H

#include "base/util.h"

typedef enum { CB_LOG_ERROR = 0, CB_LOG_WARN, CB_LOG_INFO, CB_LOG_DEBUG } cb_log_level;

void cb_log_set_level(cb_log_level level);
/* Write log lines to fd (default 2). The kernel points this at a copy of the
 * original stderr before it captures fds 1 and 2 for user output. */
void cb_log_set_fd(int fd);
void cb_log_init_from_env(cb_log_level fallback);  /* reads CELLBOX_LOG */
bool cb_log_enabled(cb_log_level level);
/* fmt produces the message text; it is quoted. Extra key=value pairs may follow
 * in kv (already formatted, may be NULL). */
void cb_log(cb_log_level level, const char *mod, const char *fmt, ...) CB_PRINTF(3, 4);
void cb_logkv(cb_log_level level, const char *mod, const char *kv, const char *fmt, ...)
    CB_PRINTF(4, 5);

#define cb_error(mod, ...) cb_log(CB_LOG_ERROR, mod, __VA_ARGS__)
#define cb_warn(mod, ...) cb_log(CB_LOG_WARN, mod, __VA_ARGS__)
#define cb_info(mod, ...) cb_log(CB_LOG_INFO, mod, __VA_ARGS__)
#define cb_debug(mod, ...)                                                                         \
    do {                                                                                           \
        if (cb_log_enabled(CB_LOG_DEBUG))                                                          \
            cb_log(CB_LOG_DEBUG, mod, __VA_ARGS__);                                                \
    } while (0)

#endif
