/* sandbox/sb_util.h: small helpers private to the sandbox module.
 *
 * Ownership: functions returning char* or cJSON* return owned values (free()
 * / cJSON_Delete()); arguments are borrowed. Nothing here does I/O on
 * sandboxes or knows about HTTP.
 */
#ifndef SB_UTIL_H
#define SB_UTIL_H

#include <cjson/cJSON.h>
#include <sys/types.h>

#include "base/buf.h"
#include "base/util.h"
#include "sandbox/sb_err.h"

/* Sandbox ids: [a-z0-9-]{1,63}, not starting or ending with '-'. */
bool sb_id_valid(const char *id);
/* Process and session ids: [A-Za-z0-9._-]{1,64}, not "." or "..". */
bool sb_name_valid(const char *name);

/* Append data to out as valid UTF-8 (invalid bytes and NULs become U+FFFD).
 * An incomplete sequence at the end is kept back: its length is returned so
 * a stream can prepend it to the next chunk (pass final=true to flush it). */
size_t sb_utf8_append(cb_buf *out, const char *data, size_t len, bool final);
bool sb_utf8_valid(const char *data, size_t len);
/* Whether s holds an ASCII control character (below 0x20, or DEL). */
bool sb_has_ctl(const char *s);

/* Base64 (standard alphabet, padded). decode returns owned bytes or NULL. */
char *sb_b64_encode(const void *data, size_t len);
char *sb_b64_decode(const char *text, size_t *len_out);

/* "500ms", "30s", "10m", "2h", "1d" or a bare number of seconds -> ms; -1 on error. */
int64_t sb_duration_ms(const char *s);

/* A MIME type from a file name's extension (never NULL, borrowed). */
const char *sb_mime_guess(const char *name);

/* ISO date string of a µs timestamp, owned. */
char *sb_iso_new(int64_t real_us);

/* Write a file atomically without fsync (state that is cheap to lose). */
int sb_write_file_quick(const char *path, const void *data, size_t len, mode_t mode);

/* Milliseconds on the monotonic clock. */
static inline int64_t sb_now_ms(void) { return cb_mono_ns() / 1000000; }



/* Append v single-quoted for bash ('it'\''s'). */
void sb_sh_quote(cb_buf *b, const char *v);
/* Valid environment variable name ([A-Za-z_][A-Za-z0-9_]*). */
bool sb_env_name_valid(const char *k);
/* An "env" of a request: an object of strings under valid names. 0, or -1
 * with VALIDATION_FAILED in err. */
int sb_env_check(const cJSON *env, sb_error *err);
/* rm -rf without following symlinks or crossing file systems; 0 or -1. */
int sb_rm_rf(const char *path);
/* Signal every descendant of `root` (children, their children...), found
 * through /proc/PID/stat. Returns how many were signalled. */
int sb_signal_descendants(pid_t root, int sig);

/* Runs a host tool (argv[0] looked up in PATH) with stdin_text on its
 * stdin (NULL: /dev/null). 0, or -1 with CONTAINER_UNAVAILABLE naming the
 * purpose, the command and its stderr (or the packages that provide it). */
int sb_run_tool(char *const argv[], const char *stdin_text, const char *purpose, const char *packages,
                sb_error *err);

/* openat2 below `root` with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: "..",
 * absolute paths and symlinks cannot leave it (O_CLOEXEC added). fd or -1. */
int sb_open_in_root(int root, const char *path, int flags, mode_t mode);

#endif
