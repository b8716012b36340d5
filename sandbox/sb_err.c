/* sandbox/sb_err.c: the error table of sb_err.h and errno mapping. */
#include "config.h"
#include "sandbox/sb_err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct { const char *name; int status; } table[] = {
    {"OK", 200},
#define SB_ERR_ROW(name, status) {#name, status},
    SB_ERRORS(SB_ERR_ROW)
#undef SB_ERR_ROW
};

const char *sb_err_name(sb_err e)
{
    return (unsigned)e < SB_E__COUNT ? table[e].name : "INTERNAL_ERROR";
}

int sb_err_status(sb_err e)
{
    return (unsigned)e < SB_E__COUNT ? table[e].status : 500;
}

sb_err sb_err_from_errno(int e)
{
    switch (e) {
    case ENOENT: return SB_E_FILE_NOT_FOUND;
    case EACCES: case EPERM: case EXDEV: case ELOOP: return SB_E_PERMISSION_DENIED;
    case EEXIST: return SB_E_FILE_EXISTS;
    case EISDIR: return SB_E_IS_DIRECTORY;
    case ENOTDIR: return SB_E_NOT_DIRECTORY;
    case EFBIG: return SB_E_FILE_TOO_LARGE;
    case ENOSPC: case EDQUOT: return SB_E_NO_SPACE;
    case EROFS: return SB_E_READ_ONLY;
    case ENAMETOOLONG: return SB_E_NAME_TOO_LONG;
    case ENOTEMPTY: return SB_E_DIRECTORY_NOT_EMPTY;
    case EINVAL: return SB_E_VALIDATION_FAILED;
    default: return SB_E_INTERNAL_ERROR;
    }
}

sb_err sb_fail(sb_error *err, sb_err code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

sb_err sb_err_from_name(const char *name)
{
    for (int i = 1; i < SB_E__COUNT; i++)
        if (name && strcmp(table[i].name, name) == 0)
            return (sb_err)i;
    return SB_E_INTERNAL_ERROR;
}
