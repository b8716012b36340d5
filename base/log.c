/* base/log.c: see log.h. Lines are built in a stack buffer and written with a
 * single write(2) so concurrent threads never interleave within a line. */
#include "config.h"
#include "base/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static volatile int log_level = CB_LOG_WARN;
static volatile int log_fd = 2;
static const char *level_names[] = {"error", "warn", "info", "debug"};

void cb_log_set_level(cb_log_level level)
{
    log_level = level;
}

void cb_log_set_fd(int fd)
{
    log_fd = fd;
}

void cb_log_init_from_env(cb_log_level fallback)
{
    const char *e = getenv("CELLBOX_LOG");
    log_level = fallback;
    if (!e)
        return;
    for (int i = 0; i < (int)CB_ARRAY_LEN(level_names); i++)
        if (strcasecmp(e, level_names[i]) == 0)
            log_level = i;
}

bool cb_log_enabled(cb_log_level level)
{
    return (int)level <= log_level;
}

static void vlog(cb_log_level level, const char *mod, const char *kv, const char *fmt, va_list ap)
{
    if (!cb_log_enabled(level))
        return;
    char line[2048], msg[1536], ts[CB_ISO_DATE_LEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cb_iso_date(ts, cb_real_us());
    size_t n = (size_t)snprintf(line, sizeof line, "ts=%s level=%s mod=%s msg=\"", ts,
                                level_names[level], mod);
    for (const char *p = msg; *p && n < sizeof line - 8; p++) {
        if (*p == '"' || *p == '\\')
            line[n++] = '\\';
        if (*p == '\n') {
            line[n++] = '\\';
            line[n++] = 'n';
            continue;
        }
        line[n++] = *p;
    }
    line[n++] = '"';
    if (kv && *kv && n < sizeof line - 2)
        n += (size_t)snprintf(line + n, sizeof line - n - 1, " %s", kv);
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t CB_UNUSED w = write(log_fd, line, n);
}

void cb_log(cb_log_level level, const char *mod, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, mod, NULL, fmt, ap);
    va_end(ap);
}

void cb_logkv(cb_log_level level, const char *mod, const char *kv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, mod, kv, fmt, ap);
    va_end(ap);
}
