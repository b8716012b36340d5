/* sandbox/sb_proto.c: frames and fd passing; see sb_proto.h. Used by both
 * sides (server and agent), so it only uses plain syscalls and base/. */
#include "config.h"
#include "sandbox/sb_proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int write_full(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++, n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int sb_frame_write(int fd, char type, const void *data, size_t len)
{
    if (len > SB_FRAME_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    unsigned char hdr[5] = {(unsigned char)len, (unsigned char)(len >> 8),
                            (unsigned char)(len >> 16), (unsigned char)(len >> 24),
                            (unsigned char)type};
    struct iovec iov[2] = {{hdr, 5}, {(void *)data, len}};
    return write_full(fd, iov, len ? 2 : 1);
}

int sb_frame_write_str(int fd, char type, const char *s)
{
    return sb_frame_write(fd, type, s, strlen(s));
}

/* 1 on EOF before the first byte, 0 on success, -1 on error / short read. */
static int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            if (got == 0)
                return 1;
            errno = EPROTO;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int sb_frame_read(int fd, char *type, cb_buf *payload)
{
    unsigned char hdr[5];
    int r = read_full(fd, hdr, 5);
    if (r != 0)
        return r;
    uint32_t len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
                   (uint32_t)hdr[3] << 24;
    if (len > SB_FRAME_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    *type = (char)hdr[4];
    cb_buf_reset(payload);
    cb_buf_reserve(payload, len + 1);
    if (len && read_full(fd, payload->data, len) != 0) {
        if (errno == 0)
            errno = EPROTO;
        return -1;
    }
    payload->len = len;
    payload->data[len] = '\0';
    return 0;
}

int sb_ctl_send(int sock, const void *data, size_t len, int fd)
{
    struct iovec iov = {(void *)data, len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&u, 0, sizeof u);
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        ssize_t w = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (w >= 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

ssize_t sb_ctl_recv(int sock, void *data, size_t cap, int *fd_out)
{
    struct iovec iov = {data, cap};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    *fd_out = -1;
    ssize_t r;
    do
        r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(fd_out, CMSG_DATA(c), sizeof(int));
    return r;
}

int sb_ctl_open_channel(int ctl)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    int rc = sb_ctl_send(ctl, "open", 4, sv[1]);
    int e = errno;
    close(sv[1]);
    if (rc < 0) {
        close(sv[0]);
        errno = e;
        return -1;
    }
    return sv[0];
}

void sb_frame_put(cb_buf *out, char type, const void *data, size_t len)
{
    unsigned char hdr[5] = {(unsigned char)len, (unsigned char)(len >> 8),
                            (unsigned char)(len >> 16), (unsigned char)(len >> 24),
                            (unsigned char)type};
    cb_buf_append(out, hdr, 5);
    if (len)
        cb_buf_append(out, data, len);
}

long sb_frame_next(const cb_buf *in, char *type, const char **data, size_t *len)
{
    if (in->len < 5)
        return 0;
    const unsigned char *p = (const unsigned char *)in->data;
    size_t n = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    if (n > SB_FRAME_MAX)
        return -1;
    if (in->len - 5 < n)
        return 0;
    *type = (char)p[4];
    *data = in->data + 5;
    *len = n;
    return (long)(n + 5);
}
