/* notebooks/nb_json.h: JSON exactly as Python's json module reads and
 * writes it, so that cellbox's notebooks are byte-identical to nbformat's.
 *
 * cJSON alone loses what nbformat keeps: 1.0 vs 1, integers above 2^53,
 * NaN/Infinity. nb_json_parse() builds ordinary cJSON trees (every getter
 * works) and records the Python spelling of each parsed number in its
 * valuestring ("1.0", "12345678901234567890", "NaN"); nb_json_write() prints
 * that spelling. Numbers made with cJSON_CreateNumber() print as integers
 * when integral, else as Python floats; nb_json_float() makes a number that
 * always prints as a float (papermill's durations).
 *
 * The writer is json.dumps(obj, indent=1, sort_keys=True,
 * separators=(",", ": "), ensure_ascii=False), what nbformat.write uses.
 *
 * Ownership: parse results are owned (cJSON_Delete); *err is owned (free).
 */
#ifndef NB_JSON_H
#define NB_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/json.h"

enum {
    NB_JSON_STRICT_UTF8 = 1,  /* invalid UTF-8 is an error (files); else replaced by U+FFFD */
};

/* A string holding U+0000 (JSON "\u0000": nbformat keeps it, in a source,
 * an output or metadata) is stored as CB_JSON_NUL (base/json.h); the
 * writers, and cb_json_print() for messages to a kernel, print it back as
 * \u0000. */
#define NB_JSON_NUL CB_JSON_NUL

/* NULL + *err ("truncated JSON: unexpected end of input at line 3 column 1")
 * on error. err may be NULL. */
cJSON *nb_json_parse(const char *data, size_t len, int flags, char **err);
/* The content parser handed to the kernel client (lenient UTF-8). */
cJSON *nb_json_parse_msg(const char *data, size_t len);

/* A mark the writer honours, in a type bit cJSON leaves alone: a string
 * marked AS_LINES is written as the list of its lines (nbformat's
 * split_lines, without building that list). */
#define NB_JSON_AS_LINES (1 << 12)
/* Removes the mark from j, its siblings after it and everything below. */
void nb_json_clear_marks(cJSON *j);

/* Appends j in nbformat's layout (indent 1, sorted keys, non-ASCII kept). */
void nb_json_write(cb_buf *out, const cJSON *j);
/* The same through out to fd: out is handed to fd each time it passes
 * 1 MiB and may hold the tail when this returns (the caller writes it).
 * -1 with errno when a write failed. */
int nb_json_write_fd(cb_buf *out, const cJSON *j, int fd);

/* Python's repr(float): shortest round-trip digits, "1.0", "1e-05",
 * "1e+16". Non-finite values give "inf", "-inf", "nan". out >= 32 bytes. */
void nb_json_float_repr(double v, char *out);
/* A number node that prints as a Python float. */
cJSON *nb_json_float(double v);
/* True when a number node holds a Python int (parsed as one, or integral
 * and made without a spelling). */
bool nb_json_is_int(const cJSON *n);
/* The Python spelling of a number node (owned). */
char *nb_json_number_text(const cJSON *n);

/* Python's str.splitlines(keepends=True) over UTF-8: calls fn for each
 * line (\n, \r\n, \r, \v, \f, \x1c-\x1e, U+0085, U+2028, U+2029). */
void nb_json_splitlines(const char *s, size_t len, void (*fn)(void *ctx, const char *line, size_t n),
                        void *ctx);

/* Inserts item (owned) before position index of arr, or appends when index
 * is past the end. (cJSON_InsertItemInArray() of Debian 12's libcjson
 * 1.7.15 refuses to insert in the middle of an array.) */
void nb_json_insert(cJSON *arr, int index, cJSON *item);

/* Deep copy that keeps number spellings (cJSON_Duplicate does too; this
 * is the named entry point). */
cJSON *nb_json_dup(const cJSON *j);

#endif
