/* interp/interp.h: the embedded CPython interpreter behind the kernel.
 *
 * ip_python_new() returns a kn_interp whose hooks run Python on the thread
 * that calls start() (the process main thread). All Py* calls of cellbox
 * live in interp/. The Python side of the semantics (IPython-like execution,
 * display, completion, magics) is the embedded package in interp/py/.
 *
 * Ownership: the returned kn_interp and its state are owned by the caller
 * and freed with ip_python_free() (ip_node_free()) after the kernel stopped.
 */
#ifndef IP_INTERP_H
#define IP_INTERP_H

#include "kernel/kernel.h"

typedef struct ip_options {
    bool capture_fds;       /* redirect fds 1/2 into stream messages (kernel: true) */
} ip_options;

/* Whether the Python kernel can offer the debugger protocol (debugpy is
 * installed where Debian's python3 finds packages); works before Python
 * starts (kernel_info, kernelspec metadata). */
bool ip_python_debugger_available(void);
kn_interp *ip_python_new(const ip_options *opts);
void ip_python_free(kn_interp *interp);

/* JavaScript and TypeScript: a `node` child process running the embedded
 * runner (interp/js/runner.js), driven over pipes by interp/node.c. Nothing
 * of it runs unless a kernel is started with --language javascript or
 * typescript.
 *
 * ip_node_new() finds node (CELLBOX_NODE, then `node` / `nodejs` on PATH,
 * then /usr/bin/node) and, for TypeScript, Debian's node-typescript; it
 * returns NULL and an owned one-line *err naming the Debian package when
 * one is missing. The node process itself starts in start(). */
typedef enum { IP_LANG_JAVASCRIPT, IP_LANG_TYPESCRIPT } ip_lang;

typedef struct ip_node_options {
    ip_lang lang;
    bool capture_fds;       /* as ip_options (kernel: true) */
} ip_node_options;

kn_interp *ip_node_new(const ip_node_options *opts, char **err);
void ip_node_free(kn_interp *interp);
/* "javascript"/"js" and "typescript"/"ts" -> 0 and *lang; -1 otherwise. */
int ip_lang_parse(const char *name, ip_lang *lang);

#endif
