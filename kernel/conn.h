/* kernel/conn.h: Jupyter connection files (both sides: the kernel reads
 * them, the notebook executor writes them).
 *
 * kn_conn is a value: kn_conn_clear() frees its strings. Errors come back
 * as an owned message in *err (free it) that names the file and the field.
 */
#ifndef KN_CONN_H
#define KN_CONN_H

typedef struct kn_conn {
    char *transport;     /* "tcp" or "ipc" */
    char *ip;            /* tcp: address; ipc: path prefix */
    char *key;           /* may be "" (no signing) */
    char *signature_scheme;
    char *kernel_name;
    int shell_port, iopub_port, stdin_port, control_port, hb_port;
} kn_conn;

int kn_conn_load(kn_conn *c, const char *path, char **err);
int kn_conn_parse(kn_conn *c, const char *json, char **err);
/* "tcp://ip:port" or "ipc://ip-port"; owned. */
char *kn_conn_endpoint(const kn_conn *c, int port);
/* Serialize (JSON, owned) / write with mode 0600. */
char *kn_conn_to_json(const kn_conn *c);
int kn_conn_write(const kn_conn *c, const char *path);
void kn_conn_clear(kn_conn *c);

#endif
