/* base/util.c: allocation, time, ids and file helpers shared by all modules.
 * Nothing here knows about Jupyter, Python or sandboxes. */
#include "config.h"
#include "base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

static CB_NORETURN void oom(size_t n)
{
    fprintf(stderr, "cellbox: out of memory (allocating %zu bytes)\n", n);
    abort();
}

void *cb_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *cb_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *cb_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *cb_strdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        oom(strlen(s));
    return d;
}

char *cb_strndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d)
        oom(n);
    return d;
}

char *cb_vprintf_new(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        oom(strlen(fmt));
    return s;
}

char *cb_printf_new(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = cb_vprintf_new(fmt, ap);
    va_end(ap);
    return s;
}

void cb_die(const char *fmt, ...)
{
    va_list ap;
    fputs("cellbox: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void cb_die_errno(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    fputs("cellbox: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(err));
    exit(1);
}

void cb_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

int64_t cb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double cb_mono_s(void)
{
    return (double)cb_mono_ns() / 1e9;
}

int64_t cb_real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cb_iso_date(char *buf, int64_t us)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, CB_ISO_DATE_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

int64_t cb_iso_date_parse(const char *s)
{
    /* Accepts YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+HH:MM|-HH:MM] (what Jupyter peers send). */
    struct tm tm = {0};
    int n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    const char *p = s + n;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (digits < 6) {
                frac = frac * 10 + (*p - '0');
                digits++;
            }
        }
        while (digits++ < 6)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) < 1)
            return -1;
        off = (int64_t)(hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
    }
    time_t t = timegm(&tm);
    return ((int64_t)t - off) * 1000000 + frac;
}

char *cb_random_hex(size_t nbytes)
{
    unsigned char raw[64];
    char *out = cb_malloc(nbytes * 2 + 1);
    size_t done = 0;
    while (done < nbytes) {
        size_t n = nbytes - done < sizeof raw ? nbytes - done : sizeof raw;
        randombytes_buf(raw, n);
        sodium_bin2hex(out + done * 2, n * 2 + 1, raw, n);
        done += n;
    }
    out[nbytes * 2] = '\0';
    return out;
}

void cb_uuid4(char buf[37])
{
    unsigned char b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

char *cb_read_file(const char *path, size_t *len_out)
{
    cb_autoclose int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return NULL;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, len = 0;
    char *buf = cb_malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = cb_realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

int cb_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int cb_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    cb_autofree char *tmp = cb_printf_new("%s.tmp.%d.%s", path, (int)getpid(), "XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fchmod(fd, mode) < 0 || cb_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

int cb_mkdir_p(const char *path, mode_t mode)
{
    cb_autofree char *p = cb_strdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(p, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

char *cb_path_join(const char *a, const char *b)
{
    if (!a || !*a || b[0] == '/')
        return cb_strdup(b);
    size_t la = strlen(a);
    return cb_printf_new("%s%s%s", a, a[la - 1] == '/' ? "" : "/", b);
}

char *cb_self_exe(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return cb_strdup(buf);
}

const char *cb_home_dir(void)
{
    const char *h = getenv("HOME");
    if (h && *h)
        return h;
    struct passwd *pw = getpwuid(getuid());
    return pw ? pw->pw_dir : "/";
}

bool cb_str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool cb_str_has_suffix(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

void cb_proc_each(cb_proc_fn fn, void *arg)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        /* "pid (comm) state ppid pgrp ...": comm may hold anything, ')' too */
        char *r = strrchr(buf, ')'), state;
        int ppid, pgrp;
        if (r && sscanf(r + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 &&
            !fn((pid_t)atoi(e->d_name), state, (pid_t)ppid, (pid_t)pgrp, arg))
            break;
    }
    closedir(d);
}
