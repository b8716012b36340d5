/* interp/interp.h: the embedded CPython interpreter behind the kernel.
 *
 * ip_python_new() returns a kn_interp whose hooks run Python on the thread
 * that calls start() (the process main thread). All Py* calls of cellbox
 * live in interp/. The Python side of the semantics (IPython-like execution,
 * display, completion, magics) is the embedded package in interp/py/.
 *
 * Ownership: the returned kn_interp and its state are owned by the caller
 * and freed with ip_python_free() after the kernel stopped.
 */
#ifndef IP_INTERP_H
#define IP_INTERP_H

#include "kernel/kernel.h"

typedef struct ip_options {
    bool capture_fds;       /* redirect fds 1/2 into stream messages (kernel: true) */
} ip_options;

kn_interp *ip_python_new(const ip_options *opts);
void ip_python_free(kn_interp *interp);

#endif
