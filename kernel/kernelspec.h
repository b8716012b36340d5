/* kernel/kernelspec.h: Jupyter kernelspecs: install cellbox's own, and find
 * any installed one (the notebook executor launches them).
 *
 * Search order, first match wins (as jupyter_client): $JUPYTER_PATH
 * entries, the user data dir ($JUPYTER_DATA_DIR or ~/.local/share/jupyter),
 * {sys.prefix}/share/jupyter (/usr on Debian), /usr/local/share/jupyter,
 * /usr/share/jupyter; each + "/kernels/NAME/kernel.json".
 *
 * kn_kernelspec_find() returns an owned spec (kn_kernelspec_free).
 */
#ifndef KN_KERNELSPEC_H
#define KN_KERNELSPEC_H

#include <cjson/cJSON.h>

typedef struct kn_kernelspec {
    char *name;
    char *resource_dir;
    char **argv;          /* NULL-terminated */
    int argc;
    char *display_name;
    char *language;
    char *interrupt_mode; /* "signal" (default) or "message" */
    cJSON *env;           /* object or NULL */
    cJSON *metadata;      /* object or NULL */
} kn_kernelspec;

/* NULL + *err (owned) when not found or invalid. */
kn_kernelspec *kn_kernelspec_find(const char *name, char **err);
void kn_kernelspec_free(kn_kernelspec *ks);
/* The search folders in order (owned NULL-terminated array of owned strings). */
char **kn_kernelspec_dirs(void);
void kn_strv_free(char **v);

#endif
