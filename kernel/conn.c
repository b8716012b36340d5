/* kernel/conn.c: connection files. Validation is strict and the messages say
 * exactly what is wrong, since a kernel started with a bad file has no other
 * way to tell its user. */
#include "config.h"
#include "kernel/conn.h"

#include <errno.h>
#include <string.h>

#include "base/json.h"
#include "base/util.h"

static const struct {
    const char *name;
    size_t off;
} port_fields[] = {
    {"shell_port", offsetof(kn_conn, shell_port)},   {"iopub_port", offsetof(kn_conn, iopub_port)},
    {"stdin_port", offsetof(kn_conn, stdin_port)},   {"control_port", offsetof(kn_conn, control_port)},
    {"hb_port", offsetof(kn_conn, hb_port)},
};

int kn_conn_parse(kn_conn *c, const char *json, char **err)
{
    memset(c, 0, sizeof *c);
    cJSON *j = cJSON_Parse(json);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *err = cb_strdup("not a JSON object");
        return -1;
    }
    const char *transport = cb_json_str(j, "transport", "tcp");
    if (strcmp(transport, "tcp") != 0 && strcmp(transport, "ipc") != 0) {
        *err = cb_printf_new("unsupported transport '%s' (expected tcp or ipc)", transport);
        goto fail;
    }
    const char *ip = cb_json_str(j, "ip", strcmp(transport, "tcp") == 0 ? "127.0.0.1" : NULL);
    if (!ip || !*ip) {
        *err = cb_strdup("missing 'ip'");
        goto fail;
    }
    for (size_t i = 0; i < CB_ARRAY_LEN(port_fields); i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(j, port_fields[i].name);
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65535 ||
            v->valuedouble != (int)v->valuedouble) {
            *err = cb_printf_new("'%s' is missing or not a port number (1-65535)", port_fields[i].name);
            goto fail;
        }
        *(int *)((char *)c + port_fields[i].off) = (int)v->valuedouble;
    }
    cJSON *key = cJSON_GetObjectItemCaseSensitive(j, "key");
    if (key && !cJSON_IsString(key)) {
        *err = cb_strdup("'key' must be a string");
        goto fail;
    }
    const char *scheme = cb_json_str(j, "signature_scheme", "hmac-sha256");
    if (strcmp(scheme, "hmac-sha256") != 0 && strcmp(scheme, "hmac-sha512") != 0) {
        *err = cb_printf_new("unsupported signature_scheme '%s' (expected hmac-sha256)", scheme);
        goto fail;
    }
    c->transport = cb_strdup(transport);
    c->ip = cb_strdup(ip);
    c->key = cb_strdup(key ? key->valuestring : "");
    c->signature_scheme = cb_strdup(scheme);
    c->kernel_name = cb_strdup(cb_json_str(j, "kernel_name", ""));
    cJSON_Delete(j);
    return 0;
fail:
    cJSON_Delete(j);
    return -1;
}

int kn_conn_load(kn_conn *c, const char *path, char **err)
{
    cb_autofree char *text = cb_read_file(path, NULL);
    if (!text) {
        *err = cb_printf_new("cannot read connection file %s: %s", path, strerror(errno));
        return -1;
    }
    char *why = NULL;
    if (kn_conn_parse(c, text, &why) < 0) {
        *err = cb_printf_new("invalid connection file %s: %s", path, why);
        free(why);
        return -1;
    }
    return 0;
}

char *kn_conn_endpoint(const kn_conn *c, int port)
{
    if (strcmp(c->transport, "ipc") == 0)
        return cb_printf_new("ipc://%s-%d", c->ip, port);
    if (strchr(c->ip, ':'))  /* IPv6 literal */
        return cb_printf_new("tcp://[%s]:%d", c->ip, port);
    return cb_printf_new("tcp://%s:%d", c->ip, port);
}

char *kn_conn_to_json(const kn_conn *c)
{
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; i < CB_ARRAY_LEN(port_fields); i++)
        cJSON_AddNumberToObject(j, port_fields[i].name, *(const int *)((const char *)c + port_fields[i].off));
    cJSON_AddStringToObject(j, "ip", c->ip);
    cJSON_AddStringToObject(j, "key", c->key ? c->key : "");
    cJSON_AddStringToObject(j, "transport", c->transport);
    cJSON_AddStringToObject(j, "signature_scheme", c->signature_scheme ? c->signature_scheme : "hmac-sha256");
    cJSON_AddStringToObject(j, "kernel_name", c->kernel_name ? c->kernel_name : "");
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

int kn_conn_write(const kn_conn *c, const char *path)
{
    cb_autofree char *s = kn_conn_to_json(c);
    return cb_write_file_atomic(path, s, strlen(s), 0600);
}

void kn_conn_clear(kn_conn *c)
{
    free(c->transport);
    free(c->ip);
    free(c->key);
    free(c->signature_scheme);
    free(c->kernel_name);
    memset(c, 0, sizeof *c);
}
