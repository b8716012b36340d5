/* notebooks/nb_yaml.c: YAML parameter files (-f params.yaml), read with
 * libyaml when cellbox is built with it (HAVE_LIBYAML), typed the way
 * papermill's loader types them: PyYAML's SafeLoader resolvers for YAML 1.1
 * plain scalars (null, bool incl. yes/no/on/off, int incl. 0x/0o/0b/
 * sexagesimal, float incl. .inf/.nan) with dates left as strings
 * (papermill's NoDatesSafeLoader). Quoted scalars are strings. */
#include "config.h"
#include "notebooks/nb_papermill.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"
#include "notebooks/nb_json.h"

#if HAVE_LIBYAML
#include <yaml.h>

bool nb_yaml_supported(void)
{
    return true;
}

static bool is_one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static bool all_in(const char *s, const char *set)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr(set, *s))
            return false;
    return true;
}

/* Strips '_' (PyYAML's constructors do) into an owned copy. */
static char *no_underscores(const char *s)
{
    char *o = cb_strdup(s), *w = o;
    for (const char *p = s; *p; p++)
        if (*p != '_')
            *w++ = *p;
    *w = '\0';
    return o;
}

/* [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+ and the float variant: base 60 */
static bool sexagesimal(const char *s, bool fractional, double *out)
{
    const char *p = s;
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*p) || !strchr(p, ':'))
        return false;
    double v = 0;
    const char *q = p;
    bool first = true;
    while (*q) {
        char *end;
        double part = strtod(q, &end);
        if (end == q)
            return false;
        for (const char *c = q; c < end; c++)
            if (!(isdigit((unsigned char)*c) || (fractional && *c == '.' && !strchr(end, ':'))))
                return false;
        if (!first && part >= 60)
            return false;
        v = v * 60 + part;
        first = false;
        q = end;
        if (*q == ':')
            q++;
        else if (*q)
            return false;
    }
    *out = sign * v;
    return true;
}

static cJSON *int_node(const char *digits_text)
{
    cJSON *n = cJSON_CreateNumber(strtod(digits_text, NULL));
    n->valuestring = cb_strdup(digits_text);
    return n;
}

/* The implicit resolvers of PyYAML's SafeLoader (YAML 1.1), minus timestamps. */
static cJSON *resolve_plain(const char *s)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", NULL};
    static const char *const falses[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", NULL};
    if (is_one_of(s, nulls))
        return cJSON_CreateNull();
    if (is_one_of(s, trues))
        return cJSON_CreateTrue();
    if (is_one_of(s, falses))
        return cJSON_CreateFalse();
    cb_autofree char *t = no_underscores(s);
    const char *p = t;
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    bool s_has_sign = s[0] == '+' || s[0] == '-';
    const char *body = s + s_has_sign;
    /* ints */
    long long v;
    char buf[64];
    if (strncmp(body, "0b", 2) == 0 && all_in(body + 2, "01_")) {
        v = strtoll(p + 2, NULL, 2);
        snprintf(buf, sizeof buf, "%lld", sign * v);
        return int_node(buf);
    }
    if (strncmp(body, "0x", 2) == 0 && all_in(body + 2, "0123456789abcdefABCDEF_")) {
        v = strtoll(p + 2, NULL, 16);
        snprintf(buf, sizeof buf, "%lld", sign * v);
        return int_node(buf);
    }
    if (body[0] == '0' && body[1] && all_in(body + 1, "01234567_")) {
        v = strtoll(p, NULL, 8);
        snprintf(buf, sizeof buf, "%lld", sign * v);
        return int_node(buf);
    }
    if (strcmp(body, "0") == 0 || (body[0] >= '1' && body[0] <= '9' && all_in(body, "0123456789_"))) {
        if (sign < 0 && strcmp(p, "0") != 0)
            snprintf(buf, sizeof buf, "-%s", p);
        else
            snprintf(buf, sizeof buf, "%s", p);
        return int_node(buf);
    }
    double d;
    if (body[0] >= '1' && body[0] <= '9' && !strchr(body, '.') && sexagesimal(t, false, &d)) {
        snprintf(buf, sizeof buf, "%.0f", d);
        return int_node(buf);
    }
    /* floats */
    if (strcmp(body, ".inf") == 0 || strcmp(body, ".Inf") == 0 || strcmp(body, ".INF") == 0)
        return nb_json_float(sign * INFINITY);
    if (!s_has_sign && (strcmp(body, ".nan") == 0 || strcmp(body, ".NaN") == 0 || strcmp(body, ".NAN") == 0))
        return nb_json_float(NAN);
    /* [-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?  (a dot is required) */
    const char *q = body;
    bool lead = isdigit((unsigned char)*q);
    while (isdigit((unsigned char)*q) || (*q == '_' && q != body))
        q++;
    if (*q == '.' && (lead || isdigit((unsigned char)q[1]))) {
        q++;
        while (isdigit((unsigned char)*q) || *q == '_')
            q++;
        if ((*q == 'e' || *q == 'E') && (q[1] == '+' || q[1] == '-') && isdigit((unsigned char)q[2])) {
            q += 2;
            while (isdigit((unsigned char)*q))
                q++;
        }
        if (!*q)
            return nb_json_float(strtod(t, NULL));
    }
    if (body[0] >= '0' && body[0] <= '9' && strchr(body, ':') && sexagesimal(t, true, &d))
        return nb_json_float(d);
    return cJSON_CreateString(s);
}

static cJSON *scalar_node(const yaml_event_t *ev, char **err)
{
    const char *value = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag && strcmp(tag, "!") != 0) {
        if (strcmp(tag, YAML_STR_TAG) == 0)
            return cJSON_CreateString(value);
        cJSON *r = resolve_plain(value);
        if ((strcmp(tag, YAML_INT_TAG) == 0 && !nb_json_is_int(r)) ||
            (strcmp(tag, YAML_FLOAT_TAG) == 0 && !cJSON_IsNumber(r)) ||
            (strcmp(tag, YAML_BOOL_TAG) == 0 && !cJSON_IsBool(r)) ||
            (strcmp(tag, YAML_NULL_TAG) == 0 && !cJSON_IsNull(r))) {
            *err = cb_printf_new("value '%s' does not match its tag %s", value, tag);
            cJSON_Delete(r);
            return NULL;
        }
        if (strcmp(tag, YAML_FLOAT_TAG) == 0 && nb_json_is_int(r)) {
            double d = r->valuedouble;
            cJSON_Delete(r);
            return nb_json_float(d);
        }
        if (strcmp(tag, YAML_INT_TAG) && strcmp(tag, YAML_FLOAT_TAG) && strcmp(tag, YAML_BOOL_TAG) &&
            strcmp(tag, YAML_NULL_TAG)) {
            cJSON_Delete(r);
            *err = cb_printf_new("unsupported YAML tag %s", tag);
            return NULL;
        }
        return r;
    }
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.plain_implicit)
        return resolve_plain(value);
    return cJSON_CreateString(value);
}

typedef struct frame {
    cJSON *node;
    char *key;        /* pending key in a mapping */
    char *anchor;
} frame;

cJSON *nb_yaml_parse(const char *text, size_t len, char **err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        *err = cb_strdup("cannot initialise the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    frame stack[128];
    int depth = 0;
    cJSON *root = NULL, *anchors = cJSON_CreateObject();
    bool done = false, failed = false, have_doc = false;
    *err = NULL;
    while (!done && !failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            *err = cb_printf_new("YAML syntax error at line %zu column %zu: %s", parser.problem_mark.line + 1,
                                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "?");
            failed = true;
            break;
        }
        cJSON *value = NULL;
        const char *anchor = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (have_doc) {
                *err = cb_strdup("the parameters file holds more than one YAML document");
                failed = true;
            }
            have_doc = true;
            break;
        case YAML_SCALAR_EVENT:
            value = scalar_node(&ev, err);
            anchor = (const char *)ev.data.scalar.anchor;
            failed = !value;
            break;
        case YAML_ALIAS_EVENT: {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(anchors, (const char *)ev.data.alias.anchor);
            if (!a) {
                *err = cb_printf_new("unknown YAML alias *%s", ev.data.alias.anchor);
                failed = true;
            } else {
                value = nb_json_dup(a);
            }
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth == (int)CB_ARRAY_LEN(stack)) {
                *err = cb_strdup("YAML nested too deeply");
                failed = true;
                break;
            }
            if (depth > 0 && cJSON_IsObject(stack[depth - 1].node) && !stack[depth - 1].key) {
                *err = cb_strdup("YAML mapping keys must be plain values");
                failed = true;
                break;
            }
            stack[depth].node = ev.type == YAML_SEQUENCE_START_EVENT ? cJSON_CreateArray() : cJSON_CreateObject();
            stack[depth].key = NULL;
            anchor = ev.type == YAML_SEQUENCE_START_EVENT ? (const char *)ev.data.sequence_start.anchor
                                                          : (const char *)ev.data.mapping_start.anchor;
            stack[depth].anchor = anchor ? cb_strdup(anchor) : NULL;
            anchor = NULL;
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            value = stack[depth].node;
            anchor = stack[depth].anchor;
            if (anchor)
                cb_json_set(anchors, anchor, nb_json_dup(value));
            free(stack[depth].anchor);
            free(stack[depth].key);
            anchor = NULL;
            break;
        default:
            break;
        }
        if (value && !failed) {
            if (anchor)
                cb_json_set(anchors, anchor, nb_json_dup(value));
            if (depth == 0) {
                cJSON_Delete(root);
                root = value;
            } else if (cJSON_IsArray(stack[depth - 1].node)) {
                cJSON_AddItemToArray(stack[depth - 1].node, value);
            } else if (!stack[depth - 1].key) {
                if (cJSON_IsObject(value) || cJSON_IsArray(value)) {
                    *err = cb_strdup("YAML mapping keys must be plain values");
                    cJSON_Delete(value);
                    failed = true;
                } else {
                    cb_autofree char *k = cJSON_IsString(value) ? cb_strdup(value->valuestring)
                                          : cJSON_IsNumber(value) ? nb_json_number_text(value)
                                          : cJSON_IsNull(value) ? cb_strdup("None")
                                          : cb_strdup(cJSON_IsTrue(value) ? "True" : "False");
                    stack[depth - 1].key = cb_steal(&k);
                    cJSON_Delete(value);
                }
            } else {
                cb_json_set(stack[depth - 1].node, stack[depth - 1].key, value);
                free(stack[depth - 1].key);
                stack[depth - 1].key = NULL;
            }
        } else if (value) {
            cJSON_Delete(value);
        }
        yaml_event_delete(&ev);
    }
    while (depth > 0) {
        depth--;
        cJSON_Delete(stack[depth].node);  /* open containers are not attached yet */
        free(stack[depth].key);
        free(stack[depth].anchor);
    }
    yaml_parser_delete(&parser);
    cJSON_Delete(anchors);
    if (failed) {
        cJSON_Delete(root);
        return NULL;
    }
    return root ? root : cJSON_CreateNull();
}

#else /* !HAVE_LIBYAML */

bool nb_yaml_supported(void)
{
    return false;
}

cJSON *nb_yaml_parse(const char *text, size_t len, char **err)
{
    (void)text;
    (void)len;
    *err = cb_strdup("YAML support needs cellbox built with libyaml (apt-get install libyaml-dev)");
    return NULL;
}

#endif
