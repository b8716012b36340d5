/* base/util.h: the small shared base every module uses.
 *
 * Allocation: cb_malloc/cb_calloc/cb_realloc/cb_strdup never return NULL; on
 * out-of-memory they abort with a message (the only sane reaction in this
 * program). Everything returned by a function named *_new, *_dup, *_read or
 * documented "returns owned" is freed by the caller with free() unless the
 * header says otherwise.
 *
 * Cleanup helpers in the spirit of bubblewrap: a variable declared
 * `cb_autofree char *s = ...;` is freed when it leaves scope, `cb_autoclose
 * int fd` is closed; cb_steal() hands the value out and leaves NULL/-1 behind.
 *
 * cb_die() is for setup code that can only abort (argument parsing, process
 * start). Servers never call it while handling a request.
 */
#ifndef CB_UTIL_H
#define CB_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#define CB_NORETURN __attribute__((noreturn))
#define CB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CB_UNUSED __attribute__((unused))
#define CB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *cb_malloc(size_t n);
void *cb_calloc(size_t n, size_t size);
void *cb_realloc(void *p, size_t n);
char *cb_strdup(const char *s);          /* NULL in, NULL out */
char *cb_strndup(const char *s, size_t n);
char *cb_printf_new(const char *fmt, ...) CB_PRINTF(1, 2);  /* returns owned */
char *cb_vprintf_new(const char *fmt, va_list ap);

CB_NORETURN void cb_die(const char *fmt, ...) CB_PRINTF(1, 2);
CB_NORETURN void cb_die_errno(const char *fmt, ...) CB_PRINTF(1, 2);

static inline void cb_freep(void *p) { free(*(void **)p); }
void cb_closep(int *fd);
#define cb_autofree __attribute__((cleanup(cb_freep)))
#define cb_autoclose __attribute__((cleanup(cb_closep)))
static inline void *cb_steal_ptr(void *pp) { void **p = (void **)pp; void *v = *p; *p = NULL; return v; }
#define cb_steal(pp) ((__typeof__(*(pp)))cb_steal_ptr(pp))
static inline int cb_steal_fd(int *fd) { int v = *fd; *fd = -1; return v; }

/* Time. */
int64_t cb_mono_ns(void);                 /* CLOCK_MONOTONIC in ns */
double cb_mono_s(void);
int64_t cb_real_us(void);                 /* CLOCK_REALTIME in µs */
/* ISO 8601 UTC with microseconds and zone, e.g. 2026-11-26T13:13:03.918002Z.
 * buf must hold at least CB_ISO_DATE_LEN bytes. */
#define CB_ISO_DATE_LEN 64
void cb_iso_date(char *buf, int64_t real_us);
int64_t cb_iso_date_parse(const char *s);  /* µs since epoch, or -1 */

/* Random hex string of 2*nbytes characters (libsodium's CSPRNG). Returns owned. */
char *cb_random_hex(size_t nbytes);
/* RFC 4122 version-4 UUID, 36 chars + NUL into buf. */
void cb_uuid4(char buf[37]);

/* Files. */
char *cb_read_file(const char *path, size_t *len_out);  /* returns owned, NUL-terminated; NULL + errno */
/* Write data to path atomically (temp file in the same folder, fsync, rename).
 * mode applies to the new file. Returns 0 or -1 with errno. */
int cb_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
int cb_mkdir_p(const char *path, mode_t mode);          /* 0 or -1 with errno */
int cb_write_all(int fd, const void *data, size_t len); /* handles EINTR/partial; 0 or -1 */
char *cb_path_join(const char *a, const char *b);       /* returns owned */
char *cb_self_exe(void);                                /* absolute path of this binary; owned */
const char *cb_home_dir(void);

/* Calls fn for each process in /proc (its pid, state letter, parent and
 * process group) until fn returns false. */
typedef bool (*cb_proc_fn)(pid_t pid, char state, pid_t ppid, pid_t pgrp, void *arg);
void cb_proc_each(cb_proc_fn fn, void *arg);

bool cb_str_has_prefix(const char *s, const char *prefix);
bool cb_str_has_suffix(const char *s, const char *suffix);

#endif
