/* sandbox/sb_util.h: small helpers private to the sandbox module.
 *
 * Ownership: functions returning char* or cJSON* return owned values (free()
 * / cJSON_Delete()); arguments are borrowed. Nothing here does I/O on
 * sandboxes or knows about HTTP.
 */
#ifndef SB_UTIL_H
#define SB_UTIL_H

#include <cjson/cJSON.h>
#include <pthread.h>
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

/* File names and paths in JSON. On Linux a name is any bytes but NUL and
 * '/'; a JSON string must be UTF-8, and one bad name would make a whole reply
 * unreadable. So every reply field holding a name or path (read from the
 * file system, or given by a client as bytes) is added with
 * sb_json_add_path, the one place this is decided:
 *   - `key` holds it as valid UTF-8: each byte that is not part of a valid
 *     sequence becomes U+FFFD (as Node's fs and Go's encoding/json show such
 *     names), so clients that ignore the rest still get a readable name;
 *   - only when that changed it, `key`Base64 ("pathBase64", "nameBase64",
 *     "oldPathBase64"...) holds the exact bytes (standard base64, padded).
 * Requests name such a file by the same pair: sb_json_path_arg reads a
 * path-like field `key` or `key`Base64 (exactly one). The decoded bytes
 * are only a path: callers apply their usual path rules to them.
 *
 * sb_utf8_lossy: an owned valid UTF-8 copy of the C string s (borrowed);
 * *lossy (if not NULL) says whether bytes were replaced. For text that only
 * has to be readable, such as error messages that quote a path.
 * sb_json_add_path: s is borrowed (copied into obj, which owns what is added). */
char *sb_utf8_lossy(const char *s, bool *lossy);
void sb_json_add_path(cJSON *obj, const char *key, const char *s);
/* The bytes of a path-like argument given as text or as base64 (b64), both
 * borrowed, either NULL: *out is an owned copy of text, the decoded b64, or
 * NULL when neither is given. -1 with VALIDATION_FAILED in err when both
 * are given, b64 is not base64, or it decodes to bytes holding a NUL; key
 * names the argument in the message. */
int sb_bytes_arg(const char *key, const char *text, const char *b64, char **out, sb_error *err);
/* sb_bytes_arg on the fields `key` and `key`Base64 of obj (borrowed; NULL
 * is an empty request). A field that is there and not null must be a string. */
int sb_json_path_arg(const cJSON *obj, const char *key, char **out, sb_error *err);
/* Whether s holds an ASCII control character (below 0x20, or DEL). */
bool sb_has_ctl(const char *s);

/* Base64 (standard alphabet, padded). decode returns owned bytes or NULL. */
char *sb_b64_encode(const void *data, size_t len);
char *sb_b64_decode(const char *text, size_t *len_out);

/* The largest timeout a request may give, in ms (a year): larger values
 * would overflow deadlines counted in nanoseconds. */
#define SB_TIMEOUT_MAX_MS 31536000000LL

/* "500ms", "30s", "10m", "2h", "1d" or a bare number of seconds -> ms; -1 on
 * error, also for "nan", "inf" and values past ~292 years (no int64 overflow). */
int64_t sb_duration_ms(const char *s);

/* A MIME type from a file name's extension (never NULL, borrowed). */
const char *sb_mime_guess(const char *name);

/* ISO date string of a µs timestamp, owned. */
char *sb_iso_new(int64_t real_us);
/* obj[key] = the ISO date of now ("timestamp", "createdAt"...). */
void sb_json_add_now(cJSON *obj, const char *key);

/* Write a file atomically without fsync (state that is cheap to lose). */
int sb_write_file_quick(const char *path, const void *data, size_t len, mode_t mode);

/* Milliseconds on the monotonic clock. */
static inline int64_t sb_now_ms(void) { return cb_mono_ns() / 1000000; }

/* pthread_cond_timedwait for at most ms milliseconds (mu held, as there):
 * the polls that wait for a sandbox's state to change, waking early when
 * its cv is signalled. */
void sb_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms);



/* Append v single-quoted for bash ('it'\''s'). */
void sb_sh_quote(cb_buf *b, const char *v);
/* Valid environment variable name ([A-Za-z_][A-Za-z0-9_]*). */
bool sb_env_name_valid(const char *k);
/* An "env" of a request: an object of strings under valid names, each
 * NAME=value at most SB_ENV_VAR_MAX bytes and all at most SB_ENV_TOTAL_MAX
 * (execve's limits). 0, or -1 with VALIDATION_FAILED in err. */
#define SB_ENV_VAR_MAX (128u << 10)
#define SB_ENV_TOTAL_MAX (1u << 20)
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
