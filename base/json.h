/* base/json.h: small helpers over cJSON.
 *
 * Getters borrow: they return pointers into the object (valid while it lives)
 * or the given default when the key is missing or has another type.
 * cb_json_print() returns an owned compact string.
 *
 * U+0000 inside a string: cJSON's strings are C strings, so a parser that
 * must keep "\u0000" (notebooks, kernel messages holding one) stores it as
 * CB_JSON_NUL, the two bytes C0 80 (an overlong form valid UTF-8 never holds,
 * so it cannot be confused with text); cb_json_print() prints it back as
 * \u0000 and code handing such a string to Python turns it into U+0000.
 */
#ifndef CB_JSON_H
#define CB_JSON_H

#include <cjson/cJSON.h>

#include "base/util.h"

#define CB_JSON_NUL "\xC0\x80"

const char *cb_json_str(const cJSON *obj, const char *key, const char *dflt);
double cb_json_num(const cJSON *obj, const char *key, double dflt);
long long cb_json_int(const cJSON *obj, const char *key, long long dflt);
bool cb_json_bool(const cJSON *obj, const char *key, bool dflt);
cJSON *cb_json_obj(const cJSON *obj, const char *key);   /* borrowed object or NULL */
cJSON *cb_json_arr(const cJSON *obj, const char *key);   /* borrowed array or NULL */
bool cb_json_has(const cJSON *obj, const char *key);
char *cb_json_print(const cJSON *j);                     /* owned; never NULL; CB_JSON_NUL as \u0000 */
/* Parse a buffer that is not NUL-terminated: one JSON value, then only white
 * space. NULL on error. */
cJSON *cb_json_parse(const char *data, size_t len);
/* Does JSON text hold a "\u0000" escape (which cJSON would cut a string at)? */
bool cb_json_has_nul_escape(const char *data, size_t len);
/* Replace (or add) key in obj; takes ownership of val. */
void cb_json_set(cJSON *obj, const char *key, cJSON *val);
/* Return an owned string array from a list of C strings. */
cJSON *cb_json_strings(const char *const *items, size_t n);

#endif
