/* base/json.c: see json.h. */
#include "config.h"
#include "base/json.h"
#include "base/buf.h"

#include <limits.h>
#include <math.h>
#include <string.h>

const char *cb_json_str(const cJSON *obj, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : dflt;
}

double cb_json_num(const cJSON *obj, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

long long cb_json_int(const cJSON *obj, const char *key, long long dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return dflt;
    /* clamp: converting an out-of-range double to an integer is undefined */
    if (v->valuedouble >= 9.2e18)
        return LLONG_MAX;
    if (v->valuedouble <= -9.2e18)
        return LLONG_MIN;
    return (long long)v->valuedouble;
}

bool cb_json_bool(const cJSON *obj, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    return dflt;
}

cJSON *cb_json_obj(const cJSON *obj, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsObject(v) ? v : NULL;
}

cJSON *cb_json_arr(const cJSON *obj, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsArray(v) ? v : NULL;
}

bool cb_json_has(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key) != NULL;
}

char *cb_json_print(const cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    if (!text)
        return cb_strdup("null");
    if (!strstr(text, CB_JSON_NUL))  /* C0 never occurs in UTF-8: the usual case */
        return text;
    cb_buf b = CB_BUF_INIT;
    for (const char *p = text, *hit; *p; p = hit + 2) {
        if (!(hit = strstr(p, CB_JSON_NUL))) {
            cb_buf_puts(&b, p);
            break;
        }
        cb_buf_append(&b, p, (size_t)(hit - p));
        cb_buf_puts(&b, "\\u0000");
    }
    cJSON_free(text);
    return cb_buf_steal(&b);
}

cJSON *cb_json_parse(const char *data, size_t len)
{
    /* one value and nothing after it but white space (RFC 8259): cJSON
     * alone stops after the first value, so `{...} junk` or `{...}{...}`
     * passed as the first object */
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!j)
        return NULL;
    for (const char *p = end, *stop = data + len; p && p < stop; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(j);
            return NULL;
        }
    return j;
}

bool cb_json_has_nul_escape(const char *data, size_t len)
{
    for (const char *p = data, *end = data + len; (p = memmem(p, (size_t)(end - p), "\\u0000", 6)); p += 6) {
        size_t bs = 0;  /* "\\u0000" is a backslash and "u0000": count the run */
        for (const char *q = p; q > data && q[-1] == '\\'; q--)
            bs++;
        if (bs % 2 == 0)
            return true;
    }
    return false;
}

void cb_json_set(cJSON *obj, const char *key, cJSON *val)
{
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, val);
    else
        cJSON_AddItemToObject(obj, key, val);
}

cJSON *cb_json_strings(const char *const *items, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(items[i]));
    return a;
}
